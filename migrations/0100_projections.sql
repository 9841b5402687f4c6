-- The projection framework (crates/projections, ADR 0006).
--
-- Each projection applies events and moves its checkpoint in one transaction,
-- so a redelivered event (position <= checkpoint) changes nothing. Events that
-- cannot be applied are parked here with their error; the projection goes on.

CREATE TABLE projection_checkpoints (
    projection text   PRIMARY KEY,
    -- Global position of the last event applied (or parked).
    position   bigint NOT NULL DEFAULT 0
);

CREATE TABLE projection_parked (
    projection  text        NOT NULL,
    position    bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    stream_type text        NOT NULL,
    stream_id   text        NOT NULL,
    event_type  text        NOT NULL,
    error       text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, position)
);
CREATE INDEX projection_parked_newest ON projection_parked (parked_at DESC);

-- Plant calendar: settings, not events (they are not rebuilt by replay).
-- The plant's IANA time zone: shifts and day buckets are local to it.
CREATE TABLE plant_settings (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    time_zone text    NOT NULL DEFAULT 'UTC'
);
INSERT INTO plant_settings (id, time_zone) VALUES (true, 'UTC');

-- Shift definitions per line, in plant-local wall-clock time. A shift whose end
-- is not after its start crosses midnight (22:00-06:00); equal start and end is
-- a 24-hour shift. `days` are the ISO weekdays (1 = Monday) on which it starts.
-- Where a line has shifts, time outside them is not planned production time.
CREATE TABLE shift_definitions (
    line       text       NOT NULL,
    shift_name text       NOT NULL,
    start_time time       NOT NULL,
    end_time   time       NOT NULL,
    days       smallint[] NOT NULL DEFAULT '{1,2,3,4,5,6,7}',
    PRIMARY KEY (line, shift_name)
);
