//! OPC UA ingest: a client of the plant's OPC UA servers (async-opcua) whose data
//! changes go through the MQTT ingest's own path — noise filter, counters to deltas,
//! commands through the one writer, telemetry store, rejected-message record.
//!
//! # Layout
//! - [`config`]: the mapping file (`SHOPFLOOR_OPCUA_CONFIG`): servers, security,
//!   users, nodes and what they mean.
//! - [`decode`]: pure: a data change (or a connection gap) → the ingest's
//!   [`shopfloor_ingest::Incoming`] and [`shopfloor_ingest::message::Decoded`].
//! - [`client`]: sessions, subscriptions, reconnection (async-opcua).
//! - [`run`]: [`run_opcua`], the batching loop into [`shopfloor_ingest::Engine`].
//! - `sim` (feature `sim-server`): an in-process OPC UA server, the benchmark's
//!   load source.
//!
//! See ADR 0046.

pub mod client;
pub mod config;
pub mod decode;
pub mod run;
#[cfg(feature = "sim-server")]
pub mod sim;

pub use config::OpcuaConfig;
pub use run::{run_opcua, state_namespace, Progress};
