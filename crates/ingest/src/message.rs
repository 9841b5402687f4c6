//! The vocabulary between decoding and filtering: an incoming MQTT message, its
//! deterministic id, and the observations decoders read from it.

use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use shopfloor_domain::machine::MachineStatus;

/// Raw payloads kept in the rejected-messages table are cut to this many bytes.
pub const MAX_STORED_PAYLOAD: usize = 4096;

/// One MQTT message as received.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub payload: bytes::Bytes,
    /// Wall-clock arrival time.
    pub received_at: DateTime<Utc>,
}

impl Incoming {
    pub fn new(topic: impl Into<String>, payload: impl Into<bytes::Bytes>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            received_at: Utc::now(),
        }
    }

    /// The message's deterministic id: SHA-256 of topic and payload (hex, 32 chars).
    /// A QoS 1 redelivery has the same id, so every command derived from it is the
    /// same command, and the event store appends nothing the second time.
    pub fn message_id(&self) -> String {
        message_id(&self.topic, &self.payload)
    }
}

/// See [`Incoming::message_id`].
pub fn message_id(topic: &str, payload: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(topic.as_bytes());
    h.update([0u8]);
    h.update(payload);
    hex::encode(&h.finalize()[..16])
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
    /// Overrides the machine's `counter_bits` (the payload says how wide its counter is).
    pub bits: Option<u32>,
    pub at: DateTime<Utc>,
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
