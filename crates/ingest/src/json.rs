//! The JSON topics of the CONTRACT: `{namespace}/machines/{machine_id}/state|count|telemetry`.
//!
//! Decoding is strict about meaning and lenient about form: unknown fields are
//! ignored, a missing `timestamp` means "now", a timestamp is RFC 3339 or epoch
//! milliseconds. A count message may name the production order its parts were made
//! for (`"order_id"`) and the reason for its scrap (`"scrap_reason"`, a code of
//! the built-in scrap reasons, ADR 0050: an unknown one sets the message aside). A count message is `{"good", "scrap"}` (parts since the last
//! message, the CONTRACT's meaning) or `{"good_total", "scrap_total", "bits"?}`
//! (the PLC's running totals, turned into deltas by the filter). Every refusal says
//! why, for the rejected-messages table, quoting a value only in part.
//!
//! Any payload may carry `msg_id` (a string or an integer): the publisher's own id
//! of the message. Two publishes with the same `msg_id` on one topic are one report
//! (the publisher retried); without it, every publish is a report (ADR 0034).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use shopfloor_domain::machine::MachineStatus;
use shopfloor_domain::reason::scrap_reason;
use shopfloor_domain::values::{MachineId, OrderId, ReasonCode, Text};

use crate::config::{CounterMode, Mapping};
use crate::message::{
    from_millis, quote, CountReport, Counter, Decoded, Observation, Sample, StateReport,
};

/// Longest `msg_id` accepted as a message's identity.
pub const MAX_MSG_ID: usize = 128;

/// The `msg_id` of a JSON payload, if it has a usable one (a non-empty string of
/// at most [`MAX_MSG_ID`] bytes, or an integer). Anything but a JSON object has none.
pub fn explicit_id(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        msg_id: Option<Value>,
    }
    let first = payload.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let probe: Probe = serde_json::from_slice(payload).ok()?;
    match probe.msg_id? {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_MSG_ID => Some(s),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON value quoted in a reason, in part.
fn quote_value(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        other => {
            let text = other.to_string();
            let q = quote(&text);
            q.trim_matches('"').to_string()
        }
    }
}

/// Longest sensor name accepted.
pub const MAX_SENSOR_NAME: usize = 64;
/// Most samples one telemetry message may carry.
pub const MAX_SAMPLES_PER_MESSAGE: usize = 256;

/// The kind of a JSON topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    State,
    Count,
    Telemetry,
}

/// Splits `{ns}/machines/{id}/{kind}`, or an ISA-95 path (ADR 0062)
/// `{ns}/{site}/{area}/{line}/{cell}/{machine}/{kind}` or, for a machine in no work cell,
/// `{ns}/{site}/{area}/{line}/{machine}/{kind}`: the machine id is the last path element
/// before the kind. `None` when the topic is not one of ours.
pub fn parse_topic<'a>(namespace: &str, topic: &'a str) -> Option<(&'a str, JsonKind)> {
    let rest = topic.strip_prefix(namespace)?.strip_prefix('/')?;
    let (path, kind) = rest.rsplit_once('/')?;
    let kind = match kind {
        "state" => JsonKind::State,
        "count" => JsonKind::Count,
        "telemetry" => JsonKind::Telemetry,
        _ => return None,
    };
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let id = match segments.as_slice() {
        ["machines", id] => id,
        // An ISA-95 path never starts with `machines`, so the two forms never overlap.
        [site, .., id] if *site != "machines" && (4..=5).contains(&segments.len()) => id,
        _ => return None,
    };
    Some((id, kind))
}

/// Decodes a JSON message. `now` is the arrival time (for a missing timestamp).
pub fn decode(
    mapping: &Mapping,
    topic_id: &str,
    kind: JsonKind,
    payload: &[u8],
    now: DateTime<Utc>,
) -> Decoded {
    let machine_id = mapping.machine_for_topic(topic_id);
    if let Err(e) = MachineId::new(machine_id) {
        return Decoded::rejected(format!("invalid machine id in topic: {e}"));
    }
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Decoded::rejected(format!("malformed JSON: {e}")),
    };
    let Value::Object(obj) = value else {
        return Decoded::rejected("the payload is not a JSON object");
    };
    let at = match timestamp(&obj, now) {
        Ok(t) => t,
        Err(e) => return Decoded::rejected(e),
    };
    let settings = mapping.settings(machine_id);
    let result = match kind {
        JsonKind::State => state(&obj, at).map(|report| Observation::State {
            report,
            historical: false,
        }),
        JsonKind::Count => {
            count(&obj, at, settings.counter_mode).map(|report| Observation::Count {
                report,
                historical: false,
            })
        }
        JsonKind::Telemetry => return telemetry(machine_id, &obj, at),
    };
    match result {
        Ok(o) => Decoded::one(machine_id.to_string(), o),
        Err(e) => Decoded::rejected(e),
    }
}

fn timestamp(obj: &Map<String, Value>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    match obj.get("timestamp") {
        None | Some(Value::Null) => Ok(now),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("timestamp {} is not RFC 3339: {e}", quote(s))),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .and_then(from_millis)
            .ok_or_else(|| format!("timestamp {n} is not epoch milliseconds")),
        Some(other) => Err(format!(
            "timestamp {} is neither RFC 3339 nor a number",
            quote_value(other)
        )),
    }
}

/// Parses a state name.
pub fn parse_state(s: &str) -> Option<MachineStatus> {
    match s.trim().to_ascii_lowercase().as_str() {
        "running" => Some(MachineStatus::Running),
        "idle" => Some(MachineStatus::Idle),
        "down" => Some(MachineStatus::Down),
        _ => None,
    }
}

fn state(obj: &Map<String, Value>, at: DateTime<Utc>) -> Result<StateReport, String> {
    let state = match obj.get("state") {
        Some(Value::String(s)) => parse_state(s)
            .ok_or_else(|| format!("unknown state {} (running, idle, down)", quote(s)))?,
        Some(other) => return Err(format!("state {} is not a string", quote_value(other))),
        None => return Err("a state message needs `state`".into()),
    };
    let reason = match obj.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(
            Text::new(s)
                .map_err(|e| format!("reason: {e}"))?
                .as_str()
                .to_string(),
        ),
        Some(other) => return Err(format!("reason {} is not a string", quote_value(other))),
    };
    let planned = match obj.get("planned") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => return Err(format!("planned {} is not a boolean", quote_value(other))),
    };
    Ok(StateReport {
        state,
        reason,
        planned,
        at,
        birth_at: None,
    })
}

fn count_field(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else if n.as_i64().is_some_and(|v| v < 0) || n.as_f64().is_some_and(|f| f < 0.0) {
                Err(format!("{key} = {n} is negative"))
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f <= 9.0e15 => Ok(Some(f as u64)),
                    _ => Err(format!("{key} = {n} is not a whole number")),
                }
            }
        }
        Some(other) => Err(format!("{key} = {} is not a number", quote_value(other))),
    }
}

fn count(
    obj: &Map<String, Value>,
    at: DateTime<Utc>,
    mode: CounterMode,
) -> Result<CountReport, String> {
    let good_total = count_field(obj, "good_total")?;
    let scrap_total = count_field(obj, "scrap_total")?;
    let good = count_field(obj, "good")?;
    let scrap = count_field(obj, "scrap")?;
    let bits = match count_field(obj, "bits")? {
        None => None,
        Some(b @ (16 | 32 | 64)) => Some(b as u32),
        Some(b) => return Err(format!("bits = {b}: counters are 16, 32 or 64 bits wide")),
    };
    let (good, scrap) = if good_total.is_some() || scrap_total.is_some() {
        (
            good_total.map(Counter::Total),
            scrap_total.map(Counter::Total),
        )
    } else {
        let wrap = |v: Option<u64>| {
            v.map(|v| match mode {
                CounterMode::Delta => Counter::Delta(v),
                CounterMode::Cumulative => Counter::Total(v),
            })
        };
        (wrap(good), wrap(scrap))
    };
    if good.is_none() && scrap.is_none() {
        return Err("a count message needs `good` and/or `scrap`".into());
    }
    Ok(CountReport {
        good,
        scrap,
        good_bits: bits,
        scrap_bits: bits,
        at,
        tag: None,
        order_id: match obj.get("order_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(OrderId::new(s).map_err(|e| format!("order_id: {e}"))?),
            Some(other) => {
                return Err(format!("order_id = {} is not a string", quote_value(other)))
            }
        },
        scrap_reason: scrap_reason_field(obj)?,
    })
}

/// The optional `scrap_reason` of a count message: a known scrap reason code, as the
/// catalogue spells it.
fn scrap_reason_field(obj: &Map<String, Value>) -> Result<Option<ReasonCode>, String> {
    match obj.get("scrap_reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => scrap_reason(s)
            .map(|d| Some(d.code.clone()))
            .ok_or_else(|| {
                format!(
                    "scrap_reason = {} is not a known scrap reason code",
                    quote_value(&Value::String(s.clone()))
                )
            }),
        Some(other) => Err(format!(
            "scrap_reason = {} is not a string",
            quote_value(other)
        )),
    }
}

fn telemetry(machine_id: &str, obj: &Map<String, Value>, at: DateTime<Utc>) -> Decoded {
    let mut samples = Vec::new();
    let mut rejections = Vec::new();
    for (key, value) in obj {
        if key == "timestamp" || key == "machine_id" || key == "msg_id" {
            continue;
        }
        if key.is_empty() || key.len() > MAX_SENSOR_NAME || key.chars().any(char::is_control) {
            rejections.push(format!(
                "sensor name {:?} is empty, too long or has control characters",
                key.chars().take(MAX_SENSOR_NAME).collect::<String>()
            ));
            continue;
        }
        match value.as_f64() {
            Some(v) if value.is_number() => samples.push(Sample {
                sensor: key.clone(),
                value: v,
                at,
                historical: false,
            }),
            _ => rejections.push(format!(
                "sensor {key} = {} is not a number: set aside, the other samples are kept",
                quote_value(value)
            )),
        }
    }
    if samples.len() > MAX_SAMPLES_PER_MESSAGE {
        return Decoded::rejected(format!(
            "{} samples in one message (at most {MAX_SAMPLES_PER_MESSAGE})",
            samples.len()
        ));
    }
    if samples.is_empty() && rejections.is_empty() {
        rejections.push("a telemetry message needs at least one numeric sensor".into());
    }
    let mut decoded = if samples.is_empty() {
        Decoded::default()
    } else {
        Decoded::one(machine_id.to_string(), Observation::Telemetry(samples))
    };
    decoded.rejections = rejections;
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn topics_are_parsed_within_the_namespace_only() {
        assert_eq!(
            parse_topic("ns", "ns/machines/m1/state"),
            Some(("m1", JsonKind::State))
        );
        assert_eq!(parse_topic("ns", "other/machines/m1/state"), None);
        assert_eq!(parse_topic("ns", "ns/machines/a/b/state"), None);
        assert_eq!(parse_topic("ns", "ns/machines/m1/bogus"), None);
        assert_eq!(parse_topic("ns", "nsx/machines/m1/count"), None);
    }

    #[test]
    fn isa95_paths_name_the_machine_last() {
        assert_eq!(
            parse_topic("ns", "ns/s1/a1/l1/c1/m1/count"),
            Some(("m1", JsonKind::Count))
        );
        assert_eq!(
            parse_topic("ns", "ns/s1/a1/l1/m1/telemetry"),
            Some(("m1", JsonKind::Telemetry))
        );
        assert_eq!(parse_topic("ns", "ns/s1/a1/m1/state"), None);
        assert_eq!(parse_topic("ns", "ns/s1/a1/l1/c1/x/m1/state"), None);
        assert_eq!(parse_topic("ns", "ns/s1//l1/c1/m1/state"), None);
        assert_eq!(parse_topic("ns", "ns/machines/a/b/c/state"), None);
        assert_eq!(parse_topic("ns", "other/s1/a1/l1/c1/m1/state"), None);
    }

    proptest! {
        /// Decoding never panics, whatever the bytes.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), kind in 0..3u8) {
            let kind = [JsonKind::State, JsonKind::Count, JsonKind::Telemetry][kind as usize];
            let _ = decode(&Mapping::default(), "m1", kind, &bytes, Utc::now());
        }

        /// Any well-formed count is read back exactly.
        #[test]
        fn counts_round_trip(good in 0u64..1_000_000, scrap in 0u64..1_000_000) {
            let payload = format!(r#"{{"good":{good},"scrap":{scrap}}}"#);
            let d = decode(&Mapping::default(), "m1", JsonKind::Count, payload.as_bytes(), Utc::now());
            let Some(Observation::Count { report, .. }) = d.machines.first().and_then(|m| m.observations.first()) else {
                return Err(TestCaseError::fail("a count"));
            };
            prop_assert_eq!(report.good, Some(Counter::Delta(good)));
            prop_assert_eq!(report.scrap, Some(Counter::Delta(scrap)));
        }
    }
}
