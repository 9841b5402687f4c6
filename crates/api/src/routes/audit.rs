//! For auditors: the global log in commit order, a stream's history, and an aggregate as
//! it was at a version or a time.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopfloor_domain::{
    InventoryItem, Machine, MaintenancePolicy, MaintenanceTask, ProductionOrder, StreamType,
};
use shopfloor_eventstore::{AggregateRepository, Direction, RecordedEvent, StreamRef};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{perm, Auth};
use crate::error::{ApiError, ProblemDocument};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::reference::ReasonCodeView;
use crate::views::{ItemView, MachineView, OrderView, TaskView};
use crate::AppState;

/// Most events one page may hold.
pub const MAX_PAGE: usize = 1000;
/// Events per page when `limit` is left out.
pub const DEFAULT_PAGE: usize = 100;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(log))
        .route(
            "/api/v1/streams/{stream_type}/{stream_id}/events",
            get(stream_events),
        )
        .route(
            "/api/v1/streams/{stream_type}/{stream_id}/state",
            get(stream_state),
        )
}

/// An event as the log holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Global position: increasing integers in commit order.
    pub position: i64,
    pub stream_id: String,
    pub stream_type: String,
    /// Version within the stream (1, 2, ...).
    pub version: u64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub schema_version: i32,
    /// The event's fields.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// `actor`, `source`, `correlation_id`, `causation_id`, `request_id`, `command_id`,
    /// `occurred_at` (floor time), ... — those that are set.
    #[schema(value_type = Object)]
    pub metadata: BTreeMap<String, Value>,
    /// Commit time.
    pub recorded_at: DateTime<Utc>,
}

impl From<RecordedEvent> for EventView {
    fn from(e: RecordedEvent) -> Self {
        let m = e.metadata;
        let mut metadata: BTreeMap<String, Value> = m
            .extra
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                metadata.insert(k.to_string(), Value::String(v));
            }
        };
        put("actor", m.actor);
        put("correlation_id", m.correlation_id);
        put("causation_id", m.causation_id);
        put("occurred_at", m.occurred_at.map(|t| t.to_rfc3339()));
        put("source", Some(m.source.as_str().to_string()));
        Self {
            position: e.position,
            stream_id: e.stream_id,
            stream_type: e.stream_type,
            version: e.version,
            event_id: e.event_id,
            event_type: e.event_type,
            schema_version: e.schema_version,
            payload: {
                let mut payload = e.payload;
                redact_secrets(&mut payload);
                payload
            },
            metadata,
            recorded_at: e.recorded_at,
        }
    }
}

/// Replaces the secret of every webhook channel in `value` (an alert rule's event or state)
/// with `"[redacted]"`: the log keeps it (deliveries need it), no answer shows it (ADR 0039).
pub(crate) fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("webhook")
                && map.contains_key("secret")
            {
                map.insert("secret".into(), Value::String("[redacted]".into()));
            }
            map.values_mut().for_each(redact_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

/// A page of the global log.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub events: Vec<EventView>,
    /// Pass as `after` for the next page (the last position returned, or `after`).
    pub next: i64,
}

/// `?after=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Read the events after this position (0: from the start).
    pub after: Option<i64>,
    /// At most this many events (default 100, at most 1000).
    pub limit: Option<usize>,
}

fn page_size(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(0) => Err(ApiError::invalid_field("limit", "must be at least 1")),
        Some(n) => Ok(n.min(MAX_PAGE)),
    }
}

/// The global log, in commit order.
#[utoipa::path(get, path = "/api/v1/events", tag = "audit", params(LogQuery),
    responses((status = 200, body = LogPage), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn log(
    State(state): State<AppState>,
    _: Auth<perm::Audit>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<LogPage>, ApiError> {
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid_field("after", "must be a position >= 0"));
    }
    let limit = page_size(q.limit)?;
    let events = state.store.read_all(after, limit).await?;
    let next = events.last().map_or(after, |e| e.position);
    Ok(Json(LogPage {
        events: events.into_iter().map(EventView::from).collect(),
        next,
    }))
}

/// `?from_version=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// First version to read (default 1).
    pub from_version: Option<u64>,
    /// At most this many events (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A page of one stream's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamPage {
    pub stream_type: String,
    pub stream_id: String,
    /// The stream's current version.
    pub version: u64,
    pub events: Vec<EventView>,
    /// `from_version` of the next page, when there is more.
    pub next_version: Option<u64>,
}

fn known_type(stream_type: &str) -> Result<StreamType, ApiError> {
    StreamType::parse(stream_type).ok_or_else(|| {
        let known: Vec<&str> = StreamType::ALL.iter().map(|t| t.as_str()).collect();
        ApiError::not_found(format!(
            "unknown stream type {stream_type}; known: {}",
            known.join(", ")
        ))
    })
}

/// One stream's events, in version order.
#[utoipa::path(get, path = "/api/v1/streams/{stream_type}/{stream_id}/events", tag = "audit",
    params(("stream_type" = String, Path, description = "production_order, machine, maintenance_task, inventory_item, maintenance_policy, operator, alert_rule, alert, reason_catalogue, spc_characteristic or equipment_hierarchy"),
        ("stream_id" = String, Path), StreamQuery),
    responses((status = 200, body = StreamPage), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn stream_events(
    State(state): State<AppState>,
    _: Auth<perm::Audit>,
    ApiPath((stream_type, stream_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Json<StreamPage>, ApiError> {
    known_type(&stream_type)?;
    let stream = StreamRef::new(&stream_type, &stream_id);
    let version = state.store.stream_version(&stream).await?;
    if version == 0 {
        return Err(ApiError::not_found(format!(
            "stream {stream} has no events"
        )));
    }
    let limit = page_size(q.limit)?;
    let from = q.from_version.unwrap_or(1).max(1);
    let events = state
        .store
        .read_stream(&stream, Direction::Forward, from, limit)
        .await?;
    let next_version = events
        .last()
        .map(|e| e.version + 1)
        .filter(|&n| n <= version);
    Ok(Json(StreamPage {
        stream_type,
        stream_id,
        version,
        events: events.into_iter().map(EventView::from).collect(),
        next_version,
    }))
}

/// `?version=N` and/or `?at=<RFC 3339>`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// The state after this version.
    pub version: Option<u64>,
    /// The state with the events recorded by this time (RFC 3339 with offset).
    #[param(format = DateTime)]
    pub at: Option<String>,
}

/// An aggregate as it was.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamState {
    pub stream_type: String,
    pub stream_id: String,
    /// The version of the state shown.
    pub version: u64,
    /// The time asked for, if any.
    pub at: Option<DateTime<Utc>>,
    /// The aggregate, shaped as the entity's own endpoint shows it.
    #[schema(value_type = Object)]
    pub state: Value,
}

/// Parses an RFC 3339 time from a query string, forgiving a `+` decoded as a space.
pub fn parse_time(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    let raw = raw.trim();
    DateTime::parse_from_rfc3339(raw)
        .or_else(|_| DateTime::parse_from_rfc3339(&raw.replace(' ', "+")))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::invalid_field(
                field,
                "must be an RFC 3339 time with offset, e.g. 2025-01-31T08:00:00Z",
            )
        })
}

/// The aggregate as it was at a version and/or a time (state as of).
#[utoipa::path(get, path = "/api/v1/streams/{stream_type}/{stream_id}/state", tag = "audit",
    params(("stream_type" = String, Path), ("stream_id" = String, Path), StateQuery),
    responses((status = 200, body = StreamState),
        (status = 404, description = "no such stream, or none yet at that version/time", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn stream_state(
    State(state): State<AppState>,
    _: Auth<perm::Audit>,
    ApiPath((stream_type, stream_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<StateQuery>,
) -> Result<Json<StreamState>, ApiError> {
    let kind = known_type(&stream_type)?;
    let at = q.at.as_deref().map(|t| parse_time("at", t)).transpose()?;
    let until = q.version.unwrap_or(u64::MAX);
    if until == 0 {
        return Err(ApiError::invalid_field("version", "must be at least 1"));
    }
    let store = state.store.clone();
    let now = at.unwrap_or_else(Utc::now);
    let (value, version) = match kind {
        StreamType::ProductionOrder => {
            let (a, v) = AggregateRepository::<ProductionOrder>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            (
                a.order()
                    .map(|o| serde_json::to_value(OrderView::new(o, v))),
                v,
            )
        }
        StreamType::Machine => {
            let (a, v) = AggregateRepository::<Machine>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            (
                a.machine()
                    .map(|m| serde_json::to_value(MachineView::new(m, v))),
                v,
            )
        }
        StreamType::MaintenanceTask => {
            let (a, v) = AggregateRepository::<MaintenanceTask>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            (
                a.task()
                    .map(|t| serde_json::to_value(TaskView::new(t, v, now))),
                v,
            )
        }
        StreamType::InventoryItem => {
            let (a, v) = AggregateRepository::<InventoryItem>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            (
                a.item().map(|i| serde_json::to_value(ItemView::new(i, v))),
                v,
            )
        }
        StreamType::Operator => {
            let (a, v) = AggregateRepository::<shopfloor_domain::Operator>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            (
                a.operator()
                    .map(|o| serde_json::to_value(crate::views::OperatorView::new(o, v))),
                v,
            )
        }
        StreamType::AlertRule => {
            let (a, v) = AggregateRepository::<shopfloor_domain::AlertRule>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            let value = a.rule().map(serde_json::to_value).map(|r| {
                r.map(|mut r| {
                    redact_secrets(&mut r);
                    r
                })
            });
            (value, v)
        }
        StreamType::Alert => {
            let (a, v) = AggregateRepository::<shopfloor_domain::Alert>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            (a.alert().map(serde_json::to_value), v)
        }
        StreamType::ReasonCatalogue => {
            let (a, v) = AggregateRepository::<shopfloor_domain::PlantReasons>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            let reasons: Vec<ReasonCodeView> =
                a.listing().iter().map(ReasonCodeView::from).collect();
            (Some(Ok(serde_json::json!({ "reasons": reasons }))), v)
        }
        StreamType::EquipmentHierarchy => {
            let (a, v) = AggregateRepository::<shopfloor_domain::EquipmentHierarchy>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            let nodes: Vec<_> = a.nodes().collect();
            (Some(Ok(serde_json::json!({ "nodes": nodes }))), v)
        }
        StreamType::SpcCharacteristic => {
            let (a, v) = AggregateRepository::<shopfloor_domain::SpcCharacteristic>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            (a.characteristic().map(serde_json::to_value), v)
        }
        StreamType::MaintenancePolicy => {
            let (a, v) = AggregateRepository::<MaintenancePolicy>::new(store)
                .load_until(&stream_id, until, at)
                .await?;
            (a.policy().map(serde_json::to_value), v)
        }
    };
    let value = match value {
        Some(Ok(v)) if version > 0 => v,
        Some(Err(e)) => return Err(ApiError::internal(e.to_string())),
        _ => {
            return Err(ApiError::not_found(format!(
                "stream {stream_type}/{stream_id} had no events {}",
                match (q.version, at) {
                    (_, Some(t)) => format!("recorded by {}", t.to_rfc3339()),
                    (Some(v), None) => format!("up to version {v}"),
                    _ => "yet".to_string(),
                }
            )))
        }
    };
    Ok(Json(StreamState {
        stream_type,
        stream_id,
        version,
        at,
        state: value,
    }))
}
