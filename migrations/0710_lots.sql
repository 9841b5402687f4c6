-- Lots, genealogy and quality holds (ADR 0057). Built by the `inventory` projection from
-- the lot events of the `inventory_item` streams; every column comes from events.

-- One row per lot: its attributes, origin and status now.
CREATE TABLE rm_lots (
    item_id            text        NOT NULL,
    lot_id             text        NOT NULL,
    item_type          text        NOT NULL,
    supplier_lot       text,
    expiry             timestamptz,
    -- received | produced | split | merged
    origin             text        NOT NULL,
    -- The lot it was split from.
    parent_lot         text,
    order_id           text,
    machine_id         text,
    -- available | held | scrapped
    status             text        NOT NULL,
    hold_reason        text,
    hold_id            text,
    created_at         timestamptz NOT NULL,
    created_by         text,
    created_recorded   timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    -- Floor time of the first and last production into it (produced lots).
    produced_from      timestamptz,
    produced_to        timestamptz,
    PRIMARY KEY (item_id, lot_id)
);
CREATE INDEX rm_lots_supplier ON rm_lots (supplier_lot) WHERE supplier_lot IS NOT NULL;
CREATE INDEX rm_lots_order ON rm_lots (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX rm_lots_status ON rm_lots (status, item_id) WHERE status <> 'available';

-- Stock per lot and location now (set from the quantities events carry).
CREATE TABLE rm_lot_stock (
    item_id    text        NOT NULL,
    lot_id     text        NOT NULL,
    location   text        NOT NULL,
    quantity   numeric     NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (item_id, lot_id, location)
);
CREATE INDEX rm_lot_stock_location ON rm_lot_stock (location, item_id);

-- Genealogy: what went into what. consumed (backflush into an output lot), split, merged.
CREATE TABLE rm_lot_edges (
    position    bigint      NOT NULL,
    seq         integer     NOT NULL,
    from_item   text        NOT NULL,
    from_lot    text        NOT NULL,
    to_item     text        NOT NULL,
    to_lot      text        NOT NULL,
    qty         numeric     NOT NULL,
    kind        text        NOT NULL,
    order_id    text,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (position, seq)
);
CREATE INDEX rm_lot_edges_from ON rm_lot_edges (from_item, from_lot);
CREATE INDEX rm_lot_edges_to ON rm_lot_edges (to_item, to_lot);

-- Every change of a lot, with its actor: the lot's ledger, and its state as of any time.
CREATE TABLE rm_lot_movements (
    position    bigint      NOT NULL,
    seq         integer     NOT NULL,
    item_id     text        NOT NULL,
    lot_id      text        NOT NULL,
    location    text,
    kind        text        NOT NULL,
    delta       numeric     NOT NULL,
    -- The lot's stock at the location afterwards (None: no stock change).
    new_qty     numeric,
    -- The lot's status afterwards.
    status      text        NOT NULL,
    reason      text,
    order_id    text,
    actor       text,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (position, seq)
);
CREATE INDEX rm_lot_movements_lot ON rm_lot_movements (item_id, lot_id, position);
