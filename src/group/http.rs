//! The group's HTTP API under `/api/v1/group/...` (ADR 0061): cross-plant KPIs,
//! downtime, inventory and orders, by site, line, product or the whole group, plus
//! the sites' copy status and the group's own tokens.
//!
//! Every figure comes from the standard query functions run on each site's schema
//! ([`super::sites`]) and rolled up by [`super::rollup`]. Tokens are the group
//! database's own (`api_tokens` of its public schema, `SHOPFLOOR_ADMIN_TOKEN` of the
//! group process): a plant's token is unknown here (401), and a group token is unknown
//! at a plant. Errors are the API crate's problem+json. The OpenAPI document of these
//! routes is served at `/api/v1/group/openapi.json`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use shopfloor_api::auth::{Principal, Tokens};
use shopfloor_api::error::ProblemDocument;
use shopfloor_api::{ApiError, Permission, Role};
use shopfloor_projections::query::{self, KpiQuery};
use shopfloor_projections::Projection;
use sqlx::PgPool;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::rollup::{self, By, GroupDowntime, GroupOrders, GroupStock};
use super::sites::{Site, Sites};

/// What the group's handlers share.
#[derive(Clone, Debug)]
pub struct GroupState {
    pub sites: Sites,
    pub tokens: Tokens,
    /// The hub NATS, for readiness.
    pub nats: async_nats::Client,
}

/// The group's router.
pub fn router(state: GroupState) -> Router {
    let api = Router::new()
        .route("/api/v1/group/sites", get(sites))
        .route("/api/v1/group/kpi-metrics", get(kpi_metrics))
        .route("/api/v1/group/downtime", get(downtime))
        .route("/api/v1/group/inventory", get(inventory))
        .route("/api/v1/group/orders", get(orders))
        .route("/api/v1/group/auth/tokens", post(issue_token))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    Router::new()
        .merge(api)
        .route("/api/v1/group/openapi.json", get(openapi_json))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        // As at a plant: a body over 1 MiB gets 413.
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .with_state(state)
}

/// Resolves the bearer token among the group's own tokens (401 when missing or unknown).
async fn authenticate(State(state): State<GroupState>, mut req: Request, next: Next) -> Response {
    let token = match bearer(req.headers()) {
        Ok(t) => t.to_owned(),
        Err(e) => return e.into_response(),
    };
    match state.tokens.resolve(&token).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) => {
            ApiError::unauthorized("the bearer token is not a token of this group").into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(
            "expected Authorization: Bearer <token>",
        )),
    }
}

fn need(principal: &Principal, permission: Permission) -> Result<(), ApiError> {
    if principal.role.allows(permission) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "the role {} may not do this",
            principal.role.as_str()
        )))
    }
}

/// Prometheus text format (no token needed), as a plant serves it.
async fn metrics() -> Response {
    shopfloor_api::health::exposition(crate::app::metrics_handle().map(|h| h.render()))
}

async fn readyz(State(state): State<GroupState>) -> Response {
    let pg = sqlx::query("SELECT 1")
        .execute(state.sites.main())
        .await
        .is_ok();
    let nats = state.nats.connection_state() == async_nats::connection::State::Connected;
    if pg && nats {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::unavailable(format!("postgres up: {pg}, hub NATS up: {nats}"), 1).into_response()
    }
}

/// The window and the cut of a group query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupParams {
    /// One site only.
    site: Option<String>,
    /// One line only.
    line: Option<String>,
    /// One machine only (KPIs, downtime).
    machine_id: Option<String>,
    /// Start of the window, RFC 3339 (default: 24 h before `to`).
    from: Option<String>,
    /// End of the window, RFC 3339 (default: now).
    to: Option<String>,
    /// Figures from the events recorded by then only (KPIs, downtime).
    as_of: Option<String>,
    /// `group`, `site` (default), `line` or `detail` (per machine, location or order).
    by: Option<By>,
    /// One item (inventory).
    item_id: Option<String>,
    /// One product (orders).
    product_id: Option<String>,
    /// One status (orders).
    status: Option<String>,
}

fn blank(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn time(field: &str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    blank(v)
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ApiError::invalid_field(field, format!("not RFC 3339: {e}")))
        })
        .transpose()
}

/// `(from, to, as_of)` of a query.
type Window = (DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>);

impl GroupParams {
    /// `(from, to, as_of)`.
    fn window(&self) -> Result<Window, ApiError> {
        let as_of = time("as_of", &self.as_of)?;
        let to = time("to", &self.to)?.unwrap_or_else(|| as_of.unwrap_or_else(Utc::now));
        let from = time("from", &self.from)?.unwrap_or(to - Duration::hours(24));
        if from >= to {
            return Err(ApiError::invalid_field("from", "must be before `to`"));
        }
        Ok((from, to, as_of))
    }

    /// The sites asked for, with their pools (404 for an unknown site).
    async fn sites(&self, sites: &Sites) -> Result<Vec<(Site, PgPool)>, ApiError> {
        match blank(&self.site) {
            None => Ok(sites.all().await),
            Some(name) => {
                let site = Site::new(&name).map_err(|e| ApiError::invalid_field("site", e))?;
                let pool = sites.get(&site).await.ok_or_else(|| {
                    ApiError::not_found(format!("no events of site {site} have reached the group"))
                })?;
                Ok(vec![(site, pool)])
            }
        }
    }
}

type Params = Result<Query<GroupParams>, QueryRejection>;

fn params(p: Params) -> Result<GroupParams, ApiError> {
    p.map(|Query(q)| q).map_err(ApiError::from)
}

/// A site's copy of its plant's log and how far its read models stand.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteStatus {
    site: String,
    /// Every event of the plant up to this position is in the group's copy.
    copied_position: i64,
    /// Commit time, at the plant, of that event.
    copied_recorded_at: Option<DateTime<Utc>>,
    /// Events of the plant held in the copy beyond a gap (waiting for the missing ones).
    waiting: i64,
    /// The lowest checkpoint of the site's read models.
    projected_position: i64,
    /// When the plant took the calendar snapshot the site's calendar is (its time
    /// zone, shifts and calendar history); null before the first one arrived.
    calendar_taken_at: Option<DateTime<Utc>>,
}

/// Every site whose events reached the group, with its copy's progress.
#[utoipa::path(get, path = "/api/v1/group/sites", tag = "group",
    responses((status = 200, body = [SiteStatus]), (status = 401, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn sites(
    State(state): State<GroupState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<SiteStatus>>, ApiError> {
    need(&who, Permission::Read)?;
    let mut out = Vec::new();
    for (site, pool) in state.sites.all().await {
        // `recorded_at` is -infinity while the copy is empty.
        let (copied_position, at): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT position, CASE WHEN position > 0 THEN recorded_at END \
             FROM event_log_head WHERE id",
        )
        .fetch_one(&pool)
        .await?;
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE position > $1")
            .bind(copied_position)
            .fetch_one(&pool)
            .await?;
        let names: Vec<&str> = Projection::ALL.iter().map(|p| p.name()).collect();
        let projected_position: Option<i64> = sqlx::query_scalar(
            "SELECT CASE WHEN count(*) = cardinality($1::text[]) THEN min(position) ELSE 0 END \
             FROM projection_checkpoints WHERE projection = ANY($1)",
        )
        .bind(&names)
        .fetch_one(&pool)
        .await?;
        let calendar_taken_at = shopfloor_projections::calendar_sync::applied(&pool).await?;
        out.push(SiteStatus {
            site: site.to_string(),
            copied_position,
            copied_recorded_at: at,
            waiting,
            projected_position: projected_position.unwrap_or(0),
            calendar_taken_at,
        });
    }
    Ok(Json(out))
}

/// KPIs (ISO 22400-2, the plant's definitions) by site, line, machine or the whole
/// group; times and counts are summed before the ratios are computed.
#[utoipa::path(get, path = "/api/v1/group/kpi-metrics", tag = "group", params(GroupParams),
    responses((status = 200, description = "the plant's KPI rows, each with its `site` (`*` for the group)",
        body = [Object]), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn kpi_metrics(
    State(state): State<GroupState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> Result<Json<Vec<rollup::SiteKpi>>, ApiError> {
    need(&who, Permission::Read)?;
    let p = params(p)?;
    let (from, to, as_of) = p.window()?;
    let q = KpiQuery {
        machine_id: blank(&p.machine_id),
        line: blank(&p.line),
        from,
        to,
        as_of,
        granularity: None,
        rollup: false,
        scope: Default::default(),
    };
    let mut rows = Vec::new();
    for (site, pool) in p.sites(&state.sites).await? {
        match query::kpi_metrics(&pool, &q).await {
            Ok(r) => rows.extend(r.into_iter().map(|r| (site.to_string(), r))),
            // A machine that one site does not have.
            Err(shopfloor_projections::QueryError::NotFound { .. }) if q.machine_id.is_some() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(rollup::kpis(rows, p.by.unwrap_or_default(), &q)))
}

/// Downtime (unplanned stops, their time, failures, MTBF/MTTR, Pareto by reason) by
/// site, line, machine or the whole group.
#[utoipa::path(get, path = "/api/v1/group/downtime", tag = "group", params(GroupParams),
    responses((status = 200, body = [GroupDowntime]), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn downtime(
    State(state): State<GroupState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> Result<Json<Vec<GroupDowntime>>, ApiError> {
    need(&who, Permission::Read)?;
    let p = params(p)?;
    let (from, to, as_of) = p.window()?;
    let q = query::DowntimeQuery {
        machine_id: blank(&p.machine_id),
        line: blank(&p.line),
        from,
        to,
        as_of,
        micro_stop_threshold_s: None,
        scope: Default::default(),
    };
    let mut rows = Vec::new();
    for (site, pool) in p.sites(&state.sites).await? {
        let lines = machine_lines(&pool).await?;
        let reports = match query::downtime_report(&pool, &q).await {
            Ok(r) => r,
            Err(shopfloor_projections::QueryError::NotFound { .. }) if q.machine_id.is_some() => {
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        for r in reports {
            let line = lines.get(&r.machine_id).cloned().unwrap_or_default();
            rows.push((site.to_string(), line, r));
        }
    }
    Ok(Json(rollup::downtime(rows, p.by.unwrap_or_default())))
}

/// The line of every machine of a site.
async fn machine_lines(
    pool: &PgPool,
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    Ok(query::list_machines(pool, &Default::default())
        .await?
        .into_iter()
        .map(|m| (m.machine_id, m.line))
        .collect())
}

/// Stock by site (or location, or the whole group) and item.
#[utoipa::path(get, path = "/api/v1/group/inventory", tag = "group", params(GroupParams),
    responses((status = 200, body = [GroupStock]), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn inventory(
    State(state): State<GroupState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> Result<Json<Vec<GroupStock>>, ApiError> {
    need(&who, Permission::Read)?;
    let p = params(p)?;
    let filter = query::InventoryFilter {
        item_id: blank(&p.item_id),
        location: None,
    };
    let mut rows = Vec::new();
    for (site, pool) in p.sites(&state.sites).await? {
        let levels = query::inventory_levels(&pool, &filter).await?;
        rows.extend(levels.into_iter().map(|l| (site.to_string(), l)));
    }
    Ok(Json(rollup::inventory(rows, p.by.unwrap_or_default())))
}

/// Production orders by site, line (of the assigned machine), order or the whole group,
/// and product: counts, statuses, and the yield of the summed counts.
#[utoipa::path(get, path = "/api/v1/group/orders", tag = "group", params(GroupParams),
    responses((status = 200, body = [GroupOrders]), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn orders(
    State(state): State<GroupState>,
    Extension(who): Extension<Principal>,
    p: Params,
) -> Result<Json<Vec<GroupOrders>>, ApiError> {
    need(&who, Permission::Read)?;
    let p = params(p)?;
    let filter = query::OrderFilter {
        status: blank(&p.status),
        product_id: blank(&p.product_id),
        limit: Some(10_000),
        ..Default::default()
    };
    let mut rows = Vec::new();
    for (site, pool) in p.sites(&state.sites).await? {
        let lines = machine_lines(&pool).await?;
        let orders = query::list_orders(&pool, &filter).await?;
        rows.extend(orders.into_iter().map(|o| {
            let line = o
                .assigned_machine
                .as_ref()
                .and_then(|m| lines.get(m))
                .cloned();
            (site.to_string(), line, o)
        }));
    }
    Ok(Json(rollup::orders(rows, p.by.unwrap_or_default())))
}

/// A token to issue.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewToken {
    name: String,
    role: Role,
}

/// An issued token (its secret is shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    token: String,
    role: Role,
}

/// Issues a token of the group (admin), valid at the group API only.
#[utoipa::path(post, path = "/api/v1/group/auth/tokens", tag = "group", request_body = NewToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = ProblemDocument),
        (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn issue_token(
    State(state): State<GroupState>,
    Extension(who): Extension<Principal>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    need(&who, Permission::Tokens)?;
    let Json(body) = body?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let token = state.tokens.issue(name, body.role, &who.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token,
            role: body.role,
        }),
    ))
}

/// The OpenAPI document of the group's routes.
#[derive(OpenApi)]
#[openapi(
    info(title = "Shopfloor group API", description = "Cross-plant read models (ADR 0061)."),
    paths(sites, kpi_metrics, downtime, inventory, orders, issue_token),
    components(schemas(SiteStatus, GroupDowntime, GroupStock, GroupOrders, NewToken, IssuedToken,
        By, ProblemDocument)),
    tags((name = "group", description = "Figures of every plant of the group"))
)]
pub struct GroupDoc;

/// `GET /api/v1/group/openapi.json` (no token needed).
#[utoipa::path(get, path = "/api/v1/group/openapi.json", tag = "group",
    responses((status = 200, description = "this document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(GroupDoc::openapi())
}
