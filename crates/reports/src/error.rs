//! Errors of the reports.

use shopfloor_projections::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The request itself is wrong (an empty window, an unknown kind, ...): 400.
    #[error("{0}")]
    Invalid(String),
    /// No such report: 404.
    #[error("report {0} not found")]
    NotFound(String),
    /// The read model has not caught up with the log in time: 503, try again.
    #[error("the KPI read model is at position {at}, behind the log's {head}")]
    Behind { at: i64, head: i64 },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("query: {0}")]
    Query(#[from] QueryError),
    #[error("rendering: {0}")]
    Render(String),
    #[error("object storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("storage settings: {0}")]
    Settings(String),
}
