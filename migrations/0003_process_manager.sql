-- The process manager: reacts to events with follow-up commands.

-- How far it has read the log.
CREATE TABLE process_checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Which policies watch which machine (kept from PolicyDefined / PolicyDisabled as
-- the log is read, so usage events can be checked against them).
CREATE TABLE process_machine_policies (
    policy_id  text    PRIMARY KEY,
    machine_id text    NOT NULL,
    enabled    boolean NOT NULL
);
CREATE INDEX process_machine_policies_machine ON process_machine_policies (machine_id) WHERE enabled;

-- Follow-up commands that were refused (a report on a cancelled order, ...). The
-- causing event stays a fact; the refusal is recorded here for people to see.
CREATE TABLE process_rejections (
    command_id  text        PRIMARY KEY,
    position    bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    target      text        NOT NULL,
    reason      text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX process_rejections_recorded ON process_rejections (recorded_at DESC);
