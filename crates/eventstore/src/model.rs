//! The vocabulary of the store: streams, expected versions, events and metadata.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A stream: its type (the aggregate type, e.g. `machine`) and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamRef {
    pub stream_type: String,
    pub stream_id: String,
}

impl StreamRef {
    pub fn new(stream_type: impl Into<String>, stream_id: impl Into<String>) -> Self {
        Self {
            stream_type: stream_type.into(),
            stream_id: stream_id.into(),
        }
    }
}

impl fmt::Display for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stream_type, self.stream_id)
    }
}

/// The version a writer expects the stream to be at before its append.
///
/// Versions count events: a stream with three events is at version 3, and a
/// stream that does not exist is at version 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be exactly at this version (0 is the same as `NoStream`).
    Exact(u64),
}

impl ExpectedVersion {
    fn admits(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }

    pub(crate) fn check(self, stream: &StreamRef, actual: u64) -> Result<(), crate::StoreError> {
        if self.admits(actual) {
            Ok(())
        } else {
            Err(crate::StoreError::Conflict {
                stream: stream.clone(),
                expected: self,
                actual,
            })
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A request to the HTTP API.
    Api,
    /// A message from the MQTT ingest.
    Mqtt,
    /// A process manager reacting to other events.
    Process,
    /// Shopfloor itself (start-up, scheduled jobs, tests).
    #[default]
    System,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Mqtt => "mqtt",
            Source::Process => "process",
            Source::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "api" => Source::Api,
            "mqtt" => Source::Mqtt,
            "process" => Source::Process,
            "system" => Source::System,
            _ => return None,
        })
    }
}

/// Who caused an event, why, from where, and when it happened on the floor.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The authenticated principal (token name) or component that issued the command.
    pub actor: Option<String>,
    /// Ties together everything done on behalf of one outside request or message.
    pub correlation_id: Option<String>,
    /// The id of the event or command that directly caused this event.
    pub causation_id: Option<String>,
    pub source: Source,
    /// When it happened on the floor (may be long before it was recorded).
    pub occurred_at: Option<DateTime<Utc>>,
    /// Anything else (request id, command id, ...), kept verbatim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id; appending the same id again is a no-op (idempotency).
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

/// One stream's share of an append: its events and the version it must be at.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub stream: StreamRef,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// The outcome of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's version after the append (the version of its last event).
    pub stream_version: u64,
    /// Global position of the first and last event appended.
    pub first_position: i64,
    pub last_position: i64,
    /// True when these event ids had been appended before and nothing was written;
    /// the positions and version are those of the original append.
    pub duplicate: bool,
}

/// An event as it stands in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: i64,
    pub stream_type: String,
    pub stream_id: String,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    /// Schema version after upcasting (the current one for its type).
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    /// Commit time; non-decreasing with position.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    pub fn stream(&self) -> StreamRef {
        StreamRef::new(&self.stream_type, &self.stream_id)
    }
}

/// Which way to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// Which events a filtered read lets through: every event of `stream_types`, and events
/// of `event_types` whatever their stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub stream_types: Vec<String>,
    pub event_types: Vec<String>,
}

impl EventFilter {
    pub fn new(stream_types: &[&str], event_types: &[&str]) -> Self {
        Self {
            stream_types: stream_types.iter().map(|s| s.to_string()).collect(),
            event_types: event_types.iter().map(|s| s.to_string()).collect(),
        }
    }
}
