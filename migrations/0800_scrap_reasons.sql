-- Scrap reasons (ADR 0050): the reason a parts report gave for its scrap, a code of the
-- built-in `scrap.*` set; NULL for reports without one (all reports before this migration).
ALTER TABLE rm_parts_facts ADD COLUMN scrap_reason text;

-- Scrap by reason over a window of floor time, per machine.
CREATE INDEX rm_parts_facts_scrap ON rm_parts_facts (machine_id, at) WHERE scrap > 0;
