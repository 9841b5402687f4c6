-- The one-round-trip append (ADR 0014). The group-commit writer computes
-- positions, versions and the hash chain itself, from the log head it last saw
-- (its "tip"), and sends the whole batch as one statement. The function takes the
-- head lock, checks that the head is still that tip (nobody else appended since),
-- checks that every stream is at the version the batch was built on, inserts the
-- events and moves the head. Any check that fails aborts the statement with a
-- `SF0xx` error and nothing is written: the writer then falls back to the
-- lock-lookup-insert transaction of `EventStore::append_batch`.
--
-- The head lock is taken by the first statement; each statement of a VOLATILE
-- plpgsql function takes a fresh snapshot, so the checks after it see every
-- append that committed before the lock was granted.
CREATE FUNCTION shopfloor_append(
    p_expected_position bigint,
    p_expected_hash     bytea,
    p_position          bigint,
    p_hash              bytea,
    p_recorded_at       timestamptz,
    -- (type, id, version) of streams that must be at that version (version > 0);
    -- that no stream is beyond it, the unique (stream, version) key checks.
    p_check_type        text[],
    p_check_id          text[],
    p_check_version     bigint[],
    e_position          bigint[],
    e_stream_type       text[],
    e_stream_id         text[],
    e_version           bigint[],
    e_event_id          uuid[],
    e_event_type        text[],
    e_schema_version    int[],
    e_payload           jsonb[],
    e_actor             text[],
    e_correlation_id    text[],
    e_causation_id      text[],
    e_source            text[],
    e_occurred_at       timestamptz[],
    e_extra             jsonb[],
    e_hash              bytea[],
    p_channel           text
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head_position bigint;
    head_hash     bytea;
BEGIN
    SELECT position, last_hash INTO head_position, head_hash
      FROM event_log_head WHERE id FOR UPDATE;
    IF head_position IS DISTINCT FROM p_expected_position
       OR head_hash IS DISTINCT FROM p_expected_hash THEN
        RAISE EXCEPTION 'the log head is at %, not at %', head_position, p_expected_position
            USING ERRCODE = 'SF001';
    END IF;
    -- A scalar subquery per stream (one probe of the stream index each): the
    -- planner cannot turn it into a join that hashes the whole table.
    IF EXISTS (
        SELECT 1 FROM unnest(p_check_type, p_check_id, p_check_version) AS c(t, i, v)
        WHERE (SELECT e.version FROM events e
               WHERE e.stream_type = c.t AND e.stream_id = c.i AND e.version = c.v) IS NULL
    ) THEN
        RAISE EXCEPTION 'a stream is behind the version the batch expects'
            USING ERRCODE = 'SF002';
    END IF;
    INSERT INTO events (position, stream_type, stream_id, version, event_id, event_type,
        schema_version, payload, actor, correlation_id, causation_id, source, occurred_at,
        recorded_at, extra, hash)
    SELECT u.position, u.stream_type, u.stream_id, u.version, u.event_id, u.event_type,
        u.schema_version, u.payload, u.actor, u.correlation_id, u.causation_id, u.source,
        u.occurred_at, p_recorded_at, u.extra, u.hash
    FROM unnest(e_position, e_stream_type, e_stream_id, e_version, e_event_id, e_event_type,
        e_schema_version, e_payload, e_actor, e_correlation_id, e_causation_id, e_source,
        e_occurred_at, e_extra, e_hash)
        AS u(position, stream_type, stream_id, version, event_id, event_type, schema_version,
             payload, actor, correlation_id, causation_id, source, occurred_at, extra, hash);
    UPDATE event_log_head
       SET position = p_position, recorded_at = p_recorded_at, last_hash = p_hash
     WHERE id;
    PERFORM pg_notify(p_channel, p_position::text);
END
$$;
