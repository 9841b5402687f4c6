//! The Shopfloor event store: an EventStoreDB-style log of streams on PostgreSQL.
//!
//! Every fact Shopfloor knows is an event in a stream (`stream_type`/`stream_id`,
//! versions 1, 2, …) and at a global position in one log. This crate owns that log.
//!
//! # Layout
//! - [`model`]: the vocabulary — stream references, expected versions, events to
//!   append and recorded events, with their metadata.
//! - [`store`]: [`EventStore`], appends (atomic per request, optimistic concurrency,
//!   idempotent by event id, many requests in one transaction) and reads (a stream
//!   forwards or backwards, the whole log from a position).
//! - [`archive`]: backup and restore (a consistent, compressed export of the log).
//! - [`chain`]: the hash chain that makes tampering with the log detectable.
//! - [`checkpoint`]: [`Checkpoint`], how far a reader of the log (the relay, a
//!   projection, the process manager) has got.
//! - [`group`]: group commit — concurrent appends from many tasks in one transaction.
//! - [`subscription`]: a catch-up subscription over the global log — history first,
//!   then live events woken by `LISTEN/NOTIFY`, without a gap or a duplicate.
//! - [`upcast`]: upcasters that bring old event schema versions up to date on load.
//! - [`leader`]: leader election (an advisory lock) for once-per-deployment loops.
//! - [`repository`]: the `cqrs-es` [`cqrs_es::EventStore`] implementation, so
//!   `CqrsFramework` loads and commits aggregates through this store, with our own
//!   (correct) snapshots.
//!
//! # Ordering
//! Positions are handed out under the row lock of `event_log_head`, held to commit,
//! so commit order is position order and positions have no gaps (ADR 0002). Readers
//! page through `position > last` and can never skip an event that commits later.

pub mod archive;
pub mod chain;
pub mod checkpoint;
pub mod error;
pub mod group;
pub mod leader;
pub mod model;
pub mod repository;
pub mod store;
pub mod subscription;
pub mod upcast;

pub use checkpoint::{Checkpoint, CheckpointError, Reader};
pub use error::{classify, Failure, StoreError};
pub use group::{GroupCommitter, GroupStats};
pub use leader::{LeaderError, LeaderFlag, Leadership};
pub use model::{
    AppendRequest, AppendResult, Direction, EventFilter, EventMetadata, ExpectedVersion, NewEvent,
    RecordedEvent, Source, StreamRef,
};
pub use repository::{AggregateRepository, RepositoryContext};
pub use store::EventStore;
pub use subscription::Subscription;
pub use upcast::{Upcaster, Upcasters};

/// The migrations of the whole Shopfloor database (event store and read models).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
