//! The pure half of the OPC UA ingest: a data change (or a connection gap) in, the
//! ingest's own [`Incoming`] and [`Decoded`] out — the same observations the MQTT
//! decoders make, so everything after the read (noise filter, counters to deltas,
//! commands through the one writer, telemetry, rejections) is the MQTT path.
//!
//! - The floor time of an observation is the value's source timestamp (the
//!   server's, then the receipt time when a server sends none).
//! - A state node's raw value goes through its value map; a `down` without a fixed
//!   reason takes the machine's reason node's latest value, and a new reason while
//!   the machine is down reports the state again with it.
//! - A counter node is a running total ([`Counter::Total`]) with the counter width
//!   of the mapping or of its data type: the filter's baseline, reset and rollover
//!   handling (shared with Sparkplug and cumulative JSON counters) makes deltas.
//! - A value of the wrong type, a value outside a value map and a bad status are
//!   set aside with a short reason.
//!
//! A message's id is derived from (server, node, value, source timestamp): the same
//! sample delivered twice (a republish after a reconnect) is the same message, and
//! its commands are applied once (ADR 0046).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use shopfloor_domain::machine::MachineStatus;
use shopfloor_ingest::message::{
    message_id, quote, CountReport, Counter, Decoded, Incoming, Observation, Sample, StateReport,
};

use crate::config::{Meaning, NodeMapping, OpcuaConfig, StateValue};

/// The topic-like source name of OPC UA messages (`opcua/{server}/{node_id}`).
pub const TOPIC_PREFIX: &str = "opcua";

/// A value as read, independent of the OPC UA library.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Empty,
    Bool(bool),
    Int {
        value: i64,
        bits: u32,
    },
    UInt {
        value: u64,
        bits: u32,
    },
    Float(f64),
    Text(String),
    /// Any other data type, by name.
    Other(String),
}

impl Reading {
    pub fn type_name(&self) -> String {
        match self {
            Reading::Empty => "empty".into(),
            Reading::Bool(_) => "Boolean".into(),
            Reading::Int { bits, .. } => format!("Int{bits}"),
            Reading::UInt { bits, .. } => format!("UInt{bits}"),
            Reading::Float(_) => "Double".into(),
            Reading::Text(_) => "String".into(),
            Reading::Other(t) => t.clone(),
        }
    }

    /// The key of a value map: integers in decimal, booleans as `true`/`false`,
    /// texts as they are, integral floats as integers.
    pub fn key(&self) -> Option<String> {
        match self {
            Reading::Bool(b) => Some(b.to_string()),
            Reading::Int { value, .. } => Some(value.to_string()),
            Reading::UInt { value, .. } => Some(value.to_string()),
            Reading::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
                Some(format!("{}", *f as i64))
            }
            Reading::Text(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Reading::Bool(b) => Some(f64::from(u8::from(*b))),
            Reading::Int { value, .. } => Some(*value as f64),
            Reading::UInt { value, .. } => Some(*value as f64),
            Reading::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Reading::Bool(b) => (*b).into(),
            Reading::Int { value, .. } => (*value).into(),
            Reading::UInt { value, .. } => (*value).into(),
            Reading::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| f.to_string().into()),
            Reading::Text(s) => s.clone().into(),
            Reading::Empty | Reading::Other(_) => serde_json::Value::Null,
        }
    }
}

/// One data change notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Index of the server in the mapping, and of the node in its list.
    pub server: usize,
    pub node: usize,
    pub reading: Reading,
    /// `None` when the status is Good; otherwise the status' name.
    pub bad_status: Option<String>,
    pub source_time: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

/// What the client tells the batching loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Change(Change),
    /// The connection to a server was lost at `lost_at` and is back (subscriptions
    /// re-created) at `back_at`.
    Gap {
        server: usize,
        lost_at: DateTime<Utc>,
        back_at: DateTime<Utc>,
        status: String,
    },
}

/// What the mapper remembers of a machine between data changes.
#[derive(Debug, Clone, Default)]
struct MachineMemory {
    reason: Option<String>,
    /// The last mapped state and its time, when it takes its reason from the
    /// reason node.
    down_from_reason_node: Option<(StateValue, DateTime<Utc>)>,
}

/// Turns events into the ingest's messages (pure, but for its memory of reasons).
#[derive(Debug)]
pub struct Mapper {
    config: Arc<OpcuaConfig>,
    machines: HashMap<String, MachineMemory>,
}

impl Mapper {
    pub fn new(config: Arc<OpcuaConfig>) -> Self {
        Self {
            config,
            machines: HashMap::new(),
        }
    }

    /// The messages and observations of a batch of events, in their order except
    /// that reason changes come first: a PLC sets a fault's text with its state,
    /// and one publish may carry both in any order.
    pub fn decode_batch(&mut self, events: &[Event]) -> (Vec<Incoming>, Vec<Decoded>) {
        let config = Arc::clone(&self.config);
        let is_reason = |e: &Event| match e {
            Event::Change(c) => config.servers[c.server].nodes[c.node].meaning == Meaning::Reason,
            Event::Gap { .. } => false,
        };
        let (reasons, others): (Vec<&Event>, Vec<&Event>) =
            events.iter().partition(|e| is_reason(e));
        reasons
            .into_iter()
            .chain(others)
            .map(|e| self.decode(e))
            .unzip()
    }

    /// The message and its observations for one event.
    pub fn decode(&mut self, event: &Event) -> (Incoming, Decoded) {
        match event {
            Event::Change(c) => self.change(c),
            Event::Gap {
                server,
                lost_at,
                back_at,
                status,
            } => gap(
                &self.config.servers[*server].name,
                *lost_at,
                *back_at,
                status,
            ),
        }
    }

    fn change(&mut self, c: &Change) -> (Incoming, Decoded) {
        let config = Arc::clone(&self.config);
        let server = &config.servers[c.server];
        let node = &server.nodes[c.node];
        let at = c.source_time.unwrap_or(c.received_at);
        let message = incoming(&server.name, node, c, at);
        if let Some(status) = &c.bad_status {
            return (
                message,
                Decoded::rejected(format!("{}: status {status}, value not used", node.node_id)),
            );
        }
        let decoded = match &node.meaning {
            Meaning::State => self.state(node, &c.reading, at),
            Meaning::Reason => self.reason(node, &c.reading, at),
            Meaning::GoodCount | Meaning::ScrapCount => counter(node, &c.reading, at),
            Meaning::Sensor(sensor) => sensor_sample(node, sensor, &c.reading, at),
        };
        (message, decoded)
    }

    fn state(&mut self, node: &NodeMapping, r: &Reading, at: DateTime<Utc>) -> Decoded {
        let values = node.state_values();
        let mapped = r.key().and_then(|k| values.get(&k).cloned()).or_else(|| {
            match r {
                // Without a value map, a text names the state itself.
                Reading::Text(s) if values.is_empty() => {
                    shopfloor_ingest::json::parse_state(s).map(StateValue::Plain)
                }
                _ => None,
            }
        });
        let Some(value) = mapped else {
            let shown = r.key().map(|k| quote(&k)).unwrap_or_else(|| r.type_name());
            return Decoded::rejected(format!(
                "{}: state value {shown} is not in the value map",
                node.node_id
            ));
        };
        let memory = self.machines.entry(node.machine_id.clone()).or_default();
        let from_node = value.state() == MachineStatus::Down && value.reason().is_none();
        memory.down_from_reason_node = from_node.then(|| (value.clone(), at));
        let reason = if from_node {
            memory.reason.clone()
        } else {
            value.reason().map(str::to_string)
        };
        state_decoded(&node.machine_id, &value, reason, at)
    }

    fn reason(&mut self, node: &NodeMapping, r: &Reading, at: DateTime<Utc>) -> Decoded {
        let codes = node.reason_values();
        let text = match (r.key(), r) {
            (Some(k), _) if codes.contains_key(&k) => codes[&k].clone(),
            (_, Reading::Text(s)) => s.trim().to_string(),
            (Some(k), _) => format!("code {k}"),
            (None, _) => {
                return Decoded::rejected(format!(
                    "{}: a reason of type {} (a text or a code is expected)",
                    node.node_id,
                    r.type_name()
                ))
            }
        };
        let text = (!text.is_empty()).then_some(text);
        let memory = self.machines.entry(node.machine_id.clone()).or_default();
        if memory.reason == text {
            return Decoded::default();
        }
        memory.reason = text.clone();
        match memory.down_from_reason_node.clone() {
            // Never before the state it completes.
            Some((value, since)) => state_decoded(&node.machine_id, &value, text, at.max(since)),
            None => Decoded::default(),
        }
    }
}

fn state_decoded(
    machine_id: &str,
    value: &StateValue,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> Decoded {
    Decoded::one(
        machine_id.to_string(),
        Observation::State {
            report: StateReport {
                state: value.state(),
                reason,
                planned: value.planned(),
                at,
                birth_at: None,
            },
            historical: false,
        },
    )
}

fn counter(node: &NodeMapping, r: &Reading, at: DateTime<Utc>) -> Decoded {
    let (total, bits) = match *r {
        Reading::UInt { value, bits } => (value, bits),
        Reading::Int { value, bits } if value >= 0 => (value as u64, bits),
        Reading::Int { value, .. } => {
            return Decoded::rejected(format!("{}: negative counter value {value}", node.node_id))
        }
        _ => {
            return Decoded::rejected(format!(
                "{}: a counter of type {} (an integer is expected)",
                node.node_id,
                r.type_name()
            ))
        }
    };
    let bits = node
        .counter_bits
        .or_else(|| [16, 32, 64].contains(&bits).then_some(bits));
    let good = node.meaning == Meaning::GoodCount;
    let report = CountReport {
        good: good.then_some(Counter::Total(total)),
        scrap: (!good).then_some(Counter::Total(total)),
        good_bits: if good { bits } else { None },
        scrap_bits: if good { None } else { bits },
        at,
        tag: None,
        order_id: None,
        scrap_reason: None,
    };
    Decoded::one(
        node.machine_id.clone(),
        Observation::Count {
            report,
            historical: false,
        },
    )
}

fn sensor_sample(node: &NodeMapping, sensor: &str, r: &Reading, at: DateTime<Utc>) -> Decoded {
    let Some(value) = r.as_f64() else {
        return Decoded::rejected(format!(
            "{}: {sensor} of type {} (a number is expected)",
            node.node_id,
            r.type_name()
        ));
    };
    Decoded::one(
        node.machine_id.clone(),
        Observation::Telemetry(vec![Sample {
            sensor: sensor.to_string(),
            value,
            at,
            historical: false,
        }]),
    )
}

/// The ingest's message for a data change: its source, the value as JSON (kept
/// with a rejection), and an id derived from what the sample is.
fn incoming(server: &str, node: &NodeMapping, c: &Change, at: DateTime<Utc>) -> Incoming {
    let topic = format!("{TOPIC_PREFIX}/{server}/{}", node.node_id);
    let payload = serde_json::json!({
        "value": c.reading.json(),
        "type": c.reading.type_name(),
        "source_timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "status": c.bad_status.as_deref().unwrap_or("Good"),
    })
    .to_string();
    let id = message_id(&topic, payload.as_bytes());
    Incoming {
        topic,
        payload: payload.into(),
        received_at: c.received_at,
        id,
    }
}

/// The notice of a connection gap: what was not seen while the server was away.
fn gap(
    server: &str,
    lost_at: DateTime<Utc>,
    back_at: DateTime<Utc>,
    status: &str,
) -> (Incoming, Decoded) {
    let seconds = (back_at - lost_at).num_milliseconds() as f64 / 1000.0;
    metrics::counter!("shopfloor_opcua_reconnects_total", "server" => server.to_string())
        .increment(1);
    metrics::counter!("shopfloor_opcua_gap_seconds_total", "server" => server.to_string())
        .increment(seconds.max(0.0) as u64);
    let notice = format!(
        "connection to OPC UA server {server} lost ({status}) for {seconds:.1} s: \
         subscriptions re-created; changes inside the gap are seen only as the values \
         on reconnection (counters count the gap from their totals; states and \
         samples between are missed)"
    );
    let topic = format!("{TOPIC_PREFIX}/{server}");
    let payload = serde_json::json!({
        "connection_lost_at": lost_at.to_rfc3339(),
        "reconnected_at": back_at.to_rfc3339(),
        "status": status,
    })
    .to_string();
    let id = message_id(&topic, payload.as_bytes());
    let message = Incoming {
        topic,
        payload: payload.into(),
        received_at: back_at,
        id,
    };
    (
        message,
        Decoded {
            notices: vec![notice],
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config() -> Arc<OpcuaConfig> {
        Arc::new(
            OpcuaConfig::from_json(
                r#"{"servers":[{"name":"plc","endpoint":"opc.tcp://127.0.0.1:4840","nodes":[
                {"node_id":"ns=2;s=State","machine_id":"m1","meaning":"state",
                 "values":{"0":"idle","1":"running","2":"down","3":{"state":"idle","planned":true,"reason":"changeover"}}},
                {"node_id":"ns=2;s=Reason","machine_id":"m1","meaning":"reason","values":{"17":"door open"}},
                {"node_id":"ns=2;s=Good","machine_id":"m1","meaning":"good_count"},
                {"node_id":"ns=2;s=Temp","machine_id":"m1","meaning":{"sensor":"temp_c"}}]}]}"#,
            )
            .unwrap(),
        )
    }

    fn change(node: usize, reading: Reading, s: i64) -> Event {
        Event::Change(Change {
            server: 0,
            node,
            reading,
            bad_status: None,
            source_time: Some(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()),
            received_at: Utc.timestamp_opt(1_700_000_100, 0).unwrap(),
        })
    }

    fn state_of(d: &Decoded) -> Option<(MachineStatus, Option<String>, DateTime<Utc>)> {
        match d.machines.first()?.observations.first()? {
            Observation::State { report, .. } => {
                Some((report.state, report.reason.clone(), report.at))
            }
            _ => None,
        }
    }

    #[test]
    fn states_map_through_values_and_a_fault_takes_its_reason_from_the_reason_node() {
        let mut m = Mapper::new(config());
        let (_, d) = m.decode(&change(0, Reading::UInt { value: 1, bits: 16 }, 0));
        let (state, _, at) = state_of(&d).unwrap();
        assert_eq!(state, MachineStatus::Running);
        assert_eq!(at, Utc.timestamp_opt(1_700_000_000, 0).unwrap());
        let (_, d) = m.decode(&change(
            1,
            Reading::UInt {
                value: 17,
                bits: 16,
            },
            1,
        ));
        assert!(
            d.machines.is_empty(),
            "a reason alone while running says nothing"
        );
        let (_, d) = m.decode(&change(0, Reading::Int { value: 2, bits: 32 }, 2));
        assert_eq!(
            state_of(&d).unwrap().1.as_deref(),
            Some("door open"),
            "down takes the reason node's value"
        );
        let (_, d) = m.decode(&change(1, Reading::Text("E-stop".into()), 3));
        assert_eq!(state_of(&d).unwrap().1.as_deref(), Some("E-stop"));
        let (_, d) = m.decode(&change(0, Reading::UInt { value: 3, bits: 16 }, 4));
        assert_eq!(state_of(&d).unwrap().1.as_deref(), Some("changeover"));
        let (msg, d) = m.decode(&change(0, Reading::UInt { value: 9, bits: 16 }, 5));
        assert_eq!(
            d.rejections,
            vec!["ns=2;s=State: state value \"9\" is not in the value map"]
        );
        assert_eq!(msg.topic, "opcua/plc/ns=2;s=State");
    }

    #[test]
    fn a_reason_in_the_same_batch_as_its_fault_comes_first() {
        let mut m = Mapper::new(config());
        let batch = [
            change(0, Reading::UInt { value: 2, bits: 16 }, 8),
            change(1, Reading::Text("jam".into()), 7),
        ];
        let (msgs, d) = m.decode_batch(&batch);
        assert_eq!(msgs[0].topic, "opcua/plc/ns=2;s=Reason");
        assert!(d[0].machines.is_empty());
        let (state, reason, at) = state_of(&d[1]).unwrap();
        assert_eq!(
            (state, reason.as_deref()),
            (MachineStatus::Down, Some("jam"))
        );
        assert_eq!(at, Utc.timestamp_opt(1_700_000_008, 0).unwrap());
        // A later text while down reports the state again, never before it.
        let (_, d) = m.decode(&change(1, Reading::Text("jam cleared?".into()), 5));
        assert_eq!(
            state_of(&d).unwrap().2,
            Utc.timestamp_opt(1_700_000_008, 0).unwrap()
        );
    }

    #[test]
    fn counters_are_totals_with_their_width_and_wrong_types_are_set_aside() {
        let mut m = Mapper::new(config());
        let (a, d) = m.decode(&change(
            2,
            Reading::UInt {
                value: 65_530,
                bits: 16,
            },
            0,
        ));
        match &d.machines[0].observations[0] {
            Observation::Count { report, .. } => {
                assert_eq!(report.good, Some(Counter::Total(65_530)));
                assert_eq!(report.good_bits, Some(16));
            }
            o => panic!("{o:?}"),
        }
        let (b, _) = m.decode(&change(
            2,
            Reading::UInt {
                value: 65_530,
                bits: 16,
            },
            0,
        ));
        assert_eq!(a.id, b.id, "the same sample is the same message");
        let (_, d) = m.decode(&change(2, Reading::Float(3.5), 1));
        assert_eq!(
            d.rejections,
            vec!["ns=2;s=Good: a counter of type Double (an integer is expected)"]
        );
        let (_, d) = m.decode(&change(3, Reading::Text("hot".into()), 1));
        assert_eq!(
            d.rejections,
            vec!["ns=2;s=Temp: temp_c of type String (a number is expected)"]
        );
        let (_, d) = m.decode(&change(3, Reading::Float(71.5), 1));
        assert!(
            matches!(&d.machines[0].observations[0], Observation::Telemetry(s) if s[0].value == 71.5)
        );
    }
}
