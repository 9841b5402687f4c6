-- Alerts (ADR 0039): the evaluator's working state, the alerts read model and the delivery
-- outbox. Every row here is derived from events on the log (alert rules and alerts are
-- aggregates), except the delivery attempts, which record what the channels answered.

-- The rules as the evaluator knows them (from AlertRuleDefined / AlertRuleDisabled).
-- `channels` and `escalation` hold webhook secrets: never selected by a listing route.
CREATE TABLE alert_rules (
    rule_id        text PRIMARY KEY,
    kind           text NOT NULL,
    machine_id     text,
    line           text,
    after_minutes  double precision NOT NULL,
    severity       text NOT NULL,
    channels       jsonb NOT NULL,
    escalation     jsonb,
    enabled        boolean NOT NULL DEFAULT true,
    defined_by     text NOT NULL,
    defined_at     timestamptz NOT NULL,
    position       bigint NOT NULL
);
-- Rules by scope, for the evaluator's join of machines and rules.
CREATE INDEX alert_rules_machine ON alert_rules (machine_id);
CREATE INDEX alert_rules_line ON alert_rules (line);

-- Per machine: its line and its current state by floor time (the latest state event), with
-- the event that started the current stop (the cause of the alerts it raises).
CREATE TABLE alert_machines (
    machine_id      text PRIMARY KEY,
    line            text,
    state           text,
    planned         boolean NOT NULL DEFAULT false,
    classified      boolean NOT NULL DEFAULT false,
    state_at        timestamptz,
    state_event_id  uuid
);
CREATE INDEX alert_machines_stopped ON alert_machines (state) WHERE state IN ('down', 'idle');

-- The alerts read model (GET /api/v1/alerts).
CREATE TABLE alerts (
    alert_id         text PRIMARY KEY,
    rule_id          text NOT NULL,
    kind             text NOT NULL,
    severity         text NOT NULL,
    machine_id       text,
    subject          text,
    cause_event_id   text NOT NULL,
    state            text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    since            timestamptz NOT NULL,
    raised_at        timestamptz NOT NULL,
    -- Commit time of AlertRaised: escalation counts from when people could be told.
    raised_recorded  timestamptz NOT NULL,
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    escalations      integer NOT NULL DEFAULT 0,
    resolved_at      timestamptz,
    resolved_by      text,
    resolved_reason  text,
    UNIQUE (rule_id, cause_event_id)
);
CREATE INDEX alerts_state ON alerts (state, machine_id);

-- The delivery outbox: one row per (alert event, channel), claimed with SKIP LOCKED by the
-- delivery workers. Inserted by the evaluator when it reads the alert event from the log, so a
-- failing channel never blocks evaluation and a crash never loses or doubles a delivery.
CREATE TABLE alert_deliveries (
    delivery_id      bigserial PRIMARY KEY,
    alert_id         text NOT NULL,
    event_id         uuid NOT NULL,
    stage            text NOT NULL,
    rule_id          text NOT NULL,
    -- Which list (0 = the rule's channels, 1 = its escalation) and which channel in it.
    channel_list     integer NOT NULL,
    channel_index    integer NOT NULL,
    channel_type     text NOT NULL,
    -- Where it goes, without secrets (a webhook's URL, an email's recipients).
    target           text NOT NULL,
    payload          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    last_status      integer,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_until    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Commit time of the alert event: the start of the delivery latency.
    event_recorded   timestamptz NOT NULL,
    delivered_at     timestamptz,
    UNIQUE (event_id, channel_list, channel_index)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);
