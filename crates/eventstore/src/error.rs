//! Errors of the event store, and the one classifier of database failures.
//!
//! Every part of Shopfloor that talks to PostgreSQL asks [`classify`] (or
//! [`StoreError::is_transient`]) whether a failure passes (retry later), is the
//! caller's bad value (a 400), or is a fault; nobody keeps a list of their own.

use crate::model::{ExpectedVersion, StreamRef};

/// What can go wrong when appending to or reading from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the version the writer expected; nothing was written.
    #[error("stream {stream} is at version {actual}, expected {expected}")]
    Conflict {
        stream: StreamRef,
        expected: ExpectedVersion,
        actual: u64,
    },
    /// Some of the event ids were appended before, but not as this request has them
    /// (another stream). Nothing was written.
    #[error("event id {event_id} was already appended to stream {existing}")]
    IdempotencyMismatch {
        event_id: uuid::Uuid,
        existing: StreamRef,
    },
    /// The request was part of an all-or-nothing unit and another request of the
    /// unit (on `failed`) was refused, so nothing of the unit was written.
    #[error("not written: the append to {failed} in the same unit was refused")]
    Aborted { failed: StreamRef },
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
    /// PostgreSQL refused a value of this request (a NUL in a text, a number out of
    /// range); nothing of it was written.
    #[error("a value cannot be stored: {0}")]
    BadValue(String),
    /// A batch this append was part of failed as a whole; nothing of it was written.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// The connection was lost while the commit was under way and the database did
    /// not come back in time to tell whether it happened. The events may be stored:
    /// retrying with the same event ids (the same idempotency key) is safe.
    #[error("the outcome of the commit is unknown: {0}")]
    UnknownOutcome(String),
    /// PostgreSQL failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// How a database failure reads to whoever must react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It passes: a lost connection, a pool timeout, a restart, a serialization
    /// failure or deadlock, too many connections. Retry later.
    Transient,
    /// PostgreSQL refused a value of the request itself (class 22: a NUL in a text,
    /// a number out of range): the client's fault.
    BadValue,
    /// Anything else: a bug, a broken schema. An operator must look.
    Fault,
}

/// The one classifier of `sqlx` failures.
pub fn classify(e: &sqlx::Error) -> Failure {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => Failure::Transient,
        sqlx::Error::Protocol(m) if m.contains("EOF") || m.contains("closed") => Failure::Transient,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // serialization failure, deadlock, lock not available
            Some("40001" | "40P01" | "55P03") => Failure::Transient,
            // shutdown / crash / cannot connect now (57P), connection (08), resources (53)
            Some(c) if c.starts_with("57P") || c.starts_with("08") || c.starts_with("53") => {
                Failure::Transient
            }
            Some(c) if c.starts_with("22") => Failure::BadValue,
            _ => Failure::Fault,
        },
        _ => Failure::Fault,
    }
}

impl StoreError {
    /// How this failure reads: see [`Failure`]. Conflicts, refusals and decode
    /// errors are faults of the request or the data, never transient.
    pub fn failure(&self) -> Failure {
        match self {
            StoreError::Unavailable(_) | StoreError::UnknownOutcome(_) => Failure::Transient,
            StoreError::BadValue(_) => Failure::BadValue,
            StoreError::Database(e) => classify(e),
            _ => Failure::Fault,
        }
    }

    /// True when retrying the same operation later may succeed (a lost connection,
    /// a pool timeout, a restarting database), as opposed to a conflict or a bad
    /// request.
    pub fn is_transient(&self) -> bool {
        self.failure() == Failure::Transient
    }

    /// This failure as every request of the batch it ended receives it (the one
    /// mapping of a shared failure): the outcome is unknown where a commit may have
    /// happened (`cut_off`); else unavailable where it passes, a bad value where
    /// PostgreSQL refused one, and a fault otherwise, each with the message.
    pub fn shared(&self, cut_off: bool) -> StoreError {
        let message = self.to_string();
        if cut_off || matches!(self, StoreError::UnknownOutcome(_)) {
            return StoreError::UnknownOutcome(message);
        }
        match self.failure() {
            Failure::Transient => StoreError::Unavailable(message),
            Failure::BadValue => StoreError::BadValue(message),
            Failure::Fault => StoreError::Invalid(message),
        }
    }
}
