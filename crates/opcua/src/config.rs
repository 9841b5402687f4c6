//! The OPC UA mapping file (`SHOPFLOOR_OPCUA_CONFIG`, JSON): the servers to connect
//! to, how, and what each monitored node means for which machine.
//!
//! ```json
//! {
//!   "servers": [{
//!     "name": "press-plc",
//!     "endpoint": "opc.tcp://10.0.4.17:4840",
//!     "security_policy": "Basic256Sha256",
//!     "security_mode": "SignAndEncrypt",
//!     "user": { "username": "shopfloor", "password_env": "PRESS_PLC_PASSWORD" },
//!     "pki_dir": "/var/lib/shopfloor/opcua-pki",
//!     "publishing_interval_ms": 500,
//!     "sampling_interval_ms": 250,
//!     "nodes": [
//!       { "node_id": "ns=3;s=\"DB_Press\".\"FaultText\"", "machine_id": "press-1", "meaning": "reason" },
//!       { "node_id": "ns=3;s=\"DB_Press\".\"State\"", "machine_id": "press-1", "meaning": "state",
//!         "values": { "0": "idle", "1": "running", "2": "down", "3": { "state": "idle", "planned": true, "reason": "changeover" } } },
//!       { "node_id": "ns=3;s=\"DB_Press\".\"GoodParts\"", "machine_id": "press-1", "meaning": "good_count", "counter_bits": 16 },
//!       { "node_id": "ns=3;s=\"DB_Press\".\"ScrapParts\"", "machine_id": "press-1", "meaning": "scrap_count" },
//!       { "node_id": "ns=3;s=\"DB_Press\".\"OilTemp\"", "machine_id": "press-1", "meaning": { "sensor": "oil_temp_c" },
//!         "sampling_interval_ms": 1000 }
//!     ]
//!   }]
//! }
//! ```
//! A state entry without its own `reason` takes, when its state is `down`, the
//! machine's `reason` node's latest value (optionally through that node's own
//! `values` map of fault codes to texts).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shopfloor_domain::machine::MachineStatus;

/// Why a mapping file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the OPC UA mapping file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid OPC UA mapping: {0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcuaConfig {
    pub servers: Vec<ServerConfig>,
}

/// The security policy of the secure channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum SecurityPolicy {
    #[default]
    None,
    Basic256Sha256,
}

impl SecurityPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityPolicy::None => "None",
            SecurityPolicy::Basic256Sha256 => "Basic256Sha256",
        }
    }
}

/// The message security mode of the secure channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SecurityMode {
    None,
    Sign,
    SignAndEncrypt,
}

/// How the session authenticates its user.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: Option<String>,
    /// Inline password (prefer `password_env`).
    pub password: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// An X.509 user identity: certificate (DER or PEM) and private key (PEM).
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
}

/// The user identity to present.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    Anonymous,
    UserName { username: String, password: String },
    Certificate { certificate: PathBuf, key: PathBuf },
}

/// One server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Names the server in rejections, notices and metrics.
    pub name: String,
    /// `opc.tcp://host:port[/path]`.
    pub endpoint: String,
    #[serde(default)]
    pub security_policy: SecurityPolicy,
    /// Defaults to `None` with policy `None`, `SignAndEncrypt` otherwise.
    pub security_mode: Option<SecurityMode>,
    pub user: Option<UserConfig>,
    /// The client's PKI directory (its application instance certificate, trusted
    /// and rejected server certificates). A self-signed certificate is created
    /// there on first use.
    #[serde(default = "default_pki_dir")]
    pub pki_dir: PathBuf,
    /// Trust any server certificate (tests and commissioning only); otherwise a
    /// server certificate must be in `pki_dir/trusted`.
    #[serde(default)]
    pub trust_server_certs: bool,
    #[serde(default = "default_publishing_ms")]
    pub publishing_interval_ms: u64,
    /// The sampling interval of nodes without their own.
    #[serde(default = "default_sampling_ms")]
    pub sampling_interval_ms: u64,
    /// Reconnect back-off: first and longest wait.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    pub nodes: Vec<NodeMapping>,
}

fn default_pki_dir() -> PathBuf {
    PathBuf::from("pki/opcua")
}
fn default_publishing_ms() -> u64 {
    1000
}
fn default_sampling_ms() -> u64 {
    500
}
fn default_retry_initial_ms() -> u64 {
    500
}
fn default_retry_max_ms() -> u64 {
    30_000
}

/// What a node's value means.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meaning {
    /// The machine's state, through `values`.
    State,
    /// The machine's stop reason (a text, or a code through `values`).
    Reason,
    /// The PLC's running total of good parts.
    GoodCount,
    /// The PLC's running total of scrap parts.
    ScrapCount,
    /// A telemetry signal, stored under this sensor name.
    Sensor(String),
}

/// One entry of a state node's value map.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StateValue {
    Plain(MachineStatus),
    Full {
        state: MachineStatus,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        planned: Option<bool>,
    },
}

impl StateValue {
    pub fn state(&self) -> MachineStatus {
        match self {
            StateValue::Plain(s) | StateValue::Full { state: s, .. } => *s,
        }
    }
    pub fn reason(&self) -> Option<&str> {
        match self {
            StateValue::Full { reason, .. } => reason.as_deref(),
            StateValue::Plain(_) => None,
        }
    }
    pub fn planned(&self) -> Option<bool> {
        match self {
            StateValue::Full { planned, .. } => *planned,
            StateValue::Plain(_) => None,
        }
    }
}

/// One monitored node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeMapping {
    /// The node id in OPC UA's text form (`ns=3;s=...`, `ns=2;i=1001`).
    pub node_id: String,
    pub machine_id: String,
    pub meaning: Meaning,
    pub sampling_interval_ms: Option<u64>,
    /// State nodes: raw value (`"0"`, `"true"`, `"RUN"`) → state. Reason nodes:
    /// fault code → text (optional).
    #[serde(default)]
    pub values: BTreeMap<String, serde_json::Value>,
    /// Counter nodes: the PLC counter's width for rollover (16, 32 or 64); by
    /// default the width of the value's data type.
    pub counter_bits: Option<u32>,
}

impl NodeMapping {
    /// The state value map (validated by [`OpcuaConfig::validate`]).
    pub fn state_values(&self) -> BTreeMap<String, StateValue> {
        self.values
            .iter()
            .filter_map(|(k, v)| {
                serde_json::from_value::<StateValue>(v.clone())
                    .ok()
                    .map(|s| (k.clone(), s))
            })
            .collect()
    }

    /// The reason code map.
    pub fn reason_values(&self) -> BTreeMap<String, String> {
        self.values
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect()
    }
}

impl ServerConfig {
    pub fn security_mode(&self) -> SecurityMode {
        self.security_mode.unwrap_or(match self.security_policy {
            SecurityPolicy::None => SecurityMode::None,
            SecurityPolicy::Basic256Sha256 => SecurityMode::SignAndEncrypt,
        })
    }

    /// The user identity, with its password read from the environment.
    pub fn identity(&self) -> Result<Identity, ConfigError> {
        let Some(user) = &self.user else {
            return Ok(Identity::Anonymous);
        };
        if let (Some(certificate), Some(key)) = (&user.certificate, &user.private_key) {
            return Ok(Identity::Certificate {
                certificate: certificate.clone(),
                key: key.clone(),
            });
        }
        let Some(username) = &user.username else {
            return Ok(Identity::Anonymous);
        };
        let password = match (&user.password, &user.password_env) {
            (Some(p), _) => p.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                ConfigError::Invalid(format!(
                    "server {}: the password variable {var} is not set",
                    self.name
                ))
            })?,
            (None, None) => String::new(),
        };
        Ok(Identity::UserName {
            username: username.clone(),
            password,
        })
    }

    pub fn sampling_interval_ms(&self, node: &NodeMapping) -> u64 {
        node.sampling_interval_ms
            .unwrap_or(self.sampling_interval_ms)
    }
}

impl OpcuaConfig {
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: OpcuaConfig =
            serde_json::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Checks what serde cannot: endpoints, names, value maps, counter widths.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let mut names = std::collections::HashSet::new();
        for s in &self.servers {
            if s.name.is_empty() || !names.insert(s.name.as_str()) {
                return bad(format!("server name {:?} is empty or repeated", s.name));
            }
            if !s.endpoint.starts_with("opc.tcp://") {
                return bad(format!("server {}: endpoint must be opc.tcp://…", s.name));
            }
            if s.security_policy == SecurityPolicy::None && s.security_mode() != SecurityMode::None
                || s.security_policy != SecurityPolicy::None
                    && s.security_mode() == SecurityMode::None
            {
                return bad(format!(
                    "server {}: security mode {:?} does not go with policy {}",
                    s.name,
                    s.security_mode(),
                    s.security_policy.as_str()
                ));
            }
            for n in &s.nodes {
                validate_node(&s.name, n)?;
            }
        }
        Ok(())
    }
}

fn validate_node(server: &str, n: &NodeMapping) -> Result<(), ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(format!("server {server}: {m}")));
    if n.machine_id.is_empty() || n.node_id.is_empty() {
        return bad("a node needs node_id and machine_id".into());
    }
    if let Some(bits) = n.counter_bits {
        if ![16, 32, 64].contains(&bits) {
            return bad(format!("{}: counter_bits must be 16, 32 or 64", n.node_id));
        }
    }
    match n.meaning {
        Meaning::State => {
            for (k, v) in &n.values {
                if serde_json::from_value::<StateValue>(v.clone()).is_err() {
                    return bad(format!(
                        "{}: value {k:?} maps to {v}, not a state (running, idle, down)",
                        n.node_id
                    ));
                }
            }
        }
        Meaning::Reason if n.values.values().any(|v| !v.is_string()) => {
            return bad(format!("{}: reason values must be texts", n.node_id));
        }
        Meaning::Reason => {}
        _ if !n.values.is_empty() => {
            return bad(format!(
                "{}: only state and reason nodes take values",
                n.node_id
            ));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_bad_maps_are_refused() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```json").unwrap();
        let end = doc[start + 10..].find("//! ```").unwrap() + start + 10;
        let json: String = doc[start..end]
            .lines()
            .skip(1)
            .map(|l| l.trim_start_matches("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let c = OpcuaConfig::from_json(&json).unwrap();
        let s = &c.servers[0];
        assert_eq!(s.security_mode(), SecurityMode::SignAndEncrypt);
        assert_eq!(s.nodes.len(), 5);
        assert_eq!(s.nodes[1].state_values()["3"].state(), MachineStatus::Idle);
        assert_eq!(s.nodes[4].meaning, Meaning::Sensor("oil_temp_c".into()));
        let bad = json.replace("\"2\": \"down\"", "\"2\": \"broken\"");
        assert!(OpcuaConfig::from_json(&bad).is_err());
        let bad = json.replace("\"counter_bits\": 16", "\"counter_bits\": 12");
        assert!(OpcuaConfig::from_json(&bad).is_err());
    }
}
