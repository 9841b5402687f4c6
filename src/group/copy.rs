//! The group's copy of every plant's log, from the hub's stream `GROUP_EVENTS`
//! (ADR 0061).
//!
//! A batch of messages is planned first ([`plan`], pure: the site is the subject's
//! first token, the body the plant's [`RecordedEvent`] as its relay published it),
//! then each site's events are stored in that site's schema ([`store`]) in one
//! transaction that holds the site's log head: an event at or below the head, or
//! already there, is skipped (a redelivery after a cut link or a restart applies
//! nothing twice), and the head moves over the contiguous run of positions, so the
//! copy never shows a gap. Only then are the messages acknowledged. The standard
//! projections then bring the site's read models up to its head ([`project`]), each
//! exactly once through its own checkpoint.
//!
//! A plant's calendar (settings, not events) comes as a whole snapshot on
//! `{site}.settings.calendar`; the newest of a batch replaces the site's calendar
//! tables unless the site already holds a later one
//! ([`shopfloor_projections::calendar_sync::apply`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use shopfloor_eventstore::RecordedEvent;
use shopfloor_projections::calendar_sync::{message_hash, CalendarSnapshot};
use shopfloor_projections::projection::apply_from_store;
use shopfloor_projections::Projection;
use sqlx::PgPool;

use super::sites::Site;

/// A message that cannot be copied, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub subject: String,
    pub reason: String,
}

/// A plant's calendar snapshot and its message's SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub snapshot: CalendarSnapshot,
    pub hash: String,
}

/// A batch of messages sorted into sites.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub sites: BTreeMap<Site, Vec<RecordedEvent>>,
    /// The newest calendar snapshot of each site in the batch (ADR 0061 amendment).
    pub calendars: BTreeMap<Site, Calendar>,
    pub unreadable: Vec<Unreadable>,
}

/// What one message of the group stream is.
enum Message {
    Event(Site, RecordedEvent),
    Calendar(Site, Calendar),
}

/// Reads one message: `{site}.events.…` is a recorded event, `{site}.settings.calendar`
/// the plant's calendar snapshot.
fn read(subject: &str, body: &[u8]) -> Result<Message, String> {
    let site = Site::of_subject(subject)?;
    let rest = &subject[site.as_str().len()..];
    if rest.starts_with(".events.") {
        return serde_json::from_slice::<RecordedEvent>(body)
            .map(|e| Message::Event(site, e))
            .map_err(|e| format!("the body is not a recorded event: {e}"));
    }
    if rest == ".settings.calendar" {
        let snapshot = serde_json::from_slice::<CalendarSnapshot>(body)
            .map_err(|e| format!("the body is not a calendar snapshot: {e}"))?;
        let hash = message_hash(body);
        return Ok(Message::Calendar(site, Calendar { snapshot, hash }));
    }
    Err("neither an event nor a calendar snapshot".to_owned())
}

/// Sorts `(subject, body)` messages into their sites' events, in position order,
/// each position once, and their newest calendar snapshots.
pub fn plan<'a>(messages: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Plan {
    let mut out = Plan::default();
    for (subject, body) in messages {
        match read(subject, body) {
            Ok(Message::Event(site, event)) => out.sites.entry(site).or_default().push(event),
            Ok(Message::Calendar(site, calendar)) => {
                let newer = out
                    .calendars
                    .get(&site)
                    .is_none_or(|held| held.snapshot.taken_at < calendar.snapshot.taken_at);
                if newer {
                    out.calendars.insert(site, calendar);
                }
            }
            Err(reason) => out.unreadable.push(Unreadable {
                subject: subject.to_owned(),
                reason,
            }),
        }
    }
    for events in out.sites.values_mut() {
        events.sort_by_key(|e| e.position);
        events.dedup_by_key(|e| e.position);
    }
    out
}

/// What storing a site's events did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Events new to the copy.
    pub inserted: u64,
    /// The copy's head afterwards: every position up to it is there.
    pub head: i64,
}

/// One event as a row of the site's `events` table.
fn row(e: &RecordedEvent) -> Value {
    json!({
        "position": e.position,
        "stream_type": e.stream_type,
        "stream_id": e.stream_id,
        "version": e.version,
        "event_id": e.event_id,
        "event_type": e.event_type,
        "schema_version": e.schema_version,
        "payload": e.payload,
        "actor": e.metadata.actor,
        "correlation_id": e.metadata.correlation_id,
        "causation_id": e.metadata.causation_id,
        "source": e.metadata.source.as_str(),
        "occurred_at": e.metadata.occurred_at,
        "recorded_at": e.recorded_at,
        "extra": e.metadata.extra,
    })
}

/// Stores `events` (sorted by position) in the site's copy of the log, exactly once,
/// and moves its head over the contiguous run.
pub async fn store(pool: &PgPool, events: &[RecordedEvent]) -> Result<Stored, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut head: i64 =
        sqlx::query_scalar("SELECT position FROM event_log_head WHERE id FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let rows: Vec<Value> = events
        .iter()
        .filter(|e| e.position > head)
        .map(row)
        .collect();
    let mut inserted = 0;
    if !rows.is_empty() {
        // Positions and event ids are unique: a copy already there is skipped.
        inserted = sqlx::query(
            "INSERT INTO events (position, stream_type, stream_id, version, event_id, event_type, \
                 schema_version, payload, actor, correlation_id, causation_id, source, \
                 occurred_at, recorded_at, extra) \
             SELECT r.position, r.stream_type, r.stream_id, r.version, r.event_id, r.event_type, \
                 r.schema_version, coalesce(r.payload, 'null'), r.actor, r.correlation_id, \
                 r.causation_id, r.source, r.occurred_at, r.recorded_at, \
                 coalesce(r.extra, '{}') \
             FROM jsonb_to_recordset($1) AS r(position bigint, stream_type text, \
                 stream_id text, version bigint, event_id uuid, event_type text, \
                 schema_version int, payload jsonb, actor text, correlation_id text, \
                 causation_id text, source text, occurred_at timestamptz, \
                 recorded_at timestamptz, extra jsonb) \
             ON CONFLICT DO NOTHING",
        )
        .bind(Value::Array(rows))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    // The head moves over the positions now present without a gap; an event that
    // came ahead of a missing one waits in the table until the gap is filled.
    let mut recorded_at = None;
    loop {
        let next: Vec<(i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "SELECT position, recorded_at FROM events WHERE position > $1 \
             ORDER BY position LIMIT 5000",
        )
        .bind(head)
        .fetch_all(&mut *tx)
        .await?;
        let before = head;
        for (position, at) in &next {
            if *position != head + 1 {
                break;
            }
            head = *position;
            recorded_at = Some(*at);
        }
        if head == before || head - before < next.len() as i64 || next.len() < 5000 {
            break;
        }
    }
    if let Some(at) = recorded_at {
        sqlx::query("UPDATE event_log_head SET position = $1, recorded_at = $2 WHERE id")
            .bind(head)
            .bind(at)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Stored { inserted, head })
}

/// Brings every read model of a site up to its copy's head (the standard projections,
/// each exactly once through its own checkpoint).
pub async fn project(pool: &PgPool) -> Result<(), shopfloor_projections::ProjectionError> {
    for p in Projection::ALL {
        apply_from_store(pool, p).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "position": position, "stream_type": "machine", "stream_id": "m1", "version": position,
            "event_id": uuid::Uuid::new_v4(), "event_type": "parts_produced",
            "schema_version": 1, "payload": {},
            "metadata": { "actor": null, "correlation_id": null, "causation_id": null,
                          "source": "api", "occurred_at": null },
            "recorded_at": "2026-12-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_batch_is_sorted_into_sites_by_position_once_each() {
        let (a3, a1, b1, junk) = (event(3), event(1), event(1), b"{".to_vec());
        let messages = [
            ("sitea.events.machine.m1", a3.as_slice()),
            ("sitea.events.machine.m1", a1.as_slice()),
            ("siteb.events.machine.m1", b1.as_slice()),
            ("sitea.events.machine.m1", a3.as_slice()),
            ("sitea.events.machine.m1", junk.as_slice()),
            ("bad site.events", b1.as_slice()),
        ];
        let p = plan(messages);
        let positions = |s: &str| -> Vec<i64> {
            p.sites[&Site::new(s).unwrap()]
                .iter()
                .map(|e| e.position)
                .collect()
        };
        assert_eq!(positions("sitea"), vec![1, 3]);
        assert_eq!(positions("siteb"), vec![1]);
        assert_eq!(p.unreadable.len(), 2);
    }

    fn calendar(taken_at: &str, time_zone: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "taken_at": taken_at, "fingerprint": "f", "time_zone": time_zone,
            "shifts": [], "rotations": [], "exceptions": [], "non_working": []
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_calendar_of_a_site_in_a_batch_is_kept() {
        let (newer, older, other) = (
            calendar("2026-12-01T10:00:05Z", "Europe/Berlin"),
            calendar("2026-12-01T10:00:00Z", "UTC"),
            calendar("2026-12-01T09:00:00Z", "Asia/Tokyo"),
        );
        let e1 = event(1);
        let messages = [
            ("sitea.settings.calendar", newer.as_slice()),
            ("sitea.events.machine.m1", e1.as_slice()),
            ("sitea.settings.calendar", older.as_slice()),
            ("siteb.settings.calendar", other.as_slice()),
            ("sitea.settings.other", other.as_slice()),
            ("sitea.settings.calendar", e1.as_slice()),
        ];
        let p = plan(messages);
        let a = &p.calendars[&Site::new("sitea").unwrap()];
        assert_eq!(a.snapshot.time_zone, "Europe/Berlin");
        assert_eq!(a.hash, message_hash(&newer));
        assert_eq!(
            p.calendars[&Site::new("siteb").unwrap()].snapshot.time_zone,
            "Asia/Tokyo"
        );
        assert_eq!(p.sites[&Site::new("sitea").unwrap()].len(), 1);
        assert_eq!(p.unreadable.len(), 2, "{:?}", p.unreadable);
    }
}
