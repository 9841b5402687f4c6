-- Message identity for the MQTT ingest (crates/ingest, ADR 0034).
--
-- Content is not identity: two identical publishes are two reports. A message gets
-- an id when it is received, remembered here so that a redelivery gets the same
-- id (and every command derived from it appends nothing the second time):
-- - `pkid:{n}`: the id given to the QoS 1 packet `n` of the ingest's MQTT session
--   (`scope` = its client id). The broker redelivers an unacknowledged packet with
--   the DUP flag and the same packet id; it reuses a packet id only after our
--   PUBACK, and then without DUP, which overwrites the row. `content` is SHA-256 of
--   topic and payload: a DUP packet whose content differs is another message (a
--   reused packet id), never the other way round.
-- - `msg:{topic}\x1f{msg_id}`: a JSON payload's explicit `msg_id`; kept as long
--   as rejected messages (`rejected_retention_days`; that delete scans, hourly).
-- JSON telemetry packets are not remembered: a sample is stored once per (machine,
-- sensor, time) whatever message carries it, so its id changes nothing.
CREATE TABLE ingest_message_ids (
    scope       text        NOT NULL,
    key         text        NOT NULL,
    message_id  text        NOT NULL,
    content     bytea       NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
