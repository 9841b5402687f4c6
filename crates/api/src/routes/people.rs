//! Operators (ADR 0036): register, read, update, deactivate and reactivate them (supervisor);
//! clock on and off an order (operator); their labour and an order's labour (read).
//!
//! Single operators are read from their stream (read-your-writes); the list and the labour
//! figures come from the `people` read model and the parts facts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use shopfloor_domain::operator::{
    ClockOff, ClockOn, DeactivateOperator, OperatorCommand, ReactivateOperator, RegisterOperator,
    UpdateOperator,
};
use shopfloor_domain::order::OrderStatus;
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{BadgeId, LineId, MachineId, OperatorId, Skill, Text};
use shopfloor_domain::{Operator, ProductionOrder};
use shopfloor_projections::query::{self, LabourOf, LabourReport, OperatorRow};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Ctx, OptionalJson};
use crate::routes::machines::not_in_future;
use crate::routes::orders::order_id;
use crate::routes::{load_seen, machine_view, now, Seen};
use crate::views::OperatorView;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/operators", post(register).get(list))
        .route(
            "/api/v1/operators/{operator_id}",
            get(get_operator).patch(update),
        )
        .route(
            "/api/v1/operators/{operator_id}/deactivate",
            post(deactivate),
        )
        .route(
            "/api/v1/operators/{operator_id}/reactivate",
            post(reactivate),
        )
        .route("/api/v1/operators/{operator_id}/clock-on", post(clock_on))
        .route("/api/v1/operators/{operator_id}/clock-off", post(clock_off))
        .route(
            "/api/v1/operators/{operator_id}/labour",
            get(operator_labour),
        )
        .route(
            "/api/v1/production-orders/{order_id}/labour",
            get(order_labour),
        )
}

fn operator_id(raw: &str) -> Result<OperatorId, ApiError> {
    OperatorId::new(raw)
        .map_err(|_| ApiError::not_found(format!("operator {raw} is not registered")))
}

/// An operator; 404 when not registered.
async fn operator_view(
    state: &AppState,
    id: &OperatorId,
    seen: Seen,
) -> Result<OperatorView, ApiError> {
    let (operator, version) = load_seen::<Operator>(state, id.as_str(), seen).await?;
    operator
        .operator()
        .map(|o| OperatorView::new(o, version))
        .ok_or_else(|| ApiError::not_found(format!("operator {id} is not registered")))
}

/// The operator ids of an assignment, validated: each must name a registered, active operator
/// (422 naming the field otherwise: the order exists, the body names someone who does not).
pub(crate) async fn require_operators(
    state: &AppState,
    raw: Vec<String>,
) -> Result<Vec<OperatorId>, ApiError> {
    let mut ids = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let field = format!("operator_ids[{i}]");
        let id = OperatorId::new(&r).field(&field)?;
        let (operator, _) = state.commands.load::<Operator>(id.as_str()).await?;
        match operator.operator() {
            None => {
                return Err(ApiError::unprocessable(
                    &field,
                    format!("{field}: operator {id} is not registered"),
                ))
            }
            Some(o) if !o.active => {
                return Err(ApiError::unprocessable(
                    &field,
                    format!("{field}: operator {id} is deactivated"),
                ))
            }
            Some(_) => ids.push(id),
        }
    }
    Ok(ids)
}

/// Executes an operator command with `ctx`'s context at floor time `at`, the operator named in
/// the metadata; returns the stream version after it.
async fn run(
    state: &AppState,
    ctx: &Ctx,
    id: &OperatorId,
    command: OperatorCommand,
    at: DateTime<Utc>,
) -> Result<u64, ApiError> {
    let mut c = ctx.command(Some(at));
    c.extra
        .insert("operator_id".to_owned(), id.as_str().to_owned());
    let target = Target::Operator {
        operator_id: id.clone(),
        command,
    };
    Ok(state.commands.execute(target, &c).await?.stream_version)
}

fn text(raw: Option<String>, field: &str) -> Result<Option<Text>, ApiError> {
    raw.filter(|s| !s.trim().is_empty())
        .map(Text::new)
        .transpose()
        .field(field)
}

fn list_of<T>(
    raw: Vec<String>,
    field: &str,
    make: impl Fn(String) -> Result<T, shopfloor_domain::values::ValueError>,
) -> Result<Vec<T>, ApiError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, s)| make(s).field(&format!("{field}[{i}]")))
        .collect()
}

/// 409 when another operator carries the badge (checked on the read model: best effort).
async fn badge_free(
    state: &AppState,
    badge: Option<&BadgeId>,
    operator: &OperatorId,
) -> Result<(), ApiError> {
    let Some(badge) = badge else { return Ok(()) };
    let holder: Option<String> = sqlx::query_scalar(
        "SELECT operator_id FROM rm_operators WHERE badge_id = $1 AND operator_id <> $2 LIMIT 1",
    )
    .bind(badge.as_str())
    .bind(operator.as_str())
    .fetch_optional(&state.pool)
    .await?;
    match holder {
        Some(other) => Err(ApiError::conflict(format!(
            "badge {badge} is already carried by operator {other}"
        ))),
        None => Ok(()),
    }
}

/// `POST /api/v1/operators`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterOperatorBody {
    pub operator_id: String,
    pub name: String,
    pub badge_id: Option<String>,
    #[serde(default)]
    pub skills: Vec<String>,
    /// The lines they may work.
    #[serde(default)]
    pub lines: Vec<String>,
}

/// Registers an operator.
#[utoipa::path(post, path = "/api/v1/operators", tag = "people",
    request_body = RegisterOperatorBody,
    responses((status = 201, body = OperatorView), (status = 400, body = ProblemDocument),
        (status = 409, description = "the id or the badge is taken", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    _: Auth<perm::People>,
    ctx: Ctx,
    ApiJson(body): ApiJson<RegisterOperatorBody>,
) -> Result<(StatusCode, Json<OperatorView>), ApiError> {
    let id = OperatorId::new(&body.operator_id).field("operator_id")?;
    let badge_id = body
        .badge_id
        .filter(|b| !b.trim().is_empty())
        .map(BadgeId::new)
        .transpose()
        .field("badge_id")?;
    badge_free(&state, badge_id.as_ref(), &id).await?;
    let at = now();
    let command = OperatorCommand::RegisterOperator(RegisterOperator {
        operator_id: id.clone(),
        name: Text::new(body.name).field("name")?,
        badge_id,
        skills: list_of(body.skills, "skills", Skill::new)?,
        lines: list_of(body.lines, "lines", LineId::new)?,
        at,
    });
    let version = run(&state, &ctx, &id, command, at).await?;
    Ok((
        StatusCode::CREATED,
        Json(operator_view(&state, &id, Seen::AtLeast(version)).await?),
    ))
}

/// `?active=&line=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OperatorListQuery {
    pub active: Option<bool>,
    /// Operators who may work this line.
    pub line: Option<String>,
}

/// Operators by id (read model): `[{operator_id, name, badge_id, skills, lines, active,
/// clocked_on, ...}]`.
#[utoipa::path(get, path = "/api/v1/operators", tag = "people",
    params(OperatorListQuery),
    responses((status = 200, description = "operators", body = [Object])),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<OperatorListQuery>,
) -> Result<Json<Vec<OperatorRow>>, ApiError> {
    let line = q.line.filter(|l| !l.trim().is_empty());
    Ok(Json(
        query::list_operators(&state.pool, q.active, line.as_deref()).await?,
    ))
}

/// An operator (read-your-writes: from their stream).
#[utoipa::path(get, path = "/api/v1/operators/{operator_id}", tag = "people",
    params(("operator_id" = String, Path)),
    responses((status = 200, body = OperatorView), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn get_operator(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<OperatorView>, ApiError> {
    Ok(Json(
        operator_view(&state, &operator_id(&raw)?, Seen::Now).await?,
    ))
}

/// `PATCH /api/v1/operators/{id}`: the fields given replace the current ones.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateOperatorBody {
    pub name: Option<String>,
    /// `""` removes the badge.
    pub badge_id: Option<String>,
    pub skills: Option<Vec<String>>,
    pub lines: Option<Vec<String>>,
}

/// Updates an operator's details.
#[utoipa::path(patch, path = "/api/v1/operators/{operator_id}", tag = "people",
    params(("operator_id" = String, Path)), request_body = UpdateOperatorBody,
    responses((status = 200, body = OperatorView), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    _: Auth<perm::People>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateOperatorBody>,
) -> Result<Json<OperatorView>, ApiError> {
    let id = operator_id(&raw)?;
    operator_view(&state, &id, Seen::Now).await?;
    let badge_id = match body.badge_id {
        None => None,
        Some(b) if b.trim().is_empty() => Some(None),
        Some(b) => Some(Some(BadgeId::new(b).field("badge_id")?)),
    };
    if let Some(badge) = &badge_id {
        badge_free(&state, badge.as_ref(), &id).await?;
    }
    let at = now();
    let command = OperatorCommand::UpdateOperator(UpdateOperator {
        name: body.name.map(Text::new).transpose().field("name")?,
        badge_id,
        skills: body
            .skills
            .map(|s| list_of(s, "skills", Skill::new))
            .transpose()?,
        lines: body
            .lines
            .map(|l| list_of(l, "lines", LineId::new))
            .transpose()?,
        at,
    });
    let version = run(&state, &ctx, &id, command, at).await?;
    Ok(Json(
        operator_view(&state, &id, Seen::AtLeast(version)).await?,
    ))
}

/// An optional reason.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DeactivateBody {
    pub reason: Option<String>,
}

/// Deactivates an operator (409 while they are clocked on an order).
#[utoipa::path(post, path = "/api/v1/operators/{operator_id}/deactivate", tag = "people",
    params(("operator_id" = String, Path)), request_body = DeactivateBody,
    responses((status = 200, body = OperatorView), (status = 404, body = ProblemDocument),
        (status = 409, description = "still clocked on", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn deactivate(
    State(state): State<AppState>,
    _: Auth<perm::People>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(body): OptionalJson<DeactivateBody>,
) -> Result<Json<OperatorView>, ApiError> {
    let id = operator_id(&raw)?;
    let at = now();
    let command = OperatorCommand::DeactivateOperator(DeactivateOperator {
        reason: text(body.reason, "reason")?,
        at,
    });
    let version = run(&state, &ctx, &id, command, at).await?;
    Ok(Json(
        operator_view(&state, &id, Seen::AtLeast(version)).await?,
    ))
}

/// An empty body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct NoBody {}

/// Reactivates a deactivated operator.
#[utoipa::path(post, path = "/api/v1/operators/{operator_id}/reactivate", tag = "people",
    params(("operator_id" = String, Path)), request_body = NoBody,
    responses((status = 200, body = OperatorView), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn reactivate(
    State(state): State<AppState>,
    _: Auth<perm::People>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(_body): OptionalJson<NoBody>,
) -> Result<Json<OperatorView>, ApiError> {
    let id = operator_id(&raw)?;
    let at = now();
    let command = OperatorCommand::ReactivateOperator(ReactivateOperator { at });
    let version = run(&state, &ctx, &id, command, at).await?;
    Ok(Json(
        operator_view(&state, &id, Seen::AtLeast(version)).await?,
    ))
}

/// `POST …/clock-on` and `…/clock-off`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClockBody {
    pub order_id: String,
    /// The machine or workstation (clock-on only; optional).
    pub machine_id: Option<String>,
    /// Floor time (RFC 3339; may be in the past, e.g. sent from an offline terminal);
    /// default: now.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Clocks an operator on an order (at a machine or workstation).
#[utoipa::path(post, path = "/api/v1/operators/{operator_id}/clock-on", tag = "people",
    params(("operator_id" = String, Path)), request_body = ClockBody,
    responses((status = 200, body = OperatorView), (status = 400, body = ProblemDocument),
        (status = 404, description = "unknown operator", body = ProblemDocument),
        (status = 409, description = "deactivated, already clocked on, or the order is closed",
            body = ProblemDocument),
        (status = 422, description = "unknown order or machine", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn clock_on(
    State(state): State<AppState>,
    _: Auth<perm::Production>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<ClockBody>,
) -> Result<Json<OperatorView>, ApiError> {
    let id = operator_id(&raw)?;
    operator_view(&state, &id, Seen::Now).await?;
    let now = now();
    let at = not_in_future(body.timestamp.unwrap_or(now), now)?;
    let order = order_id(&body.order_id).map_err(|_| unknown_order(&body.order_id))?;
    let (po, _) = state
        .commands
        .load::<ProductionOrder>(order.as_str())
        .await?;
    match po.order().map(|o| o.status) {
        None => return Err(unknown_order(order.as_str())),
        Some(status @ (OrderStatus::Completed | OrderStatus::Cancelled)) => {
            return Err(ApiError::conflict(format!(
                "order {order} is {status}: nobody can clock on it"
            )))
        }
        Some(_) => {}
    }
    let machine_id = match body.machine_id.filter(|m| !m.trim().is_empty()) {
        Some(m) => {
            let m = MachineId::new(m).field("machine_id")?;
            machine_view(&state, &m, Seen::Now).await.map_err(|_| {
                ApiError::unprocessable("machine_id", format!("machine {m} is not registered"))
            })?;
            Some(m)
        }
        None => None,
    };
    let command = OperatorCommand::ClockOn(ClockOn {
        order_id: order,
        machine_id,
        at,
    });
    let version = run(&state, &ctx, &id, command, at).await?;
    Ok(Json(
        operator_view(&state, &id, Seen::AtLeast(version)).await?,
    ))
}

fn unknown_order(raw: &str) -> ApiError {
    ApiError::unprocessable("order_id", format!("production order {raw} does not exist"))
}

/// Clocks an operator off an order.
#[utoipa::path(post, path = "/api/v1/operators/{operator_id}/clock-off", tag = "people",
    params(("operator_id" = String, Path)), request_body = ClockBody,
    responses((status = 200, body = OperatorView), (status = 400, body = ProblemDocument),
        (status = 404, description = "unknown operator", body = ProblemDocument),
        (status = 409, description = "not clocked on that order", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn clock_off(
    State(state): State<AppState>,
    _: Auth<perm::Production>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<ClockBody>,
) -> Result<Json<OperatorView>, ApiError> {
    let id = operator_id(&raw)?;
    operator_view(&state, &id, Seen::Now).await?;
    let now = now();
    let at = not_in_future(body.timestamp.unwrap_or(now), now)?;
    let order = order_id(&body.order_id).map_err(|_| unknown_order(&body.order_id))?;
    let command = OperatorCommand::ClockOff(ClockOff {
        order_id: order,
        at,
    });
    let version = run(&state, &ctx, &id, command, at).await?;
    Ok(Json(
        operator_view(&state, &id, Seen::AtLeast(version)).await?,
    ))
}

/// `?from=&to=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LabourQuery {
    /// Default: since the first session.
    pub from: Option<DateTime<Utc>>,
    /// Default: now.
    pub to: Option<DateTime<Utc>>,
}

fn window(q: &LabourQuery) -> Result<(Option<DateTime<Utc>>, DateTime<Utc>), ApiError> {
    let to = q.to.unwrap_or_else(now);
    if q.from.is_some_and(|f| f >= to) {
        return Err(ApiError::invalid_field("from", "must be before `to`"));
    }
    Ok((q.from, to))
}

/// An operator's labour in a window: time on orders and the parts made while clocked on,
/// per order and per session, by floor time.
#[utoipa::path(get, path = "/api/v1/operators/{operator_id}/labour", tag = "people",
    params(("operator_id" = String, Path), LabourQuery),
    responses((status = 200, description = "labour", body = Object),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn operator_labour(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<LabourQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = operator_id(&raw)?;
    operator_view(&state, &id, Seen::Now).await?;
    let (from, to) = window(&q)?;
    let of = LabourOf::Operator(id.to_string());
    let report = query::labour(&state.pool, &of, from, to, now()).await?;
    Ok(Json(labour_json(
        "operator_id",
        id.as_str(),
        "orders",
        "order_id",
        report,
    )))
}

/// An order's labour: time operators spent on it and what was made while they were clocked
/// on, per operator and per session, by floor time.
#[utoipa::path(get, path = "/api/v1/production-orders/{order_id}/labour", tag = "people",
    params(("order_id" = String, Path), LabourQuery),
    responses((status = 200, description = "labour", body = Object),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn order_labour(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<LabourQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = order_id(&raw)?;
    crate::routes::order_view(&state, &id, Seen::Now).await?;
    let (from, to) = window(&q)?;
    let of = LabourOf::Order(id.to_string());
    let report = query::labour(&state.pool, &of, from, to, now()).await?;
    Ok(Json(labour_json(
        "order_id",
        id.as_str(),
        "operators",
        "operator_id",
        report,
    )))
}

/// The labour report as JSON, its lines keyed by what they are.
fn labour_json(
    key: &str,
    id: &str,
    lines_name: &str,
    line_key: &str,
    r: LabourReport,
) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = r
        .lines
        .iter()
        .map(|l| {
            serde_json::json!({
                line_key: l.id,
                "time_s": l.time_s,
                "good_count": l.good_count,
                "scrap_count": l.scrap_count,
            })
        })
        .collect();
    serde_json::json!({
        key: id,
        "from": r.from,
        "to": r.to,
        "time_s": r.time_s,
        "good_count": r.good_count,
        "scrap_count": r.scrap_count,
        lines_name: lines,
        "sessions": r.sessions,
    })
}
