//! Reports (issue 19, ADRs 0041 and 0051): generate on demand (shift, day, week and
//! order reports), list (with corrected versions), download, verify, and the
//! schedules that make them at each shift's end, daily and weekly.
//!
//! Generating needs `reports` (supervisor, admin); reading, downloading and
//! verifying need `read` (an auditor may read and verify, not create).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use shopfloor_reports::catalog::ListFilter;
use shopfloor_reports::schedule::{self, Schedule, Trigger};
use shopfloor_reports::{Format, ReportError, ReportKind, ReportMeta, ReportRequest, Reports};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{perm, Auth};
use crate::error::{ApiError, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Ctx};
use crate::routes::alerts::ChannelBody;
use crate::routes::audit::redact_secrets;
use crate::routes::generated_id;
use crate::AppState;
use shopfloor_domain::alert::Channel;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reports", get(list).post(create))
        .route("/api/v1/reports/{report_id}", get(get_one))
        .route("/api/v1/reports/{report_id}/content", get(content))
        .route("/api/v1/reports/{report_id}/verify", get(verify))
        .route(
            "/api/v1/report-schedules",
            get(list_schedules).post(create_schedule),
        )
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid(m) => ApiError::bad_request(m).with_title("Invalid report"),
            e @ ReportError::NotFound(_) => ApiError::not_found(e.to_string()),
            e @ ReportError::Behind { .. } => ApiError::unavailable(e.to_string(), 1),
            ReportError::Query(q) => q.into(),
            e => ApiError::internal(e.to_string()),
        }
    }
}

fn reports(state: &AppState) -> Result<&Reports, ApiError> {
    state
        .reports
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("reports are not configured on this instance", 60))
}

/// `POST /api/v1/reports`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReportBody {
    /// `shift`, `day`, `week` or `order`.
    #[schema(value_type = String, example = "shift")]
    pub kind: ReportKind,
    /// One line; the whole site when left out.
    pub line: Option<String>,
    /// RFC 3339; required but for `order` (whose period is the order's life).
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339, after `from`; at most 31 days later; required but for `order`.
    pub to: Option<DateTime<Utc>>,
    /// The order of an `order` report (its whole life as of the log's head).
    pub order_id: Option<String>,
    /// `pdf`, `csv` (a zip of one CSV per table) or `json`.
    #[schema(value_type = String, example = "pdf")]
    pub format: Format,
}

/// A generated report: where in the log its figures were taken and the hash of its bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportDoc {
    pub report_id: String,
    /// The last log position the report includes.
    pub position: i64,
    /// Hex of that position's chain hash.
    pub chain_hash: String,
    pub kind: String,
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub format: String,
    pub plant: String,
    /// The recorded time the figures are as of.
    pub as_of: DateTime<Utc>,
    /// SHA-256 (hex) of the file.
    pub sha256: String,
    pub size_bytes: i64,
    pub content_type: String,
    pub requested_by: String,
    pub schedule_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The order of an order report.
    pub order_id: Option<String>,
    /// 1, or the number of a corrected version.
    pub version: i32,
    /// The report this corrected version replaces.
    pub supersedes: Option<String>,
    /// The corrected version that replaces this one; both stay listed and downloadable.
    pub superseded_by: Option<String>,
    /// 1: ADR 0041's figures; 2: with orders, quality, maintenance and alerts (ADR 0051).
    pub layout: i16,
}

impl From<ReportMeta> for ReportDoc {
    fn from(m: ReportMeta) -> Self {
        Self {
            content_type: m.format.content_type().to_owned(),
            report_id: m.report_id,
            position: m.position,
            chain_hash: m.chain_hash,
            kind: m.kind.as_str().to_owned(),
            line: m.line,
            from: m.from,
            to: m.to,
            format: m.format.as_str().to_owned(),
            plant: m.plant,
            as_of: m.as_of,
            sha256: m.sha256,
            size_bytes: m.size_bytes,
            requested_by: m.requested_by,
            schedule_id: m.schedule_id,
            created_at: m.created_at,
            order_id: m.order_id,
            version: m.version,
            supersedes: m.supersedes,
            superseded_by: m.superseded_by,
            layout: m.layout,
        }
    }
}

/// Generates a report at the head of the log, stores it and records where it was taken.
#[utoipa::path(post, path = "/api/v1/reports", tag = "reports", request_body = ReportBody,
    responses((status = 201, description = "generated (the same report when asked again at the same position)", body = ReportDoc),
        (status = 400, body = ProblemDocument),
        (status = 503, description = "the KPI read model is behind the log, or reports are not configured", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _: Auth<perm::Reports>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ReportBody>,
) -> Result<(StatusCode, Json<ReportDoc>), ApiError> {
    let req = match body.kind {
        ReportKind::Order => {
            let epoch = DateTime::<Utc>::UNIX_EPOCH;
            ReportRequest {
                kind: body.kind,
                line: None,
                from: epoch,
                to: epoch,
                format: body.format,
                order_id: Some(body.order_id.filter(|o| !o.trim().is_empty()).ok_or_else(
                    || ApiError::invalid_field("order_id", "is required for an order report"),
                )?),
            }
        }
        _ => ReportRequest {
            kind: body.kind,
            line: body.line,
            from: body
                .from
                .ok_or_else(|| ApiError::invalid_field("from", "is required"))?,
            to: body
                .to
                .ok_or_else(|| ApiError::invalid_field("to", "is required"))?,
            format: body.format,
            order_id: body.order_id,
        },
    };
    let meta = reports(&state)?
        .generate(&req, &ctx.principal.name, None)
        .await?;
    Ok((StatusCode::CREATED, Json(meta.into())))
}

/// `?kind=&line=&schedule_id=&order_id=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `shift`, `day`, `week` or `order`.
    pub kind: Option<String>,
    pub line: Option<String>,
    pub schedule_id: Option<String>,
    pub order_id: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Generated reports, newest first; a superseded report stays listed, with
/// `superseded_by` naming its corrected version.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ListParams),
    responses((status = 200, body = [ReportDoc]), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Vec<ReportDoc>>, ApiError> {
    let kind = q
        .kind
        .filter(|k| !k.is_empty())
        .map(|k| {
            ReportKind::parse(&k)
                .ok_or_else(|| ApiError::invalid_field("kind", "must be shift, day, week or order"))
        })
        .transpose()?;
    let filter = ListFilter {
        kind,
        line: q.line.filter(|l| !l.is_empty()),
        schedule_id: q.schedule_id.filter(|s| !s.is_empty()),
        order_id: q.order_id.filter(|s| !s.is_empty()),
        limit: q.limit.unwrap_or(100),
    };
    let list = reports(&state)?.list(&filter).await?;
    Ok(Json(list.into_iter().map(ReportDoc::from).collect()))
}

/// One report's record.
#[utoipa::path(get, path = "/api/v1/reports/{report_id}", tag = "reports",
    params(("report_id" = String, Path)),
    responses((status = 200, body = ReportDoc), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReportDoc>, ApiError> {
    Ok(Json(reports(&state)?.get(&id).await?.into()))
}

/// The report's file: `application/pdf`, `application/zip` (one CSV per table) or
/// `application/json`.
#[utoipa::path(get, path = "/api/v1/reports/{report_id}/content", tag = "reports",
    params(("report_id" = String, Path)),
    responses((status = 200, description = "the file", content(
            (Vec<u8> = "application/pdf"), (Vec<u8> = "application/zip"), (Object = "application/json"))),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn content(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (meta, bytes) = reports(&state)?.content(&id).await?;
    let disposition = format!(
        "attachment; filename=\"{}.{}\"",
        meta.report_id,
        meta.format.extension()
    );
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(meta.format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", meta.sha256)) {
        headers.insert(header::ETAG, v);
    }
    Ok(response)
}

/// A verification: the report generated again at its recorded position, compared
/// byte for byte (by SHA-256) with the stored file and the record.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationDoc {
    pub report_id: String,
    pub position: i64,
    pub chain_hash: String,
    /// The log still holds that chain hash at that position (null: not checkable).
    pub chain_hash_matches: Option<bool>,
    pub sha256: String,
    pub stored_sha256: String,
    pub regenerated_sha256: String,
    pub identical: bool,
}

/// Regenerates the report at its recorded position and says whether it is identical.
#[utoipa::path(get, path = "/api/v1/reports/{report_id}/verify", tag = "reports",
    params(("report_id" = String, Path)),
    responses((status = 200, body = VerificationDoc), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<VerificationDoc>, ApiError> {
    let v = reports(&state)?.verify(&id).await?;
    Ok(Json(VerificationDoc {
        report_id: v.report_id,
        position: v.position,
        chain_hash: v.chain_hash,
        chain_hash_matches: v.chain_hash_matches,
        sha256: v.sha256,
        stored_sha256: v.stored_sha256,
        regenerated_sha256: v.regenerated_sha256,
        identical: v.identical,
    }))
}

/// `POST /api/v1/report-schedules`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScheduleBody {
    /// Generated (`RS-…`) when left out.
    pub schedule_id: Option<String>,
    /// `shift_end` (a shift report after each shift of the line's calendar),
    /// `daily` (a day report of each plant-local day) or `weekly` (a week report of
    /// each plant-local ISO week, Monday to Monday).
    #[schema(value_type = String, example = "shift_end")]
    pub trigger: Trigger,
    /// Required for `shift_end`; the whole site when left out of `daily`.
    pub line: Option<String>,
    #[schema(value_type = String, example = "pdf")]
    pub format: Format,
    /// `HH:MM`, plant-local: when a daily report is made (the next day) or a weekly
    /// one (the Monday after); default 00:00.
    pub at_local: Option<String>,
    /// Where each report it makes (and each corrected version) is sent: webhooks
    /// (signed like alert webhooks) and e-mails (the file attached up to 10 MiB).
    #[serde(default)]
    pub channels: Vec<ChannelBody>,
}

/// A report schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleDoc {
    pub schedule_id: String,
    pub trigger: String,
    pub line: Option<String>,
    pub format: String,
    pub at_local: String,
    /// Periods ending before this (the schedule's creation) are not made.
    pub not_before: DateTime<Utc>,
    pub created_by: String,
    /// The delivery channels, secrets redacted.
    #[schema(value_type = Vec<Object>)]
    pub channels: serde_json::Value,
}

impl From<Schedule> for ScheduleDoc {
    fn from(s: Schedule) -> Self {
        Self {
            schedule_id: s.schedule_id,
            trigger: s.trigger.as_str().to_owned(),
            line: s.line,
            format: s.format.as_str().to_owned(),
            at_local: s.at_local.format("%H:%M").to_string(),
            not_before: s.not_before,
            created_by: s.created_by,
            channels: {
                let mut v = serde_json::to_value(&s.channels).unwrap_or_default();
                redact_secrets(&mut v);
                v
            },
        }
    }
}

/// Creates a report schedule; the leading instance makes its reports.
#[utoipa::path(post, path = "/api/v1/report-schedules", tag = "reports", request_body = ScheduleBody,
    responses((status = 201, body = ScheduleDoc), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn create_schedule(
    State(state): State<AppState>,
    _: Auth<perm::Reports>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> Result<(StatusCode, Json<ScheduleDoc>), ApiError> {
    let at_local = match body.at_local.as_deref().filter(|s| !s.is_empty()) {
        Some(t) => NaiveTime::parse_from_str(t, "%H:%M")
            .map_err(|_| ApiError::invalid_field("at_local", "must be HH:MM"))?,
        None => NaiveTime::MIN,
    };
    let schedule_id = match body.schedule_id.filter(|s| !s.trim().is_empty()) {
        Some(id) => id,
        None => generated_id("RS", ctx.command_id().as_deref()),
    };
    let s = Schedule {
        schedule_id,
        trigger: body.trigger,
        line: body.line.filter(|l| !l.trim().is_empty()),
        format: body.format,
        at_local,
        not_before: crate::routes::now(),
        created_by: ctx.principal.name.clone(),
        channels: body.channels.into_iter().map(Channel::from).collect(),
    };
    schedule::create(&state.pool, &s).await?;
    Ok((StatusCode::CREATED, Json(s.into())))
}

/// Every report schedule.
#[utoipa::path(get, path = "/api/v1/report-schedules", tag = "reports",
    responses((status = 200, body = [ScheduleDoc])),
    security(("bearer" = [])))]
pub async fn list_schedules(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
) -> Result<Json<Vec<ScheduleDoc>>, ApiError> {
    let list = schedule::list(&state.pool).await?;
    Ok(Json(list.into_iter().map(ScheduleDoc::from).collect()))
}
