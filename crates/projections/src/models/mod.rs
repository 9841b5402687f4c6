//! The read models: how each one applies events, one module per read model.
//!
//! A read model has one implementation: it folds a chunk of events (any number
//! of them, a single event included) in memory and writes the result with a few
//! statements: append-only facts with one binary COPY or multi-row insert per
//! table, status-like rows (machines, orders, tasks: [`rows`]) loaded once,
//! folded and upserted once per key, inventory levels once per item and
//! location. Live projectors, catch-up, replay and verify all apply events this
//! way; a chunk that fails is split by the framework (`projection`) until the
//! events that fail on their own are parked, so the result never depends on how
//! the log was cut into chunks.
//!
//! Events are decoded once per page ([`Decoded`]) by stream type into the
//! domain's event enums. Writes use unqualified table names, on the connection
//! they are given (inside the batch transaction), so replay can point them at a
//! scratch schema. Nothing here reads the clock: every value comes from the
//! event, so a replay gives the same rows. Events of other stream types are
//! ignored (the checkpoint still moves past them).
//!
//! Anything the fold cannot apply (a count that does not fit a bigint, a sum that
//! overflows one, a timestamp or JSON document PostgreSQL would refuse) is
//! [`ApplyError::Poison`], as is a database error caused by the data.

pub(crate) mod hierarchy;
pub(crate) mod history;
pub(crate) mod inventory;
pub(crate) mod lots;
pub(crate) mod machines;
pub(crate) mod maintenance;
pub(crate) mod orders;
pub(crate) mod people;
pub(crate) mod spc;

pub(crate) mod copy;
pub(crate) mod rows;

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use cqrs_es::DomainEvent;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;
use shopfloor_domain::hierarchy::HierarchyEvent;
use shopfloor_domain::inventory::InventoryEvent;
use shopfloor_domain::machine::MachineEvent;
use shopfloor_domain::maintenance::TaskEvent;
use shopfloor_domain::operator::OperatorEvent;
use shopfloor_domain::order::OrderEvent;
use shopfloor_domain::spc::SpcEvent;
use shopfloor_eventstore::repository::decode_event;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use crate::error::ApplyError;
use crate::live::LiveUpdate;
use crate::projection::Projection;

/// A count as a PostgreSQL bigint; one that does not fit is poison.
pub(crate) fn count(n: u64) -> Result<i64, ApplyError> {
    i64::try_from(n).map_err(|_| poison(format!("count {n} is out of range")))
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

/// An event decoded once per chunk into its domain enum (shared by the read
/// models that read its stream type).
#[derive(Debug)]
pub(crate) enum Decoded {
    Machine(MachineEvent),
    Order(OrderEvent),
    Task(TaskEvent),
    Inventory(InventoryEvent),
    Operator(OperatorEvent),
    Spc(SpcEvent),
    Hierarchy(HierarchyEvent),
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
            "operator" => d(event, Decoded::Operator),
            "spc_characteristic" => d(event, Decoded::Spc),
            "equipment_hierarchy" => d(event, Decoded::Hierarchy),
            _ => Decoded::Skipped,
        }
    }

    /// Decodes every event for `projections`.
    pub(crate) fn all(events: &[RecordedEvent], projections: &[Projection]) -> Vec<Self> {
        events.iter().map(|e| Self::of(e, projections)).collect()
    }

    fn machine(&self) -> Option<&MachineEvent> {
        match self {
            Decoded::Machine(e) => Some(e),
            _ => None,
        }
    }

    fn order(&self) -> Option<&OrderEvent> {
        match self {
            Decoded::Order(e) => Some(e),
            _ => None,
        }
    }

    fn task(&self) -> Option<&TaskEvent> {
        match self {
            Decoded::Task(e) => Some(e),
            _ => None,
        }
    }

    fn inventory(&self) -> Option<&InventoryEvent> {
        match self {
            Decoded::Inventory(e) => Some(e),
            _ => None,
        }
    }

    fn operator(&self) -> Option<&OperatorEvent> {
        match self {
            Decoded::Operator(e) => Some(e),
            _ => None,
        }
    }

    fn spc(&self) -> Option<&SpcEvent> {
        match self {
            Decoded::Spc(e) => Some(e),
            _ => None,
        }
    }

    fn hierarchy(&self) -> Option<&HierarchyEvent> {
        match self {
            Decoded::Hierarchy(e) => Some(e),
            _ => None,
        }
    }
}

/// What [`decode_event`] decodes, without copying the payload: `decode_event`
/// clones it and inserts the record's `event_type` (the enums' tag); here the
/// payload is read in place through a map that yields the tag and the payload's
/// other entries. When that fails, `decode_event` decides (and gives the error
/// the event is parked with).
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

/// Applies a chunk of events to `projection`; the live updates, coalesced per
/// topic. Events of the projection's stream type that do not decode are left out
/// (the caller parks them).
pub(crate) async fn apply_chunk(
    projection: Projection,
    conn: &mut PgConnection,
    events: &[RecordedEvent],
    decoded: &[Decoded],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    /// The events of the chunk that `pick` takes, with their records.
    fn items<'a, E>(
        events: &'a [RecordedEvent],
        decoded: &'a [Decoded],
        pick: fn(&Decoded) -> Option<&E>,
    ) -> Vec<(&'a RecordedEvent, &'a E)> {
        events
            .iter()
            .zip(decoded)
            .filter_map(|(r, d)| pick(d).map(|e| (r, e)))
            .collect()
    }
    match projection {
        Projection::Machines => {
            let items = items(events, decoded, Decoded::machine);
            rows::load_fold_upsert::<machines::Machines>(conn, &items).await
        }
        Projection::MachineHistory => {
            history::apply_chunk(conn, &items(events, decoded, Decoded::machine)).await
        }
        Projection::Orders => {
            let items = items(events, decoded, Decoded::order);
            orders::copy_facts(conn, &items).await?;
            rows::load_fold_upsert::<orders::Orders>(conn, &items).await
        }
        Projection::Maintenance => {
            let items = items(events, decoded, Decoded::task);
            rows::load_fold_upsert::<maintenance::Tasks>(conn, &items).await
        }
        Projection::Inventory => {
            inventory::apply_chunk(conn, &items(events, decoded, Decoded::inventory)).await
        }
        Projection::People => {
            people::apply_chunk(conn, &items(events, decoded, Decoded::operator)).await
        }
        Projection::Spc => spc::apply_chunk(conn, &items(events, decoded, Decoded::spc)).await,
        Projection::Hierarchy => {
            hierarchy::apply_chunk(conn, &items(events, decoded, Decoded::hierarchy)).await
        }
    }
}

/// The live updates of `items` coalesced per topic, as `coalesce` would leave
/// them of the per-event updates: the last update of each key, in the order of
/// their last occurrence. `key` names the topic of an item's update (None: the
/// item causes no update) and `update` makes it.
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

/// The earliest timestamp PostgreSQL stores (4714-11-24 BC), in microseconds
/// since 2000-01-01; its latest (294276 AD) is beyond what chrono represents.
const PG_MIN_MICROS: i64 = -211_813_488_000_000_000;

/// What PostgreSQL stores of a timestamp, as microseconds since 2000-01-01:
/// computed exactly as sqlx encodes a `DateTime` parameter (sub-microsecond
/// digits truncated). None for a timestamp PostgreSQL refuses.
pub(crate) fn pg_micros(t: &DateTime<Utc>) -> Option<i64> {
    (t.naive_utc() - postgres_epoch())
        .num_microseconds()
        .filter(|&micros| micros >= PG_MIN_MICROS)
}

/// `t` as PostgreSQL will store it (see [`pg_micros`]), so that timestamps
/// folded in memory compare as they do once stored; one PostgreSQL refuses is
/// poison.
pub(crate) fn pg_ts(t: &DateTime<Utc>) -> Result<DateTime<Utc>, ApplyError> {
    let micros = pg_micros(t).ok_or_else(|| poison(format!("timestamp {t} out of range")))?;
    Ok((postgres_epoch() + TimeDelta::microseconds(micros)).and_utc())
}

/// An event that cannot be applied, for `reason`.
pub(crate) fn poison(reason: impl Into<String>) -> ApplyError {
    ApplyError::Poison(reason.into())
}

/// A bigint sum as PostgreSQL computes it (an overflow is an error there).
pub(crate) fn add(a: i64, b: i64) -> Result<i64, ApplyError> {
    a.checked_add(b)
        .ok_or_else(|| poison("bigint out of range"))
}

/// A JSON document as the text sqlx sends for a `serde_json::Value` parameter;
/// text jsonb would refuse (a NUL character) is poison.
pub(crate) fn json_text(value: &serde_json::Value) -> Result<String, ApplyError> {
    let text = serde_json::to_string(value).map_err(|e| poison(e.to_string()))?;
    if text.contains("\\u0000") {
        return Err(poison("NUL in a JSON document"));
    }
    Ok(text)
}
