//! Alert rules (supervisor), alerts (list, acknowledge, resolve) and the delivery log.
//!
//! Rules and alerts are aggregates: defining, disabling, acknowledging and resolving go
//! through the one writer, so the log says who did what. Lists read the tables the alert
//! evaluator keeps (ADR 0039); a webhook's secret is never in an answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopfloor_domain::alert::{
    AcknowledgeAlert, AlertCommand, AlertKind, AlertRuleCommand, Channel, DefineRule, DisableRule,
    Escalation, KpiMetric, RedefineRule, ResolveAlert, RuleSpec, Severity,
};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{Actor, AlertId, AlertRuleId, ItemId, LineId, MachineId, Text};
use shopfloor_domain::Alert;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Ctx, OptionalJson};
use crate::routes::audit::redact_secrets;
use crate::routes::{generated_id, now};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alert-rules", post(define_rule).get(list_rules))
        .route("/api/v1/alert-rules/{rule_id}", put(redefine_rule))
        .route("/api/v1/alert-rules/{rule_id}/disable", post(disable_rule))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{alert_id}/acknowledge", post(acknowledge))
        .route("/api/v1/alerts/{alert_id}/resolve", post(resolve))
        .route(
            "/api/v1/alerts/{alert_id}/deliveries",
            get(alert_deliveries),
        )
        .route("/api/v1/alert-deliveries", get(list_deliveries))
}

/// A channel of a rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelBody {
    /// A signed JSON `POST` to `url` (`X-Shopfloor-Signature: sha256=<hex HMAC-SHA256 of the
    /// body with secret>`), retried until it answers 2xx.
    Webhook { url: String, secret: String },
    /// An email to each address, over `SHOPFLOOR_SMTP_URL`.
    Email { to: Vec<String> },
}

impl From<ChannelBody> for Channel {
    fn from(c: ChannelBody) -> Self {
        match c {
            ChannelBody::Webhook { url, secret } => Channel::Webhook { url, secret },
            ChannelBody::Email { to } => Channel::Email { to },
        }
    }
}

/// Who is told when no one acknowledges in time.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EscalationBody {
    /// Minutes after the alert is raised (> 0).
    pub after_minutes: f64,
    pub channels: Vec<ChannelBody>,
}

/// `POST /api/v1/alert-rules`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RuleBody {
    /// Generated (`AR-…`) when left out.
    pub rule_id: Option<String>,
    /// `machine_down`, `unclassified_stop` (timed: need `after_minutes`), `predictive_alert`,
    /// `inventory_shortage`, `spc_signal` (a run rule signalled on an SPC chart; scoped by
    /// the characteristic's machine), or a condition checked on the evaluator's timer:
    /// `maintenance_overdue` (`after_minutes` past the scheduled date, 0 or more),
    /// `below_reorder_point` (`item_id`, `target` quantity), `ingest_silent`
    /// (`after_minutes` without a message), `rejected_messages` (`target` rejections within
    /// `after_minutes`), `kpi_below_target` (`metric`, `target` 0–1 over the running shift,
    /// checked once `after_minutes` of it have passed).
    #[schema(value_type = String)]
    pub kind: AlertKind,
    /// Scope: one machine, or one line; neither is the whole plant.
    pub machine_id: Option<String>,
    pub line: Option<String>,
    /// Minutes of floor time the condition must last (> 0; timed kinds).
    pub after_minutes: Option<f64>,
    /// `info`, `warning` or `critical` (the default).
    #[schema(value_type = Option<String>)]
    pub severity: Option<Severity>,
    pub channels: Vec<ChannelBody>,
    pub escalation: Option<EscalationBody>,
    /// The threshold of `below_reorder_point` (quantity), `rejected_messages` (count) and
    /// `kpi_below_target` (fraction, 0 to 1).
    pub target: Option<f64>,
    /// The item of `below_reorder_point`.
    pub item_id: Option<String>,
    /// The KPI of `kpi_below_target`: `oee`, `availability`, `performance` or `quality`.
    #[schema(value_type = Option<String>)]
    pub metric: Option<KpiMetric>,
}

/// The id of a rule just defined.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleCreated {
    pub rule_id: String,
}

fn rule_spec(body: RuleBody) -> Result<RuleSpec, ApiError> {
    let machine_id = body
        .machine_id
        .map(MachineId::new)
        .transpose()
        .field("machine_id")?;
    let line = body.line.map(LineId::new).transpose().field("line")?;
    let after_minutes = match (body.after_minutes, body.kind.is_timed()) {
        (Some(m), _) => m,
        (None, true) => {
            return Err(ApiError::invalid_field(
                "after_minutes",
                "is required for this kind",
            ))
        }
        (None, false) => 0.0,
    };
    let spec = RuleSpec {
        kind: body.kind,
        machine_id,
        line,
        after_minutes,
        severity: body.severity.unwrap_or_default(),
        channels: body.channels.into_iter().map(Channel::from).collect(),
        escalation: body.escalation.map(|e| Escalation {
            after_minutes: e.after_minutes,
            channels: e.channels.into_iter().map(Channel::from).collect(),
        }),
        target: body.target,
        item_id: body.item_id.map(ItemId::new).transpose().field("item_id")?,
        metric: body.metric,
    };
    spec.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(spec)
}

fn actor(ctx: &Ctx) -> Result<Actor, ApiError> {
    Actor::new(&ctx.principal.name).map_err(|e| ApiError::internal(e.to_string()))
}

/// Defines an alert rule.
#[utoipa::path(post, path = "/api/v1/alert-rules", tag = "alerts",
    request_body = RuleBody,
    responses((status = 201, body = RuleCreated), (status = 400, body = ProblemDocument),
        (status = 409, description = "the rule id is taken", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn define_rule(
    State(state): State<AppState>,
    _: Auth<perm::AlertRules>,
    ctx: Ctx,
    ApiJson(body): ApiJson<RuleBody>,
) -> Result<(StatusCode, Json<RuleCreated>), ApiError> {
    let rule_id = match body.rule_id.clone().filter(|s| !s.trim().is_empty()) {
        Some(raw) => AlertRuleId::new(raw).field("rule_id")?,
        None => {
            AlertRuleId::new(generated_id("AR", ctx.command_id().as_deref())).field("rule_id")?
        }
    };
    let spec = rule_spec(body)?;
    let target = Target::AlertRule {
        rule_id: rule_id.clone(),
        command: AlertRuleCommand::DefineRule(DefineRule {
            rule_id: rule_id.clone(),
            spec,
            by: actor(&ctx)?,
            at: now(),
        }),
    };
    state
        .commands
        .execute(target, &ctx.command(Some(now())))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RuleCreated {
            rule_id: rule_id.to_string(),
        }),
    ))
}

/// Redefines an enabled alert rule: the whole definition, as for `POST` (a `rule_id` in the
/// body is ignored). Open alerts of the rule go on; the rule is evaluated as redefined from
/// then on. The same definition again changes nothing.
#[utoipa::path(put, path = "/api/v1/alert-rules/{rule_id}", tag = "alerts",
    params(("rule_id" = String, Path)), request_body = RuleBody,
    responses((status = 200, body = RuleCreated), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument),
        (status = 409, description = "the rule is disabled", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn redefine_rule(
    State(state): State<AppState>,
    _: Auth<perm::AlertRules>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<RuleBody>,
) -> Result<Json<RuleCreated>, ApiError> {
    let command = AlertRuleCommand::RedefineRule(RedefineRule {
        spec: rule_spec(body)?,
        by: actor(&ctx)?,
        at: now(),
    });
    command_rule(&state, &ctx, &raw, command).await
}

/// Sends a command to the rule `raw` names (404 when it cannot name one).
async fn command_rule(
    state: &AppState,
    ctx: &Ctx,
    raw: &str,
    command: AlertRuleCommand,
) -> Result<Json<RuleCreated>, ApiError> {
    let rule_id = AlertRuleId::new(raw)
        .map_err(|_| ApiError::not_found(format!("alert rule {raw} does not exist")))?;
    let target = Target::AlertRule {
        rule_id: rule_id.clone(),
        command,
    };
    state
        .commands
        .execute(target, &ctx.command(Some(now())))
        .await?;
    Ok(Json(RuleCreated {
        rule_id: rule_id.to_string(),
    }))
}

/// An empty body (`{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct EmptyBody {}

/// Disables an alert rule for good; its open alerts stay until resolved.
#[utoipa::path(post, path = "/api/v1/alert-rules/{rule_id}/disable", tag = "alerts",
    params(("rule_id" = String, Path)), request_body = EmptyBody,
    responses((status = 200, body = RuleCreated), (status = 404, body = ProblemDocument),
        (status = 409, description = "already disabled", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn disable_rule(
    State(state): State<AppState>,
    _: Auth<perm::AlertRules>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(_): OptionalJson<EmptyBody>,
) -> Result<Json<RuleCreated>, ApiError> {
    let command = AlertRuleCommand::DisableRule(DisableRule {
        by: actor(&ctx)?,
        at: now(),
    });
    command_rule(&state, &ctx, &raw, command).await
}

/// A rule as the evaluator knows it; webhook secrets read `[redacted]`.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct RuleView {
    pub rule_id: String,
    pub kind: String,
    pub machine_id: Option<String>,
    pub line: Option<String>,
    pub after_minutes: f64,
    pub severity: String,
    #[schema(value_type = Vec<Object>)]
    pub channels: Value,
    #[schema(value_type = Option<Object>)]
    pub escalation: Option<Value>,
    pub enabled: bool,
    pub defined_by: String,
    pub defined_at: DateTime<Utc>,
    pub target: Option<f64>,
    pub item_id: Option<String>,
    pub metric: Option<String>,
}

/// The alert rules (as the evaluator has read them from the log).
#[utoipa::path(get, path = "/api/v1/alert-rules", tag = "alerts",
    responses((status = 200, body = Vec<RuleView>)),
    security(("bearer" = [])))]
pub async fn list_rules(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
) -> Result<Json<Vec<RuleView>>, ApiError> {
    let mut rules: Vec<RuleView> = sqlx::query_as(
        "SELECT rule_id, kind, machine_id, line, after_minutes, severity, channels, escalation, \
         enabled, defined_by, defined_at, target, item_id, metric FROM alert_rules \
         ORDER BY rule_id",
    )
    .fetch_all(&state.pool)
    .await?;
    for r in &mut rules {
        redact_secrets(&mut r.channels);
        if let Some(e) = r.escalation.as_mut() {
            redact_secrets(e);
        }
    }
    Ok(Json(rules))
}

/// `?state=&machine_id=&severity=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// `open`, `acknowledged` or `resolved`.
    pub state: Option<String>,
    pub machine_id: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
    /// At most this many, newest first (default 500, at most 5000).
    pub limit: Option<i64>,
}

pub use shopfloor_alerts::view::AlertView;

/// The alerts, newest first, filtered by state, machine and severity.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = Vec<AlertView>), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn list_alerts(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    if let Some(s) = q.state.as_deref() {
        if !matches!(s, "open" | "acknowledged" | "resolved") {
            return Err(ApiError::invalid_field(
                "state",
                "must be open, acknowledged or resolved",
            ));
        }
    }
    let filter = shopfloor_alerts::view::AlertFilter {
        state: q.state,
        machine_id: q.machine_id,
        severity: q.severity,
        limit: q.limit.unwrap_or(500).clamp(1, 5000),
    };
    Ok(Json(
        shopfloor_alerts::view::list(&state.pool, filter).await?,
    ))
}

/// An alert as its stream holds it now (the answer to a step just taken).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertStateView {
    pub alert_id: String,
    pub state: String,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

async fn step(
    state: &AppState,
    ctx: &Ctx,
    raw: &str,
    command: AlertCommand,
) -> Result<AlertStateView, ApiError> {
    let not_found = || ApiError::not_found(format!("alert {raw} does not exist"));
    let alert_id = AlertId::new(raw).map_err(|_| not_found())?;
    let target = Target::Alert {
        alert_id: alert_id.clone(),
        command,
    };
    let outcome = state
        .commands
        .execute(target, &ctx.command(Some(now())))
        .await?;
    let (alert, _) = state
        .commands
        .load_at_least::<Alert>(alert_id.as_str(), outcome.stream_version)
        .await?;
    let a = alert.alert().ok_or_else(not_found)?;
    Ok(AlertStateView {
        alert_id: alert_id.to_string(),
        state: a.state.as_str().to_string(),
        acknowledged_by: a.acknowledged_by.as_ref().map(|b| b.to_string()),
        resolved_at: a.resolved_at,
    })
}

/// Acknowledges an alert: someone is on it; escalation stops.
#[utoipa::path(post, path = "/api/v1/alerts/{alert_id}/acknowledge", tag = "alerts",
    params(("alert_id" = String, Path)), request_body = EmptyBody,
    responses((status = 200, body = AlertStateView), (status = 404, body = ProblemDocument),
        (status = 409, description = "the alert is resolved", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn acknowledge(
    State(state): State<AppState>,
    _: Auth<perm::AcknowledgeAlerts>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(_): OptionalJson<EmptyBody>,
) -> Result<Json<AlertStateView>, ApiError> {
    let command = AlertCommand::AcknowledgeAlert(AcknowledgeAlert {
        by: actor(&ctx)?,
        at: now(),
    });
    Ok(Json(step(&state, &ctx, &raw, command).await?))
}

/// `POST …/resolve`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ResolveBody {
    pub reason: Option<String>,
}

/// Resolves an alert by hand.
#[utoipa::path(post, path = "/api/v1/alerts/{alert_id}/resolve", tag = "alerts",
    params(("alert_id" = String, Path)), request_body = ResolveBody,
    responses((status = 200, body = AlertStateView), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn resolve(
    State(state): State<AppState>,
    _: Auth<perm::AlertRules>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(body): OptionalJson<ResolveBody>,
) -> Result<Json<AlertStateView>, ApiError> {
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "resolved by hand".into());
    let command = AlertCommand::ResolveAlert(ResolveAlert {
        by: Some(actor(&ctx)?),
        reason: Text::new(reason).field("reason")?,
        at: now(),
    });
    Ok(Json(step(&state, &ctx, &raw, command).await?))
}

/// One delivery of an alert step to one channel.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DeliveryView {
    pub delivery_id: i64,
    pub alert_id: String,
    /// `raised`, `acknowledged`, `escalated` or `resolved`.
    pub stage: String,
    /// `webhook` or `email`.
    pub channel_type: String,
    /// The webhook URL or the email recipients.
    pub target: String,
    /// `pending`, `delivered` or `dead` (the dead-letter list).
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str = "delivery_id, alert_id, stage, channel_type, target, state, \
     attempts, last_status, last_error, next_attempt_at, created_at, delivered_at";

/// The delivery log of one alert.
#[utoipa::path(get, path = "/api/v1/alerts/{alert_id}/deliveries", tag = "alerts",
    params(("alert_id" = String, Path)),
    responses((status = 200, body = Vec<DeliveryView>)),
    security(("bearer" = [])))]
pub async fn alert_deliveries(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let rows = sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE alert_id = $1 ORDER BY delivery_id"
    ))
    .bind(raw)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(rows))
}

/// `?state=dead` for the dead-letter list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// At most this many, newest first (default 500, at most 5000).
    pub limit: Option<i64>,
}

/// Deliveries of every alert, newest first; `?state=dead` is the dead-letter list.
#[utoipa::path(get, path = "/api/v1/alert-deliveries", tag = "alerts", params(DeliveryQuery),
    responses((status = 200, body = Vec<DeliveryView>)),
    security(("bearer" = [])))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let rows = sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE ($1::text IS NULL OR state = $1) \
         ORDER BY delivery_id DESC LIMIT $2"
    ))
    .bind(q.state)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(rows))
}
