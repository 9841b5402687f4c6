//! Facts read from the event log itself, up to a report's position (ADR 0051).
//!
//! The KPI read models answer `as_of`; the order, maintenance and alert read models
//! hold only the present. A report's orders, inspections, maintenance, alerts and an
//! order's life are therefore folded from the log's events up to the anchor's
//! position: the log never changes below a position, so a regeneration folds the same
//! events and gets the same figures.
//!
//! [`Fact`] is one event with the fields the reports use, all optional: every event
//! type of the streams read here has a subset of them (ids are strings; `at` is floor
//! time). Unknown fields are ignored, so an event type gaining a field changes nothing.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::error::ReportError;

/// One event of the log, with the fields reports read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Fact {
    #[serde(skip)]
    pub position: i64,
    #[serde(skip)]
    pub stream_id: String,
    #[serde(skip)]
    pub event_type: String,
    pub at: Option<DateTime<Utc>>,
    pub order_id: Option<String>,
    pub machine_id: Option<String>,
    pub product_id: Option<String>,
    pub quantity: Option<u64>,
    pub good: Option<u64>,
    pub scrap: Option<u64>,
    pub good_count: Option<u64>,
    pub scrap_count: Option<u64>,
    pub reason: Option<String>,
    pub inspection_id: Option<String>,
    pub sample_size: Option<u64>,
    pub defects: Option<u64>,
    pub passed: Option<bool>,
    pub inspector: Option<String>,
    pub notes: Option<String>,
    pub operator_id: Option<String>,
    pub operator_ids: Option<Vec<String>>,
    pub task_id: Option<String>,
    pub kind: Option<String>,
    pub scheduled_date: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub alert_id: Option<String>,
    pub severity: Option<String>,
    pub raised_at: Option<DateTime<Utc>>,
    pub by: Option<String>,
    pub item_id: Option<String>,
    pub requested: Option<serde_json::Value>,
    pub shortage: Option<serde_json::Value>,
    pub clocked_on_at: Option<DateTime<Utc>>,
}

type Row = (i64, String, String, serde_json::Value);

fn facts(rows: Vec<Row>) -> Result<Vec<Fact>, ReportError> {
    rows.into_iter()
        .map(|(position, stream_id, event_type, payload)| {
            let mut f: Fact = serde_json::from_value(payload)
                .map_err(|e| ReportError::Render(format!("event at position {position}: {e}")))?;
            f.position = position;
            f.stream_id = stream_id;
            f.event_type = event_type;
            Ok(f)
        })
        .collect()
}

/// Every event of the given streams up to `position`, in log order.
pub async fn streams(
    pool: &PgPool,
    stream_type: &str,
    ids: &[String],
    position: i64,
) -> Result<Vec<Fact>, ReportError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT position, stream_id, event_type, payload FROM events \
         WHERE stream_type = $1 AND stream_id = ANY($2) AND position <= $3 ORDER BY position",
    )
    .bind(stream_type)
    .bind(ids)
    .bind(position)
    .fetch_all(pool)
    .await?;
    facts(rows)
}

/// Every event of a stream type up to `position` whose payload has `field` in `values`,
/// in log order (for example the maintenance tasks of some machines).
pub async fn by_field(
    pool: &PgPool,
    stream_type: &str,
    field: &str,
    values: &[String],
    position: i64,
) -> Result<Vec<Fact>, ReportError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT position, stream_id, event_type, payload FROM events \
         WHERE stream_type = $1 AND payload ->> $2 = ANY($3) AND position <= $4 \
         ORDER BY position",
    )
    .bind(stream_type)
    .bind(field)
    .bind(values)
    .bind(position)
    .fetch_all(pool)
    .await?;
    facts(rows)
}

/// The ids of the streams of a type with an event up to `position` whose floor time
/// (`at`) lies in [from, to).
pub async fn active_in(
    pool: &PgPool,
    stream_type: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    position: i64,
) -> Result<Vec<String>, ReportError> {
    let mut ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT stream_id FROM events WHERE stream_type = $1 AND position <= $2 \
         AND (payload ->> 'at')::timestamptz >= $3 AND (payload ->> 'at')::timestamptz < $4",
    )
    .bind(stream_type)
    .bind(position)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    ids.sort();
    Ok(ids)
}

/// Facts for the unit tests of the sections and the order report.
#[cfg(test)]
pub(crate) mod testing {
    use chrono::{DateTime, Utc};

    use super::Fact;

    /// 2026-03-01 at `h`:00 UTC.
    pub(crate) fn at(h: u32) -> DateTime<Utc> {
        format!("2026-03-01T{h:02}:00:00Z").parse().unwrap()
    }

    /// An event of `event_type` on `stream` at `h`:00.
    pub(crate) fn fact(stream: &str, event_type: &str, h: u32) -> Fact {
        Fact {
            stream_id: stream.into(),
            event_type: event_type.into(),
            at: Some(at(h)),
            ..Fact::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_take_the_fields_they_know() {
        let rows = vec![(
            7,
            "O-1".to_owned(),
            "OrderInspectionRecorded".to_owned(),
            serde_json::json!({"order_id": "O-1", "inspection_id": "I-1", "sample_size": 20,
                "defects": 1, "passed": true, "inspector": "qa", "notes": null,
                "at": "2026-03-01T08:00:00Z", "unknown": [1, 2]}),
        )];
        let f = facts(rows).unwrap();
        assert_eq!(f[0].position, 7);
        assert_eq!(f[0].event_type, "OrderInspectionRecorded");
        assert_eq!(f[0].defects, Some(1));
        assert_eq!(f[0].inspector.as_deref(), Some("qa"));
        assert!(f[0].at.is_some());
    }
}
