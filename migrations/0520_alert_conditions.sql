-- Condition rules (ADR 0049): a threshold, an item and a KPI for the kinds that need them.
ALTER TABLE alert_rules
    ADD COLUMN target  double precision,
    ADD COLUMN item_id text,
    ADD COLUMN metric  text;
-- Unresolved alerts by rule, for the condition check on every tick.
CREATE INDEX alerts_unresolved_rule ON alerts (rule_id) WHERE state <> 'resolved';
