//! MQTT ingest: turns sensor payloads into machine commands, telemetry batches and
//! predictive maintenance tasks.
//!
//! Topics (CONTRACT): `{namespace}/machines/{machine_id}/state|count|telemetry` with
//! JSON payloads, and Sparkplug B under `spBv1.0/{namespace}/…` (plus the groups the
//! mapping lists). One persistent MQTT session at QoS 1; a message is acknowledged
//! only once everything it produced is committed (ADR 0007).
//!
//! # Layout
//! - [`config`]: [`IngestConfig`] and the [`Mapping`] file (topics and Sparkplug
//!   metrics to machines and meanings, per-machine noise settings).
//! - [`message`]: an incoming message, its identity (a packet on the session or an
//!   explicit `msg_id`, never its content: ADR 0034), observations.
//! - [`json`] and [`sparkplug`]: the decoders (Sparkplug with hand-written prost
//!   structs, births, aliases, seq, bdSeq).
//! - [`filter`]: per-machine noise filtering (debounce, duplicates, counters to
//!   deltas with reset and rollover, no signal), pure and time-injected.
//! - [`predictive`]: the learned baseline, drift, trend and threshold rules (ADR 0008).
//! - [`plan`]: the pure half of a batch: decoded messages → machine commands,
//!   predictive tasks, telemetry samples, rejections and staged machine states.
//! - [`engine`]: carries a plan out: the commands through the one writer
//!   (`CommandService::execute_batch`), then the ingest's own rows (telemetry,
//!   rejected messages, ingest state) in one short transaction outside the log-head
//!   lock (ADR 0035).
//! - [`store`]: the ingest's tables and the query functions the API serves
//!   ([`list_rejected`], [`telemetry_series`]).
//! - [`mqtt`]: [`run_ingest`], the MQTT client and the batching loop.
//! - [`simulator`]: [`simulate`], a plant publishing to the broker.

pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod filter;
pub mod json;
pub mod message;
pub mod mqtt;
pub mod plan;
pub mod predictive;
pub mod simulator;
pub mod sparkplug;
pub mod store;

pub use config::{IngestConfig, MachineSettings, Mapping, TelemetrySettings};
pub use engine::{BatchReport, Engine};
pub use error::IngestError;
pub use message::Incoming;
pub use mqtt::{run_ingest, subscriptions};
pub use simulator::{
    simulate, simulated_machines, DemoFloor, DemoOrder, SimulatedMachine, SimulationReport,
    SimulatorConfig, StopToClassify,
};
pub use store::{
    list_rejected, maintain_telemetry, telemetry_series, RejectedMessage, TelemetryPoint,
    TelemetryQuery,
};
