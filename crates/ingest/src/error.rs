//! The errors of the ingest.

use shopfloor_commands::CommandError;
use shopfloor_eventstore::{classify, Failure, StoreError};

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
    /// The one writer failed a command for a reason that is not a refusal.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The MQTT client could not be driven (its event loop is gone).
    #[error("mqtt client: {0}")]
    Mqtt(String),
}

impl IngestError {
    /// True when retrying later may succeed (a database that is down, a lock conflict).
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Database(e) => classify(e) == Failure::Transient,
            IngestError::Store(e) => e.is_transient(),
            IngestError::Command(e) => e.is_transient(),
            IngestError::Mqtt(_) => true,
            IngestError::Config(_) | IngestError::MappingFile { .. } => false,
        }
    }
}
