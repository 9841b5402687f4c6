-- Every append maintains every index of `events`, under the log-head lock
-- (ADR 0014). Keep only the indexes that reads use:
-- - the primary key (position): the global log, subscriptions, the hash chain;
-- - UNIQUE (event_id): idempotent appends;
-- - UNIQUE (stream_type, stream_id, version): stream reads and version checks.
-- `events_type` and `events_recorded_at` served no query of the system.
DROP INDEX IF EXISTS events_type;
DROP INDEX IF EXISTS events_recorded_at;

-- Stream names are identifiers, compared byte by byte: under the database's
-- default collation (a glibc locale such as C.UTF-8 or en_US.UTF-8) every B-tree
-- comparison in the stream index would go through strcoll.
ALTER TABLE events
    ALTER COLUMN stream_type TYPE text COLLATE "C",
    ALTER COLUMN stream_id TYPE text COLLATE "C";
ALTER TABLE snapshots
    ALTER COLUMN stream_type TYPE text COLLATE "C",
    ALTER COLUMN stream_id TYPE text COLLATE "C";
