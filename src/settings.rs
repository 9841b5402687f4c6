//! Typed settings, read from the environment (CONTRACT.md) with their defaults.
//!
//! Every value is checked once, here, so that the rest of the program can trust
//! it; a wrong one becomes a [`SettingsError`] that names the variable, the
//! value's problem and what is expected, in one line.

use std::net::SocketAddr;

use secrecy::SecretString;
use url::Url;

pub const DEFAULT_DATABASE_URL: &str = "postgres://root@127.0.0.1:5432/shopfloor";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_MQTT_URL: &str = "mqtt://127.0.0.1:1883";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_NAMESPACE: &str = "shopfloor";
pub const DEFAULT_GROUP_STREAM: &str = "GROUP_EVENTS";

/// Every environment variable the binary reads (the deployment manifests are
/// checked against this list).
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "SHOPFLOOR_DB_POOL",
    "NATS_URL",
    "MQTT_URL",
    "SHOPFLOOR_HTTP_ADDR",
    "SHOPFLOOR_NAMESPACE",
    "SHOPFLOOR_ADMIN_TOKEN",
    "SHOPFLOOR_INGEST_MAPPING",
    "SHOPFLOOR_OPCUA_CONFIG",
    "SHOPFLOOR_RATE_PER_TOKEN",
    "SHOPFLOOR_RATE_BURST_PER_TOKEN",
    "SHOPFLOOR_AUTH_FAILURES_PER_S",
    "SHOPFLOOR_AUTH_FAILURE_BURST",
    "SHOPFLOOR_TOKEN_CACHE_MS",
    "SHOPFLOOR_PLANT_METRICS_MS",
    "SHOPFLOOR_PLANT_NAME",
    "SHOPFLOOR_REPORTS_DIR",
    "SHOPFLOOR_REPORTS_S3_URL",
    "SHOPFLOOR_REPORTS_S3_BUCKET",
    "SHOPFLOOR_REPORTS_S3_REGION",
    "SHOPFLOOR_REPORTS_S3_ACCESS_KEY_ID",
    "SHOPFLOOR_REPORTS_S3_SECRET_ACCESS_KEY",
    "SHOPFLOOR_REPORTS_AZURE_ACCOUNT",
    "SHOPFLOOR_REPORTS_AZURE_CONTAINER",
    "SHOPFLOOR_REPORTS_AZURE_ACCESS_KEY",
    "SHOPFLOOR_REPORTS_AZURE_URL",
    "SHOPFLOOR_SMTP_URL",
    "SHOPFLOOR_SMTP_FROM",
    "SHOPFLOOR_SMTP_CA_FILE",
    "SHOPFLOOR_ALERT_TICK_MS",
    "SHOPFLOOR_ALERT_CONDITIONS_MS",
    "SHOPFLOOR_ALERT_POLL_MS",
    "SHOPFLOOR_ALERT_BACKOFF_MS",
    "SHOPFLOOR_ALERT_BACKOFF_MAX_MS",
    "SHOPFLOOR_ALERT_MAX_ATTEMPTS",
    "SHOPFLOOR_STREAM_REPLICAS",
    "SHOPFLOOR_GROUP_STREAM",
    "RUST_LOG",
];

/// A setting that cannot be used, with the variable it came from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {variable}: {problem}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub problem: String,
}

fn invalid(variable: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        variable,
        problem: problem.into(),
    }
}

/// The settings of one Shopfloor process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL: event store and read models. May hold a password: never log it whole.
    pub database_url: Url,
    /// At most this many PostgreSQL connections per process (`SHOPFLOOR_DB_POOL`, 8 to
    /// 1000, default 32): the processes of a deployment together must stay under the
    /// server's `max_connections`. Leaders hold one each for their locks.
    pub db_pool: u32,
    /// The NATS servers of one cluster (`NATS_URL`: one URL, or several separated
    /// by commas); a client connects to any that answers and fails over to the others.
    pub nats_urls: Vec<Url>,
    /// Replicas of the JetStream event stream (`SHOPFLOOR_STREAM_REPLICAS`, 1 to 5,
    /// default 1; 3 on a 3-node cluster). ADR 0043.
    pub stream_replicas: usize,
    /// `None` when ingest is off (`MQTT_URL=off`).
    pub mqtt_url: Option<Url>,
    pub http_addr: SocketAddr,
    /// Prefix of every JetStream stream, subject and consumer, and of the MQTT topic
    /// root and client ids, so that two instances never see each other's data.
    pub namespace: String,
    /// A bearer token with the admin role, accepted while it is set.
    pub admin_token: Option<SecretString>,
    /// The hub's stream the `group` role consumes (`SHOPFLOOR_GROUP_STREAM`, default
    /// `GROUP_EVENTS`; ADR 0061).
    pub group_stream: String,
    /// A JSON file mapping MQTT topics and Sparkplug metrics to machines
    /// (`SHOPFLOOR_INGEST_MAPPING`; see ADR 0007); the contract's topics need none.
    pub ingest_mapping: Option<std::path::PathBuf>,
    /// The OPC UA servers and node mapping (`SHOPFLOOR_OPCUA_CONFIG`; ADR 0046):
    /// with it, the ingest role (or `--role opcua` alone) runs the OPC UA client.
    pub opcua_config: Option<std::path::PathBuf>,
    /// Rate limits of the API: per token (`SHOPFLOOR_RATE_PER_TOKEN`,
    /// `SHOPFLOOR_RATE_BURST_PER_TOKEN`; a token may carry its own) and per client address
    /// on failed authentications (`SHOPFLOOR_AUTH_FAILURES_PER_S`,
    /// `SHOPFLOOR_AUTH_FAILURE_BURST`). ADR 0033.
    pub rate_limits: shopfloor_api::RateLimits,
    /// How long a verified token is trusted without asking the database again
    /// (`SHOPFLOOR_TOKEN_CACHE_MS`, at most 1 s): revocation takes effect on every API
    /// process within it. ADR 0033.
    pub token_cache_ttl: std::time::Duration,
    /// How often the API refreshes the per-machine families of `/metrics`
    /// (`SHOPFLOOR_PLANT_METRICS_MS`, default 15 s; `None` with 0: off). ADR 0059.
    pub plant_metrics_every: Option<std::time::Duration>,
    /// The plant's name, printed on the reports (`SHOPFLOOR_PLANT_NAME`).
    pub plant_name: String,
    /// Where reports are stored: S3 (`SHOPFLOOR_REPORTS_S3_*`), Azure Blob
    /// (`SHOPFLOOR_REPORTS_AZURE_*`) or a folder
    /// (`SHOPFLOOR_REPORTS_DIR`, default `./reports`). ADR 0041.
    pub reports_storage: shopfloor_reports::StorageSettings,
    /// Alert evaluation and delivery: `SHOPFLOOR_SMTP_URL` (a secret: it may hold the SMTP
    /// password), `SHOPFLOOR_SMTP_FROM`, `SHOPFLOOR_ALERT_TICK_MS`, `SHOPFLOOR_ALERT_CONDITIONS_MS`, `SHOPFLOOR_ALERT_POLL_MS`,
    /// `SHOPFLOOR_ALERT_BACKOFF_MS`, `SHOPFLOOR_ALERT_BACKOFF_MAX_MS`,
    /// `SHOPFLOOR_ALERT_MAX_ATTEMPTS` (ADR 0039, operations.md).
    pub alerts: shopfloor_alerts::AlertSettings,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (a test passes a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |k: &str, default: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };

        let database_url = parse_url("DATABASE_URL", &get("DATABASE_URL", DEFAULT_DATABASE_URL))?;
        if !matches!(database_url.scheme(), "postgres" | "postgresql") {
            return Err(invalid(
                "DATABASE_URL",
                format!(
                    "scheme {:?} is not postgres:// (expected e.g. {DEFAULT_DATABASE_URL})",
                    database_url.scheme()
                ),
            ));
        }
        let db_pool = match get("SHOPFLOOR_DB_POOL", "32").parse::<u32>() {
            Ok(n @ 8..=1000) => n,
            _ => {
                return Err(invalid(
                    "SHOPFLOOR_DB_POOL",
                    "expected a whole number of connections from 8 to 1000",
                ))
            }
        };
        let nats_urls = parse_nats_urls(&get("NATS_URL", DEFAULT_NATS_URL))?;
        let stream_replicas = match get("SHOPFLOOR_STREAM_REPLICAS", "1").parse::<usize>() {
            Ok(n @ 1..=5) => n,
            _ => {
                return Err(invalid(
                    "SHOPFLOOR_STREAM_REPLICAS",
                    "expected a whole number from 1 to 5 (3 on a 3-node NATS cluster)",
                ))
            }
        };
        let mqtt = get("MQTT_URL", DEFAULT_MQTT_URL);
        let mqtt_url = if mqtt.eq_ignore_ascii_case("off") {
            None
        } else {
            let u = parse_url("MQTT_URL", &mqtt)?;
            if !matches!(u.scheme(), "mqtt" | "mqtts" | "tcp" | "ssl") {
                return Err(invalid(
                    "MQTT_URL",
                    format!(
                        "scheme {:?} is not mqtt:// or mqtts:// (or `off` to turn ingest off)",
                        u.scheme()
                    ),
                ));
            }
            Some(u)
        };
        let addr = get("SHOPFLOOR_HTTP_ADDR", DEFAULT_HTTP_ADDR);
        let http_addr = addr.parse().map_err(|_| {
            invalid(
                "SHOPFLOOR_HTTP_ADDR",
                format!("{addr:?} is not an IP:port such as {DEFAULT_HTTP_ADDR}"),
            )
        })?;
        let namespace = get("SHOPFLOOR_NAMESPACE", DEFAULT_NAMESPACE);
        validate_namespace(&namespace)?;
        let admin_token = match lookup("SHOPFLOOR_ADMIN_TOKEN").filter(|t| !t.is_empty()) {
            None => None,
            Some(t) if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(invalid(
                    "SHOPFLOOR_ADMIN_TOKEN",
                    "a token must be at least 16 characters without spaces",
                ))
            }
            Some(t) => Some(SecretString::from(check_token_strength(&t)?)),
        };
        let ingest_mapping = lookup("SHOPFLOOR_INGEST_MAPPING")
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from);
        if let Some(p) = &ingest_mapping {
            if !p.is_file() {
                return Err(invalid(
                    "SHOPFLOOR_INGEST_MAPPING",
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        let opcua_config = lookup("SHOPFLOOR_OPCUA_CONFIG")
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from);
        if let Some(p) = &opcua_config {
            if !p.is_file() {
                return Err(invalid(
                    "SHOPFLOOR_OPCUA_CONFIG",
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        let (rate_limits, token_cache_ttl) = api_limits(&lookup)?;
        let reports_storage =
            shopfloor_reports::StorageSettings::from_lookup(&lookup).map_err(|e| {
                let variable = if lookup("SHOPFLOOR_REPORTS_AZURE_ACCOUNT").is_some() {
                    "SHOPFLOOR_REPORTS_AZURE_ACCOUNT"
                } else {
                    "SHOPFLOOR_REPORTS_S3_URL"
                };
                invalid(variable, e.to_string())
            })?;
        let alerts = alert_settings(&lookup)?;
        let group_stream = get("SHOPFLOOR_GROUP_STREAM", DEFAULT_GROUP_STREAM);
        if group_stream.is_empty()
            || !group_stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "SHOPFLOOR_GROUP_STREAM",
                format!("{group_stream:?} must be a stream name: letters, digits, '_' or '-'"),
            ));
        }
        let plant_metrics_every = plant_metrics_every(&lookup)?;
        Ok(Settings {
            plant_metrics_every,
            plant_name: get("SHOPFLOOR_PLANT_NAME", "Shopfloor plant"),
            reports_storage,
            alerts,
            rate_limits,
            token_cache_ttl,
            ingest_mapping,
            opcua_config,
            database_url,
            db_pool,
            nats_urls,
            stream_replicas,
            mqtt_url,
            http_addr,
            namespace,
            admin_token,
            group_stream,
        })
    }

    /// The NATS servers without their passwords, for messages.
    pub fn nats_display(&self) -> String {
        self.nats_urls
            .iter()
            .map(redact)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The database URL without its password, for messages.
    pub fn database_display(&self) -> String {
        redact(&self.database_url)
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// The API's rate limits and token cache time, from their variables (defaults: see
/// [`shopfloor_api::RateLimits::default`] and [`shopfloor_api::auth::DEFAULT_CACHE_TTL`]).
fn api_limits(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(shopfloor_api::RateLimits, std::time::Duration), SettingsError> {
    let defaults = shopfloor_api::RateLimits::default();
    let value = |k: &str| {
        lookup(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let per_s = match value("SHOPFLOOR_RATE_PER_TOKEN") {
        None => defaults.per_principal_per_s,
        Some(v) if v.eq_ignore_ascii_case("off") => f64::INFINITY,
        Some(v) => positive(
            "SHOPFLOOR_RATE_PER_TOKEN",
            &v,
            "requests per second, or `off`",
        )?,
    };
    let burst = match value("SHOPFLOOR_RATE_BURST_PER_TOKEN") {
        None if value("SHOPFLOOR_RATE_PER_TOKEN").is_some() => per_s.max(1.0),
        None => defaults.per_principal_burst,
        Some(v) => positive("SHOPFLOOR_RATE_BURST_PER_TOKEN", &v, "requests")?.max(1.0),
    };
    let failures_per_s = match value("SHOPFLOOR_AUTH_FAILURES_PER_S") {
        None => defaults.failed_auth_per_ip_per_s,
        Some(v) => positive("SHOPFLOOR_AUTH_FAILURES_PER_S", &v, "failures per second")?,
    };
    let failure_burst = match value("SHOPFLOOR_AUTH_FAILURE_BURST") {
        None => defaults.failed_auth_burst,
        Some(v) => positive("SHOPFLOOR_AUTH_FAILURE_BURST", &v, "failures")?.max(1.0),
    };
    let ttl = match value("SHOPFLOOR_TOKEN_CACHE_MS") {
        None => shopfloor_api::auth::DEFAULT_CACHE_TTL,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms <= 1000 => std::time::Duration::from_millis(ms),
            _ => {
                return Err(invalid(
                    "SHOPFLOOR_TOKEN_CACHE_MS",
                    format!("{v:?} is not a whole number of milliseconds from 0 to 1000"),
                ))
            }
        },
    };
    let limits = shopfloor_api::RateLimits {
        per_principal_per_s: per_s,
        per_principal_burst: if per_s.is_finite() {
            burst
        } else {
            f64::INFINITY
        },
        failed_auth_per_ip_per_s: failures_per_s,
        failed_auth_burst: failure_burst,
    };
    Ok((limits, ttl))
}

/// A finite number above zero.
fn positive(variable: &'static str, v: &str, what: &str) -> Result<f64, SettingsError> {
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(invalid(
            variable,
            format!("{v:?} is not a number above zero ({what})"),
        )),
    }
}

/// `NATS_URL`: one URL, or several separated by commas (the servers of one cluster).
fn parse_nats_urls(value: &str) -> Result<Vec<Url>, SettingsError> {
    let mut urls = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let url = parse_url("NATS_URL", part)?;
        if !matches!(url.scheme(), "nats" | "tls") {
            return Err(invalid(
                "NATS_URL",
                format!(
                    "scheme {:?} is not nats:// or tls:// (expected e.g. {DEFAULT_NATS_URL}, or several separated by commas)",
                    url.scheme()
                ),
            ));
        }
        urls.push(url);
    }
    if urls.is_empty() {
        return Err(invalid("NATS_URL", "names no server"));
    }
    Ok(urls)
}

/// Words that mark a token copied from an example or a manifest.
const PLACEHOLDER_WORDS: &[&str] = &[
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replaceme",
    "placeholder",
    "example",
    "your-token",
];

/// Refuses an admin token that is a known placeholder or guessable: it must not
/// contain a placeholder word and must carry at least 60 bits by a simple
/// estimate (length × log2 of its distinct characters, at least 8 of them).
fn check_token_strength(token: &str) -> Result<String, SettingsError> {
    let lower = token.to_ascii_lowercase();
    if let Some(word) = PLACEHOLDER_WORDS.iter().find(|w| lower.contains(*w)) {
        return Err(invalid(
            "SHOPFLOOR_ADMIN_TOKEN",
            format!("it contains {word:?}: a placeholder; generate one, e.g. sft_$(openssl rand -hex 24)"),
        ));
    }
    let distinct = token
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let bits = token.chars().count() as f64 * (distinct.max(1) as f64).log2();
    if distinct < 8 || bits < 60.0 {
        return Err(invalid(
            "SHOPFLOOR_ADMIN_TOKEN",
            "too guessable (too few distinct characters); generate one, e.g. sft_$(openssl rand -hex 24)",
        ));
    }
    Ok(token.to_string())
}

fn parse_url(variable: &'static str, value: &str) -> Result<Url, SettingsError> {
    let url = Url::parse(value)
        .map_err(|e| invalid(variable, format!("{value:?} is not a URL ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(variable, format!("{value:?} names no host")));
    }
    Ok(url)
}

/// Namespaces go into JetStream stream names (no `.`, `*`, `>` or spaces), NATS
/// subjects and MQTT topics: letters, digits, `_` and `-` only.
fn validate_namespace(ns: &str) -> Result<(), SettingsError> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "SHOPFLOOR_NAMESPACE",
            format!("{ns:?} must be 1 to 64 letters, digits, '_' or '-'"),
        ))
    }
}

/// The alert settings from their variables (defaults: [`shopfloor_alerts::AlertSettings`]).
fn plant_metrics_every(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<std::time::Duration>, SettingsError> {
    let Some(v) = lookup("SHOPFLOOR_PLANT_METRICS_MS")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    else {
        return Ok(Some(shopfloor_api::plant_metrics::DEFAULT_EVERY));
    };
    match v.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(ms) => Ok(Some(std::time::Duration::from_millis(ms))),
        Err(_) => Err(invalid(
            "SHOPFLOOR_PLANT_METRICS_MS",
            format!("{v:?} is not a whole number of milliseconds (0: off)"),
        )),
    }
}

fn alert_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<shopfloor_alerts::AlertSettings, SettingsError> {
    let value = |k: &str| {
        lookup(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut s = shopfloor_alerts::AlertSettings::default();
    let millis = |k: &'static str, default: std::time::Duration| match value(k) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(std::time::Duration::from_millis(ms)),
            _ => Err(invalid(
                k,
                format!("{v:?} is not a whole number of milliseconds above 0"),
            )),
        },
    };
    s.tick = millis("SHOPFLOOR_ALERT_TICK_MS", s.tick)?;
    s.conditions = millis("SHOPFLOOR_ALERT_CONDITIONS_MS", s.conditions)?;
    s.poll = millis("SHOPFLOOR_ALERT_POLL_MS", s.poll)?;
    s.backoff = millis("SHOPFLOOR_ALERT_BACKOFF_MS", s.backoff)?;
    s.backoff_max = millis("SHOPFLOOR_ALERT_BACKOFF_MAX_MS", s.backoff_max)?;
    if let Some(v) = value("SHOPFLOOR_ALERT_MAX_ATTEMPTS") {
        s.max_attempts = match v.parse::<i32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "SHOPFLOOR_ALERT_MAX_ATTEMPTS",
                    format!("{v:?} is not a whole number from 1 to 1000"),
                ))
            }
        };
    }
    if let Some(url) = value("SHOPFLOOR_SMTP_URL") {
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            return Err(invalid(
                "SHOPFLOOR_SMTP_URL",
                "must be smtp://host:587?tls=required (STARTTLS), smtps://host:465 or smtp://host:25",
            ));
        }
        let from = value("SHOPFLOOR_SMTP_FROM").unwrap_or_else(|| "shopfloor@localhost".into());
        s.smtp = Some(shopfloor_alerts::SmtpSettings {
            url: SecretString::from(url),
            from,
            ca_file: value("SHOPFLOOR_SMTP_CA_FILE").map(Into::into),
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = with(&[]).unwrap();
        assert_eq!(s.database_url.as_str(), DEFAULT_DATABASE_URL);
        assert_eq!(s.nats_urls.len(), 1);
        assert_eq!(s.nats_urls[0].as_str(), DEFAULT_NATS_URL);
        assert_eq!(s.stream_replicas, 1);
        assert_eq!(s.db_pool, 32);
        assert_eq!(s.mqtt_url.unwrap().as_str(), DEFAULT_MQTT_URL);
        assert_eq!(s.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(s.namespace, DEFAULT_NAMESPACE);
        assert!(s.admin_token.is_none());
        assert_eq!(s.rate_limits, shopfloor_api::RateLimits::default());
        assert!(s.rate_limits.per_principal_per_s >= 15_000.0);
        assert_eq!(s.token_cache_ttl, shopfloor_api::auth::DEFAULT_CACHE_TTL);
    }

    #[test]
    fn rate_limits_and_the_token_cache_are_settings() {
        let s = with(&[
            ("SHOPFLOOR_RATE_PER_TOKEN", "250"),
            ("SHOPFLOOR_AUTH_FAILURES_PER_S", "2"),
            ("SHOPFLOOR_AUTH_FAILURE_BURST", "10"),
            ("SHOPFLOOR_TOKEN_CACHE_MS", "0"),
        ])
        .unwrap();
        assert_eq!(s.rate_limits.per_principal_per_s, 250.0);
        // The burst defaults to one second's worth of the rate.
        assert_eq!(s.rate_limits.per_principal_burst, 250.0);
        assert_eq!(s.rate_limits.failed_auth_per_ip_per_s, 2.0);
        assert_eq!(s.rate_limits.failed_auth_burst, 10.0);
        assert!(s.token_cache_ttl.is_zero());
        let s = with(&[
            ("SHOPFLOOR_RATE_PER_TOKEN", "off"),
            ("SHOPFLOOR_RATE_BURST_PER_TOKEN", "5"),
        ])
        .unwrap();
        assert!(s.rate_limits.per_principal_per_s.is_infinite());
        assert!(s.rate_limits.per_principal_burst.is_infinite());
        let s = with(&[("SHOPFLOOR_RATE_BURST_PER_TOKEN", "50000")]).unwrap();
        assert_eq!(s.rate_limits.per_principal_per_s, 20_000.0);
        assert_eq!(s.rate_limits.per_principal_burst, 50_000.0);
    }

    #[test]
    fn reads_every_variable() {
        let s = with(&[
            ("DATABASE_URL", "postgresql://u:secret@db:5433/plant"),
            ("NATS_URL", "nats://nats:4223"),
            ("MQTT_URL", "off"),
            ("SHOPFLOOR_HTTP_ADDR", "0.0.0.0:9000"),
            ("SHOPFLOOR_NAMESPACE", "plant-7"),
            ("SHOPFLOOR_ADMIN_TOKEN", "0123456789abcdef"),
        ])
        .unwrap();
        assert!(s.mqtt_url.is_none());
        assert_eq!(s.http_addr.port(), 9000);
        assert_eq!(s.namespace, "plant-7");
        assert_eq!(
            s.admin_token.as_ref().unwrap().expose_secret(),
            "0123456789abcdef"
        );
        assert_eq!(s.database_display(), "postgresql://u:***@db:5433/plant");
    }

    #[test]
    fn nats_url_takes_the_servers_of_one_cluster() {
        let s = with(&[
            (
                "NATS_URL",
                "nats://n1:4222, nats://u:pw@n2:4222,tls://n3:4443",
            ),
            ("SHOPFLOOR_STREAM_REPLICAS", "3"),
        ])
        .unwrap();
        let hosts: Vec<_> = s.nats_urls.iter().map(|u| u.host_str().unwrap()).collect();
        assert_eq!(hosts, ["n1", "n2", "n3"]);
        assert_eq!(s.stream_replicas, 3);
        assert_eq!(
            s.nats_display(),
            "nats://n1:4222,nats://u:***@n2:4222,tls://n3:4443"
        );
    }

    #[test]
    fn wrong_settings_give_one_clear_line() {
        let cases = [
            (("DATABASE_URL", "mysql://x@h/db"), "invalid DATABASE_URL: scheme \"mysql\" is not postgres:// (expected e.g. postgres://root@127.0.0.1:5432/shopfloor)"),
            (("DATABASE_URL", "not a url"), "invalid DATABASE_URL: \"not a url\" is not a URL (relative URL without a base)"),
            (("NATS_URL", "http://h:4222"), "invalid NATS_URL: scheme \"http\" is not nats:// or tls:// (expected e.g. nats://127.0.0.1:4222, or several separated by commas)"),
            (("NATS_URL", "nats://a:4222,http://b:4222"), "invalid NATS_URL: scheme \"http\" is not nats:// or tls:// (expected e.g. nats://127.0.0.1:4222, or several separated by commas)"),
            (("SHOPFLOOR_STREAM_REPLICAS", "0"), "invalid SHOPFLOOR_STREAM_REPLICAS: expected a whole number from 1 to 5 (3 on a 3-node NATS cluster)"),
            (("SHOPFLOOR_DB_POOL", "1"), "invalid SHOPFLOOR_DB_POOL: expected a whole number of connections from 8 to 1000"),
            (("SHOPFLOOR_ADMIN_TOKEN", "CHANGE-ME-sft-0123456789abcdef"), "invalid SHOPFLOOR_ADMIN_TOKEN: it contains \"change-me\": a placeholder; generate one, e.g. sft_$(openssl rand -hex 24)"),
            (("SHOPFLOOR_ADMIN_TOKEN", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), "invalid SHOPFLOOR_ADMIN_TOKEN: too guessable (too few distinct characters); generate one, e.g. sft_$(openssl rand -hex 24)"),
            (("MQTT_URL", "amqp://h"), "invalid MQTT_URL: scheme \"amqp\" is not mqtt:// or mqtts:// (or `off` to turn ingest off)"),
            (("SHOPFLOOR_HTTP_ADDR", "localhost"), "invalid SHOPFLOOR_HTTP_ADDR: \"localhost\" is not an IP:port such as 127.0.0.1:8080"),
            (("SHOPFLOOR_NAMESPACE", "a.b"), "invalid SHOPFLOOR_NAMESPACE: \"a.b\" must be 1 to 64 letters, digits, '_' or '-'"),
            (("SHOPFLOOR_ADMIN_TOKEN", "short"), "invalid SHOPFLOOR_ADMIN_TOKEN: a token must be at least 16 characters without spaces"),
            (("SHOPFLOOR_RATE_PER_TOKEN", "-3"), "invalid SHOPFLOOR_RATE_PER_TOKEN: \"-3\" is not a number above zero (requests per second, or `off`)"),
            (("SHOPFLOOR_RATE_BURST_PER_TOKEN", "lots"), "invalid SHOPFLOOR_RATE_BURST_PER_TOKEN: \"lots\" is not a number above zero (requests)"),
            (("SHOPFLOOR_AUTH_FAILURES_PER_S", "0"), "invalid SHOPFLOOR_AUTH_FAILURES_PER_S: \"0\" is not a number above zero (failures per second)"),
            (("SHOPFLOOR_TOKEN_CACHE_MS", "5000"), "invalid SHOPFLOOR_TOKEN_CACHE_MS: \"5000\" is not a whole number of milliseconds from 0 to 1000"),
        ];
        for ((k, v), expected) in cases {
            let err = with(&[(k, v)]).unwrap_err();
            assert_eq!(err.to_string(), expected);
            assert!(!err.to_string().contains('\n'));
        }
    }
}
