//! Delivery of scheduled reports to their schedule's channels (ADR 0051).
//!
//! A schedule may name alert channels (ADR 0039). When it makes a report (or a
//! corrected version), one `report_deliveries` row per channel is queued
//! ([`enqueue`], idempotent: keyed by report and channel). The [`Deliverer`] claims
//! due rows with `FOR UPDATE SKIP LOCKED` and sends them the way the alert outbox
//! does: a webhook gets a JSON `POST` signed with the channel's secret in
//! `X-Shopfloor-Signature` (the alerts' [`signature`]), with
//! `X-Shopfloor-Delivery` the same on every attempt; a non-2xx answer is tried again
//! after an exponential back-off, and the row is `dead` after [`MAX_ATTEMPTS`].
//!
//! The body names the report (kind, scope, period, version, what it supersedes,
//! position, chain hash, SHA-256) and where to download it; the file itself is
//! fetched with a token, so a receiver needs no other secret than the signature's.
//!
//! An e-mail channel (ADR 0055) gets one message per report through the alerts' SMTP
//! server (`SHOPFLOOR_SMTP_URL`, the same transport: STARTTLS, TLS or loopback plain):
//! the same facts as text, and the file attached when it is at most
//! [`ATTACHMENT_MAX_BYTES`]; a larger file is named with its size, SHA-256 and download
//! path instead. Retries and `dead` are those of webhooks; without SMTP settings an
//! e-mail delivery fails (and is retried) like an unreachable webhook.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use shopfloor_alerts::outbox::{signature, DELIVERY_HEADER, SIGNATURE_HEADER};
use shopfloor_alerts::SmtpSettings;
use shopfloor_domain::alert::Channel;
use sqlx::PgPool;
use tracing::{info, warn};

use crate::catalog::ReportMeta;
use crate::error::ReportError;
use crate::service::Reports;

/// The largest file sent as an attachment; a larger one is named by its download path.
pub const ATTACHMENT_MAX_BYTES: usize = 10 * 1024 * 1024;
/// Addresses of one e-mail channel, at most.
const MAX_RECIPIENTS: usize = 32;

/// Attempts before a delivery is given up (`dead`).
pub const MAX_ATTEMPTS: i32 = 10;
/// Deliveries claimed per pass.
const BATCH: i64 = 20;

/// Checks a schedule's channels (pure): webhooks with an http(s) URL and a secret,
/// e-mails with 1 to 32 valid addresses.
pub fn validate(channels: &[Channel]) -> Result<(), ReportError> {
    let bad = |m: &str| Err(ReportError::Invalid(m.to_owned()));
    if channels.len() > 16 {
        return bad("a schedule has at most 16 channels");
    }
    for c in channels {
        match c {
            Channel::Webhook { url, secret } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048
                {
                    return bad("a webhook url must be http:// or https://");
                }
                if secret.is_empty() || secret.len() > 512 {
                    return bad("a webhook secret must have 1 to 512 characters");
                }
            }
            Channel::Email { to } => {
                if to.is_empty() || to.len() > MAX_RECIPIENTS {
                    return bad("an email channel has 1 to 32 addresses in `to`");
                }
                if let Some(a) = to
                    .iter()
                    .find(|a| a.len() > 254 || a.parse::<Mailbox>().is_err())
                {
                    return Err(ReportError::Invalid(format!(
                        "{a:?} is not an e-mail address"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The body sent for a report (pure).
pub fn payload(m: &ReportMeta) -> Value {
    json!({
        "report_id": m.report_id,
        "kind": m.kind.as_str(),
        "line": m.line,
        "order_id": m.order_id,
        "from": m.from,
        "to": m.to,
        "format": m.format.as_str(),
        "content_type": m.format.content_type(),
        "version": m.version,
        "supersedes": m.supersedes,
        "position": m.position,
        "chain_hash": m.chain_hash,
        "sha256": m.sha256,
        "size_bytes": m.size_bytes,
        "schedule_id": m.schedule_id,
        "content": format!("/api/v1/reports/{}/content", m.report_id),
    })
}

/// Queues a report's deliveries to `channels` (idempotent).
pub async fn enqueue(
    pool: &PgPool,
    report_id: &str,
    channels: &[Channel],
) -> Result<u64, ReportError> {
    let mut n = 0;
    for (i, c) in channels.iter().enumerate() {
        let target = match c {
            Channel::Webhook { url, .. } => url.clone(),
            Channel::Email { to } => to.join(", "),
        };
        n += sqlx::query(
            "INSERT INTO report_deliveries (report_id, channel_index, channel_type, target) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(report_id)
        .bind(i32::try_from(i).unwrap_or(i32::MAX))
        .bind(c.type_name())
        .bind(target)
        .execute(pool)
        .await?
        .rows_affected();
    }
    Ok(n)
}

/// The wait before attempt `attempts + 1`: 2^attempts seconds, at most an hour (pure).
pub fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 12)).min(Duration::from_secs(3600))
}

#[derive(sqlx::FromRow)]
struct Claimed {
    report_id: String,
    channel_index: i32,
    attempts: i32,
}

/// The SMTP side of the deliverer: the alerts' transport and the report files.
#[derive(Clone)]
struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    reports: Reports,
    attachment_max: usize,
}

/// Sends queued report deliveries.
#[derive(Clone)]
pub struct Deliverer {
    pool: PgPool,
    http: reqwest::Client,
    timeout: Duration,
    mailer: Option<Mailer>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("email", &self.mailer.is_some())
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    pub fn new(pool: PgPool, timeout: Duration) -> Result<Self, ReportError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ReportError::Settings(e.to_string()))?;
        Ok(Self {
            pool,
            http,
            timeout,
            mailer: None,
        })
    }

    /// Sends e-mail channels through `smtp` (the alerts' server), with the files of
    /// `reports` attached.
    pub fn with_email(
        mut self,
        smtp: &SmtpSettings,
        reports: Reports,
    ) -> Result<Self, ReportError> {
        let (transport, from) = shopfloor_alerts::outbox::smtp_transport(smtp, self.timeout)
            .map_err(|e| ReportError::Settings(e.to_string()))?;
        self.mailer = Some(Mailer {
            transport,
            from,
            reports,
            attachment_max: ATTACHMENT_MAX_BYTES,
        });
        Ok(self)
    }

    /// Files larger than `bytes` are linked instead of attached (default
    /// [`ATTACHMENT_MAX_BYTES`]).
    pub fn with_attachment_limit(mut self, bytes: usize) -> Self {
        if let Some(m) = &mut self.mailer {
            m.attachment_max = bytes;
        }
        self
    }

    /// Claims and sends one batch of due deliveries; returns how many were tried.
    pub async fn pass(&self) -> Result<usize, ReportError> {
        let claimed: Vec<Claimed> = sqlx::query_as(
            "UPDATE report_deliveries d SET attempts = d.attempts + 1, \
               next_attempt = now() + interval '60 seconds' \
             FROM (SELECT report_id, channel_index FROM report_deliveries \
                   WHERE status = 'pending' AND next_attempt <= now() \
                   ORDER BY next_attempt LIMIT $1 FOR UPDATE SKIP LOCKED) c \
             WHERE d.report_id = c.report_id AND d.channel_index = c.channel_index \
             RETURNING d.report_id, d.channel_index, d.attempts",
        )
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        for c in &claimed {
            let answer = self.send(c).await;
            self.record(c, answer).await?;
        }
        Ok(claimed.len())
    }

    async fn send(&self, c: &Claimed) -> Result<(), String> {
        let meta = crate::catalog::get(&self.pool, &c.report_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the report is gone")?;
        let channels: Option<Value> =
            sqlx::query_scalar("SELECT channels FROM report_schedules WHERE schedule_id = $1")
                .bind(&meta.schedule_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| e.to_string())?;
        let channels: Vec<Channel> = channels
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let index = usize::try_from(c.channel_index).unwrap_or(usize::MAX);
        match channels.get(index) {
            Some(Channel::Webhook { url, secret }) => self.webhook(c, &meta, url, secret).await,
            Some(Channel::Email { to }) => self.email(&meta, to).await,
            None => Err("the schedule no longer has this channel".into()),
        }
    }

    async fn webhook(
        &self,
        c: &Claimed,
        meta: &ReportMeta,
        url: &str,
        secret: &str,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(&payload(meta)).map_err(|e| e.to_string())?;
        let answer = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(secret, &body))
            .header(
                DELIVERY_HEADER,
                format!("{}/{}", c.report_id, c.channel_index),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", answer.status().as_u16()))
        }
    }

    async fn email(&self, meta: &ReportMeta, to: &[String]) -> Result<(), String> {
        let Some(mailer) = &self.mailer else {
            return Err("email is not configured (SHOPFLOOR_SMTP_URL)".into());
        };
        let file =
            if usize::try_from(meta.size_bytes).unwrap_or(usize::MAX) <= mailer.attachment_max {
                let (_, bytes) = mailer
                    .reports
                    .content(&meta.report_id)
                    .await
                    .map_err(|e| e.to_string())?;
                Some(bytes.to_vec())
            } else {
                None
            };
        let message = email_message(&mailer.from, to, meta, file)?;
        let answer = mailer
            .transport
            .send(message)
            .await
            .map_err(|e| format!("SMTP: {e}"))?;
        if answer.is_positive() {
            Ok(())
        } else {
            Err(format!("SMTP answered {}", answer.code()))
        }
    }

    async fn record(&self, c: &Claimed, answer: Result<(), String>) -> Result<(), ReportError> {
        match answer {
            Ok(()) => {
                sqlx::query(
                    "UPDATE report_deliveries SET status = 'delivered', delivered_at = now(), \
                     last_error = NULL WHERE report_id = $1 AND channel_index = $2",
                )
                .bind(&c.report_id)
                .bind(c.channel_index)
                .execute(&self.pool)
                .await?;
                info!(report = %c.report_id, channel = c.channel_index, "report delivered");
            }
            Err(e) => {
                let dead = c.attempts >= MAX_ATTEMPTS;
                warn!(report = %c.report_id, channel = c.channel_index, error = %e, dead, "report delivery failed");
                sqlx::query(
                    "UPDATE report_deliveries SET last_error = $3, \
                       status = CASE WHEN $4 THEN 'dead' ELSE 'pending' END, \
                       next_attempt = now() + make_interval(secs => $5) \
                     WHERE report_id = $1 AND channel_index = $2",
                )
                .bind(&c.report_id)
                .bind(c.channel_index)
                .bind(&e)
                .bind(dead)
                .bind(backoff(c.attempts).as_secs_f64())
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}

/// The e-mail of a report (pure): its facts as text, and `file` attached when given
/// (else the download path).
pub fn email_message(
    from: &Mailbox,
    to: &[String],
    m: &ReportMeta,
    file: Option<Vec<u8>>,
) -> Result<Message, String> {
    let scope = m
        .order_id
        .as_deref()
        .or(m.line.as_deref())
        .unwrap_or("site");
    let corrected = if m.supersedes.is_some() {
        ", corrected"
    } else {
        ""
    };
    let subject = format!(
        "[Shopfloor] {} report {scope} {} to {} (v{}{corrected})",
        m.kind.as_str(),
        m.from.to_rfc3339(),
        m.to.to_rfc3339(),
        m.version
    );
    let facts = payload(m);
    let mut text = facts
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}: {s}"),
            Value::Null => format!("{k}: -"),
            other => format!("{k}: {other}"),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let name = format!("{}.{}", m.report_id, m.format.extension());
    if file.is_none() {
        text.push_str(&format!(
            "\n\nThe file ({} bytes) is too large to attach: download it from {} with a token.",
            m.size_bytes,
            facts["content"].as_str().unwrap_or_default()
        ));
    }
    let mut builder = Message::builder().from(from.clone()).subject(subject);
    for address in to {
        builder = builder.to(address
            .parse::<Mailbox>()
            .map_err(|e| format!("bad address: {e}"))?);
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(text);
    let built = match file {
        Some(bytes) => {
            let kind = ContentType::parse(m.format.content_type()).map_err(|e| e.to_string())?;
            builder.multipart(
                MultiPart::mixed()
                    .singlepart(text)
                    .singlepart(Attachment::new(name).body(bytes, kind)),
            )
        }
        None => builder.singlepart(text),
    };
    built.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_with_a_url_and_a_secret_emails_with_addresses() {
        let hook = |url: &str, secret: &str| Channel::Webhook {
            url: url.into(),
            secret: secret.into(),
        };
        assert!(validate(&[hook("https://x.example/r", "s")]).is_ok());
        assert!(validate(&[hook("ftp://x.example/r", "s")]).is_err());
        assert!(validate(&[hook("https://x.example/r", "")]).is_err());
        let email = |to: &[&str]| Channel::Email {
            to: to.iter().map(|a| (*a).to_owned()).collect(),
        };
        assert!(validate(&[email(&["a@b.example"])]).is_ok());
        assert!(validate(&[email(&[])]).is_err());
        assert!(validate(&[email(&["not an address"])]).is_err());
    }

    fn meta() -> ReportMeta {
        let t = chrono::DateTime::parse_from_rfc3339("2025-03-01T06:00:00Z")
            .unwrap()
            .to_utc();
        ReportMeta {
            report_id: "R-1".into(),
            kind: crate::model::ReportKind::Shift,
            line: Some("L1".into()),
            from: t,
            to: t + chrono::Duration::hours(8),
            format: crate::model::Format::Pdf,
            plant: "P".into(),
            position: 7,
            chain_hash: "ab".into(),
            as_of: t,
            sha256: "cd".into(),
            size_bytes: 20_000_000,
            storage_key: "reports/R-1.pdf".into(),
            requested_by: "schedule".into(),
            schedule_id: Some("S".into()),
            created_at: t,
            order_id: None,
            layout: 2,
            version: 2,
            supersedes: Some("R-0".into()),
            superseded_by: None,
        }
    }

    #[test]
    fn an_email_attaches_the_file_or_names_its_download_path() {
        let from: Mailbox = "shopfloor@plant.example".parse().unwrap();
        let to = ["a@plant.example".to_owned()];
        let attached = email_message(&from, &to, &meta(), Some(b"%PDF-1.7".to_vec())).unwrap();
        let text = String::from_utf8(attached.formatted()).unwrap();
        assert!(text.contains("filename=\"R-1.pdf\""), "{text}");
        assert!(text.contains("Content-Type: application/pdf"), "{text}");
        assert!(text.contains("(v2, corrected)"), "{text}");
        let linked = email_message(&from, &to, &meta(), None).unwrap();
        let text = String::from_utf8(linked.formatted()).unwrap();
        assert!(!text.contains("filename="), "{text}");
        assert!(text.contains("/api/v1/reports/R-1/content"), "{text}");
        assert!(text.contains("20000000 bytes"), "{text}");
        assert!(email_message(&from, &["nobody".to_owned()], &meta(), None).is_err());
    }

    #[test]
    fn the_back_off_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), Duration::from_secs(3600));
    }
}
