-- Calendars that match real plants (ADR 0060): settings kept as an append-only
-- history, so a change takes effect from a date, history stays as it was
-- computed, and `as_of` reads only what was recorded by then.

-- A line's rotation (JSON: {"anchor": date, "days": [[shift, ...], ...]}) in
-- force from `effective_from` (plant-local date) on. The latest recorded row of
-- a (line, effective_from) is the one in force.
CREATE TABLE calendar_rotations (
    line           text        NOT NULL,
    effective_from date        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    rotation       jsonb       NOT NULL,
    recorded_by    text,
    PRIMARY KEY (line, effective_from, recorded_at)
);

-- One day's shifts of a line replaced (overtime, a short day; an empty list: no
-- work that day). The latest recorded row of a (line, day) wins.
CREATE TABLE calendar_exceptions (
    line        text        NOT NULL,
    day         date        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    shifts      jsonb       NOT NULL,
    recorded_by text,
    PRIMARY KEY (line, day, recorded_at)
);

-- Plant-wide periods without work (holidays, shutdowns), plant-local; removing
-- one sets `removed_at`, so `as_of` still sees it before that.
CREATE TABLE calendar_non_working (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    from_local  timestamp   NOT NULL,
    to_local    timestamp   NOT NULL CHECK (to_local > from_local),
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    removed_at  timestamptz,
    recorded_by text
);
