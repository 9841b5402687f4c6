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
//! Email channels are refused when a schedule is made: the report mailer is not
//! built yet (the alert mailer sends alert texts only).

use std::time::Duration;

use serde_json::{json, Value};
use shopfloor_alerts::outbox::{signature, DELIVERY_HEADER, SIGNATURE_HEADER};
use shopfloor_domain::alert::Channel;
use sqlx::PgPool;
use tracing::{info, warn};

use crate::catalog::ReportMeta;
use crate::error::ReportError;

/// Attempts before a delivery is given up (`dead`).
pub const MAX_ATTEMPTS: i32 = 10;
/// Deliveries claimed per pass.
const BATCH: i64 = 20;

/// Checks a schedule's channels (pure): webhooks with an http(s) URL and a secret.
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
            Channel::Email { .. } => {
                return bad("reports are delivered to webhooks only (email: not yet)");
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

/// Sends queued report deliveries.
#[derive(Debug, Clone)]
pub struct Deliverer {
    pool: PgPool,
    http: reqwest::Client,
}

impl Deliverer {
    pub fn new(pool: PgPool, timeout: Duration) -> Result<Self, ReportError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ReportError::Settings(e.to_string()))?;
        Ok(Self { pool, http })
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
        let Some(Channel::Webhook { url, secret }) = channels.get(index) else {
            return Err("the schedule no longer has this webhook".into());
        };
        let body = serde_json::to_vec(&payload(&meta)).map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_only_with_a_url_and_a_secret() {
        let hook = |url: &str, secret: &str| Channel::Webhook {
            url: url.into(),
            secret: secret.into(),
        };
        assert!(validate(&[hook("https://x.example/r", "s")]).is_ok());
        assert!(validate(&[hook("ftp://x.example/r", "s")]).is_err());
        assert!(validate(&[hook("https://x.example/r", "")]).is_err());
        assert!(validate(&[Channel::Email {
            to: vec!["a@b.c".into()]
        }])
        .is_err());
    }

    #[test]
    fn the_back_off_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), Duration::from_secs(3600));
    }
}
