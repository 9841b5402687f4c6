//! Generating, reading and verifying reports: the I/O around the pure steps
//! (anchor → gather → render → hash → store → catalogue).

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::info;

use crate::anchor::{await_projection, take_anchor};
use crate::catalog::{self, ListFilter, ReportMeta};
use crate::error::ReportError;
use crate::gather::{gather, GatherInput};
use crate::model::{Anchor, Format, ReportData, ReportKind, ReportRequest};
use crate::render::render;
use crate::store::ReportStore;
use crate::versions::{diff, Corrections};

/// Longest period one report may cover.
pub const MAX_PERIOD_DAYS: i64 = 31;

/// The layout new reports are rendered with (ADR 0051: with the sections).
pub const LAYOUT: i16 = 2;

/// What to render: a report's identity, where it is taken and how.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    pub id: &'a str,
    pub plant: &'a str,
    pub request: &'a ReportRequest,
    pub anchor: &'a Anchor,
    pub layout: i16,
    /// The report a corrected version supersedes.
    pub supersedes: Option<&'a ReportMeta>,
    pub version: i32,
}

/// `after` as the corrected version `version` of `old` (pure).
pub fn corrected(
    mut after: ReportData,
    before: &ReportData,
    old: &ReportMeta,
    version: i32,
) -> ReportData {
    after.corrections = Some(Corrections {
        version,
        supersedes: old.report_id.clone(),
        supersedes_position: old.position,
        changes: diff(before, &after),
    });
    after
}

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
    versioned_id(req, position, 1)
}

/// The id of version `version` of a report (version 1: [`report_id`]). An order
/// report is named by its order (its period is the order's life, found later).
pub fn versioned_id(req: &ReportRequest, position: i64, version: i32) -> String {
    let mut key = match (req.kind, &req.order_id) {
        (ReportKind::Order, Some(order)) => {
            format!("order|{order}|{}|{position}", req.format.as_str())
        }
        _ => format!(
            "{}|{}|{}|{}|{}|{position}",
            req.kind.as_str(),
            req.line.as_deref().unwrap_or("*"),
            req.from.to_rfc3339(),
            req.to.to_rfc3339(),
            req.format.as_str()
        ),
    };
    if version > 1 {
        key.push_str(&format!("|v{version}"));
    }
    let digest = Sha256::digest(key.as_bytes());
    format!("RPT-{}", hex::encode(&digest[..8]).to_uppercase())
}

/// SHA-256 in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks a request (pure).
pub fn validate(req: &ReportRequest) -> Result<(), ReportError> {
    if req.kind == ReportKind::Order {
        return match req.order_id.as_deref() {
            Some(o) if !o.trim().is_empty() => Ok(()),
            _ => Err(ReportError::Invalid(
                "an order report needs an `order_id`".into(),
            )),
        };
    }
    if req.order_id.is_some() {
        return Err(ReportError::Invalid(
            "`order_id` is for order reports only".into(),
        ));
    }
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

    /// The report's data at `spec.anchor`, with the corrections against the report
    /// it supersedes, if any.
    pub async fn data_at(&self, spec: &Spec<'_>) -> Result<ReportData, ReportError> {
        let data = gather(
            &self.pool,
            &GatherInput {
                report_id: spec.id,
                plant: spec.plant,
                request: spec.request,
                anchor: spec.anchor,
                layout: spec.layout,
            },
        )
        .await?;
        match spec.supersedes {
            None => Ok(data),
            Some(old) => {
                let before = self.base_data(old).await?;
                Ok(corrected(data, &before, old, spec.version))
            }
        }
    }

    /// A report's own figures at its position (without corrections).
    async fn base_data(&self, meta: &ReportMeta) -> Result<ReportData, ReportError> {
        gather(
            &self.pool,
            &GatherInput {
                report_id: &meta.report_id,
                plant: &meta.plant,
                request: &meta.request(),
                anchor: &meta.anchor(),
                layout: meta.layout,
            },
        )
        .await
    }

    /// Stores a rendered report and the record that goes with it (not yet in the catalogue).
    async fn store(
        &self,
        data: &ReportData,
        format: Format,
        requested_by: &str,
        schedule_id: Option<&str>,
    ) -> Result<ReportMeta, ReportError> {
        let bytes = render(data, format)?;
        let key = format!("reports/{}.{}", data.report_id, format.extension());
        let meta = ReportMeta {
            report_id: data.report_id.clone(),
            kind: data.kind,
            line: data.line.clone(),
            from: data.from,
            to: data.to,
            format,
            plant: data.plant.clone(),
            position: data.anchor.position,
            chain_hash: data.anchor.chain_hash.clone(),
            as_of: data.anchor.as_of,
            sha256: sha256_hex(&bytes),
            size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            storage_key: key.clone(),
            requested_by: requested_by.to_owned(),
            schedule_id: schedule_id.map(str::to_owned),
            created_at: data.anchor.as_of,
            order_id: data.order.as_ref().map(|o| o.order_id.clone()),
            layout: LAYOUT,
            version: data.corrections.as_ref().map_or(1, |c| c.version),
            supersedes: data.corrections.as_ref().map(|c| c.supersedes.clone()),
            superseded_by: None,
        };
        self.store.put(&key, bytes).await?;
        Ok(meta)
    }

    /// The head of the log, once the KPI read model has applied it.
    async fn anchor(&self) -> Result<Anchor, ReportError> {
        let anchor = take_anchor(&self.pool).await?;
        await_projection(&self.pool, anchor.position, self.catch_up).await?;
        Ok(anchor)
    }

    /// Generates a report at the head of the log, stores and records it.
    pub async fn generate(
        &self,
        req: &ReportRequest,
        requested_by: &str,
        schedule_id: Option<&str>,
    ) -> Result<ReportMeta, ReportError> {
        validate(req)?;
        // The catalogue keeps microseconds (PostgreSQL): make the report from the
        // request as it will be recorded, so that its regeneration is the same.
        let req = &ReportRequest {
            from: req.from.trunc_subsecs(6),
            to: req.to.trunc_subsecs(6),
            ..req.clone()
        };
        let anchor = self.anchor().await?;
        let id = report_id(req, anchor.position);
        if let Some(existing) = catalog::get(&self.pool, &id).await? {
            return Ok(existing);
        }
        let spec = Spec {
            id: &id,
            plant: &self.plant,
            request: req,
            anchor: &anchor,
            layout: LAYOUT,
            supersedes: None,
            version: 1,
        };
        let data = self.data_at(&spec).await?;
        let meta = self
            .store(&data, req.format, requested_by, schedule_id)
            .await?;
        let stored = catalog::insert(&self.pool, &meta).await?;
        info!(report_id = %stored.report_id, position = stored.position, "report generated");
        Ok(stored)
    }

    /// Gathers a scheduled report's period again at the head of the log; where a
    /// figure changed, makes, stores and records its corrected version (the report
    /// itself stays, marked `superseded_by`). `None`: nothing changed (noted, so the
    /// same events are not looked at again), or another instance was first.
    pub async fn supersede(&self, old: &ReportMeta) -> Result<Option<ReportMeta>, ReportError> {
        let anchor = self.anchor().await?;
        let version = old.version + 1;
        let req = old.request();
        let id = versioned_id(&req, anchor.position, version);
        let spec = Spec {
            id: &id,
            plant: &old.plant,
            request: &req,
            anchor: &anchor,
            layout: LAYOUT,
            supersedes: None,
            version,
        };
        let after = self.data_at(&spec).await?;
        let before = self.base_data(old).await?;
        let data = corrected(after, &before, old, version);
        if data
            .corrections
            .as_ref()
            .is_none_or(|c| c.changes.is_empty())
        {
            catalog::mark_checked(&self.pool, &old.report_id, anchor.position).await?;
            return Ok(None);
        }
        let by = old
            .schedule_id
            .as_deref()
            .map_or_else(|| old.requested_by.clone(), |s| format!("schedule:{s}"));
        let meta = self
            .store(&data, old.format, &by, old.schedule_id.as_deref())
            .await?;
        let stored = catalog::insert_version(&self.pool, &meta).await?;
        if let Some(m) = &stored {
            info!(report_id = %m.report_id, supersedes = %old.report_id, version, "corrected report");
        }
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
        let old = match &meta.supersedes {
            Some(id) => Some(self.get(id).await?),
            None => None,
        };
        let spec = Spec {
            id: &meta.report_id,
            plant: &meta.plant,
            request: &meta.request(),
            anchor: &meta.anchor(),
            layout: meta.layout,
            supersedes: old.as_ref(),
            version: meta.version,
        };
        let data = self.data_at(&spec).await?;
        render(&data, meta.format)
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

    fn req(from: &str, to: &str) -> ReportRequest {
        ReportRequest {
            kind: ReportKind::Shift,
            line: Some("L1".into()),
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            format: Format::Pdf,
            order_id: None,
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
