-- Tamper evidence (ADR 0013): every event carries the SHA-256 of the previous
-- event's hash and its own canonical form, so the global log is a hash chain.
-- `shopfloor verify` recomputes it. Events appended before this migration have no
-- hash; the chain starts after them.
ALTER TABLE events ADD COLUMN hash bytea;
ALTER TABLE event_log_head
    ADD COLUMN last_hash bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000';
