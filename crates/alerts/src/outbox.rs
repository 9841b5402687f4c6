//! The delivery outbox and its worker.
//!
//! The evaluator inserts one `alert_deliveries` row per (alert event, channel) when it reads
//! the event from the log ([`enqueue`]); the [`Deliverer`] claims due rows with
//! `FOR UPDATE SKIP LOCKED` (any number of workers, in any process), sends them, and records
//! the answer: delivered on a 2xx (or an accepted email), else tried again after an
//! exponential back-off, and `dead` (the dead-letter list) after `max_attempts`.
//!
//! A claim counts as an attempt and holds the row for [`CLAIM`]; a worker that dies mid-send
//! leaves the row to be claimed again after that, so a delivery is at least once: receivers
//! may see a delivery twice, and recognise it by `X-Shopfloor-Delivery` (the same for every
//! attempt of one delivery).
//!
//! Secrets: a webhook's secret is read from the rule when the delivery is sent, as a
//! [`SecretString`], and never logged or stored in the delivery row.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;
use shopfloor_domain::alert::Channel;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::plan::{self, AlertFacts};
use crate::{AlertSettings, AlertsError};

/// How long a claimed delivery is held before another worker may take it.
pub const CLAIM: Duration = Duration::from_secs(60);
/// The signature header of webhooks.
pub const SIGNATURE_HEADER: &str = "X-Shopfloor-Signature";
/// The id of the delivery, the same on every attempt (for receivers to deduplicate).
pub const DELIVERY_HEADER: &str = "X-Shopfloor-Delivery";

/// `sha256=<hex HMAC-SHA256 of body with secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(sqlx::FromRow)]
struct FactsRow {
    alert_id: String,
    rule_id: String,
    kind: String,
    severity: String,
    machine_id: Option<String>,
    subject: Option<String>,
    state: String,
    since: DateTime<Utc>,
    raised_at: DateTime<Utc>,
    acknowledged_by: Option<String>,
    resolved_at: Option<DateTime<Utc>>,
    escalations: i32,
    channels: Value,
    escalation_channels: Option<Value>,
}

/// The alert event a delivery is for: read from the log, or just committed by the evaluator.
#[derive(Debug, Clone, Copy)]
pub struct AlertEventRef {
    pub event_id: uuid::Uuid,
    /// Floor time of the event.
    pub at: DateTime<Utc>,
    /// Commit time (the start of the delivery latency).
    pub recorded_at: DateTime<Utc>,
}

impl From<&RecordedEvent> for AlertEventRef {
    fn from(e: &RecordedEvent) -> Self {
        Self {
            event_id: e.event_id,
            at: e.metadata.occurred_at.unwrap_or(e.recorded_at),
            recorded_at: e.recorded_at,
        }
    }
}

/// An alert event whose deliveries are to be queued.
#[derive(Debug, Clone, Copy)]
pub struct Queued<'a> {
    pub event: AlertEventRef,
    pub alert_id: &'a str,
    /// `raised`, `acknowledged`, `escalated` or `resolved`.
    pub stage: &'a str,
}

/// One outbox row, as planned.
#[derive(Debug, Clone, PartialEq)]
struct DeliveryRow {
    alert_id: String,
    event_id: uuid::Uuid,
    stage: String,
    rule_id: String,
    list: i32,
    index: i32,
    channel_type: &'static str,
    target: String,
    payload: Value,
    event_recorded: DateTime<Utc>,
}

/// The deliveries of one alert event to the channels its stage reaches (pure).
fn plan_rows(item: &Queued<'_>, f: &FactsRow) -> Result<Vec<DeliveryRow>, AlertsError> {
    let Some((list, webhooks_only)) = plan::audience(item.stage) else {
        return Ok(Vec::new());
    };
    let facts = AlertFacts {
        alert_id: item.alert_id.to_string(),
        rule_id: f.rule_id.clone(),
        kind: f.kind.clone(),
        severity: f.severity.clone(),
        machine_id: f.machine_id.clone(),
        subject: f.subject.clone(),
        state: f.state.clone(),
        since: f.since,
        raised_at: f.raised_at,
        acknowledged_by: f.acknowledged_by.clone(),
        resolved_at: f.resolved_at,
        escalations: f.escalations,
    };
    let list_json = if list == 0 {
        Some(&f.channels)
    } else {
        f.escalation_channels.as_ref()
    };
    let channels: Vec<Channel> = list_json
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()?
        .unwrap_or_default();
    let payload = plan::payload(&facts, item.stage, item.event.event_id, item.event.at);
    let mut rows = Vec::with_capacity(channels.len());
    for (index, channel) in channels.iter().enumerate() {
        let target = match channel {
            Channel::Webhook { url, .. } => url.clone(),
            Channel::Email { .. } if webhooks_only => continue,
            Channel::Email { to } => to.join(", "),
        };
        rows.push(DeliveryRow {
            alert_id: item.alert_id.to_string(),
            event_id: item.event.event_id,
            stage: item.stage.to_string(),
            rule_id: f.rule_id.clone(),
            list,
            index: index as i32,
            channel_type: channel.type_name(),
            target,
            payload: payload.clone(),
            event_recorded: item.event.recorded_at,
        });
    }
    Ok(rows)
}

/// Queues the deliveries of alert events (idempotent: keyed by event and channel), in two
/// round trips however many: the alerts' facts, then one insert of every row. Returns how
/// many rows were new.
pub async fn enqueue_many(pool: &PgPool, items: &[Queued<'_>]) -> Result<u64, AlertsError> {
    let items: Vec<&Queued<'_>> = items
        .iter()
        .filter(|i| plan::audience(i.stage).is_some())
        .collect();
    if items.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = items.iter().map(|i| i.alert_id).collect();
    let facts: Vec<FactsRow> = sqlx::query_as(
        "SELECT a.alert_id, a.rule_id, a.kind, a.severity, a.machine_id, a.subject, a.state, \
         a.since, a.raised_at, a.acknowledged_by, a.resolved_at, a.escalations, r.channels, \
         r.escalation -> 'channels' AS escalation_channels \
         FROM alerts a JOIN alert_rules r USING (rule_id) WHERE a.alert_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let facts: std::collections::HashMap<&str, &FactsRow> =
        facts.iter().map(|f| (f.alert_id.as_str(), f)).collect();
    let mut rows = Vec::new();
    for item in items {
        if let Some(f) = facts.get(item.alert_id) {
            rows.extend(plan_rows(item, f)?);
        }
    }
    insert_rows(pool, rows).await
}

/// Queues the deliveries of one alert event; see [`enqueue_many`].
pub async fn enqueue(
    pool: &PgPool,
    event: &AlertEventRef,
    alert_id: &str,
    stage: &str,
) -> Result<u64, AlertsError> {
    let item = Queued {
        event: *event,
        alert_id,
        stage,
    };
    enqueue_many(pool, &[item]).await
}

async fn insert_rows(pool: &PgPool, rows: Vec<DeliveryRow>) -> Result<u64, AlertsError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len();
    let (mut alert, mut event, mut stage, mut rule) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut list, mut index, mut kind, mut target, mut payload, mut recorded) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for r in rows {
        alert.push(r.alert_id);
        event.push(r.event_id);
        stage.push(r.stage);
        rule.push(r.rule_id);
        list.push(r.list);
        index.push(r.index);
        kind.push(r.channel_type);
        target.push(r.target);
        payload.push(r.payload);
        recorded.push(r.event_recorded);
    }
    Ok(sqlx::query(
        "INSERT INTO alert_deliveries (alert_id, event_id, stage, rule_id, channel_list,          channel_index, channel_type, target, payload, event_recorded)          SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::int[],          $6::int[], $7::text[], $8::text[], $9::jsonb[], $10::timestamptz[])          ON CONFLICT DO NOTHING",
    )
    .bind(alert)
    .bind(event)
    .bind(stage)
    .bind(rule)
    .bind(list)
    .bind(index)
    .bind(kind)
    .bind(target)
    .bind(payload)
    .bind(recorded)
    .execute(pool)
    .await?
    .rows_affected())
}

/// A claimed delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Claimed {
    delivery_id: i64,
    rule_id: String,
    channel_list: i32,
    channel_index: i32,
    payload: Value,
    attempts: i32,
    event_recorded: DateTime<Utc>,
}

/// What a channel answered.
#[derive(Debug)]
struct Answer {
    ok: bool,
    status: Option<i32>,
    error: Option<String>,
}

/// The SMTP transport and sender, when email is configured.
#[derive(Clone)]
struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The TLS settings of `url` (`smtps://`, or `smtp://…?tls=required|opportunistic`) with the
/// CA certificates of `ca_file` trusted besides the public roots.
fn tls_with_ca(url: &str, ca_file: &std::path::Path) -> Result<Tls, AlertsError> {
    let setup = |m: String| AlertsError::Setup(m);
    let parsed = reqwest::Url::parse(url).map_err(|e| setup(format!("SHOPFLOOR_SMTP_URL: {e}")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| setup("SHOPFLOOR_SMTP_URL has no host".into()))?;
    let pem = std::fs::read(ca_file)
        .map_err(|e| setup(format!("SHOPFLOOR_SMTP_CA_FILE {}: {e}", ca_file.display())))?;
    let cert = Certificate::from_pem(&pem)
        .map_err(|e| setup(format!("SHOPFLOOR_SMTP_CA_FILE {}: {e}", ca_file.display())))?;
    let params = TlsParameters::builder(host.to_string())
        .add_root_certificate(cert)
        .build_rustls()
        .map_err(|e| setup(format!("SMTP TLS: {e}")))?;
    let mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (parsed.scheme(), mode.as_deref()) {
        ("smtps", _) => Ok(Tls::Wrapper(params)),
        ("smtp", Some("required")) => Ok(Tls::Required(params)),
        ("smtp", Some("opportunistic")) => Ok(Tls::Opportunistic(params)),
        _ => Err(setup(
            "SHOPFLOOR_SMTP_CA_FILE needs TLS: smtps://… or smtp://…?tls=required".into(),
        )),
    }
}

/// The SMTP transport of `smtp` (STARTTLS, TLS or plain per its URL, with its CA file)
/// and the sender's mailbox; the report mailer shares it (ADR 0055).
pub fn smtp_transport(
    smtp: &crate::SmtpSettings,
    timeout: Duration,
) -> Result<(AsyncSmtpTransport<Tokio1Executor>, Mailbox), AlertsError> {
    let url = smtp.url.expose_secret();
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| AlertsError::Setup(format!("SHOPFLOOR_SMTP_URL: {e}")))?
        .timeout(Some(timeout));
    if let Some(ca) = &smtp.ca_file {
        builder = builder.tls(tls_with_ca(url, ca)?);
    }
    let from = smtp
        .from
        .parse::<Mailbox>()
        .map_err(|e| AlertsError::Setup(format!("SHOPFLOOR_SMTP_FROM: {e}")))?;
    Ok((builder.build(), from))
}

/// Sends queued deliveries.
#[derive(Clone)]
pub struct Deliverer {
    pool: PgPool,
    settings: AlertSettings,
    http: reqwest::Client,
    mailer: Option<Mailer>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("email", &self.mailer.is_some())
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    pub fn new(
        pool: PgPool,
        settings: AlertSettings,
        wake: Arc<Notify>,
    ) -> Result<Self, AlertsError> {
        let http = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            .build()
            .map_err(|e| AlertsError::Setup(e.to_string()))?;
        let mailer = match &settings.smtp {
            Some(smtp) => {
                let (transport, from) = smtp_transport(smtp, settings.http_timeout)?;
                Some(Mailer { transport, from })
            }
            None => None,
        };
        Ok(Self {
            pool,
            settings,
            http,
            mailer,
            wake,
        })
    }

    /// Runs until `cancel` fires: sends what is due, then waits for the evaluator's wake-up
    /// or the poll interval.
    pub async fn run(&self, cancel: CancellationToken) {
        info!(
            email = self.mailer.is_some(),
            "alert delivery worker running"
        );
        loop {
            let sent = match self.pass().await {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "alert delivery pass failed");
                    0
                }
            };
            if sent > 0 {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Claims and sends one batch of due deliveries; returns how many were tried.
    pub async fn pass(&self) -> Result<usize, AlertsError> {
        let claimed: Vec<Claimed> = sqlx::query_as(
            "UPDATE alert_deliveries d SET attempts = d.attempts + 1, \
             claimed_until = now() + make_interval(secs => $2) \
             FROM (SELECT delivery_id FROM alert_deliveries WHERE state = 'pending' \
                   AND next_attempt_at <= now() AND (claimed_until IS NULL OR claimed_until < now()) \
                   ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) c \
             WHERE d.delivery_id = c.delivery_id \
             RETURNING d.delivery_id, d.rule_id, d.channel_list, d.channel_index, d.payload, \
             d.attempts, d.event_recorded",
        )
        .bind(self.settings.batch as i64)
        .bind(CLAIM.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let n = claimed.len();
        let sends = claimed.into_iter().map(|c| async move {
            let answer = self.send(&c).await;
            self.record(&c, answer).await
        });
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(n)
    }

    async fn channel(&self, c: &Claimed) -> Result<Option<Channel>, AlertsError> {
        let list: Option<Value> = sqlx::query_scalar(
            "SELECT CASE WHEN $2 = 0 THEN channels ELSE escalation -> 'channels' END \
             FROM alert_rules WHERE rule_id = $1",
        )
        .bind(&c.rule_id)
        .bind(c.channel_list)
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        let channels: Vec<Channel> = list
            .map(serde_json::from_value)
            .transpose()?
            .unwrap_or_default();
        Ok(channels.into_iter().nth(c.channel_index as usize))
    }

    async fn send(&self, c: &Claimed) -> Answer {
        let failed = |e: String| Answer {
            ok: false,
            status: None,
            error: Some(e),
        };
        let channel = match self.channel(c).await {
            Ok(Some(ch)) => ch,
            Ok(None) => return failed("the rule no longer has this channel".into()),
            Err(e) => return failed(e.to_string()),
        };
        match channel {
            Channel::Webhook { url, secret } => {
                self.webhook(c, &url, SecretString::from(secret)).await
            }
            Channel::Email { to } => self.email(c, &to).await,
        }
    }

    async fn webhook(&self, c: &Claimed, url: &str, secret: SecretString) -> Answer {
        let body = match serde_json::to_vec(&c.payload) {
            Ok(b) => b,
            Err(e) => {
                return Answer {
                    ok: false,
                    status: None,
                    error: Some(e.to_string()),
                }
            }
        };
        let sig = signature(secret.expose_secret(), &body);
        let result = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sig)
            .header(DELIVERY_HEADER, c.delivery_id.to_string())
            .body(body)
            .send()
            .await;
        match result {
            Ok(r) => Answer {
                ok: r.status().is_success(),
                status: Some(i32::from(r.status().as_u16())),
                error: (!r.status().is_success()).then(|| format!("HTTP {}", r.status())),
            },
            // Without the URL: it may carry a token (Slack, Teams).
            Err(e) => Answer {
                ok: false,
                status: None,
                error: Some(format!("request failed: {}", e.without_url())),
            },
        }
    }

    async fn email(&self, c: &Claimed, to: &[String]) -> Answer {
        let Some(mailer) = &self.mailer else {
            return Answer {
                ok: false,
                status: None,
                error: Some("email is not configured (SHOPFLOOR_SMTP_URL)".into()),
            };
        };
        match email_message(&mailer.from, to, &c.payload) {
            Ok(message) => match mailer.transport.send(message).await {
                Ok(r) => Answer {
                    ok: r.is_positive(),
                    status: Some(i32::from(u16::from(r.code()))),
                    error: None,
                },
                Err(e) => Answer {
                    ok: false,
                    status: None,
                    error: Some(format!("SMTP: {e}")),
                },
            },
            Err(e) => Answer {
                ok: false,
                status: None,
                error: Some(e),
            },
        }
    }

    async fn record(&self, c: &Claimed, answer: Answer) -> Result<(), AlertsError> {
        if answer.ok {
            let latency = (Utc::now() - c.event_recorded).to_std().unwrap_or_default();
            metrics::histogram!("shopfloor_alert_delivery_latency_seconds")
                .record(latency.as_secs_f64());
            metrics::counter!("shopfloor_alert_deliveries_total", "outcome" => "delivered")
                .increment(1);
            sqlx::query(
                "UPDATE alert_deliveries SET state = 'delivered', delivered_at = now(), \
                 last_status = $2, last_error = NULL, claimed_until = NULL WHERE delivery_id = $1",
            )
            .bind(c.delivery_id)
            .bind(answer.status)
            .execute(&self.pool)
            .await?;
            return Ok(());
        }
        let dead = c.attempts >= self.settings.max_attempts;
        let wait = plan::backoff(c.attempts, self.settings.backoff, self.settings.backoff_max);
        let outcome = if dead { "dead" } else { "retry" };
        metrics::counter!("shopfloor_alert_deliveries_total", "outcome" => outcome).increment(1);
        warn!(
            delivery = c.delivery_id,
            attempts = c.attempts,
            error = answer.error.as_deref().unwrap_or(""),
            outcome,
            "alert delivery failed"
        );
        sqlx::query(
            "UPDATE alert_deliveries SET state = CASE WHEN $2 THEN 'dead' ELSE 'pending' END, \
             last_status = $3, last_error = $4, claimed_until = NULL, \
             next_attempt_at = now() + make_interval(secs => $5) WHERE delivery_id = $1",
        )
        .bind(c.delivery_id)
        .bind(dead)
        .bind(answer.status)
        .bind(answer.error)
        .bind(wait.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The email of a delivery: a short subject and the alert's facts as text.
fn email_message(from: &Mailbox, to: &[String], payload: &Value) -> Result<Message, String> {
    let field = |k: &str| {
        payload
            .get(k)
            .map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "-".into())
    };
    let subject = format!(
        "[Shopfloor] {} {} on {}: {}",
        field("severity"),
        field("kind"),
        field("machine_id"),
        field("stage")
    );
    let body = [
        "alert_id",
        "rule_id",
        "kind",
        "severity",
        "machine_id",
        "subject",
        "state",
        "stage",
        "since",
        "raised_at",
        "escalation_level",
    ]
    .iter()
    .map(|k| format!("{k}: {}", field(k)))
    .collect::<Vec<_>>()
    .join("\n");
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        builder = builder.to(address
            .parse::<Mailbox>()
            .map_err(|e| format!("bad address: {e}"))?);
    }
    builder.body(body).map_err(|e| e.to_string())
}
