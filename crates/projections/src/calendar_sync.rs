//! The plant calendar as one snapshot message, for the plant group (ADR 0061,
//! amendment of 2026-12-02).
//!
//! A plant's time zone, weekly shifts, rotations, exceptions and non-working periods
//! are settings, not events (ADR 0053, 0060). The relay publishes them whole, as one
//! [`CalendarSnapshot`] on `{site}.settings.calendar` in the plant's stream, when it
//! starts leading and whenever their [`fingerprint`] changes; the hub's group stream
//! sources it with the events, and the group role [`apply`]s the newest snapshot of a
//! site to that site's schema. Rows keep their `recorded_at`/`removed_at`, so `as_of`
//! queries at the group read the calendar as it was recorded at the plant.
//!
//! - [`fingerprint`]: one cheap query; changes whenever the API changes the calendar
//!   (the history tables are append-only: counts and latest times; the mutable ones,
//!   a few rows, in full).
//! - [`take`]: the whole calendar and its fingerprint, read in one snapshot
//!   transaction, with the plant database's time (`taken_at`).
//! - [`apply`]: replaces a site's calendar with a snapshot in one transaction,
//!   unless the site already holds one taken at the same time or later.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// A weekly shift (`shift_definitions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct WeeklyShift {
    pub line: String,
    pub shift_name: String,
    pub start_time: NaiveTime,
    pub end_time: NaiveTime,
    pub days: Vec<i16>,
}

/// A recorded rotation (`calendar_rotations`), as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RotationRow {
    pub line: String,
    pub effective_from: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub rotation: Value,
    pub recorded_by: Option<String>,
}

/// A recorded one-day exception (`calendar_exceptions`), as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ExceptionRow {
    pub line: String,
    pub day: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub shifts: Value,
    pub recorded_by: Option<String>,
}

/// A non-working period (`calendar_non_working`), removed ones included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct NonWorkingRow {
    pub id: i64,
    pub name: String,
    pub from_local: NaiveDateTime,
    pub to_local: NaiveDateTime,
    pub recorded_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
    pub recorded_by: Option<String>,
    /// The ISA-95 site it applies to (none: the whole plant); absent from snapshots of
    /// plants before site-level holidays.
    #[serde(default)]
    pub site: Option<String>,
}

/// A plant's whole calendar at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalendarSnapshot {
    /// The plant database's time when it was read: a later snapshot replaces an
    /// earlier one, never the reverse.
    pub taken_at: DateTime<Utc>,
    /// The [`fingerprint`] of the calendar it holds.
    pub fingerprint: String,
    pub time_zone: String,
    pub shifts: Vec<WeeklyShift>,
    pub rotations: Vec<RotationRow>,
    pub exceptions: Vec<ExceptionRow>,
    pub non_working: Vec<NonWorkingRow>,
}

impl CalendarSnapshot {
    /// The message body (JSON) and its SHA-256 (hex), the `Nats-Msg-Id`: a retried
    /// publish of the same snapshot is deduplicated by JetStream, a new one (a later
    /// `taken_at`) never is.
    pub fn encode(&self) -> Result<(Vec<u8>, String), serde_json::Error> {
        let body = serde_json::to_vec(self)?;
        let hash = message_hash(&body);
        Ok((body, hash))
    }
}

/// The SHA-256 (hex) of a snapshot message's body.
pub fn message_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The calendar's fingerprint (hex MD5), in one query. Rotations and exceptions
/// are only ever inserted, non-working periods inserted or marked removed: their
/// counts and latest times change with every write. The time zone and the weekly
/// shifts (a few rows, replaced in place) are hashed whole.
const FINGERPRINT: &str = "SELECT md5(concat_ws('|', \
       (SELECT string_agg(time_zone, ',') FROM plant_settings), \
       (SELECT string_agg(concat_ws('/', line, shift_name, start_time, end_time, days), ',' \
          ORDER BY line, shift_name) FROM shift_definitions), \
       (SELECT concat_ws('/', count(*), max(recorded_at)) FROM calendar_rotations), \
       (SELECT concat_ws('/', count(*), max(recorded_at)) FROM calendar_exceptions), \
       (SELECT concat_ws('/', count(*), max(id), max(recorded_at), count(removed_at), \
          max(removed_at)) FROM calendar_non_working)))";

/// The calendar's current fingerprint.
pub async fn fingerprint(pool: &PgPool) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(FINGERPRINT).fetch_one(pool).await
}

/// The whole calendar, read in one repeatable-read transaction (its fingerprint
/// and rows agree), stamped with the database's time.
pub async fn take(pool: &PgPool) -> Result<CalendarSnapshot, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (taken_at, fingerprint): (DateTime<Utc>, String) =
        sqlx::query_as(&format!("SELECT now(), ({FINGERPRINT})"))
            .fetch_one(&mut *tx)
            .await?;
    let time_zone: Option<String> = sqlx::query_scalar("SELECT time_zone FROM plant_settings")
        .fetch_optional(&mut *tx)
        .await?;
    let shifts = sqlx::query_as(
        "SELECT line, shift_name, start_time, end_time, days FROM shift_definitions \
         ORDER BY line, shift_name",
    )
    .fetch_all(&mut *tx)
    .await?;
    let rotations = sqlx::query_as(
        "SELECT line, effective_from, recorded_at, rotation, recorded_by \
         FROM calendar_rotations ORDER BY line, effective_from, recorded_at",
    )
    .fetch_all(&mut *tx)
    .await?;
    let exceptions = sqlx::query_as(
        "SELECT line, day, recorded_at, shifts, recorded_by FROM calendar_exceptions \
         ORDER BY line, day, recorded_at",
    )
    .fetch_all(&mut *tx)
    .await?;
    let non_working = sqlx::query_as(
        "SELECT id, name, from_local, to_local, recorded_at, removed_at, recorded_by, site \
         FROM calendar_non_working ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(CalendarSnapshot {
        taken_at,
        fingerprint,
        time_zone: time_zone.unwrap_or_else(|| "UTC".to_owned()),
        shifts,
        rotations,
        exceptions,
        non_working,
    })
}

/// Rows as one JSON array, for `jsonb_to_recordset`.
fn json<T: Serialize>(rows: &T) -> Result<Value, sqlx::Error> {
    serde_json::to_value(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The site's calendar is now the snapshot's.
    Replaced,
    /// The site holds a snapshot taken at the same time or later: nothing changed.
    Older,
}

/// Replaces the calendar in `pool`'s schema (a group site's) with `snapshot`, in
/// one transaction that holds the site's `calendar_snapshot_applied` row, unless
/// that row names a snapshot taken at the same time or later. `hash` is the
/// snapshot message's SHA-256, recorded beside it.
pub async fn apply(
    pool: &PgPool,
    snapshot: &CalendarSnapshot,
    hash: &str,
) -> Result<Applied, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let held: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT taken_at FROM calendar_snapshot_applied WHERE id FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    if held.is_some_and(|held| held >= snapshot.taken_at) {
        return Ok(Applied::Older);
    }
    for table in [
        "shift_definitions",
        "calendar_rotations",
        "calendar_exceptions",
        "calendar_non_working",
    ] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO plant_settings (id, time_zone) VALUES (true, $1) \
         ON CONFLICT (id) DO UPDATE SET time_zone = excluded.time_zone",
    )
    .bind(&snapshot.time_zone)
    .execute(&mut *tx)
    .await?;
    insert_rows(&mut tx, snapshot).await?;
    sqlx::query(
        "UPDATE calendar_snapshot_applied SET taken_at = $1, sha256 = $2, applied_at = now() \
         WHERE id",
    )
    .bind(snapshot.taken_at)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Applied::Replaced)
}

/// The snapshot's rows into the emptied tables, one statement per table.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    s: &CalendarSnapshot,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO shift_definitions (line, shift_name, start_time, end_time, days) \
         SELECT line, shift_name, start_time, end_time, days FROM jsonb_to_recordset($1) \
           AS r(line text, shift_name text, start_time time, end_time time, days smallint[])",
    )
    .bind(json(&s.shifts)?)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO calendar_rotations (line, effective_from, recorded_at, rotation, recorded_by) \
         SELECT line, effective_from, recorded_at, rotation, recorded_by \
         FROM jsonb_to_recordset($1) AS r(line text, effective_from date, \
           recorded_at timestamptz, rotation jsonb, recorded_by text)",
    )
    .bind(json(&s.rotations)?)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO calendar_exceptions (line, day, recorded_at, shifts, recorded_by) \
         SELECT line, day, recorded_at, shifts, recorded_by FROM jsonb_to_recordset($1) \
           AS r(line text, day date, recorded_at timestamptz, shifts jsonb, recorded_by text)",
    )
    .bind(json(&s.exceptions)?)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO calendar_non_working \
           (id, name, from_local, to_local, recorded_at, removed_at, recorded_by, site) \
         OVERRIDING SYSTEM VALUE \
         SELECT id, name, from_local, to_local, recorded_at, removed_at, recorded_by, site \
         FROM jsonb_to_recordset($1) AS r(id bigint, name text, from_local timestamp, \
           to_local timestamp, recorded_at timestamptz, removed_at timestamptz, recorded_by text, \
           site text)",
    )
    .bind(json(&s.non_working)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The snapshot a site holds: when it was taken at the plant (None: none yet).
pub async fn applied(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT taken_at FROM calendar_snapshot_applied WHERE id")
        .fetch_one(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(at: &str) -> CalendarSnapshot {
        CalendarSnapshot {
            taken_at: at.parse().unwrap(),
            fingerprint: "f".into(),
            time_zone: "Europe/Berlin".into(),
            shifts: vec![WeeklyShift {
                line: "L1".into(),
                shift_name: "early".into(),
                start_time: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
                end_time: NaiveTime::from_hms_opt(14, 0, 0).unwrap(),
                days: vec![1, 2, 3, 4, 5],
            }],
            rotations: vec![],
            exceptions: vec![],
            non_working: vec![],
        }
    }

    #[test]
    fn a_snapshot_round_trips_and_its_hash_follows_its_time() {
        let a = snapshot("2026-12-01T10:00:00Z");
        let (body, hash) = a.encode().unwrap();
        let back: CalendarSnapshot = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, a);
        assert_eq!(hash.len(), 64);
        assert_eq!(
            a.encode().unwrap().1,
            hash,
            "the same snapshot, the same id"
        );
        let later = snapshot("2026-12-01T10:00:05Z");
        assert_ne!(later.encode().unwrap().1, hash, "a new snapshot, a new id");
    }
}
