//! The report catalogue in PostgreSQL (migration 0600): what was generated, at
//! which log position, with which bytes' hash, and where the file is.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::error::ReportError;
use crate::model::{Anchor, Format, ReportKind, ReportRequest};

/// One generated report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportMeta {
    pub report_id: String,
    pub kind: ReportKind,
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub format: Format,
    pub plant: String,
    pub position: i64,
    pub chain_hash: String,
    pub as_of: DateTime<Utc>,
    /// SHA-256 (hex) of the file's bytes.
    pub sha256: String,
    pub size_bytes: i64,
    #[serde(skip)]
    pub storage_key: String,
    pub requested_by: String,
    pub schedule_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl ReportMeta {
    pub fn request(&self) -> ReportRequest {
        ReportRequest {
            kind: self.kind,
            line: self.line.clone(),
            from: self.from,
            to: self.to,
            format: self.format,
        }
    }

    pub fn anchor(&self) -> Anchor {
        Anchor {
            position: self.position,
            chain_hash: self.chain_hash.clone(),
            as_of: self.as_of,
        }
    }
}

type Row = (
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    String,
    String,
    i64,
    String,
    DateTime<Utc>,
    String,
    i64,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
);

const COLUMNS: &str = "report_id, kind, line, period_from, period_to, format, plant, position, \
    chain_hash, as_of, sha256, size_bytes, storage_key, requested_by, schedule_id, created_at";

fn meta(r: Row) -> Result<ReportMeta, ReportError> {
    let bad = |what: &str, v: &str| {
        ReportError::Database(sqlx::Error::Decode(
            format!("{what} {v:?} in the reports table").into(),
        ))
    };
    Ok(ReportMeta {
        kind: ReportKind::parse(&r.1).ok_or_else(|| bad("kind", &r.1))?,
        format: Format::parse(&r.5).ok_or_else(|| bad("format", &r.5))?,
        report_id: r.0,
        line: r.2,
        from: r.3,
        to: r.4,
        plant: r.6,
        position: r.7,
        chain_hash: r.8,
        as_of: r.9,
        sha256: r.10,
        size_bytes: r.11,
        storage_key: r.12,
        requested_by: r.13,
        schedule_id: r.14,
        created_at: r.15,
    })
}

/// Records a report; an id already there keeps its first row (the same report).
/// Returns the row as stored.
pub async fn insert(pool: &PgPool, m: &ReportMeta) -> Result<ReportMeta, ReportError> {
    sqlx::query(
        "INSERT INTO reports (report_id, kind, line, period_from, period_to, format, plant, \
           position, chain_hash, as_of, sha256, size_bytes, storage_key, requested_by, schedule_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&m.report_id)
    .bind(m.kind.as_str())
    .bind(&m.line)
    .bind(m.from)
    .bind(m.to)
    .bind(m.format.as_str())
    .bind(&m.plant)
    .bind(m.position)
    .bind(&m.chain_hash)
    .bind(m.as_of)
    .bind(&m.sha256)
    .bind(m.size_bytes)
    .bind(&m.storage_key)
    .bind(&m.requested_by)
    .bind(&m.schedule_id)
    .execute(pool)
    .await?;
    get(pool, &m.report_id)
        .await?
        .ok_or_else(|| ReportError::NotFound(m.report_id.clone()))
}

/// One report's row.
pub async fn get(pool: &PgPool, id: &str) -> Result<Option<ReportMeta>, ReportError> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reports WHERE report_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(meta).transpose()
}

/// Which reports to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub kind: Option<ReportKind>,
    pub line: Option<String>,
    pub schedule_id: Option<String>,
    pub limit: i64,
}

/// Reports, newest first.
pub async fn list(pool: &PgPool, f: &ListFilter) -> Result<Vec<ReportMeta>, ReportError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reports WHERE ($1::text IS NULL OR kind = $1) \
         AND ($2::text IS NULL OR line = $2) AND ($3::text IS NULL OR schedule_id = $3) \
         ORDER BY created_at DESC, report_id LIMIT $4"
    ))
    .bind(f.kind.map(ReportKind::as_str))
    .bind(&f.line)
    .bind(&f.schedule_id)
    .bind(f.limit.clamp(1, 1000))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(meta).collect()
}

/// The chain hash the log holds now for `position` (None: position 0, or archived).
pub async fn chain_hash_at(pool: &PgPool, position: i64) -> Result<Option<String>, ReportError> {
    let h: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT hash FROM events WHERE position = $1")
            .bind(position)
            .fetch_optional(pool)
            .await?;
    Ok(h.flatten().map(hex::encode))
}
