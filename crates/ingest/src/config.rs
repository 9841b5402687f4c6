//! Configuration: how to reach the broker, and the mapping from topics and
//! Sparkplug metrics to machines and meanings, with per-machine noise settings.
//!
//! # The mapping file (JSON)
//! Every field is optional; see `docs/adr/0007-mqtt-ingest.md` for an example.
//! ```json
//! {
//!   "defaults": { "min_dwell_ms": 1000, "no_signal_timeout_s": 120, "counter_mode": "delta" },
//!   "machines": {
//!     "press-1": { "counter_mode": "cumulative", "counter_bits": 16,
//!                  "sensors": { "temperature_c": { "min": -40, "max": 250, "alarm_high": 90 } } }
//!   },
//!   "topics": { "plc-17": "press-1" },
//!   "sparkplug": {
//!     "groups": ["plant-a"],
//!     "devices": [ { "group": "plant-a", "edge": "line-1", "device": "press", "machine_id": "press-1" } ],
//!     "metrics": { "Status/State": "state", "Counters/Good": "good_count", "Temp": { "sensor": "temperature_c" } },
//!     "state_values": { "1": "running", "2": "idle", "3": "down" }
//!   }
//! }
//! ```
//! A machine's settings are `defaults` deep-merged with its own entry in `machines`
//! (so an entry only names what differs).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopfloor_domain::machine::MachineStatus;
use url::Url;

use crate::error::IngestError;

/// How a `count` message's (or a Sparkplug counter's) numbers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CounterMode {
    /// Each message counts the parts made since the previous one (the CONTRACT's meaning).
    #[default]
    Delta,
    /// Each message carries the PLC's running total; the ingest turns it into deltas,
    /// handling resets to zero and rollover at `counter_bits`.
    Cumulative,
}

/// Physical range and alarm limits of one sensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SensorSettings {
    /// Values below are physically impossible: the sample is rejected.
    pub min: Option<f64>,
    /// Values above are physically impossible: the sample is rejected.
    pub max: Option<f64>,
    /// A limit the sensor must stay under: crossing it, or trending to cross it within
    /// the predictive horizon, raises a predictive maintenance task.
    pub alarm_high: Option<f64>,
    /// As `alarm_high`, from below.
    pub alarm_low: Option<f64>,
}

/// The predictive-maintenance detector's settings (ADR 0008).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PredictiveSettings {
    pub enabled: bool,
    /// Samples learned (Welford) before any judgement.
    pub warmup_samples: u64,
    /// Weight of a new sample in the baseline's EWMA mean and variance.
    pub alpha: f64,
    /// CUSUM slack, in standard deviations.
    pub cusum_k: f64,
    /// CUSUM decision threshold, in standard deviations.
    pub cusum_h: f64,
    /// Weight of a new sample in the trend (Holt) smoother.
    pub trend_alpha: f64,
    pub trend_beta: f64,
    /// A trend that would cross an alarm limit within this horizon raises a task.
    pub horizon_s: u64,
    /// After a task, no other for the same sensor for this long (floor time).
    pub cooldown_s: u64,
    /// How far after the alert the task is scheduled (sooner when a limit is near).
    pub lead_time_s: u64,
}

impl Default for PredictiveSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            warmup_samples: 200,
            alpha: 0.001,
            cusum_k: 0.5,
            cusum_h: 12.0,
            trend_alpha: 0.05,
            trend_beta: 0.01,
            horizon_s: 24 * 3600,
            cooldown_s: 24 * 3600,
            lead_time_s: 24 * 3600,
        }
    }
}

/// The settings of one machine (defaults merged with its entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MachineSettings {
    /// A new state must last this long (floor time, or wall time while nothing else
    /// arrives) before it is recorded; shorter excursions are flapping and dropped.
    pub min_dwell_ms: u64,
    /// Silent for longer than this (wall time): the machine goes `down`, `no signal`.
    /// 0 turns the watch off.
    pub no_signal_timeout_s: u64,
    /// Timestamps further ahead of the ingest's clock are refused.
    pub future_tolerance_s: u64,
    pub counter_mode: CounterMode,
    /// Width of the PLC counter for rollover: 16, 32 or 64.
    pub counter_bits: u32,
    /// A single message may not count more parts than this (a glitch, not production).
    pub max_parts_per_message: u64,
    /// Range applied to sensors without their own entry: finite and within ±this.
    pub max_abs_sensor_value: f64,
    pub sensors: BTreeMap<String, SensorSettings>,
    pub predictive: PredictiveSettings,
}

impl Default for MachineSettings {
    fn default() -> Self {
        Self {
            min_dwell_ms: 1000,
            no_signal_timeout_s: 300,
            future_tolerance_s: 300,
            counter_mode: CounterMode::Delta,
            counter_bits: 32,
            max_parts_per_message: 100_000,
            max_abs_sensor_value: 1e9,
            sensors: BTreeMap::new(),
            predictive: PredictiveSettings::default(),
        }
    }
}

impl MachineSettings {
    pub fn min_dwell(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(i64::try_from(self.min_dwell_ms).unwrap_or(i64::MAX / 2))
    }

    pub fn future_tolerance(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.future_tolerance_s).unwrap_or(i64::MAX / 2))
    }

    /// The largest value the counter can hold before it rolls over.
    pub fn counter_max(&self) -> u64 {
        match self.counter_bits {
            16 => u64::from(u16::MAX),
            32 => u64::from(u32::MAX),
            _ => u64::MAX,
        }
    }

    /// `Err(reason)` when `value` is physically impossible for `sensor`.
    pub fn check_sensor(&self, sensor: &str, value: f64) -> Result<(), String> {
        // A value in a reason: short, whatever its magnitude (1e300, not 301 digits).
        let value_text = |v: f64| {
            if v != 0.0 && (v.abs() >= 1e9 || v.abs() < 1e-6) {
                format!("{v:e}")
            } else {
                format!("{v}")
            }
        };
        let (value_shown, limit_shown) = (value_text(value), value_text(self.max_abs_sensor_value));
        if !value.is_finite() {
            return Err(format!("{sensor} is not a finite number"));
        }
        match self.sensors.get(sensor) {
            Some(s) => {
                if let Some(min) = s.min {
                    if value < min {
                        return Err(format!(
                            "{sensor} = {value_shown} is below its minimum {}",
                            value_text(min)
                        ));
                    }
                }
                if let Some(max) = s.max {
                    if value > max {
                        return Err(format!(
                            "{sensor} = {value_shown} is above its maximum {}",
                            value_text(max)
                        ));
                    }
                }
                Ok(())
            }
            None if value.abs() > self.max_abs_sensor_value => Err(format!(
                "{sensor} = {value_shown} is out of range (|v| <= {limit_shown})"
            )),
            None => Ok(()),
        }
    }
}

/// What a Sparkplug metric means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricMeaning {
    Named(NamedMeaning),
    Sensor { sensor: String },
}

/// The fixed meanings a metric can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedMeaning {
    /// The machine state (a string `running`/`idle`/`down`, or a code in `state_values`).
    State,
    /// The reason of the current state (string).
    Reason,
    /// Whether the current stop is planned (boolean).
    Planned,
    /// The good-parts counter.
    GoodCount,
    /// The scrap counter.
    ScrapCount,
    /// Not ingested.
    Ignore,
}

/// Which Sparkplug device (or node, with no `device`) is which machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceMapping {
    /// The group; any group when absent.
    #[serde(default)]
    pub group: Option<String>,
    pub edge: String,
    /// The device; the edge node itself when absent.
    #[serde(default)]
    pub device: Option<String>,
    pub machine_id: String,
}

/// Sparkplug B settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SparkplugMapping {
    pub enabled: bool,
    /// Groups consumed besides the one named like the namespace (ADR 0007).
    pub groups: Vec<String>,
    pub devices: Vec<DeviceMapping>,
    /// Metric name → meaning. Unlisted metrics: `state`, `reason`, `planned`,
    /// `good`/`good_count`, `scrap`/`scrap_count` (any case, after the last `/`) have
    /// those meanings; other numeric metrics are sensors named after the metric.
    pub metrics: BTreeMap<String, MetricMeaning>,
    /// Numeric state codes → states (for PLCs that send a number).
    pub state_values: BTreeMap<String, MachineStatus>,
    /// Sparkplug counters are running totals by convention.
    pub counter_mode: CounterMode,
    /// The Sparkplug host id of the ingest (its `spBv1.0/STATE/{host_id}` message,
    /// which edge nodes configured with a primary host wait for). Default: the MQTT
    /// client id, `{namespace}-ingest`.
    pub host_id: Option<String>,
    /// How long a missing `seq` may be late (reordered) before the node is asked to
    /// publish its births again (Sparkplug 3.0's reorder timeout).
    pub reorder_timeout_ms: u64,
}

impl Default for SparkplugMapping {
    fn default() -> Self {
        Self {
            enabled: true,
            groups: Vec::new(),
            devices: Vec::new(),
            metrics: BTreeMap::new(),
            state_values: BTreeMap::new(),
            counter_mode: CounterMode::Cumulative,
            host_id: None,
            reorder_timeout_ms: 2000,
        }
    }
}

impl SparkplugMapping {
    /// The machine a Sparkplug node (device `None`) or device is.
    pub fn machine_for(&self, group: &str, edge: &str, device: Option<&str>) -> String {
        self.devices
            .iter()
            .find(|d| {
                d.group.as_deref().is_none_or(|g| g == group)
                    && d.edge == edge
                    && d.device.as_deref() == device
            })
            .map(|d| d.machine_id.clone())
            .unwrap_or_else(|| device.unwrap_or(edge).to_string())
    }

    /// Whether the mapping names this metric explicitly (an unlisted metric whose
    /// value is not numeric is ignored, not set aside).
    pub fn is_listed(&self, name: &str) -> bool {
        self.metrics.contains_key(name)
    }

    /// What a metric means.
    pub fn meaning(&self, name: &str) -> MetricMeaning {
        if let Some(m) = self.metrics.get(name) {
            return m.clone();
        }
        let leaf = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
        let named = match leaf.as_str() {
            "state" | "status" => NamedMeaning::State,
            "reason" => NamedMeaning::Reason,
            "planned" => NamedMeaning::Planned,
            "good" | "good_count" => NamedMeaning::GoodCount,
            "scrap" | "scrap_count" => NamedMeaning::ScrapCount,
            "bdseq" => NamedMeaning::Ignore,
            _ if name.starts_with("Node Control/") || name.starts_with("Properties/") => {
                NamedMeaning::Ignore
            }
            _ => {
                return MetricMeaning::Sensor {
                    sensor: name.to_string(),
                }
            }
        };
        MetricMeaning::Named(named)
    }
}

/// The whole mapping file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MappingFile {
    pub defaults: Value,
    pub machines: BTreeMap<String, Value>,
    /// Topic path id → machine id (`{ns}/machines/{topic id}/...`).
    pub topics: BTreeMap<String, String>,
    pub sparkplug: SparkplugMapping,
}

/// The mapping, resolved: per-machine settings ready to use.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    defaults: MachineSettings,
    machines: HashMap<String, MachineSettings>,
    topics: BTreeMap<String, String>,
    pub sparkplug: SparkplugMapping,
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

impl Mapping {
    /// Resolves a parsed mapping file.
    pub fn from_file(file: MappingFile) -> Result<Self, IngestError> {
        let mut base = serde_json::to_value(MachineSettings::default())
            .map_err(|e| IngestError::Config(e.to_string()))?;
        if !file.defaults.is_null() {
            merge(&mut base, &file.defaults);
        }
        let parse = |v: Value, what: &str| {
            serde_json::from_value::<MachineSettings>(v)
                .map_err(|e| IngestError::Config(format!("mapping {what}: {e}")))
        };
        let defaults = parse(base.clone(), "defaults")?;
        let mut machines = HashMap::new();
        for (id, patch) in file.machines {
            let mut v = base.clone();
            merge(&mut v, &patch);
            let settings = parse(v, &format!("machine {id}"))?;
            machines.insert(id, settings);
        }
        for s in std::iter::once(&defaults).chain(machines.values()) {
            if ![16, 32, 64].contains(&s.counter_bits) {
                return Err(IngestError::Config(format!(
                    "counter_bits must be 16, 32 or 64, not {}",
                    s.counter_bits
                )));
            }
        }
        Ok(Self {
            defaults,
            machines,
            topics: file.topics,
            sparkplug: file.sparkplug,
        })
    }

    /// Parses a mapping from JSON text.
    pub fn from_json(text: &str) -> Result<Self, IngestError> {
        let file: MappingFile =
            serde_json::from_str(text).map_err(|e| IngestError::Config(format!("mapping: {e}")))?;
        Self::from_file(file)
    }

    /// Reads a mapping file (JSON).
    pub fn load(path: &Path) -> Result<Self, IngestError> {
        let text = std::fs::read_to_string(path).map_err(|source| IngestError::MappingFile {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// The settings of a machine.
    pub fn settings(&self, machine_id: &str) -> &MachineSettings {
        self.machines.get(machine_id).unwrap_or(&self.defaults)
    }

    /// The machine id a topic path names.
    pub fn machine_for_topic<'a>(&'a self, topic_id: &'a str) -> &'a str {
        self.topics.get(topic_id).map_or(topic_id, String::as_str)
    }

    /// Every machine with its own settings.
    pub fn configured_machines(&self) -> impl Iterator<Item = &str> {
        self.machines.keys().map(String::as_str)
    }
}

/// Telemetry storage settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// Daily partitions created this many days ahead.
    pub partition_days_ahead: u32,
    /// Raw samples older than this are dropped (whole partitions).
    pub retention_days: u32,
    /// One-minute rollups older than this are deleted.
    pub rollup_retention_days: u32,
    /// Rejected messages older than this are deleted.
    pub rejected_retention_days: u32,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            partition_days_ahead: 3,
            retention_days: 30,
            rollup_retention_days: 400,
            rejected_retention_days: 30,
        }
    }
}

/// Everything `run_ingest` needs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `mqtt://[user:pass@]host:port` (or `tcp://`); `mqtts://` (or `ssl://`) for TLS,
    /// trusting the system's roots or the PEM file named by `?ca=`.
    pub mqtt_url: Url,
    /// `SHOPFLOOR_NAMESPACE`: the topic root and client-id prefix.
    pub namespace: String,
    /// The persistent session's client id; `{namespace}-ingest` by default. Two
    /// instances must not share one.
    pub client_id: Option<String>,
    pub mapping: Mapping,
    /// A batch is written once it holds this many messages...
    pub batch_max: usize,
    /// ...or once its first message has waited this long.
    pub batch_linger: Duration,
    /// How often timers (debounce, no signal) are checked.
    pub tick: Duration,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
    pub telemetry: TelemetrySettings,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
}

impl IngestConfig {
    pub fn new(mqtt_url: Url, namespace: impl Into<String>) -> Self {
        Self {
            mqtt_url,
            namespace: namespace.into(),
            client_id: None,
            mapping: Mapping::default(),
            batch_max: 2000,
            batch_linger: Duration::from_millis(5),
            tick: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            telemetry: TelemetrySettings::default(),
            keep_alive: Duration::from_secs(30),
        }
    }

    pub fn with_mapping(mut self, mapping: Mapping) -> Self {
        self.mapping = mapping;
        self
    }

    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("{}-ingest", self.namespace))
    }

    /// The broker's host and port from the URL.
    pub fn broker(&self) -> Result<(String, u16), IngestError> {
        broker_of(&self.mqtt_url)
    }
}

/// Host and port of an `mqtt://` or `tcp://` URL (port 1883 by default), or of an
/// `mqtts://` or `ssl://` URL (TLS, port 8883 by default). Credentials (`user:pass@`) and
/// the TLS trust anchors (`?ca=/path/ca.pem`) are applied by the MQTT side.
pub fn broker_of(url: &Url) -> Result<(String, u16), IngestError> {
    let default_port = match url.scheme() {
        "mqtt" | "tcp" => 1883,
        "mqtts" | "ssl" => 8883,
        other => {
            return Err(IngestError::Config(format!(
                "MQTT URL scheme {other:?} is not supported (use mqtt://host:port or mqtts://host:port)"
            )))
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| IngestError::Config("the MQTT URL has no host".into()))?
        .to_string();
    Ok((host, url.port().unwrap_or(default_port)))
}

/// Whether the URL asks for TLS (`mqtts://` or `ssl://`).
pub fn is_tls(url: &Url) -> bool {
    matches!(url.scheme(), "mqtts" | "ssl")
}
