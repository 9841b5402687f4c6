//! The read side of Shopfloor: the relay that publishes the committed event log to
//! NATS JetStream, and (to come) the projectors that build the read models from it.
//!
//! # Layout
//! - [`names`]: JetStream stream, subject and consumer names for a namespace.
//! - [`relay`]: the `relay` role — tails the event store in global order and
//!   publishes every event to JetStream, moving its checkpoint only after the
//!   publishes are acknowledged; one active relay per namespace.

pub mod names;
pub mod relay;

pub use relay::{Relay, RelayError};
