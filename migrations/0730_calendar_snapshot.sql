-- The plant calendar at a group site (ADR 0061, amendment of 2026-12-02): the plant's
-- relay publishes its whole calendar (time zone, weekly shifts, rotations, exceptions,
-- non-working periods) as one snapshot on `{site}.settings.calendar`; the group role
-- replaces the site schema's calendar tables with the newest one. This row says which
-- snapshot a site's tables hold, so an older one arriving later is ignored. At a plant
-- the row stays empty (its calendar is its own).
CREATE TABLE calendar_snapshot_applied (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    -- When the plant took the snapshot (its database clock); null: none yet.
    taken_at   timestamptz,
    -- SHA-256 of the snapshot message (its Nats-Msg-Id).
    sha256     text,
    applied_at timestamptz
);
INSERT INTO calendar_snapshot_applied (id) VALUES (true);
