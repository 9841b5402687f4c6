//! Generating, reading and verifying reports: the I/O around the pure steps
//! (anchor → gather → render → hash → store → catalogue).

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::info;

use crate::anchor::{await_projection, take_anchor};
use crate::catalog::{self, ListFilter, ReportMeta};
use crate::error::ReportError;
use crate::gather::{gather, GatherInput};
use crate::model::{Anchor, ReportRequest};
use crate::render::render;
use crate::store::ReportStore;

/// Longest period one report may cover.
pub const MAX_PERIOD_DAYS: i64 = 31;

/// The reports of one deployment.
#[derive(Debug, Clone)]
pub struct Reports {
    pool: PgPool,
    store: ReportStore,
    plant: String,
    /// How long generation waits for the KPI read model to catch up.
    catch_up: Duration,
}

/// The answer of a verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub report_id: String,
    pub position: i64,
    pub chain_hash: String,
    /// The log still holds that hash at that position (None: not checkable).
    pub chain_hash_matches: Option<bool>,
    /// SHA-256 recorded when the report was generated.
    pub sha256: String,
    /// SHA-256 of the stored file now.
    pub stored_sha256: String,
    /// SHA-256 of the report generated again at its position.
    pub regenerated_sha256: String,
    /// Stored file, record and regeneration all agree.
    pub identical: bool,
}

/// The id of a report: a hash of what it is and where it was taken, so asking
/// twice at the same position names the same report.
pub fn report_id(req: &ReportRequest, position: i64) -> String {
    let key = format!(
        "{}|{}|{}|{}|{}|{position}",
        req.kind.as_str(),
        req.line.as_deref().unwrap_or("*"),
        req.from.to_rfc3339(),
        req.to.to_rfc3339(),
        req.format.as_str()
    );
    let digest = Sha256::digest(key.as_bytes());
    format!("RPT-{}", hex::encode(&digest[..8]).to_uppercase())
}

/// SHA-256 in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks a request (pure).
pub fn validate(req: &ReportRequest) -> Result<(), ReportError> {
    if req.from >= req.to {
        return Err(ReportError::Invalid("`from` must be before `to`".into()));
    }
    if req.to - req.from > chrono::Duration::days(MAX_PERIOD_DAYS) {
        return Err(ReportError::Invalid(format!(
            "a report covers at most {MAX_PERIOD_DAYS} days"
        )));
    }
    // The trend looks one period back, the calendar a day around: keep far from the
    // ends of the representable range.
    let earliest = DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default();
    let latest =
        DateTime::<Utc>::from_timestamp(253_402_300_799 - 86_400 * 366, 0).unwrap_or_default();
    if req.from < earliest || req.to > latest {
        return Err(ReportError::Invalid(
            "`from` and `to` must lie between 1970 and 9998".into(),
        ));
    }
    if req.line.as_deref().is_some_and(|l| l.trim().is_empty()) {
        return Err(ReportError::Invalid("`line` must not be blank".into()));
    }
    Ok(())
}

impl Reports {
    pub fn new(pool: PgPool, store: ReportStore, plant: impl Into<String>) -> Self {
        Self {
            pool,
            store,
            plant: plant.into(),
            catch_up: Duration::from_secs(10),
        }
    }

    /// How long generation waits for the read model (default 10 s).
    pub fn with_catch_up(mut self, d: Duration) -> Self {
        self.catch_up = d;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The report's bytes at `anchor` (no storage).
    pub async fn render_at(
        &self,
        id: &str,
        plant: &str,
        req: &ReportRequest,
        anchor: &Anchor,
    ) -> Result<Vec<u8>, ReportError> {
        let data = gather(
            &self.pool,
            &GatherInput {
                report_id: id,
                plant,
                request: req,
                anchor,
            },
        )
        .await?;
        render(&data, req.format)
    }

    /// Generates a report at the head of the log, stores and records it.
    pub async fn generate(
        &self,
        req: &ReportRequest,
        requested_by: &str,
        schedule_id: Option<&str>,
    ) -> Result<ReportMeta, ReportError> {
        validate(req)?;
        let anchor = take_anchor(&self.pool).await?;
        await_projection(&self.pool, anchor.position, self.catch_up).await?;
        let id = report_id(req, anchor.position);
        if let Some(existing) = catalog::get(&self.pool, &id).await? {
            return Ok(existing);
        }
        let bytes = self.render_at(&id, &self.plant, req, &anchor).await?;
        let key = format!("reports/{id}.{}", req.format.extension());
        let meta = ReportMeta {
            report_id: id,
            kind: req.kind,
            line: req.line.clone(),
            from: req.from,
            to: req.to,
            format: req.format,
            plant: self.plant.clone(),
            position: anchor.position,
            chain_hash: anchor.chain_hash.clone(),
            as_of: anchor.as_of,
            sha256: sha256_hex(&bytes),
            size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            storage_key: key.clone(),
            requested_by: requested_by.to_owned(),
            schedule_id: schedule_id.map(str::to_owned),
            created_at: anchor.as_of,
        };
        self.store.put(&key, bytes).await?;
        let stored = catalog::insert(&self.pool, &meta).await?;
        info!(report_id = %stored.report_id, position = stored.position, "report generated");
        Ok(stored)
    }

    /// A report's record.
    pub async fn get(&self, id: &str) -> Result<ReportMeta, ReportError> {
        catalog::get(&self.pool, id)
            .await?
            .ok_or_else(|| ReportError::NotFound(id.to_owned()))
    }

    /// A report's record and file.
    pub async fn content(&self, id: &str) -> Result<(ReportMeta, Bytes), ReportError> {
        let meta = self.get(id).await?;
        let bytes = self.store.get(&meta.storage_key).await?;
        Ok((meta, bytes))
    }

    pub async fn list(&self, f: &ListFilter) -> Result<Vec<ReportMeta>, ReportError> {
        catalog::list(&self.pool, f).await
    }

    /// The report generated again at its recorded position.
    pub async fn regenerate(&self, meta: &ReportMeta) -> Result<Vec<u8>, ReportError> {
        self.render_at(
            &meta.report_id,
            &meta.plant,
            &meta.request(),
            &meta.anchor(),
        )
        .await
    }

    /// Regenerates a report at its position and compares with the stored file.
    pub async fn verify(&self, id: &str) -> Result<Verification, ReportError> {
        let (meta, stored) = self.content(id).await?;
        let again = self.regenerate(&meta).await?;
        let now = catalog::chain_hash_at(&self.pool, meta.position).await?;
        let stored_sha256 = sha256_hex(&stored);
        let regenerated_sha256 = sha256_hex(&again);
        let chain_hash_matches = now.map(|h| h == meta.chain_hash);
        Ok(Verification {
            identical: stored_sha256 == meta.sha256
                && regenerated_sha256 == meta.sha256
                && chain_hash_matches != Some(false),
            report_id: meta.report_id,
            position: meta.position,
            chain_hash: meta.chain_hash,
            chain_hash_matches,
            sha256: meta.sha256,
            stored_sha256,
            regenerated_sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Format, ReportKind};

    fn req(from: &str, to: &str) -> ReportRequest {
        ReportRequest {
            kind: ReportKind::Shift,
            line: Some("L1".into()),
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            format: Format::Pdf,
        }
    }

    #[test]
    fn requests_are_checked() {
        assert!(validate(&req("2026-03-01T06:00:00Z", "2026-03-01T14:00:00Z")).is_ok());
        for (from, to) in [
            ("2026-03-01T14:00:00Z", "2026-03-01T06:00:00Z"),
            ("2026-03-01T06:00:00Z", "2026-04-02T06:00:00Z"),
            ("1969-12-31T00:00:00Z", "1970-01-01T06:00:00Z"),
            ("9999-12-01T00:00:00Z", "9999-12-02T00:00:00Z"),
        ] {
            assert!(validate(&req(from, to)).is_err(), "{from} {to}");
        }
    }

    #[test]
    fn the_id_names_the_request_and_the_position() {
        let r = req("2026-03-01T06:00:00Z", "2026-03-01T14:00:00Z");
        assert_eq!(report_id(&r, 7), report_id(&r.clone(), 7));
        assert_ne!(report_id(&r, 7), report_id(&r, 8));
        let json = ReportRequest {
            format: Format::Json,
            ..r.clone()
        };
        assert_ne!(report_id(&r, 7), report_id(&json, 7));
        assert!(report_id(&r, 7).starts_with("RPT-"));
        assert_eq!(report_id(&r, 7).len(), 20);
    }
}
