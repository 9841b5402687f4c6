-- Read models built by the projectors (crates/projections). Every column is
-- derived from events only (never now()), so a replay gives the same rows.

-- Projection `machines`: the machine status board.
CREATE TABLE rm_machines (
    machine_id            text             PRIMARY KEY,
    machine_type          text             NOT NULL,
    line                  text             NOT NULL,
    -- The latest ideal cycle time (by effective_from) and since when it holds.
    ideal_cycle_time_s    double precision NOT NULL,
    ideal_cycle_time_from timestamptz,
    registered_at         timestamptz      NOT NULL,
    -- The state with the latest floor time (a late event never moves it back).
    current_status        text,
    status_since          timestamptz,
    reason                text,
    reason_code           text,
    category              text,
    loss                  text,
    planned               boolean,
    last_maintenance      timestamptz,
    last_maintenance_task text,
    good_count            bigint           NOT NULL DEFAULT 0,
    scrap_count           bigint           NOT NULL DEFAULT 0,
    last_parts_at         timestamptz,
    last_parts_order      text
);
CREATE INDEX rm_machines_line ON rm_machines (line, machine_id);

-- Projection `machine_history`: the facts KPIs and downtime are computed from at
-- query time, by floor time, with recorded_at for `as_of`.
CREATE TABLE rm_state_facts (
    machine_id  text        NOT NULL,
    at          timestamptz NOT NULL,
    position    bigint      NOT NULL,
    state       text        NOT NULL,
    planned     boolean     NOT NULL,
    reason      text,
    reason_code text,
    category    text,
    loss        text,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (machine_id, at, position)
);

-- Later classifications of a stop (the state event at machine_id/stop_at).
CREATE TABLE rm_stop_classifications (
    machine_id    text        NOT NULL,
    stop_at       timestamptz NOT NULL,
    position      bigint      NOT NULL,
    reason_code   text        NOT NULL,
    category      text        NOT NULL,
    loss          text,
    planned       boolean     NOT NULL,
    classified_by text        NOT NULL,
    recorded_at   timestamptz NOT NULL,
    PRIMARY KEY (machine_id, stop_at, position)
);

CREATE TABLE rm_parts_facts (
    machine_id         text             NOT NULL,
    at                 timestamptz      NOT NULL,
    position           bigint           NOT NULL,
    good               bigint           NOT NULL,
    scrap              bigint           NOT NULL,
    -- In force at `at`: performance = sum(ideal_cycle_time_s * (good + scrap)) / run time.
    ideal_cycle_time_s double precision NOT NULL,
    order_id           text,
    recorded_at        timestamptz      NOT NULL,
    PRIMARY KEY (machine_id, at, position)
);

-- Projection `orders`.
CREATE TABLE rm_orders (
    order_id           text        PRIMARY KEY,
    product_id         text        NOT NULL,
    quantity           bigint      NOT NULL,
    status             text        NOT NULL,
    assigned_machine   text,
    good_count         bigint      NOT NULL DEFAULT 0,
    scrap_count        bigint      NOT NULL DEFAULT 0,
    bom                jsonb       NOT NULL DEFAULT '[]',
    input_location     text,
    output_location    text        NOT NULL,
    hold_reason        text,
    cancel_reason      text,
    inspections        bigint      NOT NULL DEFAULT 0,
    inspections_failed bigint      NOT NULL DEFAULT 0,
    inspected_parts    bigint      NOT NULL DEFAULT 0,
    defects            bigint      NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL,
    assigned_at        timestamptz,
    started_at         timestamptz,
    completed_at       timestamptz,
    cancelled_at       timestamptz,
    -- Floor time of the last event.
    updated_at         timestamptz NOT NULL
);
CREATE INDEX rm_orders_machine ON rm_orders (assigned_machine, status);
CREATE INDEX rm_orders_status ON rm_orders (status, order_id);

-- Projection `maintenance`.
CREATE TABLE rm_maintenance_tasks (
    task_id        text        PRIMARY KEY,
    machine_id     text        NOT NULL,
    kind           text        NOT NULL,
    status         text        NOT NULL,
    scheduled_date timestamptz NOT NULL,
    description    text,
    evidence       jsonb,
    policy_id      text,
    scheduled_at   timestamptz NOT NULL,
    started_at     timestamptz,
    completed_at   timestamptz,
    cancelled_at   timestamptz,
    notes          text,
    cancel_reason  text,
    parts_used     jsonb       NOT NULL DEFAULT '[]'
);
CREATE INDEX rm_maintenance_tasks_machine ON rm_maintenance_tasks (machine_id, scheduled_date);
CREATE INDEX rm_maintenance_tasks_open ON rm_maintenance_tasks (status, scheduled_date);

-- Projection `inventory`: levels (set from the levels events carry) and the ledger.
CREATE TABLE rm_inventory_levels (
    item_id    text        NOT NULL,
    location   text        NOT NULL,
    item_type  text        NOT NULL,
    quantity   numeric     NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (item_id, location)
);
CREATE INDEX rm_inventory_levels_location ON rm_inventory_levels (location, item_id);

-- One row per stock movement; a consumption that could not be covered also gets
-- a `shortage` row (delta 0). `seq` orders the rows of one event.
CREATE TABLE rm_inventory_movements (
    position    bigint      NOT NULL,
    seq         integer     NOT NULL,
    item_id     text        NOT NULL,
    item_type   text        NOT NULL,
    location    text,
    kind        text        NOT NULL,
    delta       numeric     NOT NULL,
    new_level   numeric,
    shortage    numeric     NOT NULL DEFAULT 0,
    reason      text,
    order_id    text,
    actor       text,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (position, seq)
);
CREATE INDEX rm_inventory_movements_item ON rm_inventory_movements (item_id, position DESC);
CREATE INDEX rm_inventory_movements_order ON rm_inventory_movements (order_id, position DESC);
