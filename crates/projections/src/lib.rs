//! The read side of Shopfloor: the relay that publishes the committed event log to
//! NATS JetStream, the projectors that build the read models from it, the queries
//! the API answers from them, replay/verify, and the live-update hub.
//!
//! # Layout
//! - [`calendar_sync`]: the plant calendar as one snapshot message, published by
//!   the relay and applied by the plant group (ADR 0061).
//! - [`names`]: JetStream stream, subject and consumer names for a namespace.
//! - [`relay`]: the `relay` role — tails the event store in global order and
//!   publishes every event to JetStream, moving its checkpoint only after the
//!   publishes are acknowledged; one active relay per namespace.
//! - [`projection`]: the framework — the read models ([`Projection`]) and how a
//!   batch of events is applied exactly once (checkpoint in the same transaction,
//!   gaps filled from the store, poison events parked).
//! - `models` (private): the apply functions of each read model.
//! - [`projector`]: the `projector` role — one durable JetStream pull consumer
//!   per read model ([`run_projectors`]).
//! - [`replay`]: rebuild read models from the event store alone ([`replay()`]),
//!   and [`verify`]: rebuild into a scratch schema and compare row by row.
//! - [`query`]: what the API reads — machines, orders, tasks, inventory, KPIs
//!   (ISO 22400-2), state intervals, downtime reports, parked events, shift
//!   calendars.
//! - [`live`]: [`LiveHub`], change notifications coalesced per topic for the
//!   live feed.
//! - [`error`]: error types.

pub mod calendar_sync;
pub mod error;
pub mod live;
mod models;
pub mod names;
pub mod projection;
pub mod projector;
pub mod query;
pub mod relay;
pub mod replay;

pub use error::{ProjectionError, QueryError};
pub use live::{LiveHub, LiveUpdate};
pub use projection::Projection;
pub use projector::{run_projectors, run_projectors_with, Projector, ProjectorOptions};
pub use relay::{Relay, RelayError};
pub use replay::{replay, verify, Difference};
