//! The ingest's tables: rejected messages, telemetry with its rollups, and the
//! per-machine ingest state; plus the query functions the API serves.
//!
//! Writes take the caller's transaction, so that everything one batch of messages
//! produced commits together with its events (and only then are the messages
//! acknowledged to the broker).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use tracing::instrument;

use crate::config::TelemetrySettings;
use crate::error::IngestError;
use crate::filter::MachineState;
use crate::message::{bounded_reason, KnownId};

/// The identities remembered under `keys` for the session `scope` (ADR 0034).
pub(crate) async fn load_identities(
    pool: &PgPool,
    scope: &str,
    keys: &[String],
) -> Result<std::collections::HashMap<String, KnownId>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(String, String, Vec<u8>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT key, message_id, content, received_at FROM ingest_message_ids \
         WHERE scope = $1 AND key = ANY($2)",
    )
    .bind(scope)
    .bind(keys)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, message_id, content, received_at)| {
            let content: [u8; 32] = content.try_into().ok()?;
            Some((
                key,
                KnownId {
                    message_id,
                    content,
                    received_at,
                },
            ))
        })
        .collect())
}

/// Remembers identities and records the notices of repeats, in one transaction
/// that does not wait for its fsync: it is durable as soon as anything committed
/// after it is (the batch), and losing it with an uncommitted batch is harmless
/// (the redelivery then gets a fresh id, and its batch is done once).
pub(crate) async fn save_identities(
    pool: &PgPool,
    scope: &str,
    remember: &[(String, KnownId)],
    notices: &[RejectedRow],
) -> Result<(), sqlx::Error> {
    if remember.is_empty() && notices.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    if !remember.is_empty() {
        let keys: Vec<&str> = remember.iter().map(|(k, _)| k.as_str()).collect();
        let ids: Vec<&str> = remember
            .iter()
            .map(|(_, v)| v.message_id.as_str())
            .collect();
        let contents: Vec<Vec<u8>> = remember.iter().map(|(_, v)| v.content.to_vec()).collect();
        let received: Vec<DateTime<Utc>> = remember.iter().map(|(_, v)| v.received_at).collect();
        sqlx::query(
            "INSERT INTO ingest_message_ids (scope, key, message_id, content, received_at) \
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bytea[], $5::timestamptz[]) \
             ON CONFLICT (scope, key) DO UPDATE SET message_id = excluded.message_id, \
                 content = excluded.content, received_at = excluded.received_at",
        )
        .bind(scope)
        .bind(&keys)
        .bind(&ids)
        .bind(&contents)
        .bind(&received)
        .execute(&mut *tx)
        .await?;
    }
    insert_rejected(&mut tx, notices).await?;
    tx.commit().await?;
    Ok(())
}

/// A message set aside (or noted), as `GET /api/v1/ingest/rejected` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RejectedMessage {
    pub topic: String,
    pub reason: String,
    /// The raw payload, bounded (binary as `hex:…`).
    pub payload: String,
    pub received_at: DateTime<Utc>,
    /// Size of the original payload in bytes.
    pub payload_bytes: i32,
    /// `rejected`, or `notice` for a message that was processed but is worth a look.
    pub disposition: String,
}

/// A rejection to record.
#[derive(Debug, Clone)]
pub struct RejectedRow {
    pub message_id: String,
    pub topic: String,
    pub reason: String,
    pub payload: String,
    pub payload_bytes: i32,
    pub notice: bool,
    pub received_at: DateTime<Utc>,
}

/// One telemetry sample to store.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRow {
    pub machine_id: String,
    pub sensor: String,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

/// Lists rejected messages, newest first (at most `limit`, capped at 1000).
#[instrument(skip(pool), err)]
pub async fn list_rejected(pool: &PgPool, limit: i64) -> Result<Vec<RejectedMessage>, IngestError> {
    let limit = limit.clamp(1, 1000);
    Ok(sqlx::query_as(
        "SELECT topic, reason, payload, received_at, payload_bytes, disposition \
         FROM ingest_rejected ORDER BY received_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub(crate) async fn insert_rejected(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[RejectedRow],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut topics = Vec::with_capacity(rows.len());
    let mut reasons = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut sizes = Vec::with_capacity(rows.len());
    let mut dispositions = Vec::with_capacity(rows.len());
    let mut received = Vec::with_capacity(rows.len());
    let bounded: Vec<String> = rows.iter().map(|r| bounded_reason(&r.reason)).collect();
    for (r, reason) in rows.iter().zip(&bounded) {
        ids.push(r.message_id.as_str());
        topics.push(r.topic.as_str());
        reasons.push(reason.as_str());
        payloads.push(r.payload.as_str());
        sizes.push(r.payload_bytes);
        dispositions.push(if r.notice { "notice" } else { "rejected" });
        received.push(r.received_at);
    }
    sqlx::query(
        "INSERT INTO ingest_rejected (message_id, topic, reason, payload, payload_bytes, \
             disposition, received_at) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], \
             $6::text[], $7::timestamptz[]) \
         ON CONFLICT (message_id, reason) DO NOTHING",
    )
    .bind(&ids)
    .bind(&topics)
    .bind(&reasons)
    .bind(&payloads)
    .bind(&sizes)
    .bind(&dispositions)
    .bind(&received)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts samples (a redelivered one is skipped) and folds the ones actually
/// inserted into the one-minute rollups, in one statement.
pub(crate) async fn insert_telemetry(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[TelemetryRow],
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut machines = Vec::with_capacity(rows.len());
    let mut sensors = Vec::with_capacity(rows.len());
    let mut ts = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len());
    for r in rows {
        machines.push(r.machine_id.as_str());
        sensors.push(r.sensor.as_str());
        ts.push(r.ts);
        values.push(r.value);
    }
    let inserted: i64 = sqlx::query_scalar(
        "WITH ins AS ( \
             INSERT INTO telemetry (machine_id, sensor, ts, value) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[]) \
             ON CONFLICT DO NOTHING \
             RETURNING machine_id, sensor, ts, value), \
         roll AS ( \
             INSERT INTO telemetry_rollup_1m AS r (machine_id, sensor, bucket, min, max, sum, count) \
             SELECT machine_id, sensor, date_trunc('minute', ts), min(value), max(value), \
                    sum(value), count(*) \
             FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 \
             ON CONFLICT (machine_id, sensor, bucket) DO UPDATE SET \
                 min = least(r.min, excluded.min), max = greatest(r.max, excluded.max), \
                 sum = r.sum + excluded.sum, count = r.count + excluded.count \
             RETURNING 1) \
         SELECT count(*) FROM ins",
    )
    .bind(&machines)
    .bind(&sensors)
    .bind(&ts)
    .bind(&values)
    .fetch_one(&mut **tx)
    .await?;
    Ok(u64::try_from(inserted).unwrap_or(0))
}

pub(crate) async fn save_machine_states(
    tx: &mut Transaction<'_, Postgres>,
    namespace: &str,
    states: &[(&str, &MachineState)],
) -> Result<(), sqlx::Error> {
    if states.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(states.len());
    let mut values = Vec::with_capacity(states.len());
    for (id, state) in states {
        ids.push(*id);
        values.push(serde_json::to_value(state).unwrap_or_default());
    }
    sqlx::query(
        "INSERT INTO ingest_machine_state (namespace, machine_id, state, updated_at) \
         SELECT $1, * , now() FROM unnest($2::text[], $3::jsonb[]) \
         ON CONFLICT (namespace, machine_id) DO UPDATE SET state = excluded.state, \
             updated_at = excluded.updated_at",
    )
    .bind(namespace)
    .bind(&ids)
    .bind(&values)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The stored ingest state of every machine of a namespace.
pub(crate) async fn load_machine_states(
    pool: &PgPool,
    namespace: &str,
) -> Result<Vec<(String, MachineState)>, sqlx::Error> {
    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT machine_id, state FROM ingest_machine_state WHERE namespace = $1")
            .bind(namespace)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, v)| match serde_json::from_value(v) {
            Ok(s) => Some((id, s)),
            Err(e) => {
                tracing::warn!(machine_id = %id, error = %e, "ignoring unreadable ingest state");
                None
            }
        })
        .collect())
}

/// Creates partitions ahead and applies the retention settings.
#[instrument(skip(pool), err)]
pub async fn maintain_telemetry(
    pool: &PgPool,
    settings: &TelemetrySettings,
) -> Result<(), IngestError> {
    let to_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    sqlx::query("SELECT ingest_telemetry_maintain($1, $2, $3)")
        .bind(to_i32(settings.partition_days_ahead))
        .bind(to_i32(settings.retention_days))
        .bind(to_i32(settings.rollup_retention_days))
        .execute(pool)
        .await?;
    sqlx::query(
        "DELETE FROM ingest_rejected WHERE received_at < now() - make_interval(days => $1)",
    )
    .bind(to_i32(settings.rejected_retention_days))
    .execute(pool)
    .await?;
    // Explicit message ids are remembered as long as rejections (packet ids are
    // bounded by their 65,535 values and overwritten).
    sqlx::query(
        "DELETE FROM ingest_message_ids WHERE key LIKE 'msg:%' \
         AND received_at < now() - make_interval(days => $1)",
    )
    .bind(to_i32(settings.rejected_retention_days))
    .execute(pool)
    .await?;
    Ok(())
}

/// `GET /api/v1/machines/{id}/telemetry?sensor=&from=&to=&step=`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryQuery {
    pub machine_id: String,
    /// All sensors when `None`.
    pub sensor: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Bucket width; rounded up to whole minutes (the rollup resolution), at least one.
    pub step: Duration,
}

/// One bucket of one sensor.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TelemetryPoint {
    pub sensor: String,
    /// Start of the bucket.
    pub bucket: DateTime<Utc>,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub count: i64,
}

/// Most points one query returns.
pub const MAX_TELEMETRY_POINTS: i64 = 10_000;

/// Reads the one-minute rollups in `[from, to)`, re-bucketed by `step` (buckets
/// aligned on the epoch), ordered by sensor and bucket.
#[instrument(skip(pool), err)]
pub async fn telemetry_series(
    pool: &PgPool,
    query: &TelemetryQuery,
) -> Result<Vec<TelemetryPoint>, IngestError> {
    if query.to <= query.from {
        return Err(IngestError::Config("`to` must be after `from`".into()));
    }
    let minutes = ((query.step.num_seconds() + 59) / 60).max(1);
    Ok(sqlx::query_as(
        "SELECT sensor, \
                date_bin(make_interval(mins => $5), bucket, timestamptz '1970-01-01 00:00:00+00') AS bucket, \
                min(min) AS min, max(max) AS max, sum(sum) / sum(count) AS avg, \
                sum(count)::bigint AS count \
         FROM telemetry_rollup_1m \
         WHERE machine_id = $1 AND ($2::text IS NULL OR sensor = $2) \
           AND bucket >= $3 AND bucket < $4 \
         GROUP BY 1, 2 ORDER BY 1, 2 LIMIT $6",
    )
    .bind(&query.machine_id)
    .bind(query.sensor.as_deref())
    .bind(query.from)
    .bind(query.to)
    .bind(i32::try_from(minutes).unwrap_or(i32::MAX))
    .bind(MAX_TELEMETRY_POINTS)
    .fetch_all(pool)
    .await?)
}

/// Raw samples of one sensor in `[from, to)`, oldest first (for tests and tools).
pub async fn telemetry_samples(
    pool: &PgPool,
    machine_id: &str,
    sensor: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, f64)>, IngestError> {
    Ok(sqlx::query_as(
        "SELECT ts, value FROM telemetry WHERE machine_id = $1 AND sensor = $2 \
         AND ts >= $3 AND ts < $4 ORDER BY ts LIMIT 100000",
    )
    .bind(machine_id)
    .bind(sensor)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?)
}
