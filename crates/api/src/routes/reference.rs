//! Reference data: the downtime reason-code catalogue and the scrap reasons.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use shopfloor_domain::reason::{scrap_reasons, ReasonCatalogue};
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::views::name_of;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reason-codes", get(reason_codes))
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
}

/// The reason codes a state change may carry, sorted by code.
#[utoipa::path(get, path = "/api/v1/reason-codes", tag = "reference",
    responses((status = 200, body = [ReasonCodeView])),
    security(("bearer" = [])))]
pub async fn reason_codes(_: Auth<perm::Read>) -> Json<Vec<ReasonCodeView>> {
    Json(
        ReasonCatalogue::builtin()
            .reasons()
            .iter()
            .map(|r| ReasonCodeView {
                code: r.code.to_string(),
                name: r.name.clone(),
                group: r.group().to_string(),
                category: name_of(&r.category),
                planned: r.planned(),
                loss: r.loss.as_ref().map(name_of),
            })
            .collect(),
    )
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
