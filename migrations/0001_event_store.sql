-- The event store: an EventStoreDB-style log of streams on PostgreSQL.
--
-- Ordering (ADR 0002): every append takes the row lock on `event_log_head`
-- and holds it until commit, so positions are handed out in commit order and
-- without gaps. A reader that remembers "last position seen" can never skip
-- an event that commits later with a lower position.

CREATE TABLE event_log_head (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- Position of the last committed event (0 when the log is empty).
    position    bigint      NOT NULL,
    -- recorded_at of that event: keeps recorded_at monotonic with position.
    recorded_at timestamptz NOT NULL
);
INSERT INTO event_log_head (id, position, recorded_at) VALUES (true, 0, '-infinity');

CREATE TABLE events (
    position       bigint      PRIMARY KEY,
    stream_type    text        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    event_id       uuid        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL CHECK (schema_version > 0),
    payload        jsonb       NOT NULL,
    actor          text,
    correlation_id text,
    causation_id   text,
    source         text        NOT NULL CHECK (source IN ('api', 'mqtt', 'process', 'system')),
    occurred_at    timestamptz,
    recorded_at    timestamptz NOT NULL,
    -- Anything else the command carried (request id, command id, ...).
    extra          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT events_stream_version UNIQUE (stream_type, stream_id, version)
);

CREATE INDEX events_recorded_at ON events (recorded_at);
CREATE INDEX events_type ON events (stream_type, event_type);

-- Snapshots of long streams: a cache, never the source of truth. One row per
-- stream, replaced by a newer version only.
CREATE TABLE snapshots (
    stream_type text        NOT NULL,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL,
    state       jsonb       NOT NULL,
    taken_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_type, stream_id)
);
