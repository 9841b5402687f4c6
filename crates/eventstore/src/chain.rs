//! The hash chain over the global log (ADR 0013, canonical form ADR 0031).
//!
//! `hash(n) = SHA-256(hash(n-1) || canonical(event n))`, starting from 32 zero
//! bytes. The canonical form is a JSON-like text of every stored field in a fixed
//! order, with object keys sorted and times at microsecond precision (what
//! PostgreSQL keeps), so it is the same when computed at append and when
//! recomputed from what was read back. Positions have no gaps, so a deleted event
//! shows as a gap, an edited one as a hash mismatch.
//!
//! # Layout
//! - [`ChainForm`]: which canonical form an event was hashed with. Each event
//!   stores its form (`events.chain_form`): form 1 (before ADR 0031) wrote numbers
//!   as serde_json prints them, which `jsonb` does not always give back (`1e16`
//!   comes back as `10000000000000000`); form 2 writes every number in a decimal
//!   normal form of its value, so it is what PostgreSQL gives back.
//! - [`Hashed`]: the fields of one event that are hashed, and [`Hashed::hash`].
//! - [`check_payload`]: what a payload must be for `jsonb` and serde_json to give
//!   it back (no NUL character, bounded depth); the store refuses anything else.
//! - [`verify`]: recomputes the chain from the stored rows. Only the prefix of
//!   events from before the chain existed may be unchained, and the log head says
//!   where that prefix ends (`event_log_head.unchained_until`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::EventMetadata;

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The deepest nesting of arrays and objects a payload may have: serde_json reads
/// back at most 128 levels, so anything deeper could be stored but never read.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// How an event's canonical form is written; stored with each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainForm {
    /// Numbers as serde_json prints them (`1e16`, `0.1`, `100.0`). Events appended
    /// before ADR 0031 carry it; it is kept so that they still verify.
    V1,
    /// Numbers in the decimal normal form of [`canonical_number`]: the same for every
    /// spelling of a value that `jsonb` may give back.
    V2,
}

impl ChainForm {
    /// The form every new event is hashed with.
    pub const CURRENT: ChainForm = ChainForm::V2;

    /// The value stored in `events.chain_form`.
    pub fn code(self) -> i16 {
        match self {
            ChainForm::V1 => 1,
            ChainForm::V2 => 2,
        }
    }

    /// The form stored as `code`, if it is one.
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(ChainForm::V1),
            2 => Some(ChainForm::V2),
            _ => None,
        }
    }
}

/// Everything that is hashed of one event.
#[derive(Debug, Clone, Copy)]
pub struct Hashed<'a> {
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
    pub form: ChainForm,
}

/// `t` at microsecond precision (floored), which is what PostgreSQL keeps. The
/// store sends times already floored, so what is stored is what is hashed.
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn time(t: DateTime<Utc>) -> String {
    micros(t).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The decimal normal form of a JSON number (form 2): a sign for negative values,
/// the significant digits without leading or trailing zeros, `e` and the power of
/// ten (`1e16`, `25e-1`, `-7e0`; zero is `0e0`), then a `.` when the number is shown
/// with a fractional part.
///
/// Every spelling of a value maps to one form (`1e16`, `1.0e16` and
/// `10000000000000000` are `1e16`; `-0.0` is `0e0.`), while `5` and `5.0` stay
/// apart: `jsonb` keeps that difference, and serde_json reads the one as an integer
/// and the other as a float. Whether a fraction is shown follows PostgreSQL's
/// `numeric` rule: digits after the point, less the exponent, is more than zero.
pub fn canonical_number(text: &str, out: &mut String) {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let frac_len = i64::try_from(frac.len()).unwrap_or(i64::MAX);
    let fraction_shown = frac_len.saturating_sub(exponent) > 0;
    let all: String = int.chars().chain(frac.chars()).collect();
    let significant = all.trim_start_matches('0');
    let digits = significant.trim_end_matches('0');
    let trailing = i64::try_from(significant.len() - digits.len()).unwrap_or(0);
    if digits.is_empty() {
        out.push_str("0e0");
    } else {
        if negative {
            out.push('-');
        }
        out.push_str(digits);
        out.push('e');
        let power = exponent.saturating_sub(frac_len).saturating_add(trailing);
        out.push_str(&power.to_string());
    }
    if fraction_shown {
        out.push('.');
    }
}

/// JSON with object keys sorted at every level, numbers written in `form`.
fn canonical(value: &Value, form: ChainForm, out: &mut String) {
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
                canonical(&map[k.as_str()], form, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, form, out);
            }
            out.push(']');
        }
        Value::Number(n) if form == ChainForm::V2 => canonical_number(&n.to_string(), out),
        other => out.push_str(&other.to_string()),
    }
}

/// Why `payload` cannot be stored so that it reads back as it is, if it cannot: a
/// NUL character in a string or key (`jsonb` refuses it) or nesting deeper than
/// [`MAX_PAYLOAD_DEPTH`].
pub fn check_payload(payload: &Value) -> Result<(), String> {
    fn walk(v: &Value, depth: usize) -> Result<(), String> {
        let nul = |s: &str| {
            if s.contains('\0') {
                Err("a payload string or key holds a NUL character".to_string())
            } else {
                Ok(())
            }
        };
        match v {
            Value::String(s) => nul(s),
            Value::Array(_) | Value::Object(_) if depth >= MAX_PAYLOAD_DEPTH => Err(format!(
                "a payload may nest arrays and objects at most {MAX_PAYLOAD_DEPTH} deep"
            )),
            Value::Array(items) => items.iter().try_for_each(|i| walk(i, depth + 1)),
            Value::Object(map) => map.iter().try_for_each(|(k, i)| {
                nul(k)?;
                walk(i, depth + 1)
            }),
            _ => Ok(()),
        }
    }
    walk(payload, 0)
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
        canonical(&head, self.form, &mut text);
        text.push('\u{1f}');
        canonical(self.payload, self.form, &mut text);
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
        canonical(&v, ChainForm::V1, &mut s);
        assert_eq!(s, r#"{"a":2.5,"b":[1,{"a":"x\"y","z":1}],"c":null}"#);
        let mut s = String::new();
        canonical(&v, ChainForm::V2, &mut s);
        assert_eq!(s, r#"{"a":25e-1.,"b":[1e0,{"a":"x\"y","z":1e0}],"c":null}"#);
    }

    fn form(text: &str) -> String {
        let mut s = String::new();
        canonical_number(text, &mut s);
        s
    }

    #[test]
    fn every_spelling_of_a_number_has_one_form() {
        for (spellings, expected) in [
            (
                &["1e16", "1.0e16", "10000000000000000", "1E+16"][..],
                "1e16",
            ),
            (&["100.0", "1.000e2"][..], "1e2."),
            (&["100", "1e2", "1.0e2"][..], "1e2"),
            (&["-0.0", "0.0", "0.000"][..], "0e0."),
            (&["-0", "0", "0e10"][..], "0e0"),
            (&["0.00001230", "1.23e-5", "1.230e-5"][..], "123e-7."),
            (&["-2.50", "-2.5"][..], "-25e-1."),
            (&["18446744073709551615"][..], "18446744073709551615e0"),
        ] {
            for s in spellings {
                assert_eq!(form(s), expected, "{s}");
            }
        }
        assert_ne!(form("5"), form("5.0"));
    }

    #[test]
    fn times_are_hashed_at_microsecond_precision() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T08:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time(t), "2026-11-24T08:00:00.123456Z");
        let before_2000 = DateTime::parse_from_rfc3339("1999-12-31T23:59:59.0000005Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time(before_2000), "1999-12-31T23:59:59.000000Z");
    }

    #[test]
    fn payloads_jsonb_cannot_give_back_are_named() {
        assert!(check_payload(&serde_json::json!({"a": ["x\u{0}"]})).is_err());
        assert!(check_payload(&serde_json::json!({"a\u{0}": 1})).is_err());
        let mut deep = serde_json::json!(1);
        for _ in 0..MAX_PAYLOAD_DEPTH {
            deep = serde_json::json!([deep]);
        }
        assert!(check_payload(&deep).is_ok());
        assert!(check_payload(&serde_json::json!([deep])).is_err());
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
    /// Where the log head says the unchained prefix ends: every event after this
    /// position must carry a hash (0 in a log that was chained from the start).
    pub chain_starts_after: i64,
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
    chain_form: i16,
}

/// The log head as [`verify`] reads it.
struct Head {
    position: i64,
    hash: Vec<u8>,
    unchained_until: i64,
}

/// The running check: the pure half of [`verify`], fed one row at a time.
struct Checker {
    head: Head,
    previous: Vec<u8>,
    last_position: i64,
    report: ChainReport,
}

impl Checker {
    fn new(head: Head) -> Self {
        let report = ChainReport {
            events: 0,
            unchained: 0,
            chain_starts_after: head.unchained_until,
            broken: None,
            head_position: head.position,
            head_hash: hex::encode(&head.hash),
        };
        Self {
            head,
            previous: GENESIS.to_vec(),
            last_position: 0,
            report,
        }
    }

    fn broken(&mut self, position: i64, reason: impl Into<String>) {
        self.report.broken = Some(Break {
            position,
            reason: reason.into(),
        });
    }

    /// Checks the next row; false once the chain is found broken.
    fn row(&mut self, row: RawRow) -> bool {
        self.report.events += 1;
        if row.position != self.last_position + 1 {
            let from = self.last_position + 1;
            self.broken(
                from,
                format!("events {from} to {} are missing", row.position - 1),
            );
            return false;
        }
        self.last_position = row.position;
        if row.position <= self.head.unchained_until {
            self.report.unchained += 1;
            return true;
        }
        let Some(stored) = row.hash.as_deref() else {
            let reason = format!(
                "the event has no hash, but the log head says the chain starts after position {}",
                self.head.unchained_until
            );
            self.broken(row.position, reason);
            return false;
        };
        let Some(form) = ChainForm::from_code(row.chain_form) else {
            let reason = format!("unknown chain form {}", row.chain_form);
            self.broken(row.position, reason);
            return false;
        };
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
            form,
        }
        .hash(&self.previous);
        if computed.as_slice() != stored {
            self.broken(
                row.position,
                "the event does not match its hash (it was changed after it was recorded, or \
                 an earlier event was)",
            );
            return false;
        }
        self.previous = stored.to_vec();
        true
    }

    /// Checks the log head against what the rows gave.
    fn finish(mut self) -> ChainReport {
        if self.report.broken.is_some() {
            return self.report;
        }
        let (head, last) = (self.head.position, self.last_position);
        if head != last {
            self.broken(
                last + 1,
                format!("the log head says {head} events but {last} are there"),
            );
        } else if self.head.unchained_until > head {
            let reason = format!(
                "the log head says the chain starts after position {}, beyond its last event",
                self.head.unchained_until
            );
            self.broken(head, reason);
        } else if self.head.hash != self.previous {
            let reason = if self.previous == GENESIS {
                "the log head holds a hash, but no event is chained"
            } else {
                "the log head's hash does not match the last event's"
            };
            self.broken(head, reason);
        }
        self.report
    }
}

/// Recomputes the whole chain from the stored rows (no upcasting) and checks the
/// log head, in one consistent snapshot. Reads the log in pages; the first problem
/// ends the check.
pub async fn verify(pool: &sqlx::PgPool) -> Result<ChainReport, crate::StoreError> {
    const PAGE: i64 = 5_000;
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (position, hash, unchained_until): (i64, Vec<u8>, i64) =
        sqlx::query_as("SELECT position, last_hash, unchained_until FROM event_log_head WHERE id")
            .fetch_one(&mut *tx)
            .await?;
    let mut checker = Checker::new(Head {
        position,
        hash,
        unchained_until,
    });
    'pages: loop {
        let rows: Vec<RawRow> = sqlx::query_as(
            "SELECT position, stream_type, stream_id, version, event_id, event_type, \
             schema_version, payload, actor, correlation_id, causation_id, source, occurred_at, \
             recorded_at, extra, hash, chain_form FROM events WHERE position > $1 \
             ORDER BY position LIMIT $2",
        )
        .bind(checker.last_position)
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await?;
        let n = rows.len();
        for row in rows {
            if !checker.row(row) {
                break 'pages;
            }
        }
        if n < PAGE as usize {
            break;
        }
    }
    tx.commit().await?;
    Ok(checker.finish())
}
