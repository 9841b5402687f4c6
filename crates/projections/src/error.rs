//! Errors of the read side.
//!
//! - [`ProjectionError`]: running, replaying or verifying projections failed
//!   (the database or JetStream could not be reached; a name is unknown).
//! - [`QueryError`]: a read-model query failed; [`QueryError::Invalid`] and
//!   [`QueryError::NotFound`] are the caller's fault (400 and 404 at the API).
//! - [`ApplyError`] (crate-private): applying one event failed, either because of
//!   the event itself (poison: it is parked and the projection goes on) or because
//!   of the database (transient: the batch is retried).

use shopfloor_eventstore::{CheckpointError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("unknown projection {0:?}")]
    UnknownProjection(String),
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The query itself is wrong (an empty window, an unknown granularity, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
}

/// Why one event could not be applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The event cannot be applied, now or ever: park it and go on.
    #[error("{0}")]
    Poison(String),
    /// The database failed: retry the batch.
    #[error("database: {0}")]
    Transient(sqlx::Error),
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        if is_poison(&e) {
            ApplyError::Poison(e.to_string())
        } else {
            ApplyError::Transient(e)
        }
    }
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(e) => e.into(),
            other => ApplyError::Poison(other.to_string()),
        }
    }
}

/// Whether a database error is caused by the data (the same event would fail
/// again: a constraint, an overflow, a bad value) rather than by the database's
/// condition (connection, resources, serialization, shutdown).
fn is_poison(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let class = code.as_deref().map(|c| &c[..c.len().min(2)]);
            !matches!(
                class,
                // connection, transaction rollback, resources, operator
                // intervention, system error, internal error
                Some("08" | "40" | "53" | "57" | "58" | "XX") | None
            )
        }
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => true,
        _ => false,
    }
}
