//! [`EventStore`]: appends and reads on PostgreSQL.
//!
//! # Appending
//! An append runs in one transaction that first takes the row lock of
//! `event_log_head` (the single point of serialization, ADR 0002), then:
//! 1. looks up the event ids already in the log (idempotency: a request whose ids
//!    were appended before returns the original result and writes nothing);
//! 2. reads each stream's current version and checks the expected version;
//! 3. inserts every accepted event with the next positions, in one statement;
//! 4. moves the head and sends `NOTIFY` (delivered at commit) to wake subscribers.
//!
//! [`EventStore::append_batch`] takes many requests at once (group commit): each
//! request succeeds or fails on its own (a conflict fails only its request), and
//! all accepted ones commit together. Requests for the same stream in one batch
//! see each other in order.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use tracing::instrument;
use uuid::Uuid;

use crate::chain::{check_payload, micros, ChainForm, Hashed};
use crate::model::{
    AppendRequest, AppendResult, Direction, EventFilter, EventMetadata, ExpectedVersion, NewEvent,
    RecordedEvent, Source, StreamRef,
};
use crate::upcast::Upcasters;
use crate::StoreError;

/// The channel on which every commit announces the new head position.
pub const NOTIFY_CHANNEL: &str = "shopfloor_events";

/// Longest stream type or id we accept (they appear in URLs and NATS subjects).
const MAX_NAME_LEN: usize = 200;

/// The event store. Cheap to clone: it shares one pool and one set of upcasters.
#[derive(Debug, Clone)]
pub struct EventStore {
    pool: PgPool,
    upcasters: Arc<Upcasters>,
}

/// An event already in the log, as the idempotency check needs it.
struct Existing {
    stream: StreamRef,
    version: u64,
    position: i64,
}

/// A row of the append's lookup query: kind (`v` version, `e` existing event, `r`
/// commit time), stream type and id, version, event id, position, commit time.
type Fact = (
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<Uuid>,
    Option<i64>,
    Option<DateTime<Utc>>,
);

/// One event row as it is inserted.
struct Row<'a> {
    position: i64,
    stream: &'a StreamRef,
    version: u64,
    event: &'a NewEvent,
}

impl EventStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            upcasters: Arc::new(Upcasters::new()),
        }
    }

    /// Sets the upcasters applied to every event read from this store.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends events to one stream atomically.
    pub async fn append(
        &self,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let request = AppendRequest {
            stream: stream.clone(),
            expected,
            events,
        };
        self.append_batch(vec![request])
            .await?
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(StoreError::Invalid("empty batch".into())))
    }

    /// Appends many requests in one transaction (group commit).
    ///
    /// The outer error means the transaction failed and nothing was written; the
    /// inner results say, request by request, what was appended or why not.
    #[instrument(skip_all, fields(requests = requests.len()), err)]
    pub async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
        let units = vec![1; requests.len()];
        Ok(self.append_batch_tip(&requests, &units).await?.0)
    }

    /// Appends all-or-nothing units in one transaction, with every request's
    /// result as [`crate::GroupCommitter::append_units`] gives them. The outer
    /// error means the transaction failed and nothing was written (or, for
    /// [`StoreError::UnknownOutcome`], that it may have been).
    pub async fn append_units(
        &self,
        units: Vec<Vec<AppendRequest>>,
    ) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
        let sizes: Vec<usize> = units.iter().map(Vec::len).collect();
        let requests: Vec<AppendRequest> = units.into_iter().flatten().collect();
        Ok(self.append_batch_tip(&requests, &sizes).await?.0)
    }

    /// Appends `requests` as one all-or-nothing unit: every one, or none and the
    /// refusal.
    pub async fn append_all(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        let n = requests.len();
        crate::group::unit_result(self.append_units(vec![requests]).await?, n)
    }

    /// [`Self::append_batch`] over all-or-nothing units (`units` gives the number
    /// of consecutive requests in each), also returning the log head after the
    /// commit.
    ///
    /// A failure of the COMMIT itself (the connection lost while it was under way)
    /// is [`StoreError::UnknownOutcome`]: the transaction may or may not have
    /// committed. Any earlier failure means nothing was written.
    pub(crate) async fn append_batch_tip(
        &self,
        requests: &[AppendRequest],
        units: &[usize],
    ) -> Result<(Vec<Result<AppendResult, StoreError>>, Tip), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = append_in(&mut tx, requests, units).await?;
        tx.commit().await.map_err(|e| match crate::classify(&e) {
            crate::Failure::Transient => StoreError::UnknownOutcome(e.to_string()),
            _ => StoreError::Database(e),
        })?;
        Ok(done)
    }

    /// Appends a batch prepared on the log head as it was at [`Prepared::before`],
    /// in one statement (see `migrations/0006_append_function.sql`). Fails, writing
    /// nothing, if anyone else appended since or a stream is not where the batch
    /// expects it; the caller then goes through [`Self::append_batch`].
    pub(crate) async fn append_prepared(&self, prepared: &Prepared) -> Result<(), StoreError> {
        let rows = prepared.rows();
        let c = Columns::new(&rows);
        let checks = &prepared.checks;
        let check_type: Vec<&str> = checks
            .iter()
            .map(|&(i, _)| prepared.requests[i].stream.stream_type.as_str())
            .collect();
        let check_id: Vec<&str> = checks
            .iter()
            .map(|&(i, _)| prepared.requests[i].stream.stream_id.as_str())
            .collect();
        let check_version: Vec<i64> = checks.iter().map(|&(_, v)| to_i64(v)).collect();
        sqlx::query(
            "SELECT shopfloor_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)",
        )
        .bind(prepared.before.position)
        .bind(&prepared.before.hash)
        .bind(prepared.after.position)
        .bind(&prepared.after.hash)
        .bind(prepared.after.recorded_at)
        .bind(&check_type)
        .bind(&check_id)
        .bind(&check_version)
        .bind(&c.position)
        .bind(&c.stream_type)
        .bind(&c.stream_id)
        .bind(&c.version)
        .bind(&c.event_id)
        .bind(&c.event_type)
        .bind(&c.schema_version)
        .bind(&c.payload)
        .bind(&c.actor)
        .bind(&c.correlation)
        .bind(&c.causation)
        .bind(&c.source)
        .bind(&c.occurred)
        .bind(&c.extra)
        .bind(&prepared.hashes)
        .bind(NOTIFY_CHANNEL)
        .bind(ChainForm::CURRENT.code())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The log head as it is now.
    pub async fn tip(&self) -> Result<Tip, StoreError> {
        let (position, hash, recorded_at) = sqlx::query_as(
            "SELECT position, last_hash, greatest(recorded_at, 'epoch') FROM event_log_head WHERE id",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Tip {
            position,
            hash,
            recorded_at,
        })
    }

    /// The current version of a stream (0 when it does not exist).
    pub async fn stream_version(&self, stream: &StreamRef) -> Result<u64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM events WHERE stream_type = $1 AND stream_id = $2 \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(&stream.stream_type)
        .bind(&stream.stream_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.map_or(0, to_u64))
    }

    /// The current versions of `streams` (0 for one that does not exist), in one
    /// round trip.
    pub async fn stream_versions(
        &self,
        streams: &[StreamRef],
    ) -> Result<HashMap<StreamRef, u64>, StoreError> {
        let types: Vec<&str> = streams.iter().map(|s| s.stream_type.as_str()).collect();
        let ids: Vec<&str> = streams.iter().map(|s| s.stream_id.as_str()).collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT s.t, s.i, COALESCE((SELECT e.version FROM events e \
                     WHERE e.stream_type = s.t AND e.stream_id = s.i \
                     ORDER BY e.version DESC LIMIT 1), 0) \
             FROM unnest($1::text[], $2::text[]) AS s(t, i)",
        )
        .bind(&types)
        .bind(&ids)
        .persistent(false)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(t, i, v)| (StreamRef::new(t, i), to_u64(v)))
            .collect())
    }

    /// Which of `ids` name streams of `stream_type` that exist (have a first event).
    pub async fn existing_streams(
        &self,
        stream_type: &str,
        ids: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT stream_id FROM events WHERE stream_type = $1 AND stream_id = ANY($2) \
             AND version = 1",
        )
        .bind(stream_type)
        .bind(ids)
        .persistent(false)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The position of the last committed event (0 for an empty log).
    pub async fn head_position(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT position FROM event_log_head WHERE id")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Reads up to `limit` events of a stream. Forwards: versions `>= from_version`
    /// in ascending order; backwards: versions `<= from_version` in descending order
    /// (pass `u64::MAX` to start at the end).
    #[instrument(skip(self), err)]
    pub async fn read_stream(
        &self,
        stream: &StreamRef,
        direction: Direction,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = match direction {
            Direction::Forward => format!(
                "SELECT {COLUMNS} FROM events WHERE stream_type = $1 AND stream_id = $2 \
                 AND version >= $3 ORDER BY version ASC LIMIT $4"
            ),
            Direction::Backward => format!(
                "SELECT {COLUMNS} FROM events WHERE stream_type = $1 AND stream_id = $2 \
                 AND version <= $3 ORDER BY version DESC LIMIT $4"
            ),
        };
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(&stream.stream_type)
            .bind(&stream.stream_id)
            .bind(to_i64(from_version))
            .bind(to_i64(limit as u64))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| self.decode(r)).collect()
    }

    /// Reads a whole stream from `from_version` on, page by page.
    pub async fn read_stream_all(
        &self,
        stream: &StreamRef,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        const PAGE: usize = 2_000;
        let mut out = Vec::new();
        let mut from = from_version;
        loop {
            let page = self
                .read_stream(stream, Direction::Forward, from, PAGE)
                .await?;
            let n = page.len();
            if let Some(last) = page.last() {
                from = last.version + 1;
            }
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// Reads up to `limit` events of the global log after `after`, in position order.
    ///
    /// Positions are given out in commit order, so a reader that passes the last
    /// position it saw never skips an event that commits later.
    #[instrument(skip(self), err)]
    pub async fn read_all(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2");
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(after)
            .bind(to_i64(limit as u64))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| self.decode(r)).collect()
    }

    /// Reads up to `limit` events after `after` that `filter` lets through, skipping the
    /// others in the database. Also returns how far the log was scanned: the last event's
    /// position when the page is full, else the log head as it was read (every event up to
    /// it is committed, so a reader may go on from there without a gap).
    pub async fn read_all_filtered(
        &self,
        after: i64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<(Vec<RecordedEvent>, i64), StoreError> {
        let head = self.head_position().await?;
        if head <= after {
            return Ok((Vec::new(), after));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE position > $1 AND position <= $2 \
             AND (stream_type = ANY($3) OR event_type = ANY($4)) ORDER BY position LIMIT $5"
        );
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(after)
            .bind(head)
            .bind(&filter.stream_types)
            .bind(&filter.event_types)
            .bind(to_i64(limit as u64))
            .fetch_all(&self.pool)
            .await?;
        let full = rows.len() >= limit;
        let events = rows
            .into_iter()
            .map(|r| self.decode(r))
            .collect::<Result<Vec<_>, _>>()?;
        let scanned = match events.last() {
            Some(last) if full => last.position,
            _ => head,
        };
        Ok((events, scanned))
    }

    /// Reads a stream as it stood at a moment: the events recorded by `until`.
    pub async fn read_stream_recorded_by(
        &self,
        stream: &StreamRef,
        until: DateTime<Utc>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_type = $1 AND stream_id = $2 \
             AND recorded_at <= $3 ORDER BY version"
        );
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(&stream.stream_type)
            .bind(&stream.stream_id)
            .bind(until)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| self.decode(r)).collect()
    }

    fn decode(&self, row: EventRow) -> Result<RecordedEvent, StoreError> {
        let (schema_version, payload) = if self.upcasters.is_empty() {
            (row.schema_version, row.payload)
        } else {
            self.upcasters
                .upcast(&row.event_type, row.schema_version, row.payload)
                .map_err(|reason| StoreError::Decode {
                    position: row.position,
                    event_type: row.event_type.clone(),
                    reason,
                })?
        };
        let source = Source::parse(&row.source).ok_or_else(|| StoreError::Decode {
            position: row.position,
            event_type: row.event_type.clone(),
            reason: format!("unknown source {:?}", row.source),
        })?;
        Ok(RecordedEvent {
            position: row.position,
            version: to_u64(row.version),
            stream_type: row.stream_type,
            stream_id: row.stream_id,
            event_id: row.event_id,
            event_type: row.event_type,
            schema_version,
            payload,
            metadata: EventMetadata {
                actor: row.actor,
                correlation_id: row.correlation_id,
                causation_id: row.causation_id,
                source,
                occurred_at: row.occurred_at,
                extra: row.extra.0,
            },
            recorded_at: row.recorded_at,
        })
    }
}

const COLUMNS: &str = "position, stream_type, stream_id, version, event_id, event_type, \
    schema_version, payload, actor, correlation_id, causation_id, source, occurred_at, \
    recorded_at, extra";

#[derive(sqlx::FromRow)]
struct EventRow {
    position: i64,
    stream_type: String,
    stream_id: String,
    version: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    payload: serde_json::Value,
    actor: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    source: String,
    occurred_at: Option<DateTime<Utc>>,
    recorded_at: DateTime<Utc>,
    extra: Json<std::collections::BTreeMap<String, String>>,
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn validate(request: &AppendRequest) -> Result<(), StoreError> {
    let name_ok =
        |s: &str| !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(char::is_control);
    if !name_ok(&request.stream.stream_type) || !name_ok(&request.stream.stream_id) {
        return Err(StoreError::Invalid(format!(
            "stream type and id must be 1 to {MAX_NAME_LEN} characters without control characters"
        )));
    }
    if request.events.is_empty() {
        return Err(StoreError::Invalid("no events to append".into()));
    }
    let mut ids = std::collections::HashSet::new();
    for e in &request.events {
        if !ids.insert(e.event_id) {
            return Err(StoreError::Invalid(format!(
                "event id {} appears twice in one append",
                e.event_id
            )));
        }
        if e.event_type.is_empty() || e.schema_version < 1 {
            return Err(StoreError::Invalid(
                "an event needs a type and a schema version of at least 1".into(),
            ));
        }
        check_payload(&e.payload).map_err(StoreError::Invalid)?;
        check_metadata(&e.metadata).map_err(StoreError::Invalid)?;
    }
    Ok(())
}

/// Why `metadata` cannot be stored as it is, if it cannot: a NUL character
/// (PostgreSQL text refuses it) or an occurrence time outside the years 1 to 9999
/// (which PostgreSQL, the read models and RFC 3339 all hold).
fn check_metadata(metadata: &EventMetadata) -> Result<(), String> {
    let texts = [
        metadata.actor.as_deref(),
        metadata.correlation_id.as_deref(),
        metadata.causation_id.as_deref(),
    ];
    let nul = texts.into_iter().flatten().any(|t| t.contains('\0'))
        || metadata
            .extra
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'));
    if nul {
        return Err("event metadata holds a NUL character".into());
    }
    if let Some(t) = metadata.occurred_at {
        use chrono::Datelike;
        if !(1..=9999).contains(&t.year()) {
            return Err(format!("occurred-at {t} is outside the years 1 to 9999"));
        }
    }
    Ok(())
}

impl EventStore {
    /// Appends inside the caller's transaction, so that the events commit together
    /// with the caller's other writes (a checkpoint, a read model row). The log
    /// head stays locked until that transaction ends: keep it short.
    pub async fn append_in(
        tx: &mut Transaction<'_, Postgres>,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
        let units = vec![1; requests.len()];
        Ok(append_in(tx, requests, &units).await?.0)
    }
}

async fn append_in(
    tx: &mut Transaction<'_, Postgres>,
    requests: &[AppendRequest],
    units: &[usize],
) -> Result<(Vec<Result<AppendResult, StoreError>>, Tip), StoreError> {
    // 1. The single point of serialization: positions are taken under this lock,
    //    which is held until commit.
    let (head, mut last_hash, head_recorded_at): (i64, Vec<u8>, DateTime<Utc>) =
        sqlx::query_as(
            "SELECT position, last_hash, greatest(recorded_at, 'epoch') FROM event_log_head WHERE id FOR UPDATE",
        )
        .fetch_one(&mut **tx)
        .await?;

    // 2. In one round trip: the event ids already in the log (idempotency), the
    //    current version of every stream involved, and the commit time — never
    //    before the previous one, even if the clock steps back.
    let ids: Vec<Uuid> = requests
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.event_id))
        .collect();
    let mut streams: Vec<&StreamRef> = requests.iter().map(|r| &r.stream).collect();
    streams.sort();
    streams.dedup();
    let types: Vec<&str> = streams.iter().map(|s| s.stream_type.as_str()).collect();
    let sids: Vec<&str> = streams.iter().map(|s| s.stream_id.as_str()).collect();
    let facts: Vec<Fact> = sqlx::query_as(
        "SELECT 'v', s.t, s.i, COALESCE((SELECT e.version FROM events e \
                 WHERE e.stream_type = s.t AND e.stream_id = s.i \
                 ORDER BY e.version DESC LIMIT 1), 0), NULL::uuid, NULL::bigint, NULL::timestamptz \
             FROM unnest($1::text[], $2::text[]) AS s(t, i) \
             UNION ALL \
             SELECT 'e', stream_type, stream_id, version, event_id, position, NULL \
             FROM events WHERE event_id = ANY($3) \
             UNION ALL \
             SELECT 'r', NULL, NULL, 0, NULL, NULL, greatest(recorded_at, clock_timestamp()) \
             FROM event_log_head WHERE id",
    )
    .bind(&types)
    .bind(&sids)
    .bind(&ids)
    // Planned for these very arrays every time: a plan cached while the log was
    // small (a sequential scan matching every row against the id array) would
    // stay in use as the log grows.
    .persistent(false)
    .fetch_all(&mut **tx)
    .await?;
    let mut found: HashMap<Uuid, Existing> = HashMap::new();
    let mut versions: HashMap<StreamRef, u64> = HashMap::with_capacity(streams.len());
    let mut recorded_at: Option<DateTime<Utc>> = None;
    for (kind, st, sid, version, event_id, position, at) in facts {
        let stream = || {
            StreamRef::new(
                st.clone().unwrap_or_default(),
                sid.clone().unwrap_or_default(),
            )
        };
        match (kind.as_str(), event_id, position) {
            ("e", Some(id), Some(position)) => {
                found.insert(
                    id,
                    Existing {
                        stream: stream(),
                        version: to_u64(version),
                        position,
                    },
                );
            }
            ("v", _, _) => {
                versions.insert(stream(), to_u64(version));
            }
            _ => recorded_at = at,
        }
    }
    let recorded_at =
        recorded_at.ok_or_else(|| StoreError::Invalid("the log head is missing".into()))?;

    // 4. Decide each unit in order: all of a unit's requests, or none of them.
    let mut ledger = Ledger {
        found,
        versions,
        next_position: head,
        rows: Vec::new(),
    };
    let mut results = Vec::with_capacity(requests.len());
    let mut start = 0;
    for &size in units {
        let unit = &requests[start..(start + size).min(requests.len())];
        start += size;
        results.extend(ledger.decide_unit(unit));
    }
    let Ledger {
        next_position,
        rows,
        ..
    } = ledger;

    if rows.is_empty() {
        let tip = Tip {
            position: head,
            hash: last_hash,
            recorded_at: head_recorded_at,
        };
        return Ok((results, tip));
    }

    // 6. Extend the hash chain, insert every accepted event in one statement, and
    //    move the head.
    let hashes = chain_hashes(&rows, recorded_at, &mut last_hash);
    // One statement: insert the events, move the head, and NOTIFY (delivered at
    // commit, dropped on rollback) to wake subscribers.
    insert_rows(tx, &rows, recorded_at, &hashes, next_position, &last_hash).await?;
    let tip = Tip {
        position: next_position,
        hash: last_hash,
        recorded_at,
    };
    Ok((results, tip))
}

/// What an append has decided so far: the events known to exist, each stream's
/// version, and the rows to insert.
struct Ledger<'r> {
    found: HashMap<Uuid, Existing>,
    versions: HashMap<StreamRef, u64>,
    next_position: i64,
    rows: Vec<Row<'r>>,
}

impl<'r> Ledger<'r> {
    /// Decides one all-or-nothing unit: if any request of it is refused, the
    /// ledger is as it was before the unit, and the others get [`StoreError::Aborted`].
    fn decide_unit(&mut self, unit: &'r [AppendRequest]) -> Vec<Result<AppendResult, StoreError>> {
        let mark = (self.next_position, self.rows.len());
        let saved: Vec<(&StreamRef, Option<u64>)> = unit
            .iter()
            .map(|r| (&r.stream, self.versions.get(&r.stream).copied()))
            .collect();
        let results: Vec<_> = unit.iter().map(|r| self.decide(r)).collect();
        let Some(failed) = results.iter().zip(unit).find(|(r, _)| r.is_err()) else {
            return results;
        };
        if unit.len() == 1 {
            return results;
        }
        let failed = failed.1.stream.clone();
        for row in self.rows.drain(mark.1..) {
            self.found.remove(&row.event.event_id);
        }
        self.next_position = mark.0;
        for (stream, version) in saved.into_iter().rev() {
            match version {
                Some(v) => self.versions.insert(stream.clone(), v),
                None => self.versions.remove(stream),
            };
        }
        results
            .into_iter()
            .map(|r| match r {
                // Appended before: a fact this unit did not change.
                Ok(done) if done.duplicate => Ok(done),
                Ok(_) => Err(StoreError::Aborted {
                    failed: failed.clone(),
                }),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Decides one request: its original result if it was appended before, a
    /// refusal, or its new rows.
    fn decide(&mut self, request: &'r AppendRequest) -> Result<AppendResult, StoreError> {
        validate(request)?;
        if let Some(original) = duplicate_of(request, &self.found)? {
            return Ok(original);
        }
        let actual = self.versions.get(&request.stream).copied().unwrap_or(0);
        request.expected.check(&request.stream, actual)?;
        let first_position = self.next_position + 1;
        let mut version = actual;
        for event in &request.events {
            version += 1;
            self.next_position += 1;
            self.rows.push(Row {
                position: self.next_position,
                stream: &request.stream,
                version,
                event,
            });
            self.found.insert(
                event.event_id,
                Existing {
                    stream: request.stream.clone(),
                    version,
                    position: self.next_position,
                },
            );
        }
        self.versions.insert(request.stream.clone(), version);
        Ok(AppendResult {
            stream_version: version,
            first_position,
            last_position: self.next_position,
            duplicate: false,
        })
    }
}

/// If this request's events were appended before, the original result.
fn duplicate_of(
    request: &AppendRequest,
    found: &HashMap<Uuid, Existing>,
) -> Result<Option<AppendResult>, StoreError> {
    let mut hit: Option<AppendResult> = None;
    for event in &request.events {
        let Some(existing) = found.get(&event.event_id) else {
            continue;
        };
        if existing.stream != request.stream {
            return Err(StoreError::IdempotencyMismatch {
                event_id: event.event_id,
                existing: existing.stream.clone(),
            });
        }
        let r = hit.get_or_insert(AppendResult {
            stream_version: existing.version,
            first_position: existing.position,
            last_position: existing.position,
            duplicate: true,
        });
        r.stream_version = r.stream_version.max(existing.version);
        r.first_position = r.first_position.min(existing.position);
        r.last_position = r.last_position.max(existing.position);
    }
    Ok(hit)
}

async fn insert_rows(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[Row<'_>],
    recorded_at: DateTime<Utc>,
    hashes: &[Vec<u8>],
    head: i64,
    head_hash: &[u8],
) -> Result<(), StoreError> {
    let Columns {
        position,
        stream_type,
        stream_id,
        version,
        event_id,
        event_type,
        schema_version,
        payload,
        actor,
        correlation,
        causation,
        source,
        occurred,
        extra,
    } = Columns::new(rows);
    sqlx::query(
        "WITH inserted AS (INSERT INTO events (position, stream_type, stream_id, version, event_id, event_type, \
             schema_version, payload, actor, correlation_id, causation_id, source, occurred_at, \
             recorded_at, extra, hash, chain_form) \
         SELECT u.position, u.stream_type, u.stream_id, u.version, u.event_id, u.event_type, \
             u.schema_version, u.payload, u.actor, u.correlation_id, u.causation_id, u.source, \
             u.occurred_at, $14, u.extra, u.hash, $20 FROM unnest($1::bigint[], $2::text[], $3::text[], \
             $4::bigint[], $5::uuid[], $6::text[], $7::int[], $8::jsonb[], $9::text[], $10::text[], \
             $11::text[], $12::text[], $13::timestamptz[], $15::jsonb[], $16::bytea[]) \
             AS u(position, stream_type, stream_id, version, event_id, event_type, schema_version, \
                  payload, actor, correlation_id, causation_id, source, occurred_at, extra, hash) \
             RETURNING 1), \
         moved AS (UPDATE event_log_head SET position = $17, recorded_at = $14, last_hash = $18 \
             WHERE id RETURNING 1) \
         SELECT pg_notify($19, $17::text), (SELECT count(*) FROM inserted), (SELECT count(*) FROM moved)",
    )
    .bind(&position)
    .bind(&stream_type)
    .bind(&stream_id)
    .bind(&version)
    .bind(&event_id)
    .bind(&event_type)
    .bind(&schema_version)
    .bind(&payload)
    .bind(&actor)
    .bind(&correlation)
    .bind(&causation)
    .bind(&source)
    .bind(&occurred)
    .bind(recorded_at)
    .bind(&extra)
    .bind(hashes)
    .bind(head)
    .bind(head_hash)
    .bind(NOTIFY_CHANNEL)
    .bind(ChainForm::CURRENT.code())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Extends the hash chain over `rows`, starting after `last_hash` (which ends as
/// the last row's hash).
fn chain_hashes(
    rows: &[Row<'_>],
    recorded_at: DateTime<Utc>,
    last_hash: &mut Vec<u8>,
) -> Vec<Vec<u8>> {
    rows.iter()
        .map(|r| {
            let h = Hashed {
                position: r.position,
                stream_type: &r.stream.stream_type,
                stream_id: &r.stream.stream_id,
                version: to_i64(r.version),
                event_id: r.event.event_id,
                event_type: &r.event.event_type,
                schema_version: r.event.schema_version,
                payload: &r.event.payload,
                metadata: &r.event.metadata,
                recorded_at,
                form: ChainForm::CURRENT,
            }
            .hash(last_hash);
            *last_hash = h.to_vec();
            last_hash.clone()
        })
        .collect()
}

/// The event rows as column arrays, for an `unnest` insert.
struct Columns<'a> {
    position: Vec<i64>,
    stream_type: Vec<&'a str>,
    stream_id: Vec<&'a str>,
    version: Vec<i64>,
    event_id: Vec<Uuid>,
    event_type: Vec<&'a str>,
    schema_version: Vec<i32>,
    payload: Vec<&'a serde_json::Value>,
    actor: Vec<Option<&'a str>>,
    correlation: Vec<Option<&'a str>>,
    causation: Vec<Option<&'a str>>,
    source: Vec<&'a str>,
    occurred: Vec<Option<DateTime<Utc>>>,
    extra: Vec<Json<&'a std::collections::BTreeMap<String, String>>>,
}

impl<'a> Columns<'a> {
    fn new(rows: &[Row<'a>]) -> Self {
        let n = rows.len();
        let mut c = Columns {
            position: Vec::with_capacity(n),
            stream_type: Vec::with_capacity(n),
            stream_id: Vec::with_capacity(n),
            version: Vec::with_capacity(n),
            event_id: Vec::with_capacity(n),
            event_type: Vec::with_capacity(n),
            schema_version: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
            actor: Vec::with_capacity(n),
            correlation: Vec::with_capacity(n),
            causation: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            occurred: Vec::with_capacity(n),
            extra: Vec::with_capacity(n),
        };
        for r in rows {
            let m = &r.event.metadata;
            c.position.push(r.position);
            c.stream_type.push(r.stream.stream_type.as_str());
            c.stream_id.push(r.stream.stream_id.as_str());
            c.version.push(to_i64(r.version));
            c.event_id.push(r.event.event_id);
            c.event_type.push(r.event.event_type.as_str());
            c.schema_version.push(r.event.schema_version);
            c.payload.push(&r.event.payload);
            c.actor.push(m.actor.as_deref());
            c.correlation.push(m.correlation_id.as_deref());
            c.causation.push(m.causation_id.as_deref());
            c.source.push(m.source.as_str());
            c.occurred.push(m.occurred_at.map(micros));
            c.extra.push(Json(&m.extra));
        }
        c
    }
}

/// The log head as an appender saw it: the last position, its hash, and its
/// commit time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    pub position: i64,
    pub hash: Vec<u8>,
    pub recorded_at: DateTime<Utc>,
}

/// A batch of requests laid out on top of a known log head, for
/// [`EventStore::append_prepared`]: positions, versions and hashes computed here,
/// every request assumed to succeed.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) requests: Vec<AppendRequest>,
    /// The version each request's stream is at before it.
    bases: Vec<u64>,
    /// (request, version) for streams that must already be at that version.
    checks: Vec<(usize, u64)>,
    hashes: Vec<Vec<u8>>,
    pub(crate) before: Tip,
    pub(crate) after: Tip,
}

impl Prepared {
    /// Lays `requests` out after `before`, recorded at `now` (or at the head's
    /// time, if the clock is behind it). Gives the requests back when the batch
    /// cannot go this way: an invalid request, an expectation other than an exact
    /// version, or two requests for one stream that do not follow each other.
    pub(crate) fn new(
        requests: Vec<AppendRequest>,
        before: &Tip,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<AppendRequest>> {
        let mut bases = Vec::with_capacity(requests.len());
        let mut checks = Vec::new();
        let mut ids = std::collections::HashSet::new();
        let mut latest: HashMap<&StreamRef, u64> = HashMap::with_capacity(requests.len());
        for (i, request) in requests.iter().enumerate() {
            let base = match request.expected {
                ExpectedVersion::NoStream => 0,
                ExpectedVersion::Exact(v) => v,
                ExpectedVersion::Any => return Err(requests),
            };
            if validate(request).is_err() || !request.events.iter().all(|e| ids.insert(e.event_id))
            {
                return Err(requests);
            }
            match latest.get(&request.stream) {
                Some(&v) if v != base => return Err(requests),
                Some(_) => {}
                None if base > 0 => checks.push((i, base)),
                None => {}
            }
            latest.insert(&request.stream, base + request.events.len() as u64);
            bases.push(base);
        }
        let micros = now.timestamp_micros();
        let now = DateTime::from_timestamp_micros(micros).unwrap_or(now);
        let recorded_at = now.max(before.recorded_at);
        let mut prepared = Prepared {
            requests,
            bases,
            checks,
            hashes: Vec::new(),
            before: before.clone(),
            after: before.clone(),
        };
        let mut hash = before.hash.clone();
        let rows = prepared.rows();
        let hashes = chain_hashes(&rows, recorded_at, &mut hash);
        let position = rows.last().map_or(before.position, |r| r.position);
        drop(rows);
        prepared.hashes = hashes;
        prepared.after = Tip {
            position,
            hash,
            recorded_at,
        };
        Ok(prepared)
    }

    fn rows(&self) -> Vec<Row<'_>> {
        let mut rows = Vec::new();
        let mut position = self.before.position;
        for (request, &base) in self.requests.iter().zip(&self.bases) {
            for (i, event) in request.events.iter().enumerate() {
                position += 1;
                rows.push(Row {
                    position,
                    stream: &request.stream,
                    version: base + 1 + i as u64,
                    event,
                });
            }
        }
        rows
    }

    /// What each request got, once the batch is committed.
    pub(crate) fn results(&self) -> Vec<Result<AppendResult, StoreError>> {
        let mut position = self.before.position;
        self.requests
            .iter()
            .zip(&self.bases)
            .map(|(request, &base)| {
                let n = request.events.len() as u64;
                let first_position = position + 1;
                position += n as i64;
                Ok(AppendResult {
                    stream_version: base + n,
                    first_position,
                    last_position: position,
                    duplicate: false,
                })
            })
            .collect()
    }
}
