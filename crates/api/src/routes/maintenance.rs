//! Maintenance tasks: schedule, read, start, complete, cancel, acknowledge.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use shopfloor_domain::maintenance::{
    AcknowledgeTask, CancelTask, CompleteTask, PartUsed, ScheduleTask, StartTask, TaskCommand,
    TaskKind,
};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{Actor, ItemId, MachineId, Quantity, TaskId, Text};
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, Ctx, OptionalJson};
use crate::routes::{generated_id, now, require_machine, task_view};
use crate::views::TaskView;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/maintenance/schedule", post(schedule))
        .route("/api/v1/maintenance/tasks/{task_id}", get(get_task))
        .route("/api/v1/maintenance/tasks/{task_id}/start", post(start))
        .route(
            "/api/v1/maintenance/tasks/{task_id}/complete",
            post(complete),
        )
        .route("/api/v1/maintenance/tasks/{task_id}/cancel", post(cancel))
        .route(
            "/api/v1/maintenance/tasks/{task_id}/acknowledge",
            post(acknowledge),
        )
}

/// Why a task exists.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindName {
    Preventive,
    Predictive,
    Corrective,
}

impl From<KindName> for TaskKind {
    fn from(k: KindName) -> Self {
        match k {
            KindName::Preventive => TaskKind::Preventive,
            KindName::Predictive => TaskKind::Predictive,
            KindName::Corrective => TaskKind::Corrective,
        }
    }
}

/// `POST /api/v1/maintenance/schedule`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScheduleBody {
    pub machine_id: String,
    /// RFC 3339 with offset.
    pub scheduled_date: DateTime<Utc>,
    pub kind: KindName,
    pub description: Option<String>,
    /// Generated (`MT-…`) when left out.
    pub task_id: Option<String>,
}

fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::new(raw)
        .map_err(|_| ApiError::not_found(format!("maintenance task {raw} does not exist")))
}

async fn run(
    state: &AppState,
    ctx: &Ctx,
    id: &TaskId,
    command: TaskCommand,
) -> Result<(), ApiError> {
    let target = Target::MaintenanceTask {
        task_id: id.clone(),
        command,
    };
    state
        .commands
        .execute(target, &ctx.command(Some(now())))
        .await?;
    Ok(())
}

/// Schedules a maintenance task for a registered machine.
#[utoipa::path(post, path = "/api/v1/maintenance/schedule", tag = "maintenance",
    request_body = ScheduleBody,
    responses((status = 201, description = "scheduled; the answer holds `task_id`", body = TaskView),
        (status = 400, body = ProblemDocument),
        (status = 404, description = "unknown machine", body = ProblemDocument),
        (status = 409, description = "the task id is taken", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn schedule(
    State(state): State<AppState>,
    _: Auth<perm::Maintenance>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let machine_id = MachineId::new(body.machine_id).field("machine_id")?;
    let id = match body.task_id.filter(|s| !s.trim().is_empty()) {
        Some(raw) => TaskId::new(raw).field("task_id")?,
        None => TaskId::new(generated_id("MT", ctx.command_id().as_deref())).field("task_id")?,
    };
    let description = body
        .description
        .filter(|d| !d.trim().is_empty())
        .map(Text::new)
        .transpose()
        .field("description")?;
    require_machine(&state, &machine_id).await?;
    let command = TaskCommand::ScheduleTask(ScheduleTask {
        task_id: id.clone(),
        machine_id,
        kind: body.kind.into(),
        scheduled_date: body.scheduled_date,
        description,
        evidence: None,
        policy_id: None,
        at: now(),
    });
    run(&state, &ctx, &id, command).await?;
    Ok((StatusCode::CREATED, Json(task_view(&state, &id).await?)))
}

/// A maintenance task (read-your-writes).
#[utoipa::path(get, path = "/api/v1/maintenance/tasks/{task_id}", tag = "maintenance",
    params(("task_id" = String, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn get_task(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(task_view(&state, &task_id(&raw)?).await?))
}

/// An empty body (`{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StartTaskBody {}

/// Starts a scheduled task.
#[utoipa::path(post, path = "/api/v1/maintenance/tasks/{task_id}/start", tag = "maintenance",
    params(("task_id" = String, Path)), request_body = StartTaskBody,
    responses((status = 200, body = TaskView), (status = 404, body = ProblemDocument),
        (status = 409, description = "the status forbids it", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    _: Auth<perm::Maintenance>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(_): OptionalJson<StartTaskBody>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&raw)?;
    run(
        &state,
        &ctx,
        &id,
        TaskCommand::StartTask(StartTask { at: now() }),
    )
    .await?;
    Ok(Json(task_view(&state, &id).await?))
}

/// A spare part used.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PartBody {
    pub item_id: String,
    #[schema(value_type = f64)]
    pub qty: Decimal,
}

/// `POST …/complete`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CompleteTaskBody {
    pub notes: Option<String>,
    #[serde(default)]
    pub parts_used: Vec<PartBody>,
}

/// Completes a task in progress.
#[utoipa::path(post, path = "/api/v1/maintenance/tasks/{task_id}/complete", tag = "maintenance",
    params(("task_id" = String, Path)), request_body = CompleteTaskBody,
    responses((status = 200, body = TaskView), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument),
        (status = 409, description = "the status forbids it", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    _: Auth<perm::Maintenance>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(body): OptionalJson<CompleteTaskBody>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&raw)?;
    let parts_used = body
        .parts_used
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(PartUsed {
                item_id: ItemId::new(p.item_id).field(&format!("parts_used[{i}].item_id"))?,
                qty: Quantity::new(p.qty).field(&format!("parts_used[{i}].qty"))?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let command = TaskCommand::CompleteTask(CompleteTask {
        notes: body
            .notes
            .filter(|n| !n.trim().is_empty())
            .map(Text::new)
            .transpose()
            .field("notes")?,
        parts_used,
        at: now(),
    });
    run(&state, &ctx, &id, command).await?;
    Ok(Json(task_view(&state, &id).await?))
}

/// `POST …/cancel`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CancelTaskBody {
    pub reason: Option<String>,
}

/// Cancels an open task.
#[utoipa::path(post, path = "/api/v1/maintenance/tasks/{task_id}/cancel", tag = "maintenance",
    params(("task_id" = String, Path)), request_body = CancelTaskBody,
    responses((status = 200, body = TaskView), (status = 404, body = ProblemDocument),
        (status = 409, description = "the status forbids it", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    _: Auth<perm::Maintenance>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(body): OptionalJson<CancelTaskBody>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&raw)?;
    let reason = match body.reason.filter(|r| !r.trim().is_empty()) {
        Some(r) => Text::new(r).field("reason")?,
        None => Text::new(format!("cancelled by {}", ctx.principal.name)).field("reason")?,
    };
    run(
        &state,
        &ctx,
        &id,
        TaskCommand::CancelTask(CancelTask { reason, at: now() }),
    )
    .await?;
    Ok(Json(task_view(&state, &id).await?))
}

/// Acknowledges an open task: the caller (an operator at the machine, say) has seen it
/// (ADR 0050). The status is unchanged; acknowledging again changes nothing (the first
/// acknowledgement stands); a completed or cancelled task gets 409.
#[utoipa::path(post, path = "/api/v1/maintenance/tasks/{task_id}/acknowledge", tag = "maintenance",
    params(("task_id" = String, Path)),
    responses((status = 200, description = "the task, with `acknowledged_by` and `acknowledged_at`", body = TaskView),
        (status = 404, body = ProblemDocument),
        (status = 409, description = "the task is completed or cancelled", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn acknowledge(
    State(state): State<AppState>,
    auth: Auth<perm::MachineEvents>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&raw)?;
    let by = Actor::new(&auth.0.name).field("by")?;
    run(
        &state,
        &ctx,
        &id,
        TaskCommand::AcknowledgeTask(AcknowledgeTask { by, at: now() }),
    )
    .await?;
    Ok(Json(task_view(&state, &id).await?))
}
