-- Site-level holidays (ADR 0060 amended, ADR 0062): a non-working period may name the
-- ISA-95 site it applies to; NULL applies to every line of the plant, as before.
ALTER TABLE calendar_non_working ADD COLUMN site text;
