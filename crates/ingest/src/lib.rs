//! MQTT ingest: turns sensor payloads (`{namespace}/machines/{id}/state|count|telemetry`,
//! and Sparkplug B) into machine commands and telemetry batches.
//!
//! Nothing is here yet: the `ingest` role of the binary stands by until this crate
//! provides it.
