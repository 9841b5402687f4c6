-- People (ADR 0036): operators, their labour sessions, and the operators assigned
-- to an order. Every column is derived from events only, so a replay gives the
-- same rows.

-- Projection `people`: one row per operator.
CREATE TABLE rm_operators (
    operator_id    text        PRIMARY KEY,
    name           text        NOT NULL,
    badge_id       text,
    skills         jsonb       NOT NULL DEFAULT '[]',
    lines          jsonb       NOT NULL DEFAULT '[]',
    active         boolean     NOT NULL,
    registered_at  timestamptz NOT NULL,
    deactivated_at timestamptz,
    -- Floor time of the last change.
    updated_at     timestamptz NOT NULL
);
CREATE INDEX rm_operators_badge ON rm_operators (badge_id) WHERE badge_id IS NOT NULL;

-- Projection `people`: one row per clock-on; off_at is set by its clock-off.
-- Labour figures (time on order, parts made while clocked on) are computed at
-- query time against rm_parts_facts by floor time, so late events correct them.
CREATE TABLE rm_labour_sessions (
    operator_id  text        NOT NULL,
    order_id     text        NOT NULL,
    on_at        timestamptz NOT NULL,
    machine_id   text,
    off_at       timestamptz,
    on_position  bigint      NOT NULL,
    off_position bigint,
    PRIMARY KEY (operator_id, order_id, on_at)
);
CREATE INDEX rm_labour_sessions_order ON rm_labour_sessions (order_id, on_at);

-- Projection `orders`: the operators assigned to an order (a JSON array of ids).
ALTER TABLE rm_orders ADD COLUMN assigned_operators jsonb NOT NULL DEFAULT '[]';

-- Parts by order and floor time, for labour attribution.
CREATE INDEX rm_parts_facts_order ON rm_parts_facts (order_id, at) WHERE order_id IS NOT NULL;
