//! Sparkplug B: `spBv1.0/{group}/{NBIRTH|NDEATH|DBIRTH|DDEATH|NDATA|DDATA}/{edge}[/{device}]`.
//!
//! # Codec
//! The payload is protobuf (Eclipse Tahu `sparkplug_b.proto`). The message structs
//! are written by hand with `#[derive(prost::Message)]` — no `protoc` at build time,
//! and only the fields the ingest reads (unknown fields such as data sets and
//! templates are skipped by prost). ADR 0007 says why no Sparkplug crate is used.
//!
//! # Sessions
//! One [`NodeSession`] per edge node, from its NBIRTH: its `bdSeq`, its last `seq`,
//! and the alias → (name, datatype) table of the node and all its devices (aliases
//! are unique per node). A DATA message names metrics by alias; an alias with no
//! birth behind it (the ingest started after the birth) sets the message aside and
//! asks the node to rebirth (NCMD `Node Control/Rebirth`). Every message but NBIRTH
//! must carry the previous `seq` + 1 (mod 256): a gap is recorded as a notice, and
//! when a missing `seq` has not arrived within `reorder_timeout_ms` (checked on the
//! node's next message and on the engine's timer tick, [`Sessions::due_rebirths`]),
//! the node is asked to rebirth. A message repeating the last `seq` is the same
//! message again (a publisher's retry): it is dropped, with a notice. An NDEATH
//! whose `bdSeq` is not the current birth's is stale (the broker delivers an old
//! session's will late) and refused. A death marks the machines of the node, or of
//! the device, signal-lost; a birth restores the state it reports. Metrics flagged
//! `is_historical` take the late-data path (stored, never debounced or judged as
//! live; historical totals count at their own time).
//!
//! # Metrics
//! Each count metric keeps its own timestamp and its own counter width: counts of
//! one message with different timestamps become separate counts. Metrics the mapping
//! does not list and whose value is not numeric (String, Text, DateTime, UUID,
//! bytes, ...) are ignored and counted in
//! `shopfloor_ingest_sparkplug_ignored_metrics_total`, never set aside.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use prost::Message;
use shopfloor_domain::machine::MachineStatus;

use crate::config::{CounterMode, MetricMeaning, NamedMeaning, SparkplugMapping};
use crate::json::parse_state;
use crate::message::{
    from_millis, CountReport, Counter, Decoded, MachineObservations, Observation, Sample,
    StateReport,
};

/// The protobuf messages (a subset of `sparkplug_b.proto`).
pub mod proto {
    /// `org.eclipse.tahu.protobuf.Payload`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Payload {
        #[prost(uint64, optional, tag = "1")]
        pub timestamp: Option<u64>,
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
        #[prost(uint64, optional, tag = "3")]
        pub seq: Option<u64>,
        #[prost(string, optional, tag = "4")]
        pub uuid: Option<String>,
        #[prost(bytes = "vec", optional, tag = "5")]
        pub body: Option<Vec<u8>>,
    }

    /// `Payload.Metric` (metadata, properties, data sets and templates are skipped).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(uint64, optional, tag = "2")]
        pub alias: Option<u64>,
        #[prost(uint64, optional, tag = "3")]
        pub timestamp: Option<u64>,
        #[prost(uint32, optional, tag = "4")]
        pub datatype: Option<u32>,
        #[prost(bool, optional, tag = "5")]
        pub is_historical: Option<bool>,
        #[prost(bool, optional, tag = "6")]
        pub is_transient: Option<bool>,
        #[prost(bool, optional, tag = "7")]
        pub is_null: Option<bool>,
        #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16")]
        pub value: Option<Value>,
    }

    /// `Payload.Metric.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(uint32, tag = "10")]
        IntValue(u32),
        #[prost(uint64, tag = "11")]
        LongValue(u64),
        #[prost(float, tag = "12")]
        FloatValue(f32),
        #[prost(double, tag = "13")]
        DoubleValue(f64),
        #[prost(bool, tag = "14")]
        BooleanValue(bool),
        #[prost(string, tag = "15")]
        StringValue(String),
        #[prost(bytes = "vec", tag = "16")]
        BytesValue(Vec<u8>),
    }

    /// Sparkplug data types used here.
    pub mod datatype {
        pub const INT8: u32 = 1;
        pub const INT16: u32 = 2;
        pub const INT32: u32 = 3;
        pub const INT64: u32 = 4;
        pub const UINT8: u32 = 5;
        pub const UINT16: u32 = 6;
        pub const UINT32: u32 = 7;
        pub const UINT64: u32 = 8;
        pub const FLOAT: u32 = 9;
        pub const DOUBLE: u32 = 10;
        pub const BOOLEAN: u32 = 11;
        pub const STRING: u32 = 12;
        pub const DATETIME: u32 = 13;
        pub const TEXT: u32 = 14;
    }
}

use proto::datatype as dt;

/// Sparkplug's topic namespace.
pub const NAMESPACE: &str = "spBv1.0";

/// The host application's STATE topic (Sparkplug 3.0).
pub fn state_topic(host_id: &str) -> String {
    format!("{NAMESPACE}/STATE/{host_id}")
}

/// Most missing `seq` values remembered per node.
const MAX_MISSING: usize = 255;

/// A Sparkplug message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NBirth,
    NDeath,
    DBirth,
    DDeath,
    NData,
    DData,
    /// NCMD, DCMD, STATE: not data for the ingest.
    Other,
}

/// A parsed Sparkplug topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic<'a> {
    pub group: &'a str,
    pub kind: Kind,
    pub edge: &'a str,
    pub device: Option<&'a str>,
}

/// Parses `spBv1.0/{group}/{type}/{edge}[/{device}]`.
pub fn parse_topic(topic: &str) -> Option<Topic<'_>> {
    let mut parts = topic.split('/');
    if parts.next()? != NAMESPACE {
        return None;
    }
    let group = parts.next()?;
    let kind = match parts.next()? {
        "NBIRTH" => Kind::NBirth,
        "NDEATH" => Kind::NDeath,
        "DBIRTH" => Kind::DBirth,
        "DDEATH" => Kind::DDeath,
        "NDATA" => Kind::NData,
        "DDATA" => Kind::DData,
        _ => Kind::Other,
    };
    let edge = parts.next()?;
    let device = parts.next();
    if parts.next().is_some() || group.is_empty() || edge.is_empty() {
        return None;
    }
    let device_kind = matches!(kind, Kind::DBirth | Kind::DDeath | Kind::DData);
    if device_kind != device.is_some() && kind != Kind::Other {
        return None;
    }
    Some(Topic {
        group,
        kind,
        edge,
        device,
    })
}

/// What an edge node's birth told us.
#[derive(Debug, Clone, Default)]
pub struct NodeSession {
    pub bd_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// alias → (name, datatype), for the node and all its devices.
    pub aliases: HashMap<u64, (String, u32)>,
    /// name → datatype per device (`None`: the node).
    pub datatypes: HashMap<(Option<String>, String), u32>,
    pub devices: HashSet<String>,
    /// `seq` values skipped by a gap, with the time after which they are lost.
    pub missing: Vec<(u64, DateTime<Utc>)>,
}

/// All sessions, by (group, edge).
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    nodes: HashMap<(String, String), NodeSession>,
}

/// A metric value after decoding.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Num(f64),
    UInt(u64),
    Int(i64),
    Bool(bool),
    Text(String),
}

impl Val {
    fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Num(f) => Some(*f),
            Val::UInt(u) => Some(*u as f64),
            Val::Int(i) => Some(*i as f64),
            Val::Bool(b) => Some(f64::from(u8::from(*b))),
            Val::Text(_) => None,
        }
    }
}

fn value_of(metric: &proto::Metric, datatype: u32) -> Option<Val> {
    use proto::Value as V;
    let v = metric.value.as_ref()?;
    Some(match (datatype, v) {
        (dt::INT8, V::IntValue(i)) => Val::Int(i64::from(*i as u8 as i8)),
        (dt::INT16, V::IntValue(i)) => Val::Int(i64::from(*i as u16 as i16)),
        (dt::INT32, V::IntValue(i)) => Val::Int(i64::from(*i as i32)),
        (dt::INT64, V::LongValue(l)) => Val::Int(*l as i64),
        (_, V::IntValue(i)) => Val::UInt(u64::from(*i)),
        (_, V::LongValue(l)) => Val::UInt(*l),
        (_, V::FloatValue(f)) => Val::Num(f64::from(*f)),
        (_, V::DoubleValue(d)) => Val::Num(*d),
        (_, V::BooleanValue(b)) => Val::Bool(*b),
        (_, V::StringValue(s)) => Val::Text(s.clone()),
        (_, V::BytesValue(_)) => return None,
    })
}

/// Whether a datatype holds a number (integers, floats, booleans); an unknown
/// datatype (0) is judged by its value.
fn numeric(datatype: u32, metric: &proto::Metric) -> bool {
    match datatype {
        dt::INT8..=dt::BOOLEAN => true,
        0 => matches!(
            metric.value,
            Some(
                proto::Value::IntValue(_)
                    | proto::Value::LongValue(_)
                    | proto::Value::FloatValue(_)
                    | proto::Value::DoubleValue(_)
                    | proto::Value::BooleanValue(_)
            )
        ),
        _ => false,
    }
}

fn counter_bits(datatype: u32) -> Option<u32> {
    match datatype {
        dt::INT16 | dt::UINT16 => Some(16),
        dt::INT32 | dt::UINT32 => Some(32),
        dt::INT64 | dt::UINT64 => Some(64),
        _ => None,
    }
}

/// Encodes the NCMD that asks a node to publish its births again.
pub fn rebirth_request() -> Vec<u8> {
    proto::Payload {
        timestamp: u64::try_from(Utc::now().timestamp_millis()).ok(),
        metrics: vec![proto::Metric {
            name: Some("Node Control/Rebirth".into()),
            datatype: Some(dt::BOOLEAN),
            value: Some(proto::Value::BooleanValue(true)),
            ..Default::default()
        }],
        seq: None,
        uuid: None,
        body: None,
    }
    .encode_to_vec()
}

/// What a message's `seq` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqCheck {
    InOrder,
    /// The last `seq` again: the same message.
    Repeat,
    /// A `seq` a gap had skipped: a reordered message.
    Late,
    Gap {
        expected: u64,
    },
}

/// Checks and records a message's `seq` on its node's session.
fn check_seq(
    session: &mut NodeSession,
    seq: u64,
    now: DateTime<Utc>,
    timeout: chrono::Duration,
) -> SeqCheck {
    if session.last_seq == Some(seq) {
        return SeqCheck::Repeat;
    }
    if let Some(i) = session.missing.iter().position(|(s, _)| *s == seq) {
        session.missing.remove(i);
        return SeqCheck::Late;
    }
    let check = match session.last_seq {
        Some(last) if seq != (last + 1) % 256 => {
            let expected = (last + 1) % 256;
            let mut s = expected;
            while s != seq % 256 && session.missing.len() < MAX_MISSING {
                session.missing.push((s, now + timeout));
                s = (s + 1) % 256;
            }
            SeqCheck::Gap { expected }
        }
        _ => SeqCheck::InOrder,
    };
    session.last_seq = Some(seq);
    check
}

impl Sessions {
    /// Nodes with a missing `seq` older than its deadline: each is asked once to
    /// rebirth (the missing messages are forgotten).
    pub fn due_rebirths(&mut self, now: DateTime<Utc>) -> Vec<(String, String)> {
        let mut due = Vec::new();
        for (key, session) in &mut self.nodes {
            if session.missing.iter().any(|(_, deadline)| *deadline <= now) {
                session.missing.clear();
                due.push(key.clone());
            }
        }
        due.sort();
        due
    }

    /// Decodes one Sparkplug message, updating the sessions.
    pub fn decode(
        &mut self,
        mapping: &SparkplugMapping,
        topic: &Topic<'_>,
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Decoded {
        if topic.kind == Kind::Other {
            return Decoded::default();
        }
        let payload = match proto::Payload::decode(payload) {
            Ok(p) => p,
            Err(e) => return Decoded::rejected(format!("malformed Sparkplug B payload: {e}")),
        };
        let key = (topic.group.to_string(), topic.edge.to_string());
        let at = payload
            .timestamp
            .and_then(|t| i64::try_from(t).ok())
            .and_then(from_millis)
            .unwrap_or(now);
        let mut decoded = Decoded::default();
        match topic.kind {
            Kind::NBirth => {
                let session = NodeSession {
                    bd_seq: bd_seq_of(&payload),
                    last_seq: payload.seq,
                    ..Default::default()
                };
                self.nodes.insert(key.clone(), session);
            }
            Kind::NDeath => return self.node_death(mapping, topic, &payload, &key, now),
            _ => {
                let Some(session) = self.nodes.get_mut(&key) else {
                    decoded.rejections.push(format!(
                        "{:?} from edge node {} before its NBIRTH: rebirth requested",
                        topic.kind, topic.edge
                    ));
                    decoded.rebirth = Some(key);
                    return decoded;
                };
                if let Some(seq) = payload.seq {
                    if sequence(session, mapping, topic, seq, now, &mut decoded) == Seq::Drop {
                        return decoded;
                    }
                }
            }
        }
        let Some(session) = self.nodes.get_mut(&key) else {
            return decoded;
        };
        let device = topic.device.map(str::to_string);
        match topic.kind {
            Kind::DBirth => {
                if let Some(d) = &device {
                    session.devices.insert(d.clone());
                }
            }
            Kind::DDeath => {
                if let Some(d) = &device {
                    session.devices.remove(d);
                }
                decoded.machines.push(MachineObservations {
                    machine_id: mapping.machine_for(topic.group, topic.edge, topic.device),
                    observations: vec![Observation::SignalLost { at }],
                });
                return decoded;
            }
            _ => {}
        }
        let birth = matches!(topic.kind, Kind::NBirth | Kind::DBirth);
        let mut reading = Reading::default();
        for metric in &payload.metrics {
            let Some((name, datatype)) =
                resolve(session, device.as_ref(), birth, metric, &key, &mut decoded)
            else {
                continue;
            };
            if metric.is_null == Some(true) {
                continue;
            }
            reading.read(mapping, &name, datatype, metric, at, &mut decoded);
        }
        let observations = reading.observations(mapping.counter_mode, at, birth);
        if !observations.is_empty() {
            decoded.machines.push(MachineObservations {
                machine_id: mapping.machine_for(topic.group, topic.edge, topic.device),
                observations,
            });
        }
        decoded
    }

    /// An NDEATH: the node's machines (and its devices') lose their signal, unless
    /// its `bdSeq` says it is an old session's will.
    fn node_death(
        &mut self,
        mapping: &SparkplugMapping,
        topic: &Topic<'_>,
        payload: &proto::Payload,
        key: &(String, String),
        now: DateTime<Utc>,
    ) -> Decoded {
        let session = self.nodes.get(key);
        if let (Some(current), Some(dead)) = (session.and_then(|s| s.bd_seq), bd_seq_of(payload)) {
            if current != dead {
                return Decoded::rejected(format!(
                    "stale NDEATH: bdSeq {dead}, but the current birth has bdSeq {current}"
                ));
            }
        }
        let devices: Vec<String> = session
            .map(|s| s.devices.iter().cloned().collect())
            .unwrap_or_default();
        self.nodes.remove(key);
        // The will carries no meaningful time: the death is known now.
        let at = now;
        let mut decoded = Decoded::default();
        let mut push = |machine_id: String| {
            decoded.machines.push(MachineObservations {
                machine_id,
                observations: vec![Observation::SignalLost { at }],
            })
        };
        push(mapping.machine_for(topic.group, topic.edge, None));
        for d in devices {
            push(mapping.machine_for(topic.group, topic.edge, Some(&d)));
        }
        decoded
    }
}

/// The `bdSeq` metric of a birth or death.
fn bd_seq_of(payload: &proto::Payload) -> Option<u64> {
    payload
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("bdSeq"))
        .and_then(|m| match m.value {
            Some(proto::Value::LongValue(v)) => Some(v),
            Some(proto::Value::IntValue(v)) => Some(u64::from(v)),
            _ => None,
        })
}

/// Whether a message goes on after its `seq` was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seq {
    Go,
    Drop,
}

/// Checks a message's `seq`: notices for a gap, a reordered or a repeated message
/// (dropped), and a rebirth request once a missing one is overdue.
fn sequence(
    session: &mut NodeSession,
    mapping: &SparkplugMapping,
    topic: &Topic<'_>,
    seq: u64,
    now: DateTime<Utc>,
    decoded: &mut Decoded,
) -> Seq {
    let node = format!("{}/{}", topic.group, topic.edge);
    let timeout = chrono::Duration::milliseconds(
        i64::try_from(mapping.reorder_timeout_ms).unwrap_or(i64::MAX / 4),
    );
    match check_seq(session, seq, now, timeout) {
        SeqCheck::InOrder => {}
        SeqCheck::Repeat => {
            decoded.notices.push(format!(
                "Sparkplug seq {seq} on {node} repeats the last message: dropped"
            ));
            return Seq::Drop;
        }
        SeqCheck::Late => decoded.notices.push(format!(
            "Sparkplug seq {seq} on {node} arrived out of order: processed"
        )),
        SeqCheck::Gap { expected } => decoded.notices.push(format!(
            "Sparkplug seq gap on {node}: expected {expected}, got {seq}"
        )),
    }
    if session.missing.iter().any(|(_, deadline)| *deadline <= now) {
        let lost: Vec<String> = session.missing.iter().map(|(s, _)| s.to_string()).collect();
        session.missing.clear();
        decoded.notices.push(format!(
            "Sparkplug seq {} on {node} never arrived: rebirth requested",
            lost.join(",")
        ));
        decoded.rebirth = Some((topic.group.to_string(), topic.edge.to_string()));
    }
    Seq::Go
}

/// A metric's name and datatype: from the metric, or by its alias from the birth
/// (a birth records both). `None` (with a rejection) when neither tells.
fn resolve(
    session: &mut NodeSession,
    device: Option<&String>,
    birth: bool,
    metric: &proto::Metric,
    key: &(String, String),
    decoded: &mut Decoded,
) -> Option<(String, u32)> {
    match (&metric.name, metric.alias) {
        (Some(name), alias) => {
            let slot = (device.cloned(), name.clone());
            let datatype = metric
                .datatype
                .or_else(|| session.datatypes.get(&slot).copied())
                .unwrap_or(0);
            if birth {
                if let Some(alias) = alias {
                    session.aliases.insert(alias, (name.clone(), datatype));
                }
                session.datatypes.insert(slot, datatype);
            }
            Some((name.clone(), datatype))
        }
        (None, Some(alias)) => match session.aliases.get(&alias) {
            Some((name, datatype)) => Some((name.clone(), metric.datatype.unwrap_or(*datatype))),
            None => {
                decoded.rejections.push(format!(
                    "metric alias {alias} was not in any birth: rebirth requested"
                ));
                decoded.rebirth = Some(key.clone());
                None
            }
        },
        (None, None) => {
            decoded
                .rejections
                .push("a metric has neither name nor alias".into());
            None
        }
    }
}

/// What the metrics of one message say about its machine.
#[derive(Debug, Default)]
struct Reading {
    state: Option<(MachineStatus, bool, DateTime<Utc>)>,
    reason: Option<String>,
    planned: Option<bool>,
    counts: Vec<CountMetric>,
    samples: Vec<Sample>,
}

impl Reading {
    /// Reads one metric by its meaning (`at`: the payload's time).
    fn read(
        &mut self,
        mapping: &SparkplugMapping,
        name: &str,
        datatype: u32,
        metric: &proto::Metric,
        at: DateTime<Utc>,
        decoded: &mut Decoded,
    ) {
        let meaning = mapping.meaning(name);
        if meaning == MetricMeaning::Named(NamedMeaning::Ignore) {
            return;
        }
        if matches!(meaning, MetricMeaning::Sensor { .. })
            && !mapping.is_listed(name)
            && !numeric(datatype, metric)
        {
            metrics::counter!("shopfloor_ingest_sparkplug_ignored_metrics_total").increment(1);
            return;
        }
        let Some(value) = value_of(metric, datatype) else {
            decoded
                .rejections
                .push(format!("metric {name} has no usable value"));
            return;
        };
        let historical = metric.is_historical == Some(true);
        let metric_at = metric
            .timestamp
            .and_then(|t| i64::try_from(t).ok())
            .and_then(from_millis)
            .unwrap_or(at);
        match meaning {
            MetricMeaning::Named(NamedMeaning::State) => {
                let parsed = match &value {
                    Val::Text(s) => parse_state(s),
                    other => other
                        .as_f64()
                        .and_then(|f| mapping.state_values.get(&format!("{}", f as i64)).copied()),
                };
                match parsed {
                    Some(s) => self.state = Some((s, historical, metric_at)),
                    None => decoded
                        .rejections
                        .push(format!("metric {name}: unknown state {value:?}")),
                }
            }
            MetricMeaning::Named(NamedMeaning::Reason) => {
                if let Val::Text(s) = value {
                    self.reason = Some(s).filter(|s| !s.trim().is_empty());
                }
            }
            MetricMeaning::Named(NamedMeaning::Planned) => {
                if let Val::Bool(b) = value {
                    self.planned = Some(b);
                }
            }
            MetricMeaning::Named(n @ (NamedMeaning::GoodCount | NamedMeaning::ScrapCount)) => {
                let v = match value {
                    Val::UInt(u) => Some(u),
                    Val::Int(i) => u64::try_from(i).ok(),
                    Val::Num(f) if f >= 0.0 && f.fract() == 0.0 => Some(f as u64),
                    _ => None,
                };
                let Some(v) = v else {
                    decoded
                        .rejections
                        .push(format!("metric {name}: impossible count {value:?}"));
                    return;
                };
                self.counts.push(CountMetric {
                    good: n == NamedMeaning::GoodCount,
                    value: v,
                    bits: counter_bits(datatype),
                    historical,
                    at: metric_at,
                });
            }
            MetricMeaning::Named(NamedMeaning::Ignore) => {}
            MetricMeaning::Sensor { sensor } => match value.as_f64() {
                Some(v) => self.samples.push(Sample {
                    sensor,
                    value: v,
                    at: metric_at,
                    historical,
                }),
                None => decoded
                    .rejections
                    .push(format!("metric {name}: {value:?} is not a number")),
            },
        }
    }

    /// The observations: the state (a birth's carries the birth time), the counts,
    /// the samples.
    fn observations(self, mode: CounterMode, at: DateTime<Utc>, birth: bool) -> Vec<Observation> {
        let mut observations = Vec::new();
        if let Some((state, historical, state_at)) = self.state {
            observations.push(Observation::State {
                report: StateReport {
                    state,
                    reason: self.reason,
                    planned: self.planned,
                    at: state_at,
                    birth_at: birth.then_some(at),
                },
                historical,
            });
        }
        observations.extend(count_observations(mode, &self.counts));
        if !self.samples.is_empty() {
            observations.push(Observation::Telemetry(self.samples));
        }
        observations
    }
}

/// One good or scrap metric of a message.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CountMetric {
    good: bool,
    value: u64,
    bits: Option<u32>,
    historical: bool,
    at: DateTime<Utc>,
}

/// The counts of a message: one per (timestamp, historical), oldest first, each
/// counter with its own width. Several counts are told apart by a tag (their time).
fn count_observations(mode: CounterMode, metrics: &[CountMetric]) -> Vec<Observation> {
    let wrap = |v: u64| match mode {
        CounterMode::Cumulative => Counter::Total(v),
        CounterMode::Delta => Counter::Delta(v),
    };
    let mut groups: Vec<(DateTime<Utc>, bool)> =
        metrics.iter().map(|m| (m.at, m.historical)).collect();
    groups.sort();
    groups.dedup();
    let several = groups.len() > 1;
    groups
        .iter()
        .map(|&(at, historical)| {
            let mut report = CountReport {
                good: None,
                scrap: None,
                good_bits: None,
                scrap_bits: None,
                at,
                order_id: None,
                scrap_reason: None,
                tag: several.then(|| {
                    format!(
                        "{}{}",
                        at.timestamp_millis(),
                        if historical { "h" } else { "" }
                    )
                }),
            };
            for m in metrics
                .iter()
                .filter(|m| m.at == at && m.historical == historical)
            {
                if m.good {
                    report.good = Some(wrap(m.value));
                    report.good_bits = m.bits;
                } else {
                    report.scrap = Some(wrap(m.value));
                    report.scrap_bits = m.bits;
                }
            }
            Observation::Count { report, historical }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn topics_are_parsed() {
        let t = parse_topic("spBv1.0/g/DDATA/e/d").expect("topic");
        assert_eq!(
            (t.group, t.kind, t.edge, t.device),
            ("g", Kind::DData, "e", Some("d"))
        );
        assert!(
            parse_topic("spBv1.0/g/NDATA/e/d").is_none(),
            "node messages have no device"
        );
        assert!(parse_topic("spBv1.0/g/DDATA/e").is_none());
        assert!(parse_topic("spAv1.0/g/NDATA/e").is_none());
    }

    #[test]
    fn signed_values_are_decoded_by_datatype() {
        let m = proto::Metric {
            value: Some(proto::Value::IntValue((-5i32) as u32)),
            ..Default::default()
        };
        assert_eq!(value_of(&m, dt::INT32), Some(Val::Int(-5)));
        assert_eq!(value_of(&m, dt::INT8), Some(Val::Int(-5)));
    }

    #[test]
    fn seq_repeats_gaps_and_late_arrivals_are_told_apart() {
        let now = Utc::now();
        let timeout = chrono::Duration::seconds(2);
        let mut s = NodeSession {
            last_seq: Some(254),
            ..Default::default()
        };
        assert_eq!(check_seq(&mut s, 255, now, timeout), SeqCheck::InOrder);
        assert_eq!(check_seq(&mut s, 255, now, timeout), SeqCheck::Repeat);
        assert_eq!(
            check_seq(&mut s, 2, now, timeout),
            SeqCheck::Gap { expected: 0 },
            "the gap wraps at 256"
        );
        assert_eq!(s.missing.iter().map(|m| m.0).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(check_seq(&mut s, 0, now, timeout), SeqCheck::Late);
        assert_eq!(check_seq(&mut s, 3, now, timeout), SeqCheck::InOrder);
        let mut sessions = Sessions::default();
        sessions.nodes.insert(("g".into(), "e".into()), s);
        assert!(sessions
            .due_rebirths(now + chrono::Duration::seconds(1))
            .is_empty());
        assert_eq!(
            sessions.due_rebirths(now + timeout),
            [("g".to_string(), "e".to_string())]
        );
        assert!(sessions.due_rebirths(now + timeout * 2).is_empty(), "once");
    }

    #[test]
    fn counts_with_their_own_times_are_separate_and_tagged() {
        let t1 = Utc::now();
        let t2 = t1 + chrono::Duration::seconds(1);
        let m = |good, at, bits| CountMetric {
            good,
            value: 7,
            bits,
            historical: false,
            at,
        };
        let one = count_observations(
            CounterMode::Cumulative,
            &[m(true, t1, Some(64)), m(false, t1, Some(16))],
        );
        let Some(Observation::Count { report, .. }) = one.first() else {
            panic!("a count");
        };
        assert_eq!(
            (report.good_bits, report.scrap_bits, report.tag.as_deref()),
            (Some(64), Some(16), None)
        );
        let two = count_observations(
            CounterMode::Cumulative,
            &[m(false, t2, None), m(true, t1, None)],
        );
        let times: Vec<_> = two
            .iter()
            .filter_map(|o| match o {
                Observation::Count { report, .. } => Some((report.at, report.tag.is_some())),
                _ => None,
            })
            .collect();
        assert_eq!(times, [(t1, true), (t2, true)]);
    }

    proptest! {
        /// Decoding arbitrary bytes on any topic never panics.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), kind in 0..6usize) {
            let kinds = ["NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA"];
            let device = if kinds[kind].starts_with('D') { "/d" } else { "" };
            let topic = format!("spBv1.0/g/{}/e{device}", kinds[kind]);
            let t = parse_topic(&topic).expect("topic");
            let mut sessions = Sessions::default();
            let _ = sessions.decode(&SparkplugMapping::default(), &t, &bytes, Utc::now());
        }
    }
}
