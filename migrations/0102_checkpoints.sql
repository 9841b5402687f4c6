-- One checkpoint type for every reader of the log (ADR 0030): the relay, the
-- projections and the process manager load, lock and move their positions with
-- the same statements (crates/eventstore/src/checkpoint.rs). Their tables stay
-- where they are; this evens out their shape.

-- A relay checkpoint can be created by position alone; the JetStream sequence
-- of its last acknowledged publish is then 0 (none yet).
ALTER TABLE relay_checkpoints ALTER COLUMN js_sequence SET DEFAULT 0;

-- When each projection last moved, as the relay and process manager have it.
ALTER TABLE projection_checkpoints ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- A checkpoint is a position of the log (0: nothing handled yet).
ALTER TABLE projection_checkpoints ADD CONSTRAINT projection_checkpoints_position CHECK (position >= 0);
ALTER TABLE relay_checkpoints ADD CONSTRAINT relay_checkpoints_position CHECK (position >= 0 AND js_sequence >= 0);
ALTER TABLE process_checkpoints ADD CONSTRAINT process_checkpoints_position CHECK (position >= 0);
