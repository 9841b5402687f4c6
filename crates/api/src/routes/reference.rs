//! Reference data: the downtime reason-code catalogue (the plant's, ADR 0053) and the
//! scrap reasons.

use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shopfloor_domain::process::Target;
use shopfloor_domain::reason::{scrap_reasons, Loss, ReasonCategory};
use shopfloor_domain::reason_codes::{
    DefineReasonCode, ListedReason, ReasonCodeCommand, RetireReasonCode, PLANT_STREAM,
};
use shopfloor_domain::values::{Actor, ReasonCode, Text};
use shopfloor_domain::PlantReasons;
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, Ctx};
use crate::routes::now;
use crate::views::name_of;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reason-codes", get(reason_codes))
        .route("/api/v1/reason-codes/{code}", put(define_reason_code))
        .route(
            "/api/v1/reason-codes/{code}/retire",
            post(retire_reason_code),
        )
        .route("/api/v1/scrap-reasons", get(scrap_reason_codes))
}

/// One reason code.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonCodeView {
    /// `group.leaf`, e.g. `breakdown.mechanical`, or `unclassified`.
    pub code: String,
    pub name: String,
    /// The part of the code before the first dot.
    pub group: String,
    /// `planned` or `unplanned`.
    pub category: String,
    /// Planned stops leave the planned production time.
    pub planned: bool,
    /// The OEE big loss it counts against, if any.
    pub loss: Option<String>,
    /// One of Shopfloor's built-in codes (a plant may still rename or retire it).
    pub builtin: bool,
    /// Retired: no new stop may be given it; kept so that history names it.
    pub retired: bool,
}

impl From<&ListedReason> for ReasonCodeView {
    fn from(listed: &ListedReason) -> Self {
        let r = &listed.definition;
        Self {
            code: r.code.to_string(),
            name: r.name.clone(),
            group: r.group().to_string(),
            category: name_of(&r.category),
            planned: r.planned(),
            loss: r.loss.as_ref().map(name_of),
            builtin: listed.builtin,
            retired: listed.retired,
        }
    }
}

/// The plant's reason codes as they are now.
async fn plant_reasons(state: &AppState) -> Result<PlantReasons, ApiError> {
    Ok(state.commands.load::<PlantReasons>(PLANT_STREAM).await?.0)
}

/// The reason codes of the plant, sorted by code: the built-in ones as the plant has
/// amended them, and the plant's own; retired codes are listed with `retired: true`.
#[utoipa::path(get, path = "/api/v1/reason-codes", tag = "reference",
    responses((status = 200, body = [ReasonCodeView])),
    security(("bearer" = [])))]
pub async fn reason_codes(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
) -> Result<Json<Vec<ReasonCodeView>>, ApiError> {
    let plant = plant_reasons(&state).await?;
    Ok(Json(
        plant.listing().iter().map(ReasonCodeView::from).collect(),
    ))
}

/// `PUT /api/v1/reason-codes/{code}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReasonCodeBody {
    pub name: String,
    /// `planned` or `unplanned`.
    #[schema(value_type = String)]
    pub category: ReasonCategory,
    /// The big loss of an unplanned code (`breakdown`, `setup_adjustment`, `small_stop`,
    /// `reduced_speed`, `startup_reject`, `production_reject`); none for a planned one.
    #[schema(value_type = Option<String>)]
    pub loss: Option<Loss>,
}

/// The code a path names (404 when it cannot name one).
fn code_of(raw: &str) -> Result<ReasonCode, ApiError> {
    ReasonCode::new(raw)
        .map_err(|_| ApiError::not_found(format!("reason code {raw} does not exist")))
}

/// Defines a reason code: adds a `group.leaf` code, or renames or re-categorises an
/// existing one (retired: brings it back). It applies to stops from then on; stops
/// already classified keep the category and loss they were given (ADR 0053).
#[utoipa::path(put, path = "/api/v1/reason-codes/{code}", tag = "reference",
    params(("code" = String, Path)), request_body = ReasonCodeBody,
    responses((status = 200, body = ReasonCodeView), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn define_reason_code(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<ReasonCodeBody>,
) -> Result<Json<ReasonCodeView>, ApiError> {
    let code = ReasonCode::new(&raw).field("code")?;
    let command = ReasonCodeCommand::DefineReasonCode(DefineReasonCode {
        code: code.clone(),
        name: Text::new(body.name).field("name")?,
        category: body.category,
        loss: body.loss,
        by: Actor::new(&ctx.principal.name).field("by")?,
        at: now(),
    });
    change_catalogue(&state, &ctx, &code, command).await
}

/// Retires a reason code: no stop may be given it from then on; it stays listed
/// (`retired: true`) so that history names it. Retiring it again changes nothing.
#[utoipa::path(post, path = "/api/v1/reason-codes/{code}/retire", tag = "reference",
    params(("code" = String, Path)),
    responses((status = 200, body = ReasonCodeView), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn retire_reason_code(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<ReasonCodeView>, ApiError> {
    let code = code_of(&raw)?;
    let command = ReasonCodeCommand::RetireReasonCode(RetireReasonCode {
        code: code.clone(),
        by: Actor::new(&ctx.principal.name).field("by")?,
        at: now(),
    });
    change_catalogue(&state, &ctx, &code, command).await
}

/// Sends a change to the catalogue and answers with the code as it now is.
async fn change_catalogue(
    state: &AppState,
    ctx: &Ctx,
    code: &ReasonCode,
    command: ReasonCodeCommand,
) -> Result<Json<ReasonCodeView>, ApiError> {
    let outcome = state
        .commands
        .execute(
            Target::ReasonCatalogue { command },
            &ctx.command(Some(now())),
        )
        .await?;
    let (plant, _) = state
        .commands
        .load_at_least::<PlantReasons>(PLANT_STREAM, outcome.stream_version)
        .await?;
    plant
        .listing()
        .iter()
        .find(|r| r.definition.code == *code)
        .map(|r| Json(ReasonCodeView::from(r)))
        .ok_or_else(|| ApiError::internal(format!("reason code {code} vanished")))
}

/// One scrap reason (ADR 0050).
#[derive(Debug, Serialize, ToSchema)]
pub struct ScrapReasonView {
    /// `scrap.leaf`, e.g. `scrap.dimensional`.
    pub code: String,
    pub name: String,
    /// The OEE quality loss it counts against (`production_reject` or `startup_reject`).
    pub loss: String,
}

/// The scrap reasons a parts report's `scrap_reason` may name, sorted by code.
#[utoipa::path(get, path = "/api/v1/scrap-reasons", tag = "reference",
    responses((status = 200, body = [ScrapReasonView])),
    security(("bearer" = [])))]
pub async fn scrap_reason_codes(_: Auth<perm::Read>) -> Json<Vec<ScrapReasonView>> {
    Json(
        scrap_reasons()
            .iter()
            .map(|r| ScrapReasonView {
                code: r.code.to_string(),
                name: r.name.clone(),
                loss: name_of(&r.loss),
            })
            .collect(),
    )
}
