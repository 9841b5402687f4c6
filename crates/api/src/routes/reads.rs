//! Lists, levels, KPIs and reports: read from the read models
//! (`shopfloor_projections::query`, `shopfloor_ingest::store`), which follow the event
//! log with a short delay. Single entities are read from their streams instead (see the
//! other route modules).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopfloor_projections::query::{self, Granularity};
use shopfloor_projections::QueryError;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{perm, Auth};
use crate::error::{ApiError, ProblemDocument};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::audit::parse_time;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/machines", get(machines))
        .route("/api/v1/machines/{machine_id}/states", get(machine_states))
        .route("/api/v1/production-orders", get(orders))
        .route("/api/v1/maintenance/tasks", get(tasks))
        .route("/api/v1/inventory", get(inventory))
        .route("/api/v1/inventory/movements", get(movements))
        .route("/api/v1/kpi-metrics", get(kpi_metrics))
        .route("/api/v1/downtime", get(downtime))
        .route("/api/v1/kpi-catalogue", get(kpi_catalogue))
        .route("/api/v1/changeovers", get(changeovers))
        .route("/api/v1/scrap", get(scrap))
        .route("/api/v1/ingest/rejected", get(ingest_rejected))
        .route("/api/v1/process/rejections", get(process_rejections))
        .route("/api/v1/machines/{machine_id}/telemetry", get(telemetry))
        .route("/api/v1/projections", get(projections))
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(m) => ApiError::bad_request(m).with_title("Invalid query"),
            e @ QueryError::NotFound { .. } => ApiError::not_found(e.to_string()),
            QueryError::Database(e) => e.into(),
        }
    }
}

fn opt_time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.filter(|s| !s.trim().is_empty())
        .map(|s| parse_time(field, s))
        .transpose()
}

/// The hierarchy scope of a query's `site`, `area`, `cell` and `node` (ADR 0062).
fn scope(
    site: Option<String>,
    area: Option<String>,
    cell: Option<String>,
    node: Option<String>,
) -> query::Scope {
    query::Scope {
        site: blank(site),
        area: blank(area),
        cell: blank(cell),
        node: blank(node),
    }
}

fn blank(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// A machine on the status board (the read model has more fields).
#[derive(Debug, Serialize, ToSchema)]
pub struct MachineRow {
    pub machine_id: String,
    #[serde(rename = "type")]
    pub machine_type: String,
    pub line: String,
    /// `running`, `idle`, `down` or `unknown`.
    pub current_status: String,
    pub status_since: Option<DateTime<Utc>>,
    pub reason_code: Option<String>,
    pub current_order: Option<String>,
    /// Floor time of the last maintenance performed.
    pub last_maintenance: Option<DateTime<Utc>>,
    pub ideal_cycle_time_s: f64,
    pub good_count: i64,
    pub scrap_count: i64,
}

/// `?line=&status=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MachineListQuery {
    pub line: Option<String>,
    /// A site of the equipment hierarchy (`default`: lines no site holds; ADR 0062).
    pub site: Option<String>,
    /// An area of the equipment hierarchy (`default`: lines no area holds).
    pub area: Option<String>,
    /// A work cell of the equipment hierarchy.
    pub cell: Option<String>,
    /// Any node of the equipment hierarchy (enterprise, site, area, line or work cell).
    pub node: Option<String>,
    /// `running`, `idle`, `down` or `unknown`.
    pub status: Option<String>,
}

/// The machine status board.
#[utoipa::path(get, path = "/api/v1/machines", tag = "machines", params(MachineListQuery),
    responses((status = 200, body = [MachineRow]),
        (status = 404, description = "`site`, `area`, `cell` or `node` names no node of the hierarchy",
            body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn machines(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<MachineListQuery>,
) -> Result<Json<Vec<query::MachineView>>, ApiError> {
    let filter = query::MachineFilter {
        line: blank(q.line),
        status: blank(q.status),
        scope: scope(q.site, q.area, q.cell, q.node),
    };
    Ok(Json(query::list_machines(&state.pool, &filter).await?))
}

/// `?from=&to=&as_of=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// RFC 3339; default: 24 hours before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; default: now (or `as_of`).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Only the events recorded by then.
    #[param(format = DateTime)]
    pub as_of: Option<String>,
}

struct Window {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
}

fn window(from: Option<&str>, to: Option<&str>, as_of: Option<&str>) -> Result<Window, ApiError> {
    let as_of = opt_time("as_of", as_of)?;
    let to = opt_time("to", to)?.unwrap_or_else(|| as_of.unwrap_or_else(Utc::now));
    let from = opt_time("from", from)?.unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(ApiError::invalid_field("from", "must be before `to`"));
    }
    Ok(Window { from, to, as_of })
}

/// A machine's state intervals over a window (read model).
#[utoipa::path(get, path = "/api/v1/machines/{machine_id}/states", tag = "machines",
    params(("machine_id" = String, Path), WindowQuery),
    responses((status = 200, description = "state intervals", body = [Object]),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn machine_states(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(machine_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WindowQuery>,
) -> Result<Json<Vec<query::StateInterval>>, ApiError> {
    let w = window(q.from.as_deref(), q.to.as_deref(), q.as_of.as_deref())?;
    let q = query::IntervalQuery {
        machine_id,
        from: w.from,
        to: w.to,
        as_of: w.as_of,
    };
    Ok(Json(query::state_intervals(&state.pool, &q).await?))
}

/// `?status=&machine_id=&product_id=&operator_id=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListQuery {
    pub status: Option<String>,
    pub machine_id: Option<String>,
    pub product_id: Option<String>,
    /// Orders this operator is assigned to.
    pub operator_id: Option<String>,
    /// Default 1000, at most 10000.
    pub limit: Option<i64>,
}

/// Production orders, newest first (read model).
#[utoipa::path(get, path = "/api/v1/production-orders", tag = "production orders",
    params(OrderListQuery),
    responses((status = 200, description = "orders, shaped like GET /production-orders/{id}", body = [Object])),
    security(("bearer" = [])))]
pub async fn orders(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<OrderListQuery>,
) -> Result<Json<Vec<query::OrderView>>, ApiError> {
    let filter = query::OrderFilter {
        status: blank(q.status),
        machine_id: blank(q.machine_id),
        product_id: blank(q.product_id),
        operator_id: blank(q.operator_id),
        limit: q.limit,
    };
    Ok(Json(query::list_orders(&state.pool, &filter).await?))
}

/// A maintenance task in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskRow {
    pub task_id: String,
    pub machine_id: String,
    pub scheduled_date: DateTime<Utc>,
    /// `scheduled`, `in_progress`, `completed` or `cancelled`.
    pub status: String,
    /// `preventive`, `predictive` or `corrective`.
    pub kind: String,
    pub description: Option<String>,
    pub overdue: bool,
}

/// `?machine_id=&status=&kind=&overdue=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    pub machine_id: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub overdue: Option<bool>,
}

/// Maintenance tasks by scheduled date (read model).
#[utoipa::path(get, path = "/api/v1/maintenance/tasks", tag = "maintenance",
    params(TaskListQuery), responses((status = 200, body = [TaskRow])),
    security(("bearer" = [])))]
pub async fn tasks(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<TaskListQuery>,
) -> Result<Json<Vec<query::TaskView>>, ApiError> {
    let filter = query::TaskFilter {
        machine_id: blank(q.machine_id),
        status: blank(q.status),
        kind: blank(q.kind),
        overdue: q.overdue,
    };
    Ok(Json(query::list_tasks(&state.pool, &filter).await?))
}

/// The stock of an item at a location.
#[derive(Debug, Serialize, ToSchema)]
pub struct LevelRow {
    pub item_id: String,
    /// `raw` or `finished`.
    pub item_type: String,
    pub location: String,
    pub quantity: f64,
}

/// `?item_id=&location=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InventoryQuery {
    pub item_id: Option<String>,
    pub location: Option<String>,
}

/// Stock levels by item and location (read model).
#[utoipa::path(get, path = "/api/v1/inventory", tag = "inventory", params(InventoryQuery),
    responses((status = 200, body = [LevelRow])), security(("bearer" = [])))]
pub async fn inventory(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<InventoryQuery>,
) -> Result<Json<Vec<query::InventoryLevel>>, ApiError> {
    let filter = query::InventoryFilter {
        item_id: blank(q.item_id),
        location: blank(q.location),
    };
    Ok(Json(query::inventory_levels(&state.pool, &filter).await?))
}

/// `?item_id=&location=&order_id=&before=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MovementQuery {
    pub item_id: Option<String>,
    pub location: Option<String>,
    pub order_id: Option<String>,
    /// Only movements before this log position (paging).
    pub before: Option<i64>,
    /// Default 100, at most 1000.
    pub limit: Option<i64>,
}

/// The inventory ledger, newest first (read model).
#[utoipa::path(get, path = "/api/v1/inventory/movements", tag = "inventory",
    params(MovementQuery), responses((status = 200, body = [Object])),
    security(("bearer" = [])))]
pub async fn movements(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<MovementQuery>,
) -> Result<Json<Vec<query::MovementView>>, ApiError> {
    let filter = query::MovementFilter {
        item_id: blank(q.item_id),
        location: blank(q.location),
        order_id: blank(q.order_id),
        before: q.before,
        limit: q.limit,
    };
    Ok(Json(
        query::inventory_movements(&state.pool, &filter).await?,
    ))
}

/// KPIs of a machine over `[from, to)` (the read model has more fields).
#[derive(Debug, Serialize, ToSchema)]
pub struct KpiRowDoc {
    pub machine_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub planned_production_time_s: f64,
    pub run_time_s: f64,
    pub downtime_minutes: f64,
    pub availability: Option<f64>,
    pub performance: Option<f64>,
    pub quality: Option<f64>,
    pub oee: Option<f64>,
    pub good_count: i64,
    pub scrap_count: i64,
    pub total_count: i64,
    pub production_yield: Option<f64>,
}

/// `?machine_id=&line=&from=&to=&as_of=&granularity=&rollup=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KpiParams {
    /// One machine; else every machine (of `line`).
    pub machine_id: Option<String>,
    pub line: Option<String>,
    /// A site of the equipment hierarchy (`default`: lines no site holds; ADR 0062).
    pub site: Option<String>,
    /// An area of the equipment hierarchy (`default`: lines no area holds).
    pub area: Option<String>,
    /// A work cell of the equipment hierarchy.
    pub cell: Option<String>,
    /// Any node of the equipment hierarchy (enterprise, site, area, line or work cell).
    pub node: Option<String>,
    /// RFC 3339; default: 24 hours before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; default: now (or `as_of`).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Figures from the events recorded by then only.
    #[param(format = DateTime)]
    pub as_of: Option<String>,
    /// `hour`, `shift` or `day`: a series instead of one row per machine.
    pub granularity: Option<String>,
    /// One row for all selected machines together (`machine_id` `*`).
    pub rollup: Option<bool>,
}

/// OEE, availability, performance, quality, downtime and counts (ISO 22400-2).
#[utoipa::path(get, path = "/api/v1/kpi-metrics", tag = "kpi", params(KpiParams),
    responses((status = 200, body = [KpiRowDoc]), (status = 400, body = ProblemDocument),
        (status = 404, description = "`machine_id` names no machine, or `site`, `area`, `cell` or `node` no node", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn kpi_metrics(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<KpiParams>,
) -> Result<Json<Vec<query::KpiRow>>, ApiError> {
    let w = window(q.from.as_deref(), q.to.as_deref(), q.as_of.as_deref())?;
    let granularity = blank(q.granularity)
        .map(|g| {
            serde_json::from_value::<Granularity>(Value::String(g.clone()))
                .map_err(|_| ApiError::invalid_field("granularity", "must be hour, shift or day"))
        })
        .transpose()?;
    let kq = query::KpiQuery {
        machine_id: blank(q.machine_id),
        line: blank(q.line),
        from: w.from,
        to: w.to,
        as_of: w.as_of,
        granularity,
        rollup: q.rollup.unwrap_or(false),
        scope: scope(q.site, q.area, q.cell, q.node),
    };
    Ok(Json(query::kpi_metrics(&state.pool, &kq).await?))
}

/// `?machine_id=&line=&from=&to=&as_of=&rollup=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogueParams {
    /// One machine; else every machine (of `line`).
    pub machine_id: Option<String>,
    pub line: Option<String>,
    /// A site of the equipment hierarchy (`default`: lines no site holds; ADR 0062).
    pub site: Option<String>,
    /// An area of the equipment hierarchy (`default`: lines no area holds).
    pub area: Option<String>,
    /// A work cell of the equipment hierarchy.
    pub cell: Option<String>,
    /// Any node of the equipment hierarchy (enterprise, site, area, line or work cell).
    pub node: Option<String>,
    /// RFC 3339; default: 24 hours before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; default: now (or `as_of`).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Figures from the events recorded by then only.
    #[param(format = DateTime)]
    pub as_of: Option<String>,
    /// One row for all selected machines together (`machine_id` `*`).
    pub rollup: Option<bool>,
}

/// The ISO 22400-2 KPI catalogue with its time elements (ADR 0058): TEEP, NEE,
/// allocation, utilisation, setup ratio, throughput, first pass yield, scrap ratio,
/// MTTF, MTBF, MTTR, worker efficiency; one row per machine or a roll-up.
#[utoipa::path(get, path = "/api/v1/kpi-catalogue", tag = "kpi", params(CatalogueParams),
    responses((status = 200, body = [Object]), (status = 400, body = ProblemDocument),
        (status = 404, description = "`machine_id` names no machine, or `site`, `area`, `cell` or `node` no node", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn kpi_catalogue(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<CatalogueParams>,
) -> Result<Json<Vec<query::IsoKpis>>, ApiError> {
    let w = window(q.from.as_deref(), q.to.as_deref(), q.as_of.as_deref())?;
    let cq = query::CatalogueQuery {
        machine_id: blank(q.machine_id),
        line: blank(q.line),
        from: w.from,
        to: w.to,
        as_of: w.as_of,
        rollup: q.rollup.unwrap_or(false),
        scope: scope(q.site, q.area, q.cell, q.node),
    };
    Ok(Json(query::iso_kpis(&state.pool, &cq).await?))
}

/// Changeovers opening in the window (ADR 0058), with setup time per product pair
/// and per machine and its trend.
#[utoipa::path(get, path = "/api/v1/changeovers", tag = "kpi", params(ScrapParams),
    responses((status = 200, body = Object), (status = 400, body = ProblemDocument),
        (status = 404, description = "`machine_id` names no machine, or `site`, `area`, `cell` or `node` no node", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn changeovers(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<ScrapParams>,
) -> Result<Json<query::ChangeoverReport>, ApiError> {
    let w = window(q.from.as_deref(), q.to.as_deref(), q.as_of.as_deref())?;
    let cq = query::ChangeoverQuery {
        machine_id: blank(q.machine_id),
        line: blank(q.line),
        from: w.from,
        to: w.to,
        as_of: w.as_of,
        scope: scope(q.site, q.area, q.cell, q.node),
    };
    Ok(Json(query::changeover_report(&state.pool, &cq).await?))
}

/// `?machine_id=&line=&from=&to=&as_of=&micro_stop_threshold_s=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DowntimeParams {
    pub machine_id: Option<String>,
    pub line: Option<String>,
    /// A site of the equipment hierarchy (`default`: lines no site holds; ADR 0062).
    pub site: Option<String>,
    /// An area of the equipment hierarchy (`default`: lines no area holds).
    pub area: Option<String>,
    /// A work cell of the equipment hierarchy.
    pub cell: Option<String>,
    /// Any node of the equipment hierarchy (enterprise, site, area, line or work cell).
    pub node: Option<String>,
    #[param(format = DateTime)]
    pub from: Option<String>,
    #[param(format = DateTime)]
    pub to: Option<String>,
    #[param(format = DateTime)]
    pub as_of: Option<String>,
    /// Stops shorter than this are micro-stops (default 60).
    pub micro_stop_threshold_s: Option<f64>,
}

/// Downtime reports: Pareto by reason and loss (recorded and classified), micro-stops,
/// MTBF and MTTR, one per machine.
#[utoipa::path(get, path = "/api/v1/downtime", tag = "kpi", params(DowntimeParams),
    responses((status = 200, body = [Object]), (status = 400, body = ProblemDocument),
        (status = 404, description = "`machine_id` names no machine, or `site`, `area`, `cell` or `node` no node", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn downtime(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<DowntimeParams>,
) -> Result<Json<Vec<query::DowntimeReport>>, ApiError> {
    let w = window(q.from.as_deref(), q.to.as_deref(), q.as_of.as_deref())?;
    let dq = query::DowntimeQuery {
        machine_id: blank(q.machine_id),
        line: blank(q.line),
        from: w.from,
        to: w.to,
        as_of: w.as_of,
        micro_stop_threshold_s: q.micro_stop_threshold_s,
        scope: scope(q.site, q.area, q.cell, q.node),
    };
    Ok(Json(query::downtime_report(&state.pool, &dq).await?))
}

/// `?machine_id=&line=&from=&to=&as_of=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScrapParams {
    /// One machine; else every machine (of `line`, when given).
    pub machine_id: Option<String>,
    pub line: Option<String>,
    /// A site of the equipment hierarchy (`default`: lines no site holds; ADR 0062).
    pub site: Option<String>,
    /// An area of the equipment hierarchy (`default`: lines no area holds).
    pub area: Option<String>,
    /// A work cell of the equipment hierarchy.
    pub cell: Option<String>,
    /// Any node of the equipment hierarchy (enterprise, site, area, line or work cell).
    pub node: Option<String>,
    #[param(format = DateTime)]
    pub from: Option<String>,
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Only the parts reports recorded by then.
    #[param(format = DateTime)]
    pub as_of: Option<String>,
}

/// Scrap by scrap reason over [from, to) of floor time (ADR 0050): `good_count`,
/// `scrap_count` and `by_reason` `[{"scrap_reason", "name", "scrap", "reports", "share"}]`,
/// largest first; scrap reported without a reason counts under `scrap_reason: null`.
#[utoipa::path(get, path = "/api/v1/scrap", tag = "kpi", params(ScrapParams),
    responses((status = 200, body = Object), (status = 400, body = ProblemDocument),
        (status = 404, description = "`machine_id` names no machine, or `site`, `area`, `cell` or `node` no node", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn scrap(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<ScrapParams>,
) -> Result<Json<query::ScrapReport>, ApiError> {
    let w = window(q.from.as_deref(), q.to.as_deref(), q.as_of.as_deref())?;
    let sq = query::ScrapQuery {
        machine_id: blank(q.machine_id),
        line: blank(q.line),
        from: w.from,
        to: w.to,
        as_of: w.as_of,
        scope: scope(q.site, q.area, q.cell, q.node),
    };
    Ok(Json(query::scrap_by_reason(&state.pool, &sq).await?))
}

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// Default 100, at most 1000.
    pub limit: Option<i64>,
}

/// A message the MQTT ingest set aside.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedRow {
    pub topic: String,
    pub reason: String,
    pub payload: String,
    pub received_at: DateTime<Utc>,
}

/// MQTT messages set aside by the ingest, newest first.
#[utoipa::path(get, path = "/api/v1/ingest/rejected", tag = "ingest", params(LimitQuery),
    responses((status = 200, body = [RejectedRow])), security(("bearer" = [])))]
pub async fn ingest_rejected(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> Result<Json<Vec<shopfloor_ingest::store::RejectedMessage>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit < 1 {
        return Err(ApiError::invalid_field("limit", "must be at least 1"));
    }
    shopfloor_ingest::store::list_rejected(&state.pool, limit)
        .await
        .map(Json)
        .map_err(ApiError::from)
}

/// A follow-up command the process manager sent and the domain refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessRejectionRow {
    /// The deterministic id of the refused command.
    pub command_id: String,
    /// Log position of the event that caused it.
    pub position: i64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// The stream the command was meant for, e.g. `production_order:O-1`.
    pub target: String,
    pub reason: String,
    pub recorded_at: DateTime<Utc>,
}

impl From<shopfloor_commands::rejections::ProcessRejection> for ProcessRejectionRow {
    fn from(r: shopfloor_commands::rejections::ProcessRejection) -> Self {
        Self {
            command_id: r.command_id,
            position: r.position,
            event_id: r.event_id,
            event_type: r.event_type,
            target: r.target,
            reason: r.reason,
            recorded_at: r.recorded_at,
        }
    }
}

/// Follow-up commands the domain refused (parts reported against an unknown or
/// completed order, say), newest first. The causing events stay in the log.
#[utoipa::path(get, path = "/api/v1/process/rejections", tag = "audit", params(LimitQuery),
    responses((status = 200, body = [ProcessRejectionRow])), security(("bearer" = [])))]
pub async fn process_rejections(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> Result<Json<Vec<ProcessRejectionRow>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit < 1 {
        return Err(ApiError::invalid_field("limit", "must be at least 1"));
    }
    let rows = shopfloor_commands::rejections::list(&state.pool, limit).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// `?sensor=&from=&to=&step=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TelemetryParams {
    /// One sensor (e.g. `temperature_c`); all sensors when absent.
    pub sensor: Option<String>,
    /// RFC 3339; default: 24 hours before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Bucket width in seconds, rounded up to whole minutes; default 60.
    pub step: Option<i64>,
}

/// A machine's telemetry from the one-minute rollups (min, max, avg, count per bucket).
#[utoipa::path(get, path = "/api/v1/machines/{machine_id}/telemetry", tag = "machines",
    params(("machine_id" = String, Path), TelemetryParams),
    responses((status = 200, body = [Object]), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn telemetry(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(machine_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TelemetryParams>,
) -> Result<Json<Vec<shopfloor_ingest::store::TelemetryPoint>>, ApiError> {
    let w = window(q.from.as_deref(), q.to.as_deref(), None)?;
    let step = q.step.unwrap_or(60);
    if !(1..=31 * 86_400).contains(&step) {
        return Err(ApiError::invalid_field(
            "step",
            "must be 1 to 2678400 seconds",
        ));
    }
    let query = shopfloor_ingest::store::TelemetryQuery {
        machine_id,
        sensor: q.sensor,
        from: w.from,
        to: w.to,
        step: Duration::seconds(step),
    };
    shopfloor_ingest::store::telemetry_series(&state.pool, &query)
        .await
        .map(Json)
        .map_err(ApiError::from)
}

/// Where each projection stands (checkpoint, lag, parked events).
#[utoipa::path(get, path = "/api/v1/projections", tag = "audit",
    responses((status = 200, body = [Object])), security(("bearer" = [])))]
pub async fn projections(
    State(state): State<AppState>,
    _: Auth<perm::Audit>,
) -> Result<Json<Vec<query::ProjectionStatus>>, ApiError> {
    Ok(Json(query::projection_status(&state.pool).await?))
}
