//! Machines: registration, floor events (one or a batch), a machine's current state.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shopfloor_domain::machine::{
    ChangeState, MachineCommand, MachineStatus, RecordParts, RegisterMachine,
};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{CycleTime, LineId, MachineId, MachineType, OrderId, Text};
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::batch::{append_machine_events, MachineItem};
use crate::error::{ApiError, FieldContext};
use crate::extract::{ApiJson, ApiPath, Ctx};
use crate::routes::{machine_view, now};
use crate::views::MachineView;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/machines", post(register))
        .route("/api/v1/machines/events", post(events))
        .route("/api/v1/machines/{machine_id}", get(get_machine))
}

/// `POST /api/v1/machines`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterMachineBody {
    pub machine_id: String,
    #[serde(rename = "type")]
    pub machine_type: String,
    pub line: String,
    /// Seconds per part at full speed; > 0.
    pub ideal_cycle_time_s: f64,
}

/// Registers a machine.
#[utoipa::path(post, path = "/api/v1/machines", tag = "machines",
    request_body = RegisterMachineBody,
    responses(
        (status = 201, description = "registered", body = MachineView),
        (status = 400, description = "bad body or field", body = crate::error::ProblemDocument),
        (status = 409, description = "already registered", body = crate::error::ProblemDocument),
    ),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    _: Auth<perm::Machines>,
    ctx: Ctx,
    ApiJson(body): ApiJson<RegisterMachineBody>,
) -> Result<(StatusCode, Json<MachineView>), ApiError> {
    let machine_id = MachineId::new(&body.machine_id).field("machine_id")?;
    let at = now();
    let command = RegisterMachine {
        machine_id: machine_id.clone(),
        machine_type: MachineType::new(&body.machine_type).field("type")?,
        line: LineId::new(&body.line).field("line")?,
        ideal_cycle_time_s: CycleTime::new(body.ideal_cycle_time_s).field("ideal_cycle_time_s")?,
        at,
    };
    let target = Target::Machine {
        machine_id: machine_id.clone(),
        command: MachineCommand::RegisterMachine(command),
    };
    state
        .commands
        .execute(target, &ctx.command(Some(at)))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(machine_view(&state, &machine_id).await?),
    ))
}

/// A machine as it is now (read-your-writes: from its event stream).
#[utoipa::path(get, path = "/api/v1/machines/{machine_id}", tag = "machines",
    params(("machine_id" = String, Path)),
    responses(
        (status = 200, body = MachineView),
        (status = 404, description = "not registered", body = crate::error::ProblemDocument),
    ),
    security(("bearer" = [])))]
pub async fn get_machine(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(machine_id): ApiPath<String>,
) -> Result<Json<MachineView>, ApiError> {
    let id = MachineId::new(&machine_id)
        .map_err(|_| ApiError::not_found(format!("machine {machine_id} is not registered")))?;
    Ok(Json(machine_view(&state, &id).await?))
}

/// The state of a machine on the floor.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Running,
    Idle,
    Down,
}

impl From<StateName> for MachineStatus {
    fn from(s: StateName) -> Self {
        match s {
            StateName::Running => MachineStatus::Running,
            StateName::Idle => MachineStatus::Idle,
            StateName::Down => MachineStatus::Down,
        }
    }
}

/// One machine event, tagged by `event_type`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum MachineEventBody {
    /// The machine entered a state at `timestamp`.
    StateChanged {
        machine_id: String,
        /// When it happened on the floor (RFC 3339 with offset; may be in the past).
        timestamp: DateTime<Utc>,
        state: StateName,
        /// A reason code (see `/api/v1/reason-codes`) or free text.
        reason: Option<String>,
        /// Excluded from planned production time (break, end of shift...).
        planned: Option<bool>,
    },
    /// Parts made at `timestamp`.
    PartsProduced {
        machine_id: String,
        timestamp: DateTime<Utc>,
        good: u64,
        scrap: u64,
        order_id: Option<String>,
    },
}

/// One event, or `{"events": [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MachineEventsBody {
    Batch { events: Vec<MachineEventBody> },
    One(MachineEventBody),
}

/// `{"accepted": n}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub accepted: usize,
}

/// Records machine events: one, or a batch that is validated whole and recorded atomically
/// (any bad item → nothing recorded, and the answer names its index).
#[utoipa::path(post, path = "/api/v1/machines/events", tag = "machines",
    request_body = MachineEventsBody,
    responses(
        (status = 202, body = Accepted),
        (status = 400, description = "a bad item (its index is named)", body = crate::error::ProblemDocument),
        (status = 404, description = "an unregistered machine", body = crate::error::ProblemDocument),
    ),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    _: Auth<perm::MachineEvents>,
    ctx: Ctx,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let items = parse_batch(body)?;
    let accepted = append_machine_events(&state, &ctx, &items).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { accepted })))
}

/// Parses one event or `{"events": [...]}` into validated items; the first bad item is a
/// 400 naming its index.
pub fn parse_batch(body: Value) -> Result<Vec<MachineItem>, ApiError> {
    let (raw, batch) = match body {
        Value::Object(mut map) if map.contains_key("events") && !map.contains_key("event_type") => {
            match map.remove("events") {
                Some(Value::Array(items)) => (items, true),
                _ => {
                    return Err(ApiError::invalid_field(
                        "events",
                        "must be an array of events",
                    ))
                }
            }
        }
        v @ Value::Object(_) => (vec![v], false),
        _ => {
            return Err(ApiError::bad_request(
                "expected one machine event object or {\"events\": [...]}",
            ))
        }
    };
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            parse_item(v).map_err(|e| {
                if batch {
                    ApiError::bad_request(format!(
                        "events[{i}]: {}; nothing of the batch was recorded",
                        e.detail
                    ))
                    .with_title("Invalid event in batch")
                    .with_extensions(json!({ "index": i }))
                } else {
                    e
                }
            })
        })
        .collect()
}

fn parse_item(v: Value) -> Result<MachineItem, ApiError> {
    let body: MachineEventBody =
        serde_json::from_value(v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(match body {
        MachineEventBody::StateChanged {
            machine_id,
            timestamp,
            state,
            reason,
            planned,
        } => MachineItem {
            machine_id: MachineId::new(machine_id).field("machine_id")?,
            at: timestamp,
            command: MachineCommand::ChangeState(ChangeState {
                state: state.into(),
                reason: reason
                    .filter(|r| !r.trim().is_empty())
                    .map(Text::new)
                    .transpose()
                    .field("reason")?,
                planned,
                at: timestamp,
            }),
        },
        MachineEventBody::PartsProduced {
            machine_id,
            timestamp,
            good,
            scrap,
            order_id,
        } => MachineItem {
            machine_id: MachineId::new(machine_id).field("machine_id")?,
            at: timestamp,
            command: MachineCommand::RecordParts(RecordParts {
                good,
                scrap,
                order_id: order_id
                    .filter(|o| !o.trim().is_empty())
                    .map(OrderId::new)
                    .transpose()
                    .field("order_id")?,
                at: timestamp,
            }),
        },
    })
}
