//! The command side of Shopfloor: executes domain commands against the event store.
//!
//! The one writer (ADR 0035). The API, the MQTT ingest and the process managers all
//! turn their input into [`BatchItem`]s — a [`Target`] (a domain command addressed to
//! one aggregate) plus a [`CommandContext`] (who, why, from where, idempotency key,
//! expected version) — and hand them to [`CommandService::execute_batch`] with an
//! [`Atomicity`]; nothing else appends domain events.
//!
//! # Layout
//! - [`service`]: [`CommandService`] — per-stream turns, load (cached, else
//!   snapshot-aware), plan (pure: decide each command in order), commit through the
//!   group-commit writer as all-or-nothing units, settle (re-plan on a concurrent
//!   write from another process; idempotent by derived event ids).
//! - [`aggregate`]: [`aggregate::AnyAggregate`], every aggregate type behind one enum,
//!   so one batch and one cache hold them all.
//! - [`error`]: [`CommandError`] and the classification of domain refusals into
//!   not found / conflict / invalid, which the API maps to 404 / 409 / 400.
//! - [`process`]: the process-manager driver: reacts to events in the log with
//!   follow-up commands (backflush, order progress, maintenance records, policies),
//!   idempotently.
//! - `reasons`: the plant's reason catalogue, as machines' decisions use it (ADR 0053).
//! - [`workload`]: the machine-command workload of the benchmarks.

pub mod aggregate;
pub mod error;
pub mod process;
mod reasons;
pub mod rejections;
pub mod service;
pub mod workload;

pub use error::{CommandError, RejectionKind};
pub use service::{Atomicity, BatchItem, CommandContext, CommandService, CommittedEvent, Outcome};
pub use shopfloor_domain::process::Target;
