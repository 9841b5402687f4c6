//! The errors of the ingest.

use shopfloor_eventstore::StoreError;

/// What can stop the ingest, or fail one of its queries.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The configuration (URL, mapping file, settings) is invalid.
    #[error("invalid ingest configuration: {0}")]
    Config(String),
    /// The mapping file could not be read.
    #[error("cannot read the ingest mapping {path}: {source}")]
    MappingFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// PostgreSQL failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The MQTT client could not be driven (its event loop is gone).
    #[error("mqtt client: {0}")]
    Mqtt(String),
}

impl IngestError {
    /// True when retrying later may succeed (a database that is down, a lock conflict).
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Database(e) => sqlx_is_transient(e),
            IngestError::Store(e) => e.is_transient(),
            IngestError::Mqtt(_) => true,
            IngestError::Config(_) | IngestError::MappingFile { .. } => false,
        }
    }
}

/// Connection trouble, pool exhaustion, serialization failures and deadlocks are
/// worth a retry; anything else is a bug or bad data.
pub(crate) fn sqlx_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300")
        ),
        _ => false,
    }
}
