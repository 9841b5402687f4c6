-- MQTT ingest (crates/ingest, ADR 0007 and 0008).

-- Messages set aside: malformed, unknown machine, impossible values; plus notices
-- about the stream itself (a Sparkplug sequence gap). `message_id` is the
-- deterministic id of the MQTT message (hash of topic and payload), so a QoS 1
-- redelivery is not recorded twice. The payload is bounded (see the crate).
CREATE TABLE ingest_rejected (
    id            bigserial   PRIMARY KEY,
    message_id    text        NOT NULL,
    topic         text        NOT NULL,
    reason        text        NOT NULL,
    -- The raw payload, truncated; binary payloads are hex with a `hex:` prefix.
    payload       text        NOT NULL,
    payload_bytes integer     NOT NULL,
    -- `rejected` (set aside) or `notice` (processed, but worth a look).
    disposition   text        NOT NULL DEFAULT 'rejected' CHECK (disposition IN ('rejected', 'notice')),
    received_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ingest_rejected_once UNIQUE (message_id, reason)
);
CREATE INDEX ingest_rejected_received ON ingest_rejected (received_at DESC, id DESC);

-- The ingest's own per-machine state (debounce, counters, no-signal, learned
-- baselines), written in the same transaction as the events and telemetry that a
-- batch of messages produced, so a restart resumes exactly where it stopped.
CREATE TABLE ingest_machine_state (
    namespace  text        NOT NULL,
    machine_id text        NOT NULL,
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, machine_id)
);

-- Telemetry samples: a time series, partitioned by day on the sample's floor
-- time. Partitions are created ahead by `ingest_telemetry_maintain`; anything
-- outside them (late data older than the first partition) lands in the default
-- partition. The primary key makes a redelivered sample a no-op.
CREATE TABLE telemetry (
    machine_id text             NOT NULL,
    sensor     text             NOT NULL,
    ts         timestamptz      NOT NULL,
    value      double precision NOT NULL,
    PRIMARY KEY (machine_id, sensor, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;

-- One-minute rollups, maintained in the same statement as the raw insert (only
-- rows actually inserted count, so a redelivery changes nothing).
CREATE TABLE telemetry_rollup_1m (
    machine_id text             NOT NULL,
    sensor     text             NOT NULL,
    bucket     timestamptz      NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    sum        double precision NOT NULL,
    count      bigint           NOT NULL,
    PRIMARY KEY (machine_id, sensor, bucket)
);
CREATE INDEX telemetry_rollup_1m_bucket ON telemetry_rollup_1m (bucket);

-- Creates the daily partitions of `telemetry` from today to `days_ahead` days on,
-- and drops those wholly older than `retention_days` (rows of the default partition
-- too, and rollups older than `rollup_retention_days`). Idempotent.
CREATE FUNCTION ingest_telemetry_maintain(days_ahead integer, retention_days integer,
                                          rollup_retention_days integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d     date;
    name  text;
    r     record;
    limit_ts timestamptz := now() - make_interval(days => retention_days);
BEGIN
    FOR i IN 0..days_ahead LOOP
        d := (now() AT TIME ZONE 'UTC')::date + i;
        name := 'telemetry_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                    name, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            EXCEPTION WHEN others THEN
                -- The default partition already holds rows of that day (or another
                -- instance won the race): the rows stay where they are.
                RAISE NOTICE 'telemetry partition % not created: %', name, SQLERRM;
            END;
        END IF;
    END LOOP;
    FOR r IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'telemetry'::regclass AND c.relname ~ '^telemetry_p[0-9]{8}$'
    LOOP
        IF (to_date(substr(r.relname, 12), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= limit_ts THEN
            EXECUTE format('DROP TABLE %I', r.relname);
        END IF;
    END LOOP;
    DELETE FROM telemetry_default WHERE ts < limit_ts;
    DELETE FROM telemetry_rollup_1m WHERE bucket < now() - make_interval(days => rollup_retention_days);
END
$$;
