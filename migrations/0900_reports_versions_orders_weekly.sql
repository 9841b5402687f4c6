-- Reports, second round (issue 19, ADR 0051): corrected versions of scheduled reports,
-- the order report, the report sections read from the log, weekly schedules and
-- delivery of scheduled reports.

-- The layout a report was rendered with: 1 = ADR 0041's (KPIs, Paretos, stops,
-- timelines), 2 = with the sections of ADR 0051 (orders, inspections, scrap by reason,
-- maintenance, alerts). Regeneration uses the recorded layout, so reports made before
-- this migration still verify.
ALTER TABLE reports ADD COLUMN layout smallint NOT NULL DEFAULT 1 CHECK (layout IN (1, 2));
-- Every new row is layout 2 unless it says otherwise.
ALTER TABLE reports ALTER COLUMN layout SET DEFAULT 2;

-- The order report: one order's whole life.
ALTER TABLE reports DROP CONSTRAINT reports_kind_check;
ALTER TABLE reports ADD CONSTRAINT reports_kind_check
    CHECK (kind IN ('shift', 'day', 'week', 'order'));
ALTER TABLE reports ADD COLUMN order_id text;
ALTER TABLE reports ADD CONSTRAINT reports_order_has_id
    CHECK ((kind = 'order') = (order_id IS NOT NULL));

-- Versions: a late event that changes a closed period's scheduled report makes a
-- corrected version (version + 1) at a later position; the earlier row stays, with
-- `superseded_by` naming its successor. Nothing is overwritten.
ALTER TABLE reports ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1);
ALTER TABLE reports ADD COLUMN supersedes text REFERENCES reports (report_id);
ALTER TABLE reports ADD COLUMN superseded_by text REFERENCES reports (report_id);
-- The log position up to which later events were found not to change the report.
ALTER TABLE reports ADD COLUMN checked_position bigint;
ALTER TABLE reports ADD CONSTRAINT reports_version_chain
    CHECK ((version = 1) = (supersedes IS NULL));

-- One report per schedule, period and version, whichever instance leads.
DROP INDEX reports_schedule_period;
CREATE UNIQUE INDEX reports_schedule_period_version
    ON reports (schedule_id, period_from, period_to, version)
    WHERE schedule_id IS NOT NULL;
-- The live (not superseded) scheduled reports, checked for late events.
CREATE INDEX reports_live_scheduled ON reports (period_to)
    WHERE schedule_id IS NOT NULL AND superseded_by IS NULL;

-- Weekly schedules: a week report of each plant-local ISO week (Monday to Monday),
-- made at `at_local` on the Monday after.
ALTER TABLE report_schedules DROP CONSTRAINT report_schedules_trigger_check;
ALTER TABLE report_schedules ADD CONSTRAINT report_schedules_trigger_check
    CHECK (trigger IN ('shift_end', 'daily', 'weekly'));
-- Where a scheduled report is sent once made: alert channels
-- (`[{"type": "webhook", "url", "secret"} | {"type": "email", "to": [..]}]`).
ALTER TABLE report_schedules ADD COLUMN channels jsonb NOT NULL DEFAULT '[]';

-- Deliveries of scheduled reports: one row per (report, channel), sent by the report
-- deliverer with the alert outbox's back-off and signature (ADR 0039).
CREATE TABLE report_deliveries (
    report_id     text        NOT NULL REFERENCES reports (report_id),
    channel_index integer     NOT NULL,
    channel_type  text        NOT NULL CHECK (channel_type IN ('webhook', 'email')),
    target        text        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts      integer     NOT NULL DEFAULT 0,
    next_attempt  timestamptz NOT NULL DEFAULT now(),
    last_error    text,
    delivered_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (report_id, channel_index)
);
CREATE INDEX report_deliveries_due ON report_deliveries (next_attempt) WHERE status = 'pending';
