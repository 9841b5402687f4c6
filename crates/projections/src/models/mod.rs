//! The projectors' apply functions, one module per read model.
//!
//! Each `apply` decodes the events it cares about (by stream type) into the
//! domain's event enums and writes its tables with plain SQL on the connection it
//! is given (inside the batch transaction; table names unqualified so replay can
//! point them at a scratch schema). Nothing here reads the clock: every value
//! comes from the event, so a replay gives the same rows. Events of other stream
//! types are ignored (the checkpoint still moves past them).

pub(crate) mod history;
pub(crate) mod inventory;
pub(crate) mod machines;
pub(crate) mod maintenance;
pub(crate) mod orders;

use cqrs_es::DomainEvent;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;
use shopfloor_eventstore::repository::decode_event;
use shopfloor_eventstore::RecordedEvent;

use crate::error::ApplyError;

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
