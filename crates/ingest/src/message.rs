//! The vocabulary between decoding and filtering: an incoming MQTT message, its
//! identity, and the observations decoders read from it.
//!
//! # Identity (ADR 0034)
//! Content is not identity: two identical publishes are two reports. A message's id
//! is given when it is received ([`plan_identities`], pure; the MQTT loop loads and
//! stores what it needs): an explicit `msg_id` in a JSON payload names the message
//! (`SHA-256(topic, msg_id)`), so the publisher's own retries are recognised across
//! reconnects; otherwise a QoS 1 packet gets a fresh id, remembered under its packet
//! id on the ingest's session, and a packet the broker redelivers (the DUP flag,
//! the same packet id) gets the id its first delivery got. Every command id is
//! derived from the message id, so a redelivery appends nothing.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use shopfloor_domain::machine::MachineStatus;
use shopfloor_domain::values::{OrderId, ReasonCode};

/// Raw payloads kept in the rejected-messages table are cut to this many bytes.
pub const MAX_STORED_PAYLOAD: usize = 4096;
/// Rejection reasons are cut to this many bytes (a reason names a value, it never
/// carries it whole).
pub const MAX_REASON: usize = 300;
/// Values quoted in a reason are cut to this many characters.
pub const MAX_QUOTED_VALUE: usize = 40;

/// One MQTT message as received.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub payload: bytes::Bytes,
    /// Wall-clock arrival time.
    pub received_at: DateTime<Utc>,
    /// The message's identity (see the module docs): the same for a redelivery of
    /// the same packet, distinct for every publish.
    pub id: String,
}

impl Incoming {
    /// A message received now: its id is its explicit `msg_id`, or a fresh one.
    pub fn new(topic: impl Into<String>, payload: impl Into<bytes::Bytes>) -> Self {
        Self::at(topic, payload, Utc::now())
    }

    /// A message received at `received_at` (see [`Incoming::new`]).
    pub fn at(
        topic: impl Into<String>,
        payload: impl Into<bytes::Bytes>,
        received_at: DateTime<Utc>,
    ) -> Self {
        let topic = topic.into();
        let payload = payload.into();
        let id = crate::json::explicit_id(&payload)
            .map(|m| explicit_message_id(&topic, &m))
            .unwrap_or_else(fresh_message_id);
        Self {
            topic,
            payload,
            received_at,
            id,
        }
    }

    /// The message's id (every command id of the message is derived from it).
    pub fn message_id(&self) -> String {
        self.id.clone()
    }
}

/// A stable hex id (32 chars) of a topic and some bytes.
pub fn message_id(topic: &str, payload: &[u8]) -> String {
    hex::encode(&content_hash(topic, payload)[..16])
}

/// SHA-256 of topic and payload: never an identity, only a check that a DUP packet
/// is the one first delivered under its packet id.
pub fn content_hash(topic: &str, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(topic.as_bytes());
    h.update([0u8]);
    h.update(payload);
    h.finalize().into()
}

/// The id of a message that names itself with `msg_id` (scoped by its topic).
pub fn explicit_message_id(topic: &str, msg_id: &str) -> String {
    message_id(&format!("msg_id\u{1f}{topic}"), msg_id.as_bytes())
}

/// A new, unique message id.
pub fn fresh_message_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// One delivery from the broker, as the identity step sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub payload: bytes::Bytes,
    /// QoS 1 or 2 (a packet id that the broker may redeliver).
    pub acknowledged: bool,
    pub pkid: u16,
    /// The MQTT DUP flag: the broker says it may have sent this packet before.
    pub dup: bool,
    /// Whether its effects depend on its id. JSON telemetry does not: a sample is
    /// stored once per (machine, sensor, time) whatever the message, so its packet
    /// id is not remembered (one row less per message on the busiest topic).
    pub keyed: bool,
}

/// What the store remembers under an identity key.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownId {
    pub message_id: String,
    pub content: [u8; 32],
    pub received_at: DateTime<Utc>,
}

/// The identity a delivery got.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub message_id: String,
    /// `Some(reason)` when the delivery is known to repeat an earlier message
    /// (listed as a notice: its effects are applied once).
    pub repeat: Option<String>,
}

/// The identity step's plan for a batch: the identity of each delivery, and what
/// to remember (key → id), in delivery order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdentityPlan {
    pub identities: Vec<Identity>,
    pub remember: Vec<(String, KnownId)>,
}

/// The key under which a delivery's identity is remembered, and its explicit
/// `msg_id` if it has one.
pub fn identity_key(d: &Delivery) -> (Option<String>, Option<String>) {
    if let Some(m) = crate::json::explicit_id(&d.payload) {
        return (Some(format!("msg:{}\u{1f}{m}", d.topic)), Some(m));
    }
    if d.acknowledged && d.keyed {
        return (Some(format!("pkid:{}", d.pkid)), None);
    }
    (None, None)
}

/// The keys whose stored identities the plan needs: explicit ids, and the packet
/// ids of DUP deliveries.
pub fn keys_to_load(deliveries: &[Delivery]) -> Vec<String> {
    let mut keys: Vec<String> = deliveries
        .iter()
        .filter_map(|d| match identity_key(d) {
            (Some(k), Some(_)) => Some(k),
            (Some(k), None) if d.dup => Some(k),
            _ => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Gives each delivery its identity (pure). `known` holds what the store
/// remembers for [`keys_to_load`]; `fresh` makes new ids.
///
/// - explicit `msg_id`: the id is derived from it; seen before → a repeat;
/// - QoS 1 without DUP: a new message, a fresh id, remembered under its packet id
///   (the broker reuses a packet id only after our PUBACK);
/// - QoS 1 with DUP: the id remembered under its packet id, when the delivery is
///   the one remembered (same topic and payload: content never makes a message a
///   repeat, it only proves a reused packet id is another message); else new;
/// - QoS 0: never redelivered, a fresh id.
pub fn plan_identities(
    deliveries: &[Delivery],
    known: &HashMap<String, KnownId>,
    now: DateTime<Utc>,
    mut fresh: impl FnMut() -> String,
) -> IdentityPlan {
    let mut seen: HashMap<String, KnownId> = HashMap::new();
    let mut plan = IdentityPlan::default();
    for d in deliveries {
        let content = content_hash(&d.topic, &d.payload);
        let (key, explicit) = identity_key(d);
        let Some(key) = key else {
            plan.identities.push(Identity {
                message_id: fresh(),
                repeat: None,
            });
            continue;
        };
        let before = seen.get(&key).or_else(|| known.get(&key)).cloned();
        let (identity, remember) = match (explicit, before) {
            (Some(m), Some(b)) => (
                Identity {
                    message_id: b.message_id,
                    repeat: Some(format!(
                        "repeat of msg_id {}, first received at {}: applied once",
                        quote(&m),
                        b.received_at.to_rfc3339()
                    )),
                },
                None,
            ),
            (Some(m), None) => (
                Identity {
                    message_id: explicit_message_id(&d.topic, &m),
                    repeat: None,
                },
                Some(()),
            ),
            (None, Some(b)) if d.dup && b.content == content => (
                Identity {
                    message_id: b.message_id,
                    repeat: Some(format!(
                        "MQTT redelivery (DUP) of packet {}, first received at {}: applied once",
                        d.pkid,
                        b.received_at.to_rfc3339()
                    )),
                },
                None,
            ),
            (None, _) => (
                Identity {
                    message_id: fresh(),
                    repeat: None,
                },
                Some(()),
            ),
        };
        if remember.is_some() {
            let k = KnownId {
                message_id: identity.message_id.clone(),
                content,
                received_at: now,
            };
            seen.insert(key.clone(), k.clone());
            plan.remember.retain(|(old, _)| old != &key);
            plan.remember.push((key, k));
        }
        plan.identities.push(identity);
    }
    plan
}

/// A value quoted in a reason: at most [`MAX_QUOTED_VALUE`] characters, then `…`
/// and the full length.
pub fn quote(value: &str) -> String {
    let n = value.chars().count();
    if n <= MAX_QUOTED_VALUE {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX_QUOTED_VALUE).collect();
        format!("{head:?}… ({n} characters)")
    }
}

/// A reason bounded to [`MAX_REASON`] bytes (on a character boundary).
pub fn bounded_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_string();
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

/// The payload as stored with a rejection: UTF-8 text as is, anything else as
/// `hex:…`, cut to [`MAX_STORED_PAYLOAD`] bytes (on a character boundary).
pub fn bounded_payload(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) => {
            if text.len() <= MAX_STORED_PAYLOAD {
                text.to_string()
            } else {
                let mut end = MAX_STORED_PAYLOAD;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}…", &text[..end])
            }
        }
        Err(_) => {
            let n = payload.len().min(MAX_STORED_PAYLOAD / 2 - 4);
            let suffix = if n < payload.len() { "…" } else { "" };
            format!("hex:{}{suffix}", hex::encode(&payload[..n]))
        }
    }
}

/// A state as a machine reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateReport {
    pub state: MachineStatus,
    pub reason: Option<String>,
    pub planned: Option<bool>,
    pub at: DateTime<Utc>,
    /// Sparkplug: the report comes from a birth published at this time, so it is
    /// the machine's state then (a birth restores the state it reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_at: Option<DateTime<Utc>>,
}

impl StateReport {
    /// Same state, reason and planned flag (time aside).
    pub fn same_as(&self, other: &StateReport) -> bool {
        self.state == other.state && self.reason == other.reason && self.planned == other.planned
    }
}

/// A counter reading: either parts since the last message, or a running total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Counter {
    Delta(u64),
    Total(u64),
}

/// Parts counted by one message.
#[derive(Debug, Clone, PartialEq)]
pub struct CountReport {
    pub good: Option<Counter>,
    pub scrap: Option<Counter>,
    /// Override the machine's `counter_bits` (the payload says how wide each
    /// counter is; a Sparkplug datatype is per metric).
    pub good_bits: Option<u32>,
    pub scrap_bits: Option<u32>,
    pub at: DateTime<Utc>,
    /// Tells several counts of one message apart (Sparkplug metrics with their own
    /// timestamps): part of the command id.
    pub tag: Option<String>,
    /// The production order the parts were made for (JSON `order_id`), as for the
    /// HTTP `parts_produced` event.
    pub order_id: Option<OrderId>,
    /// Why the scrap was rejected (JSON `scrap_reason`, a code of the built-in scrap
    /// reasons, ADR 0050); dropped by the filter when the message counts no scrap.
    pub scrap_reason: Option<ReasonCode>,
}

/// One sensor sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub sensor: String,
    pub value: f64,
    pub at: DateTime<Utc>,
    /// Sparkplug `is_historical`: stored, never fed to the live detectors.
    pub historical: bool,
}

/// What one message says about one machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    State {
        report: StateReport,
        historical: bool,
    },
    Count {
        report: CountReport,
        historical: bool,
    },
    Telemetry(Vec<Sample>),
    /// The machine's edge node or device died (Sparkplug NDEATH/DDEATH).
    SignalLost {
        at: DateTime<Utc>,
    },
}

/// Observations of one machine from one message.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineObservations {
    pub machine_id: String,
    pub observations: Vec<Observation>,
}

/// What a decoder made of a message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub machines: Vec<MachineObservations>,
    /// The message (or part of it) is set aside for these reasons.
    pub rejections: Vec<String>,
    /// Processed, but worth a look (a Sparkplug sequence gap).
    pub notices: Vec<String>,
    /// Sparkplug: ask this node to publish its births again (NCMD rebirth).
    pub rebirth: Option<(String, String)>,
}

impl Decoded {
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self {
            rejections: vec![reason.into()],
            ..Default::default()
        }
    }

    pub fn one(machine_id: String, observation: Observation) -> Self {
        Self {
            machines: vec![MachineObservations {
                machine_id,
                observations: vec![observation],
            }],
            ..Default::default()
        }
    }
}

/// Milliseconds since the epoch to a time, if representable.
pub fn from_millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}
