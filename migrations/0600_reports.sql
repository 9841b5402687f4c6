-- Reports (issue 19, ADR 0041): one row per generated report file. The file itself is
-- in object storage under `storage_key`; the row says how to regenerate it (kind, scope,
-- period, format, plant name) and where in the log its figures were taken (position,
-- chain hash, as_of), and the SHA-256 of the bytes generated then.
CREATE TABLE reports (
    report_id    text        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('shift', 'day', 'week')),
    line         text,
    period_from  timestamptz NOT NULL,
    period_to    timestamptz NOT NULL CHECK (period_to > period_from),
    format       text        NOT NULL CHECK (format IN ('pdf', 'csv', 'json')),
    plant        text        NOT NULL,
    position     bigint      NOT NULL CHECK (position >= 0),
    chain_hash   text        NOT NULL,
    as_of        timestamptz NOT NULL,
    sha256       text        NOT NULL,
    size_bytes   bigint      NOT NULL CHECK (size_bytes >= 0),
    storage_key  text        NOT NULL,
    requested_by text        NOT NULL,
    -- The schedule that generated it; NULL when asked for on demand.
    schedule_id  text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reports_by_time ON reports (created_at DESC, report_id);
-- A schedule makes each period's report once, whichever instance leads.
CREATE UNIQUE INDEX reports_schedule_period ON reports (schedule_id, period_from, period_to)
    WHERE schedule_id IS NOT NULL;

-- Report schedules: `shift_end` (a report per shift of the line's calendar, after it
-- ends) and `daily` (a day report of the plant-local day, at `at_local` the next day).
CREATE TABLE report_schedules (
    schedule_id text        PRIMARY KEY,
    trigger     text        NOT NULL CHECK (trigger IN ('shift_end', 'daily')),
    line        text,
    format      text        NOT NULL CHECK (format IN ('pdf', 'csv', 'json')),
    -- Plant-local time of day a daily report is made (for the day before).
    at_local    time        NOT NULL DEFAULT '00:00',
    -- Periods ending before this are not generated (the schedule's start).
    not_before  timestamptz NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
