//! The hash chain over the global log (ADR 0013).
//!
//! `hash(n) = SHA-256(hash(n-1) || canonical(event n))`, starting from 32 zero
//! bytes. The canonical form is a JSON array of every stored field in a fixed
//! order, with object keys sorted and times at microsecond precision (what
//! PostgreSQL keeps), so it is the same when computed at append and when
//! recomputed from what was read back. Positions have no gaps, so a deleted event
//! shows as a gap, an edited one as a hash mismatch.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::EventMetadata;

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// Everything that is hashed of one event.
pub(crate) struct Hashed<'a> {
    pub position: i64,
    pub stream_type: &'a str,
    pub stream_id: &'a str,
    pub version: i64,
    pub event_id: uuid::Uuid,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub payload: &'a Value,
    pub metadata: &'a EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

fn time(t: DateTime<Utc>) -> String {
    // PostgreSQL keeps microseconds: drop anything finer before formatting.
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros)
        .unwrap_or(t)
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// JSON with object keys sorted at every level, whatever the map type.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl Hashed<'_> {
    /// The hash of this event after `previous`.
    pub fn hash(&self, previous: &[u8]) -> [u8; 32] {
        let m = self.metadata;
        let head = serde_json::json!([
            self.position,
            self.stream_type,
            self.stream_id,
            self.version,
            self.event_id.to_string(),
            self.event_type,
            self.schema_version,
            m.actor,
            m.correlation_id,
            m.causation_id,
            m.source.as_str(),
            m.occurred_at.map(time),
            time(self.recorded_at),
            m.extra,
        ]);
        let mut text = String::with_capacity(256);
        canonical(&head, &mut text);
        text.push('\u{1f}');
        canonical(self.payload, &mut text);
        let mut h = Sha256::new();
        h.update(previous);
        h.update(text.as_bytes());
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_keeps_values() {
        let v = serde_json::json!({"b": [1, {"z": 1, "a": "x\"y"}], "a": 2.5, "c": null});
        let mut s = String::new();
        canonical(&v, &mut s);
        assert_eq!(s, r#"{"a":2.5,"b":[1,{"a":"x\"y","z":1}],"c":null}"#);
    }

    #[test]
    fn times_are_hashed_at_microsecond_precision() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T08:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time(t), "2026-11-24T08:00:00.123456Z");
    }
}

/// Where the chain is broken, if it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Break {
    pub position: i64,
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainReport {
    /// Events checked.
    pub events: u64,
    /// Events from before the chain was introduced (no hash), at the start of the log.
    pub unchained: u64,
    /// The first problem, if any.
    pub broken: Option<Break>,
    pub head_position: i64,
    /// The hash of the last event (hex): record it somewhere else to anchor the chain.
    pub head_hash: String,
}

#[derive(sqlx::FromRow)]
struct RawRow {
    position: i64,
    stream_type: String,
    stream_id: String,
    version: i64,
    event_id: uuid::Uuid,
    event_type: String,
    schema_version: i32,
    payload: Value,
    actor: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    source: String,
    occurred_at: Option<DateTime<Utc>>,
    recorded_at: DateTime<Utc>,
    extra: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    hash: Option<Vec<u8>>,
}

/// Recomputes the whole chain from the stored rows (no upcasting) and checks the
/// log head. Reads the log in pages; the first problem ends the check.
pub async fn verify(pool: &sqlx::PgPool) -> Result<ChainReport, crate::StoreError> {
    const PAGE: i64 = 5_000;
    let mut previous: Vec<u8> = GENESIS.to_vec();
    let mut last_position = 0_i64;
    let mut report = ChainReport {
        events: 0,
        unchained: 0,
        broken: None,
        head_position: 0,
        head_hash: String::new(),
    };
    let mut chained = false;
    'pages: loop {
        let rows: Vec<RawRow> = sqlx::query_as(
            "SELECT position, stream_type, stream_id, version, event_id, event_type, \
             schema_version, payload, actor, correlation_id, causation_id, source, occurred_at, \
             recorded_at, extra, hash FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(last_position)
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        let n = rows.len();
        for row in rows {
            report.events += 1;
            if row.position != last_position + 1 {
                report.broken = Some(Break {
                    position: last_position + 1,
                    reason: format!(
                        "events {} to {} are missing",
                        last_position + 1,
                        row.position - 1
                    ),
                });
                break 'pages;
            }
            last_position = row.position;
            let Some(stored) = row.hash.clone() else {
                if chained {
                    report.broken = Some(Break {
                        position: row.position,
                        reason: "the event has no hash".into(),
                    });
                    break 'pages;
                }
                report.unchained += 1;
                continue;
            };
            chained = true;
            let metadata = EventMetadata {
                actor: row.actor,
                correlation_id: row.correlation_id,
                causation_id: row.causation_id,
                source: crate::Source::parse(&row.source).unwrap_or_default(),
                occurred_at: row.occurred_at,
                extra: row.extra.0,
            };
            let computed = Hashed {
                position: row.position,
                stream_type: &row.stream_type,
                stream_id: &row.stream_id,
                version: row.version,
                event_id: row.event_id,
                event_type: &row.event_type,
                schema_version: row.schema_version,
                payload: &row.payload,
                metadata: &metadata,
                recorded_at: row.recorded_at,
            }
            .hash(&previous);
            if computed.as_slice() != stored.as_slice() {
                report.broken = Some(Break {
                    position: row.position,
                    reason: "the event does not match its hash (it was changed after it was \
                             recorded, or an earlier event was)"
                        .into(),
                });
                break 'pages;
            }
            previous = stored;
        }
        if n < PAGE as usize {
            break;
        }
    }
    let (head, head_hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT position, last_hash FROM event_log_head WHERE id")
            .fetch_one(pool)
            .await?;
    report.head_position = head;
    report.head_hash = hex::encode(&head_hash);
    if report.broken.is_none() {
        if head != last_position {
            report.broken = Some(Break {
                position: last_position + 1,
                reason: format!("the log head says {head} events but {last_position} are there"),
            });
        } else if chained && head_hash != previous {
            report.broken = Some(Break {
                position: head,
                reason: "the log head's hash does not match the last event's".into(),
            });
        }
    }
    Ok(report)
}
