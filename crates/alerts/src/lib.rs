//! Alerts: rules on the event stream, evaluated on floor time, delivered over webhooks and
//! email, exactly once in effect and auditable (ADR 0039).
//!
//! Alert rules and alerts are aggregates (`shopfloor_domain::alert`): every change goes
//! through the one writer and is an event on the log. This crate is the rest:
//!
//! # Layout
//! - [`plan`]: the pure part: machine state by floor time, whether a condition holds,
//!   deterministic alert ids, delivery payloads, back-off.
//! - [`evaluate`]: the [`Evaluator`](evaluate::Evaluator) role: tails the log from its
//!   checkpoint under a leader lock, raises/resolves/escalates alerts through the
//!   `CommandService`, keeps the alerts read model and fills the delivery outbox.
//! - `conditions`: what condition rules (overdue maintenance, reorder points, a silent
//!   ingest, rejected messages, a KPI below target) find holding now.
//! - `machines`: the evaluator's view of machines, read and written set-based per batch.
//! - [`outbox`]: the outbox rows and the [`Deliverer`](outbox::Deliverer) that sends them
//!   (signed webhooks, SMTP with STARTTLS), with retries and a dead-letter state.
//! - [`view`]: the alerts as clients see them ([`AlertView`](view::AlertView)), for the
//!   list and the live feed.
//! - [`feed`]: the [`AlertFeed`](feed::AlertFeed): alert changes as they commit (a trigger's
//!   `pg_notify`), for the andon on the live feed (ADR 0048).

mod conditions;
pub mod evaluate;
pub mod feed;
mod machines;
pub mod outbox;
pub mod plan;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use shopfloor_commands::CommandService;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why evaluation or delivery stopped.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] shopfloor_eventstore::StoreError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] shopfloor_eventstore::CheckpointError),
    #[error(transparent)]
    Command(#[from] shopfloor_commands::CommandError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid value: {0}")]
    Value(String),
    #[error("alert settings: {0}")]
    Setup(String),
}

impl AlertsError {
    pub(crate) fn value(e: impl std::fmt::Display) -> Self {
        Self::Value(e.to_string())
    }
}

/// The SMTP server of email channels (`SHOPFLOOR_SMTP_URL`, `SHOPFLOOR_SMTP_FROM`).
#[derive(Clone)]
pub struct SmtpSettings {
    /// `smtp://user:password@host:587?tls=required` (STARTTLS), `smtps://…` (TLS from the
    /// start) or `smtp://host:25` (plain, loopback only): it may hold a password.
    pub url: SecretString,
    pub from: String,
    /// A PEM file of CA certificates the server's certificate may chain to, besides the
    /// public roots (`SHOPFLOOR_SMTP_CA_FILE`): a plant's own mail relay with an internal CA.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("url", &"[redacted]")
            .field("from", &self.from)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// How evaluation and delivery run.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// How often "longer than" rules and escalations are checked (`SHOPFLOOR_ALERT_TICK_MS`).
    pub tick: Duration,
    /// How often condition rules are checked against the read models
    /// (`SHOPFLOOR_ALERT_CONDITIONS_MS`).
    pub conditions: Duration,
    /// How often the delivery worker looks for due deliveries when not woken
    /// (`SHOPFLOOR_ALERT_POLL_MS`).
    pub poll: Duration,
    /// First retry delay of a failed delivery, doubled per attempt
    /// (`SHOPFLOOR_ALERT_BACKOFF_MS`), up to `backoff_max` (`SHOPFLOOR_ALERT_BACKOFF_MAX_MS`).
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// Attempts before a delivery goes to the dead-letter list (`SHOPFLOOR_ALERT_MAX_ATTEMPTS`).
    pub max_attempts: i32,
    /// Deliveries claimed per pass.
    pub batch: usize,
    /// Timeout of one webhook request or SMTP exchange.
    pub http_timeout: Duration,
    /// Back-off of the evaluator after a failure.
    pub retry: Duration,
    pub smtp: Option<SmtpSettings>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            conditions: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            backoff: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            max_attempts: 10,
            batch: 256,
            http_timeout: Duration::from_secs(10),
            retry: Duration::from_secs(1),
            smtp: None,
        }
    }
}

/// Runs the evaluator (one leader across processes) and a delivery worker until `cancel`.
pub async fn run(
    service: CommandService,
    settings: AlertSettings,
    cancel: CancellationToken,
) -> Result<(), AlertsError> {
    let wake = Arc::new(Notify::new());
    let deliverer = outbox::Deliverer::new(
        service.store().pool().clone(),
        settings.clone(),
        wake.clone(),
    )?;
    let evaluator = evaluate::Evaluator::new(service, settings, wake);
    let worker = cancel.clone();
    tokio::join!(evaluator.run(cancel), deliverer.run(worker));
    Ok(())
}
