//! The command side of Shopfloor: executes domain commands against the event store.
//!
//! The API and the MQTT ingest both turn outside input into a [`Target`] (a domain
//! command addressed to one aggregate) plus a [`CommandContext`] (who, why, from
//! where, idempotency key, expected version), and hand it to [`CommandService`].
//!
//! # Layout
//! - [`service`]: [`CommandService`] — load (snapshot-aware), check the expected
//!   version, make the command idempotent, decide (pure domain), append, retry on
//!   a concurrent write.
//! - [`error`]: [`CommandError`] and the classification of domain refusals into
//!   not found / conflict / invalid, which the API maps to 404 / 409 / 400.
//! - [`process`]: the process-manager driver: reacts to events in the log with
//!   follow-up commands (backflush, order progress, maintenance records, policies),
//!   idempotently.
//! - [`workload`]: the machine-command workload of the benchmarks.

pub mod aggregate;
pub mod error;
pub mod process;
pub mod service;
pub mod workload;

pub use error::{CommandError, RejectionKind};
pub use service::{Atomicity, BatchItem, CommandContext, CommandService, CommittedEvent, Outcome};
pub use shopfloor_domain::process::Target;
