-- Projection `orders`: the floor time of each order's start, completion,
-- cancellation and inspections as facts (ADR 0058), so that changeovers, the
-- order execution time and the first pass yield of the ISO 22400 catalogue are
-- computed at query time and `as_of` filters on `recorded_at`, as for the
-- machine facts (ADR 0005).
CREATE TABLE rm_order_facts (
    order_id    text        NOT NULL,
    position    bigint      NOT NULL,
    -- `started`, `completed`, `cancelled` or `inspected`.
    kind        text        NOT NULL,
    -- The machine an order started on (starts only).
    machine_id  text,
    -- Inspections only: parts inspected, and defective among them.
    sample_size bigint,
    defects     bigint,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (order_id, position)
);
CREATE INDEX rm_order_facts_machine ON rm_order_facts (machine_id, at) WHERE machine_id IS NOT NULL;

-- The orders already projected: their start and end as known now (the events'
-- positions are not in rm_orders; a replay of `orders` writes the exact facts).
INSERT INTO rm_order_facts (order_id, position, kind, machine_id, at, recorded_at)
SELECT order_id, 0, 'started', assigned_machine, started_at, started_at
FROM rm_orders WHERE started_at IS NOT NULL AND assigned_machine IS NOT NULL;
INSERT INTO rm_order_facts (order_id, position, kind, machine_id, at, recorded_at)
SELECT order_id, 1, 'completed', NULL, completed_at, completed_at
FROM rm_orders WHERE completed_at IS NOT NULL;
INSERT INTO rm_order_facts (order_id, position, kind, machine_id, at, recorded_at)
SELECT order_id, 1, 'cancelled', NULL, cancelled_at, cancelled_at
FROM rm_orders WHERE cancelled_at IS NOT NULL;
