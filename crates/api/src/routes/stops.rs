//! Stops: the unclassified ones across the plant (the supervisor's list, the operator view of one
//! machine), and classifying one, which records `MachineStopClassified` on the machine.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use shopfloor_domain::machine::{ClassifyStop, MachineCommand};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{Actor, MachineId, ReasonCode};
use shopfloor_projections::query::{self, StopFilter, UnclassifiedStop};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Ctx};
use crate::routes::{machine_view, now, Seen};
use crate::views::MachineView;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/stops/unclassified", get(unclassified))
        .route(
            "/api/v1/machines/{machine_id}/stops/classify",
            post(classify),
        )
}

/// `?machine_id=&line=&from=&to=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StopQuery {
    pub machine_id: Option<String>,
    pub line: Option<String>,
    /// Stops that began at or after this floor time.
    pub from: Option<DateTime<Utc>>,
    /// Stops that began before this floor time.
    pub to: Option<DateTime<Utc>>,
    /// Default 200, at most 5000.
    pub limit: Option<i64>,
}

fn blank(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty())
}

/// Unplanned idle/down stops recorded without a reason and not classified since, newest first
/// (read model): `[{machine_id, line, stop_at, state, reason, ended_at, duration_s}]`.
#[utoipa::path(get, path = "/api/v1/stops/unclassified", tag = "machines",
    params(StopQuery),
    responses((status = 200, description = "unclassified stops", body = [Object])),
    security(("bearer" = [])))]
pub async fn unclassified(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<StopQuery>,
) -> Result<Json<Vec<UnclassifiedStop>>, ApiError> {
    let filter = StopFilter {
        machine_id: blank(q.machine_id),
        line: blank(q.line),
        from: q.from,
        to: q.to,
        limit: q.limit,
    };
    Ok(Json(
        query::unclassified_stops(&state.pool, &filter, now()).await?,
    ))
}

/// `POST /api/v1/machines/{id}/stops/classify`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClassifyBody {
    /// The floor time the stop began (its state event's `timestamp`; `stop_at` in the list).
    pub stop_at: DateTime<Utc>,
    /// A code of `/api/v1/reason-codes` other than `unclassified`.
    pub reason_code: String,
}

/// Gives a past or current stop a reason code (records `MachineStopClassified`; the KPIs and
/// the downtime Pareto show it at once, the original state event stays as it was).
#[utoipa::path(post, path = "/api/v1/machines/{machine_id}/stops/classify", tag = "machines",
    params(("machine_id" = String, Path)), request_body = ClassifyBody,
    responses((status = 200, body = MachineView), (status = 400, description = "unknown reason code", body = ProblemDocument),
        (status = 404, description = "unknown machine or no stop at that time", body = ProblemDocument),
        (status = 409, description = "the stop is too old to classify", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn classify(
    State(state): State<AppState>,
    auth: Auth<perm::MachineEvents>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<ClassifyBody>,
) -> Result<Json<MachineView>, ApiError> {
    let machine_id = MachineId::new(&raw)
        .map_err(|_| ApiError::not_found(format!("machine {raw} is not registered")))?;
    let at = now();
    let command = MachineCommand::ClassifyStop(ClassifyStop {
        stop_at: body.stop_at,
        reason_code: ReasonCode::new(&body.reason_code).field("reason_code")?,
        by: Actor::new(&auth.0.name).field("by")?,
        at,
    });
    let target = Target::Machine {
        machine_id: machine_id.clone(),
        command,
    };
    let done = state
        .commands
        .execute(target, &ctx.command(Some(at)))
        .await?;
    Ok(Json(
        machine_view(&state, &machine_id, Seen::AtLeast(done.stream_version)).await?,
    ))
}
