//! Errors of the event store.

use crate::model::StreamRef;

/// What can go wrong when appending to or reading from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the version the writer expected; nothing was written.
    #[error("stream {stream} is at version {actual}, expected {expected}")]
    Conflict {
        stream: StreamRef,
        expected: String,
        actual: u64,
    },
    /// Some of the event ids were appended before, but not as this request has them
    /// (another stream). Nothing was written.
    #[error("event id {event_id} was already appended to stream {existing}")]
    IdempotencyMismatch {
        event_id: uuid::Uuid,
        existing: StreamRef,
    },
    /// The request itself is not valid (no events, bad names, ...).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// A stored event or snapshot could not be (de)serialized or upcast.
    #[error("event {position} ({event_type}) cannot be decoded: {reason}")]
    Decode {
        position: i64,
        event_type: String,
        reason: String,
    },
    /// A batch this append was part of failed as a whole; nothing of it was written.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// True when retrying the same operation later may succeed (a lost connection,
    /// a pool timeout), as opposed to a conflict or a bad request.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
            || matches!(
                self,
                StoreError::Database(
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                )
            )
    }
}
