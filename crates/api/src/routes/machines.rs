//! Machines: registration, floor events (one or a batch), a machine's current state.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shopfloor_commands::{Atomicity, BatchItem, CommandError, RejectionKind};
use shopfloor_domain::machine::{
    ChangeState, MachineCommand, MachineStatus, RecordParts, RecordPartsWithScrapReason,
    RegisterMachine,
};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{
    CycleTime, LineId, MachineId, MachineType, OrderId, ReasonCode, Text,
};
use shopfloor_domain::StreamType;
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext};
use crate::extract::{ApiJson, ApiPath, Ctx};
use crate::routes::{machine_view, now, Seen};
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
    let done = state
        .commands
        .execute(target, &ctx.command(Some(at)))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(machine_view(&state, &machine_id, Seen::AtLeast(done.stream_version)).await?),
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
    Ok(Json(machine_view(&state, &id, Seen::Now).await?))
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
        /// Why the scrap was rejected: a code of `/api/v1/scrap-reasons` (e.g.
        /// `scrap.dimensional`, matched ignoring case). Only with `scrap` > 0; an unknown
        /// code is refused (400) and nothing is recorded.
        #[serde(default)]
        scrap_reason: Option<String>,
    },
}

/// One event, or `{"events": [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MachineEventsBody {
    Batch { events: Vec<MachineEventBody> },
    One(MachineEventBody),
}

/// `{"accepted": n}`, and the orders named by parts reports that do not exist.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub accepted: usize,
    /// Orders named by `parts_produced` events of the request that do not exist: the
    /// parts are recorded on the machine, but no order or stock is updated for them
    /// (the refusal is kept in the process manager's rejections).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_orders: Vec<String>,
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
    let items = parse_batch(body, now())?;
    let unknown_orders = unknown_orders(&state, &items).await?;
    let accepted = record_machine_events(&state, &ctx, items).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted,
            unknown_orders,
        }),
    ))
}

/// The orders named by the items' parts reports that do not exist (one query).
async fn unknown_orders(state: &AppState, items: &[MachineItem]) -> Result<Vec<String>, ApiError> {
    let mut named: Vec<&str> = items
        .iter()
        .filter_map(|i| match &i.command {
            MachineCommand::RecordParts(p)
            | MachineCommand::RecordPartsWithScrapReason(RecordPartsWithScrapReason {
                parts: p,
                ..
            }) => p.order_id.as_ref().map(|o| o.as_str()),
            _ => None,
        })
        .collect();
    if named.is_empty() {
        return Ok(Vec::new());
    }
    named.sort_unstable();
    named.dedup();
    let found = state
        .store
        .existing_streams(StreamType::ProductionOrder.as_str(), &named)
        .await?;
    Ok(named
        .into_iter()
        .filter(|o| !found.iter().any(|f| f == o))
        .map(str::to_string)
        .collect())
}

/// How far ahead of the server's clock a floor timestamp may be: the same limit
/// as the MQTT ingest's default (`future_tolerance_s`). A machine clock further
/// ahead would leave the machine in a state "since" a time that has not come.
pub const MAX_FUTURE_SKEW_S: i64 = 300;

/// One machine event of a request, validated.
#[derive(Debug, Clone)]
pub struct MachineItem {
    pub machine_id: MachineId,
    pub command: MachineCommand,
    /// Floor time of the event.
    pub at: DateTime<Utc>,
}

/// Records the events all or nothing through the one writer; returns how many
/// were accepted, or the refusal of the first refused item (naming its index).
async fn record_machine_events(
    state: &AppState,
    ctx: &Ctx,
    items: Vec<MachineItem>,
) -> Result<usize, ApiError> {
    let n = items.len();
    let mut ids: Vec<&MachineId> = items.iter().map(|i| &i.machine_id).collect();
    ids.sort();
    ids.dedup();
    if ctx.expected_version.is_some() && ids.len() > 1 {
        return Err(ApiError::bad_request(
            "If-Match applies to one stream: send the events of one machine only",
        ));
    }
    let base_command_id = ctx.command_id();
    let batch: Vec<BatchItem> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut c = ctx.command(Some(item.at));
            c.command_id = base_command_id.as_ref().map(|b| format!("{b}/{i}"));
            BatchItem::new(
                Target::Machine {
                    machine_id: item.machine_id.clone(),
                    command: item.command.clone(),
                },
                c,
            )
        })
        .collect();
    let results = state
        .commands
        .execute_batch(batch, Atomicity::AllOrNothing)
        .await;
    let refusal = results.into_iter().enumerate().find_map(|(i, r)| match r {
        Err(CommandError::Aborted { .. }) | Ok(_) => None,
        Err(e) => Some((i, e)),
    });
    if let Some((i, e)) = refusal {
        return Err(refused(i, n, &items[i].machine_id, e));
    }
    metrics::counter!("shopfloor_machine_events_accepted_total").increment(n as u64);
    Ok(n)
}

/// The refusal of item `i`, failing the whole batch.
fn refused(i: usize, n: usize, machine_id: &MachineId, e: CommandError) -> ApiError {
    let CommandError::Rejected { kind, message } = e else {
        return e.into();
    };
    let detail = if n > 1 {
        format!("events[{i}] (machine {machine_id}): {message}; nothing of the batch was recorded")
    } else {
        format!("machine {machine_id}: {message}")
    };
    let error = match kind {
        RejectionKind::NotFound => ApiError::not_found(detail),
        RejectionKind::Conflict => ApiError::conflict(detail),
        RejectionKind::Invalid => ApiError::bad_request(detail).with_title("Event refused"),
    };
    error.with_extensions(json!({ "index": i }))
}

/// Refuses a floor time further ahead of `now` than [`MAX_FUTURE_SKEW_S`].
pub fn not_in_future(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if at > now + chrono::Duration::seconds(MAX_FUTURE_SKEW_S) {
        return Err(ApiError::invalid_field(
            "timestamp",
            format!(
                "{} is more than {MAX_FUTURE_SKEW_S} s ahead of the server's clock ({}); \
                 check the sender's clock",
                at.to_rfc3339(),
                now.to_rfc3339()
            ),
        ));
    }
    Ok(at)
}

/// Parses one event or `{"events": [...]}` into validated items; the first bad item is a
/// 400 naming its index.
pub fn parse_batch(body: Value, now: DateTime<Utc>) -> Result<Vec<MachineItem>, ApiError> {
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
            parse_item(v, now).map_err(|e| {
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

fn parse_item(v: Value, now: DateTime<Utc>) -> Result<MachineItem, ApiError> {
    let body: MachineEventBody =
        serde_json::from_value(v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let item = match body {
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
            scrap_reason,
        } => {
            let parts = RecordParts {
                good,
                scrap,
                order_id: order_id
                    .filter(|o| !o.trim().is_empty())
                    .map(OrderId::new)
                    .transpose()
                    .field("order_id")?,
                at: timestamp,
            };
            let scrap_reason = scrap_reason
                .filter(|r| !r.trim().is_empty())
                .map(|r| ReasonCode::new(r.trim()))
                .transpose()
                .field("scrap_reason")?;
            MachineItem {
                machine_id: MachineId::new(machine_id).field("machine_id")?,
                at: timestamp,
                command: match scrap_reason {
                    Some(scrap_reason) => {
                        MachineCommand::RecordPartsWithScrapReason(RecordPartsWithScrapReason {
                            parts,
                            scrap_reason,
                        })
                    }
                    None => MachineCommand::RecordParts(parts),
                },
            }
        }
    };
    not_in_future(item.at, now)?;
    Ok(item)
}
