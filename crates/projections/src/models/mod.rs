//! The projectors' apply functions, one module per read model.
//!
//! Each `apply` decodes the events it cares about (by stream type) into the
//! domain's event enums and writes its tables with plain SQL on the connection it
//! is given (inside the batch transaction; table names unqualified so replay can
//! point them at a scratch schema). Nothing here reads the clock: every value
//! comes from the event, so a replay gives the same rows. Events of other stream
//! types are ignored (the checkpoint still moves past them).
//!
//! Each model also has `apply_chunk`, the set-based equivalent used on the fast
//! path (see the section below); the per-event `apply` is the slow path and the
//! reference semantics (`tests/it/setbased.rs` compares both).

pub(crate) mod history;
pub(crate) mod inventory;
pub(crate) mod machines;
pub(crate) mod maintenance;
pub(crate) mod orders;

pub(crate) mod copy;

use std::collections::HashSet;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use cqrs_es::DomainEvent;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;
use shopfloor_domain::inventory::InventoryEvent;
use shopfloor_domain::machine::MachineEvent;
use shopfloor_domain::maintenance::TaskEvent;
use shopfloor_domain::order::OrderEvent;
use shopfloor_eventstore::repository::decode_event;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use crate::error::ApplyError;
use crate::live::LiveUpdate;
use crate::projection::Projection;

/// Decodes an event into a domain event; failure is poison.
pub(crate) fn decode<E: DomainEvent>(event: &RecordedEvent) -> Result<E, ApplyError> {
    decode_event::<E>(event).map_err(|e| ApplyError::Poison(e.to_string()))
}

/// A count as a PostgreSQL bigint; one that does not fit is poison.
pub(crate) fn count(n: u64) -> Result<i64, ApplyError> {
    i64::try_from(n).map_err(|_| ApplyError::Poison(format!("count {n} is out of range")))
}

/// The snake_case name a serde enum serializes to.
pub(crate) fn name_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A decimal as a JSON number (for jsonb documents shown by the API).
pub(crate) fn number(d: Decimal) -> serde_json::Value {
    d.to_f64()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

// ---------------------------------------------------------------------------
// Set-based application (one chunk at a time).
//
// Each model's `apply_chunk` folds a chunk of events in memory, with exactly the
// semantics of its per-event `apply`, and writes the result with a few statements:
// append-only facts with one binary COPY or multi-row insert per table, status-like
// rows (machines, orders, tasks, levels) loaded once, folded and upserted once per
// key. Anything the fold cannot vouch for (a count that does not fit, a timestamp
// PostgreSQL would refuse, text PostgreSQL would refuse) is reported as
// `ApplyError::Poison`: the caller then redoes the chunk event by event with the
// per-event `apply` (which parks the culprit), so the fast path never has to
// reproduce the failure semantics of single statements.
// ---------------------------------------------------------------------------

/// An event decoded once per chunk into its domain enum (shared by the read
/// models that read its stream type).
#[derive(Debug)]
pub(crate) enum Decoded {
    Machine(MachineEvent),
    Order(OrderEvent),
    Task(TaskEvent),
    Inventory(InventoryEvent),
    /// No read model of the batch reads its stream type.
    Skipped,
    /// Its stream type is read, but it does not decode: poison.
    Poison(String),
}

impl Decoded {
    /// Decodes `event` if one of `projections` reads its stream type.
    pub(crate) fn of(event: &RecordedEvent, projections: &[Projection]) -> Self {
        let st = event.stream_type.as_str();
        if !projections.iter().any(|p| p.stream_type() == st) {
            return Decoded::Skipped;
        }
        fn d<E: DomainEvent>(event: &RecordedEvent, f: fn(E) -> Decoded) -> Decoded {
            match decode_tagged::<E>(event) {
                Ok(e) => f(e),
                Err(e) => Decoded::Poison(e),
            }
        }
        match st {
            "machine" => d(event, Decoded::Machine),
            "production_order" => d(event, Decoded::Order),
            "maintenance_task" => d(event, Decoded::Task),
            "inventory_item" => d(event, Decoded::Inventory),
            _ => Decoded::Skipped,
        }
    }

    /// Decodes every event for `projections`.
    pub(crate) fn all(events: &[RecordedEvent], projections: &[Projection]) -> Vec<Self> {
        events.iter().map(|e| Self::of(e, projections)).collect()
    }
}

/// What [`decode_event`] decodes, without copying the payload: `decode_event`
/// clones it and inserts the record's `event_type` (the enums' tag); here the
/// payload is read in place through a map that yields the tag and the payload's
/// other entries. When that fails, `decode_event` decides (and gives the error
/// the per-event path parks the event with).
fn decode_tagged<E: DomainEvent>(event: &RecordedEvent) -> Result<E, String> {
    if let serde_json::Value::Object(map) = &event.payload {
        let tagged = tagged::Tagged {
            tag: &event.event_type,
            map,
        };
        if let Ok(e) = E::deserialize(tagged) {
            return Ok(e);
        }
    }
    decode_event::<E>(event).map_err(|e| e.to_string())
}

mod tagged {
    use serde::de::value::BorrowedStrDeserializer;
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
    use serde_json::{Map, Value};

    /// A JSON object with `event_type` set to `tag` (replacing the object's own).
    pub(super) struct Tagged<'a> {
        pub(super) tag: &'a str,
        pub(super) map: &'a Map<String, Value>,
    }

    impl<'de> Deserializer<'de> for Tagged<'de> {
        type Error = serde_json::Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            visitor.visit_map(Entries {
                tag: Some(self.tag),
                entries: self.map.iter(),
                value: None,
            })
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map struct enum identifier ignored_any
        }
    }

    enum Next<'a> {
        Tag(&'a str),
        Value(&'a Value),
    }

    struct Entries<'a> {
        tag: Option<&'a str>,
        entries: serde_json::map::Iter<'a>,
        value: Option<Next<'a>>,
    }

    impl<'de> MapAccess<'de> for Entries<'de> {
        type Error = serde_json::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Self::Error> {
            if let Some(tag) = self.tag.take() {
                self.value = Some(Next::Tag(tag));
                return seed
                    .deserialize(BorrowedStrDeserializer::new("event_type"))
                    .map(Some);
            }
            for (key, value) in self.entries.by_ref() {
                if key == "event_type" {
                    continue;
                }
                self.value = Some(Next::Value(value));
                return seed
                    .deserialize(BorrowedStrDeserializer::new(key.as_str()))
                    .map(Some);
            }
            Ok(None)
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, Self::Error> {
            match self.value.take() {
                Some(Next::Tag(tag)) => seed.deserialize(BorrowedStrDeserializer::new(tag)),
                Some(Next::Value(value)) => seed.deserialize(value),
                None => Err(de::Error::custom("a map value without its key")),
            }
        }
    }
}

/// Applies a chunk set-based (see above); the live updates, coalesced per topic.
/// Events of the projection's stream type that do not decode are left out (the
/// caller parks them: their per-event `apply` would fail before any statement).
pub(crate) async fn apply_chunk(
    projection: Projection,
    conn: &mut PgConnection,
    events: &[RecordedEvent],
    decoded: &[Decoded],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    let pairs = events.iter().zip(decoded);
    match projection {
        Projection::Machines | Projection::MachineHistory => {
            let items: Vec<(&RecordedEvent, &MachineEvent)> = pairs
                .filter_map(|(r, d)| match d {
                    Decoded::Machine(e) if r.stream_type == "machine" => Some((r, e)),
                    _ => None,
                })
                .collect();
            if projection == Projection::Machines {
                machines::apply_chunk(conn, &items).await
            } else {
                history::apply_chunk(conn, &items).await
            }
        }
        Projection::Orders => {
            let items: Vec<_> = pairs
                .filter_map(|(r, d)| match d {
                    Decoded::Order(e) if r.stream_type == "production_order" => Some((r, e)),
                    _ => None,
                })
                .collect();
            orders::apply_chunk(conn, &items).await
        }
        Projection::Maintenance => {
            let items: Vec<_> = pairs
                .filter_map(|(r, d)| match d {
                    Decoded::Task(e) if r.stream_type == "maintenance_task" => Some((r, e)),
                    _ => None,
                })
                .collect();
            maintenance::apply_chunk(conn, &items).await
        }
        Projection::Inventory => {
            let items: Vec<_> = pairs
                .filter_map(|(r, d)| match d {
                    Decoded::Inventory(e) if r.stream_type == "inventory_item" => Some((r, e)),
                    _ => None,
                })
                .collect();
            inventory::apply_chunk(conn, &items).await
        }
    }
}

/// The live updates of `items` coalesced per topic, as `coalesce` would leave
/// them of the per-event updates: the last update of each key, in the order of
/// their last occurrence. `key` names the topic of an item's update (None: the
/// item causes no update) and `update` makes it (the per-event `apply`'s update).
pub(crate) fn last_updates<'a, T: ?Sized + 'a>(
    items: &[(&'a RecordedEvent, &'a T)],
    key: impl Fn(&'a T) -> Option<&'a str>,
    update: impl Fn(&RecordedEvent, &'a T) -> Option<LiveUpdate>,
) -> Vec<LiveUpdate> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (event, e) in items.iter().rev() {
        if let Some(k) = key(e) {
            if seen.insert(k) {
                out.extend(update(event, e));
            }
        }
    }
    out.reverse();
    out
}

fn postgres_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// What PostgreSQL stores of a timestamp, as microseconds since 2000-01-01:
/// computed exactly as sqlx encodes a `DateTime` parameter (sub-microsecond
/// digits truncated). None for a timestamp the fast path does not vouch for
/// (outside years 1..=9999; PostgreSQL refuses some of those).
pub(crate) fn pg_micros(t: &DateTime<Utc>) -> Option<i64> {
    if !(1..=9999).contains(&t.year()) {
        return None;
    }
    (t.naive_utc() - postgres_epoch()).num_microseconds()
}

/// `t` as PostgreSQL will store it (see [`pg_micros`]), for comparisons made in
/// memory that the per-event SQL makes in the database; a timestamp the fast
/// path does not vouch for sends the chunk to the per-event path.
pub(crate) fn pg_ts(t: &DateTime<Utc>) -> Result<DateTime<Utc>, ApplyError> {
    let micros = pg_micros(t).ok_or_else(|| fallback(format!("timestamp {t} out of range")))?;
    Ok((postgres_epoch() + TimeDelta::microseconds(micros)).and_utc())
}

/// An error that sends the chunk to the per-event path.
pub(crate) fn fallback(reason: impl Into<String>) -> ApplyError {
    ApplyError::Poison(reason.into())
}

/// A bigint sum as PostgreSQL computes it (an overflow is an error there).
pub(crate) fn add(a: i64, b: i64) -> Result<i64, ApplyError> {
    a.checked_add(b)
        .ok_or_else(|| fallback("bigint out of range"))
}

/// A JSON document as the text sqlx sends for a `serde_json::Value` parameter;
/// text jsonb would refuse (a NUL character) sends the chunk to the per-event path.
pub(crate) fn json_text(value: &serde_json::Value) -> Result<String, ApplyError> {
    let text = serde_json::to_string(value).map_err(|e| ApplyError::Poison(e.to_string()))?;
    if text.contains("\\u0000") {
        return Err(fallback("NUL in a JSON document"));
    }
    Ok(text)
}
