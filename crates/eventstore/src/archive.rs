//! Backup and restore of the event store: a consistent, compressed export.
//!
//! The export is gzip-compressed JSON lines: a header (format, version, head
//! position and hash, where the unchained prefix ends), then every event as stored — raw, not upcast — in global
//! order, with its hash. It is read in one `REPEATABLE READ` transaction, so it is
//! a consistent cut of the log even while commands keep coming. A restore goes into
//! an empty event store only, keeps every position, version, id, time and hash, and
//! checks the hash chain before it commits. Read models are rebuilt from the
//! restored log (`shopfloor replay`); tokens, telemetry samples and other
//! operational tables are not part of this export (see docs/operations.md).
//!
//! Format versions: 2 (ADR 0031) adds each event's `chain_form` and the head's
//! `unchained_until`. A version 1 file (from before ADR 0031) is still read: its
//! events were all hashed in form 1, and its unchained prefix is the run of events
//! without a hash at its start.

use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::StoreError;

const FORMAT: &str = "shopfloor-event-store";
const VERSION: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    head_position: i64,
    head_hash: String,
    /// Where the unchained prefix ends (absent in version 1).
    #[serde(default)]
    unchained_until: Option<i64>,
    exported_at: DateTime<Utc>,
}

fn form_1() -> i16 {
    1
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
struct Line {
    position: i64,
    stream_type: String,
    stream_id: String,
    version: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    payload: Value,
    actor: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    source: String,
    occurred_at: Option<DateTime<Utc>>,
    recorded_at: DateTime<Utc>,
    extra: Value,
    #[serde(with = "hex_opt")]
    hash: Option<Vec<u8>>,
    /// The canonical form the hash was computed in (absent, so 1, in version 1).
    #[serde(default = "form_1")]
    chain_form: i16,
}

mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| hex::decode(h).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// What an export or import moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    pub events: u64,
    pub head_position: i64,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Invalid(format!("backup file: {e}"))
}

/// Writes the whole event store to `out` (gzip JSON lines).
pub async fn export(pool: &sqlx::PgPool, out: impl Write) -> Result<ArchiveReport, StoreError> {
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (head_position, head_hash, unchained_until): (i64, Vec<u8>, i64) =
        sqlx::query_as("SELECT position, last_hash, unchained_until FROM event_log_head WHERE id")
            .fetch_one(&mut *tx)
            .await?;
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        head_position,
        head_hash: hex::encode(&head_hash),
        unchained_until: Some(unchained_until),
        exported_at: Utc::now(),
    };
    serde_json::to_writer(&mut gz, &header).map_err(|e| StoreError::Invalid(e.to_string()))?;
    gz.write_all(b"\n").map_err(io)?;
    let mut after = 0_i64;
    let mut events = 0_u64;
    loop {
        let page: Vec<Line> = sqlx::query_as(
            "SELECT position, stream_type, stream_id, version, event_id, event_type, \
             schema_version, payload, actor, correlation_id, causation_id, source, occurred_at, \
             recorded_at, extra, hash, chain_form FROM events WHERE position > $1 \
             ORDER BY position LIMIT 5000",
        )
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for line in &page {
            serde_json::to_writer(&mut gz, line).map_err(|e| StoreError::Invalid(e.to_string()))?;
            gz.write_all(b"\n").map_err(io)?;
            events += 1;
        }
    }
    tx.commit().await?;
    gz.finish().map_err(io)?.flush().map_err(io)?;
    Ok(ArchiveReport {
        events,
        head_position,
    })
}

/// Restores an export into an empty event store; nothing is written if anything
/// is wrong (not empty, a bad line, a broken hash chain).
pub async fn import(pool: &sqlx::PgPool, input: impl BufRead) -> Result<ArchiveReport, StoreError> {
    let mut lines = std::io::BufReader::new(flate2::bufread::GzDecoder::new(input)).lines();
    let first = lines
        .next()
        .ok_or_else(|| StoreError::Invalid("the backup is empty".into()))?
        .map_err(io)?;
    let header: Header = serde_json::from_str(&first)
        .map_err(|e| StoreError::Invalid(format!("not a Shopfloor backup: {e}")))?;
    if header.format != FORMAT || !(1..=VERSION).contains(&header.version) {
        return Err(StoreError::Invalid(format!(
            "unsupported backup format {} v{}",
            header.format, header.version
        )));
    }
    let mut tx = pool.begin().await?;
    let (head,): (i64,) = sqlx::query_as("SELECT position FROM event_log_head WHERE id FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    let any: Option<i64> = sqlx::query_scalar("SELECT position FROM events LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    if head != 0 || any.is_some() {
        return Err(StoreError::Invalid(
            "restore needs an empty event store (this one has events)".into(),
        ));
    }
    let mut batch: Vec<Line> = Vec::with_capacity(1000);
    let mut events = 0_u64;
    let mut last: Option<(i64, DateTime<Utc>)> = None;
    // Version 1: the prefix of events without a hash.
    let mut leading_unchained = 0_i64;
    let mut chained = false;
    for (n, line) in lines.enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Line = serde_json::from_str(&line)
            .map_err(|err| StoreError::Invalid(format!("line {}: {err}", n + 2)))?;
        last = Some((e.position, e.recorded_at));
        chained |= e.hash.is_some();
        if !chained {
            leading_unchained = e.position;
        }
        batch.push(e);
        events += 1;
        if batch.len() == 1000 {
            insert(&mut tx, &batch).await?;
            batch.clear();
        }
    }
    insert(&mut tx, &batch).await?;
    // An empty backup leaves the head's time as it is (NULL: no event, no time).
    let (position, recorded_at) = last.map_or((0, None), |(p, t)| (p, Some(t)));
    if position != header.head_position {
        return Err(StoreError::Invalid(format!(
            "the backup ends at position {position} but its header says {}",
            header.head_position
        )));
    }
    let head_hash = hex::decode(&header.head_hash)
        .map_err(|e| StoreError::Invalid(format!("head hash: {e}")))?;
    let unchained_until = header.unchained_until.unwrap_or(leading_unchained);
    sqlx::query(
        "UPDATE event_log_head SET position = $1, \
         recorded_at = greatest(recorded_at, coalesce($2, recorded_at)), \
         last_hash = $3, unchained_until = $4 WHERE id",
    )
    .bind(position)
    .bind(recorded_at)
    .bind(&head_hash)
    .bind(unchained_until)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Check what was restored; undo it if the chain does not hold.
    let report = crate::chain::verify(pool).await?;
    if let Some(broken) = report.broken {
        sqlx::query("TRUNCATE events").execute(pool).await?;
        sqlx::query(
            "UPDATE event_log_head SET position = 0, recorded_at = '-infinity', last_hash = $1, \
             unchained_until = 0 WHERE id",
        )
        .bind(crate::chain::GENESIS.to_vec())
        .execute(pool)
        .await?;
        return Err(StoreError::Invalid(format!(
            "the restored log fails its hash chain at position {}: {}; nothing was kept",
            broken.position, broken.reason
        )));
    }
    Ok(ArchiveReport {
        events,
        head_position: position,
    })
}

async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    batch: &[Line],
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&Line) -> Value| -> Value { Value::Array(batch.iter().map(f).collect()) };
    // One statement per page: the rows as a JSON array, expanded by PostgreSQL.
    // jsonb_to_recordset reads a JSON `null` as SQL NULL: a payload that is `null`
    // is put back as the jsonb `null` it was.
    let rows = col(&|l| serde_json::to_value(l).unwrap_or(Value::Null));
    sqlx::query(
        "INSERT INTO events (position, stream_type, stream_id, version, event_id, event_type, \
             schema_version, payload, actor, correlation_id, causation_id, source, occurred_at, \
             recorded_at, extra, hash, chain_form) \
         SELECT r.position, r.stream_type, r.stream_id, r.version, r.event_id, r.event_type, \
             r.schema_version, coalesce(r.payload, 'null'), r.actor, r.correlation_id, r.causation_id, r.source, \
             r.occurred_at, r.recorded_at, r.extra, decode(r.hash, 'hex'), r.chain_form \
         FROM jsonb_to_recordset($1) AS r(position bigint, stream_type text, stream_id text, \
             version bigint, event_id uuid, event_type text, schema_version int, payload jsonb, \
             actor text, correlation_id text, causation_id text, source text, \
             occurred_at timestamptz, recorded_at timestamptz, extra jsonb, hash text, \
             chain_form smallint)",
    )
    .bind(rows)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
