-- The relay's checkpoint: how far the log has been published to JetStream, per
-- namespace. Moved only after JetStream acknowledged every event up to `position`.
CREATE TABLE relay_checkpoints (
    namespace   text        PRIMARY KEY,
    position    bigint      NOT NULL,
    -- JetStream stream sequence of the last acknowledged publish. If the stream's
    -- last sequence is ever below this, NATS lost its tail and we republish.
    js_sequence bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
