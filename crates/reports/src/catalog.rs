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
    /// The order of an order report.
    pub order_id: Option<String>,
    /// The layout it was rendered with (1: ADR 0041; 2: with the sections of ADR 0051).
    pub layout: i16,
    /// 1, or the number of the corrected version.
    pub version: i32,
    /// The report this corrected version replaces.
    pub supersedes: Option<String>,
    /// The corrected version that replaces this one (the row stays).
    pub superseded_by: Option<String>,
}

impl ReportMeta {
    pub fn request(&self) -> ReportRequest {
        ReportRequest {
            kind: self.kind,
            line: self.line.clone(),
            from: self.from,
            to: self.to,
            format: self.format,
            order_id: self.order_id.clone(),
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

#[derive(sqlx::FromRow)]
struct Row {
    report_id: String,
    kind: String,
    line: Option<String>,
    period_from: DateTime<Utc>,
    period_to: DateTime<Utc>,
    format: String,
    plant: String,
    position: i64,
    chain_hash: String,
    as_of: DateTime<Utc>,
    sha256: String,
    size_bytes: i64,
    storage_key: String,
    requested_by: String,
    schedule_id: Option<String>,
    created_at: DateTime<Utc>,
    order_id: Option<String>,
    layout: i16,
    version: i32,
    supersedes: Option<String>,
    superseded_by: Option<String>,
}

const COLUMNS: &str = "report_id, kind, line, period_from, period_to, format, plant, position, \
    chain_hash, as_of, sha256, size_bytes, storage_key, requested_by, schedule_id, created_at, \
    order_id, layout, version, supersedes, superseded_by";

fn meta(r: Row) -> Result<ReportMeta, ReportError> {
    let bad = |what: &str, v: &str| {
        ReportError::Database(sqlx::Error::Decode(
            format!("{what} {v:?} in the reports table").into(),
        ))
    };
    Ok(ReportMeta {
        kind: ReportKind::parse(&r.kind).ok_or_else(|| bad("kind", &r.kind))?,
        format: Format::parse(&r.format).ok_or_else(|| bad("format", &r.format))?,
        report_id: r.report_id,
        line: r.line,
        from: r.period_from,
        to: r.period_to,
        plant: r.plant,
        position: r.position,
        chain_hash: r.chain_hash,
        as_of: r.as_of,
        sha256: r.sha256,
        size_bytes: r.size_bytes,
        storage_key: r.storage_key,
        requested_by: r.requested_by,
        schedule_id: r.schedule_id,
        created_at: r.created_at,
        order_id: r.order_id,
        layout: r.layout,
        version: r.version,
        supersedes: r.supersedes,
        superseded_by: r.superseded_by,
    })
}

fn insert_query(
    m: &ReportMeta,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(
        "INSERT INTO reports (report_id, kind, line, period_from, period_to, format, plant, \
           position, chain_hash, as_of, sha256, size_bytes, storage_key, requested_by, schedule_id, \
           order_id, layout, version, supersedes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
           $19) \
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
    .bind(&m.order_id)
    .bind(m.layout)
    .bind(m.version)
    .bind(&m.supersedes)
}

/// Records a report; an id already there keeps its first row (the same report).
/// Returns the row as stored.
pub async fn insert(pool: &PgPool, m: &ReportMeta) -> Result<ReportMeta, ReportError> {
    insert_query(m).execute(pool).await?;
    get(pool, &m.report_id)
        .await?
        .ok_or_else(|| ReportError::NotFound(m.report_id.clone()))
}

/// Records a corrected version and marks the report it supersedes, in one transaction.
/// Returns `None` when that report was superseded already (another instance was first).
pub async fn insert_version(
    pool: &PgPool,
    m: &ReportMeta,
) -> Result<Option<ReportMeta>, ReportError> {
    let Some(old) = m.supersedes.as_deref() else {
        return Err(ReportError::Invalid(
            "a corrected version names its predecessor".into(),
        ));
    };
    let mut tx = pool.begin().await?;
    let inserted = insert_query(m).execute(&mut *tx).await?.rows_affected();
    let marked = sqlx::query(
        "UPDATE reports SET superseded_by = $1 WHERE report_id = $2 AND superseded_by IS NULL",
    )
    .bind(&m.report_id)
    .bind(old)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 || marked == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    get(pool, &m.report_id).await
}

/// Notes that the log up to `position` holds nothing that changes the report.
pub async fn mark_checked(pool: &PgPool, id: &str, position: i64) -> Result<(), ReportError> {
    sqlx::query(
        "UPDATE reports SET checked_position = greatest(coalesce(checked_position, 0), $2) \
         WHERE report_id = $1",
    )
    .bind(id)
    .bind(position)
    .execute(pool)
    .await?;
    Ok(())
}

/// The position of the log's head (committed).
pub async fn head(pool: &PgPool) -> Result<i64, ReportError> {
    Ok(
        sqlx::query_scalar("SELECT position FROM event_log_head WHERE id")
            .fetch_one(pool)
            .await?,
    )
}

/// The live (not superseded) scheduled reports of periods ending after `since` that
/// have a later event, up to `head`, with a floor time before their period's end (of
/// the streams a report reads: machines, orders, maintenance tasks, alerts):
/// candidates for a corrected version. Each looks only at the events after the
/// position it was last checked at.
pub async fn with_late_events(
    pool: &PgPool,
    since: DateTime<Utc>,
    head: i64,
) -> Result<Vec<ReportMeta>, ReportError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reports r WHERE schedule_id IS NOT NULL AND superseded_by IS NULL \
           AND kind <> 'order' AND period_to > $1 \
           AND EXISTS (SELECT 1 FROM events e \
             WHERE e.position > greatest(r.position, coalesce(r.checked_position, 0)) \
               AND e.position <= $2 \
               AND e.stream_type IN ('machine', 'production_order', 'maintenance_task', 'alert') \
               AND coalesce(e.payload ->> 'stop_at', e.payload ->> 'effective_from', \
                   e.payload ->> 'raised_at', e.payload ->> 'at')::timestamptz < r.period_to) \
         ORDER BY period_to, report_id"
    ))
    .bind(since)
    .bind(head)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(meta).collect()
}

/// Notes that the log up to `head` holds no late event for the live scheduled reports
/// of periods ending after `since`, but for those in `except` (the candidates), so the
/// next look starts after `head`.
pub async fn mark_all_checked(
    pool: &PgPool,
    since: DateTime<Utc>,
    head: i64,
    except: &[String],
) -> Result<u64, ReportError> {
    Ok(sqlx::query(
        "UPDATE reports SET checked_position = $2 WHERE schedule_id IS NOT NULL \
           AND superseded_by IS NULL AND kind <> 'order' AND period_to > $1 \
           AND coalesce(checked_position, 0) < $2 \
           AND NOT (report_id = ANY($3))",
    )
    .bind(since)
    .bind(head)
    .bind(except)
    .execute(pool)
    .await?
    .rows_affected())
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
    pub order_id: Option<String>,
    pub limit: i64,
}

/// Reports, newest first.
pub async fn list(pool: &PgPool, f: &ListFilter) -> Result<Vec<ReportMeta>, ReportError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reports WHERE ($1::text IS NULL OR kind = $1) \
         AND ($2::text IS NULL OR line = $2) AND ($3::text IS NULL OR schedule_id = $3) \
         AND ($5::text IS NULL OR order_id = $5) \
         ORDER BY created_at DESC, report_id LIMIT $4"
    ))
    .bind(f.kind.map(ReportKind::as_str))
    .bind(&f.line)
    .bind(&f.schedule_id)
    .bind(f.limit.clamp(1, 1000))
    .bind(&f.order_id)
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
