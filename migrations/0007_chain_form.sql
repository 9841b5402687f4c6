-- The canonical form of the hash chain, and where its unchained prefix ends (ADR 0031).
--
-- 1. Each event says which canonical form it was hashed with. Form 1 wrote numbers
--    as serde_json prints them, which jsonb does not always give back (`1e16` comes
--    back as `10000000000000000`); form 2 writes each number in a decimal normal
--    form of its value. Events already stored keep form 1 (the column default), so
--    they verify as before; a writer that does not name a form (a binary from
--    before this migration, during a rolling upgrade) also gets form 1, which is
--    the form it hashes with.
ALTER TABLE events ADD COLUMN chain_form smallint NOT NULL DEFAULT 1;

-- 2. Only a prefix of events from before the chain existed (migration 0004) may be
--    unchained, and the head says where it ends: every event after
--    `unchained_until` must carry a hash. For a log that already holds events, the
--    prefix ends before the first event that is hashed or was recorded after
--    migration 0004 was installed (so hashes set to NULL before this upgrade do not
--    widen it); a forward scan of the position index that stops there. A new log
--    has no prefix.
ALTER TABLE event_log_head ADD COLUMN unchained_until bigint NOT NULL DEFAULT 0;
UPDATE event_log_head
   SET unchained_until = coalesce(
       (SELECT e.position - 1 FROM events e
         WHERE e.hash IS NOT NULL
            OR e.recorded_at >= (SELECT installed_on FROM _sqlx_migrations WHERE version = 4)
         ORDER BY e.position LIMIT 1),
       position)
 WHERE id;

-- 3. The one-statement append (ADR 0014) with the form its hashes were computed
--    in. An overload: the 24-argument function of migration 0006 stays for
--    writers from before this migration and stores form 1.
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
    p_channel           text,
    p_chain_form        smallint
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
        recorded_at, extra, hash, chain_form)
    SELECT u.position, u.stream_type, u.stream_id, u.version, u.event_id, u.event_type,
        u.schema_version, u.payload, u.actor, u.correlation_id, u.causation_id, u.source,
        u.occurred_at, p_recorded_at, u.extra, u.hash, p_chain_form
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
