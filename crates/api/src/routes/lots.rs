//! Lots, genealogy and quality holds (ADR 0057).
//!
//! Writes go to the lot's item stream through the one writer and answer with the lot as the
//! aggregate holds it (read-your-writes). Reads (lists, a lot's ledger, traces) come from the
//! inventory read model. A hold with `forward: true` is one request: the forward trace (after
//! a bounded wait for the read model to reach the log's head), the pure plan of one `HoldLot`
//! per lot with ids derived from the hold id, and one batch through the writer.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shopfloor_commands::{Atomicity, BatchItem, CommandError};
use shopfloor_domain::inventory::{InventoryCommand, ItemType};
use shopfloor_domain::lot::{
    self as lot, AutoHold, LotRef, LotRule, MergeLots, MoveLot, OutputLots, PickOrder, ReceiveLot,
    ReleaseLot, ScrapLot, SetLotRule, SplitLot,
};
use shopfloor_domain::process::{IssuedCommand, Target};
use shopfloor_domain::values::{ItemId, Location, LotId, Quantity, Text};
use shopfloor_domain::InventoryItem;
use shopfloor_projections::query::lots::{self as q, Direction, LotFilter};
use shopfloor_projections::Projection;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Ctx};
use crate::routes::inventory::ItemTypeName;
use crate::routes::{generated_id, load_seen, now, Seen};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/lots", post(receive).get(list))
        .route("/api/v1/lots/merge", post(merge))
        .route("/api/v1/lots/{item_id}/{lot_id}", get(get_lot))
        .route("/api/v1/lots/{item_id}/{lot_id}/backward", get(backward))
        .route("/api/v1/lots/{item_id}/{lot_id}/forward", get(forward))
        .route("/api/v1/lots/{item_id}/{lot_id}/split", post(split))
        .route("/api/v1/lots/{item_id}/{lot_id}/move", post(move_lot))
        .route("/api/v1/lots/{item_id}/{lot_id}/hold", post(hold))
        .route("/api/v1/lots/{item_id}/{lot_id}/release", post(release))
        .route("/api/v1/lots/{item_id}/{lot_id}/scrap", post(scrap))
        .route("/api/v1/lot-rules/{item_id}", put(set_rule))
}

/// A lot's stock at a location.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockView {
    pub location: String,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub quantity: Decimal,
}

/// A lot as its item's stream holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LotState {
    pub item_id: String,
    pub lot_id: String,
    /// `available`, `held` or `scrapped`.
    pub status: String,
    pub supplier_lot: Option<String>,
    pub expiry: Option<DateTime<Utc>>,
    pub order_id: Option<String>,
    pub hold_reason: Option<String>,
    /// Stock per location (zeros left out).
    pub stock: Vec<StockView>,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub quantity: Decimal,
    /// The item stream's version.
    pub version: u64,
}

fn lot_id(raw: &str, item: &ItemId) -> Result<LotId, ApiError> {
    LotId::new(raw).map_err(|_| ApiError::not_found(format!("item {item} has no lot {raw}")))
}

fn lot_path(item_raw: &str, lot_raw: &str) -> Result<(ItemId, LotId), ApiError> {
    let item = ItemId::new(item_raw)
        .map_err(|_| ApiError::not_found(format!("inventory item {item_raw} does not exist")))?;
    let lot = lot_id(lot_raw, &item)?;
    Ok((item, lot))
}

/// The lot as the writer holds it at `version` or later.
async fn lot_state(
    state: &AppState,
    item: &ItemId,
    lot: &LotId,
    seen: Seen,
) -> Result<LotState, ApiError> {
    let (stock, version) = load_seen::<InventoryItem>(state, item.as_str(), seen).await?;
    let l = stock
        .item()
        .and_then(|i| i.lots.get(lot))
        .ok_or_else(|| ApiError::not_found(format!("item {item} has no lot {lot}")))?;
    let by_location: Vec<StockView> = l
        .stock
        .iter()
        .filter(|(_, q)| **q > Decimal::ZERO)
        .map(|(location, q)| StockView {
            location: location.to_string(),
            quantity: *q,
        })
        .collect();
    Ok(LotState {
        item_id: item.to_string(),
        lot_id: lot.to_string(),
        status: crate::views::name_of(&l.status),
        supplier_lot: l.supplier_lot.as_ref().map(|s| s.to_string()),
        expiry: l.expiry,
        order_id: l.order_id.as_ref().map(|o| o.to_string()),
        hold_reason: l.hold_reason.as_ref().map(|r| r.to_string()),
        quantity: l.total(),
        stock: by_location,
        version,
    })
}

/// Executes one command on `item`'s stream and answers with `lot` afterwards.
async fn run(
    state: &AppState,
    ctx: &Ctx,
    item: &ItemId,
    lot: &LotId,
    command: InventoryCommand,
    at: DateTime<Utc>,
) -> Result<Json<LotState>, ApiError> {
    let target = Target::InventoryItem {
        item_id: item.clone(),
        command,
    };
    let outcome = execute_on_stored(state, ctx, target, at).await?;
    let seen = Seen::AtLeast(outcome.stream_version);
    Ok(Json(lot_state(state, item, lot, seen).await?))
}

/// Executes a lot command on its item's stream as stored (its version pinned), so that a
/// lot another process created or changed (the process manager's backflush runs in the
/// projector role) is never refused by a stale cached aggregate; a write in between plans
/// it again.
async fn execute_on_stored(
    state: &AppState,
    ctx: &Ctx,
    target: Target,
    at: DateTime<Utc>,
) -> Result<shopfloor_commands::Outcome, ApiError> {
    let mut tries = 0;
    loop {
        let mut command_ctx = ctx.command(Some(at));
        if command_ctx.expected_version.is_none() {
            let stream = target.stream_id();
            let (_, version) = state.commands.load::<InventoryItem>(stream).await?;
            command_ctx.expected_version = Some(version).filter(|v| *v > 0);
        }
        match state.commands.execute(target.clone(), &command_ctx).await {
            Err(CommandError::VersionMismatch { .. })
                if tries < 3 && ctx.expected_version.is_none() =>
            {
                tries += 1;
            }
            result => return Ok(result?),
        }
    }
}

/// `POST /api/v1/lots`: a receipt.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReceiveBody {
    pub item_id: String,
    pub item_type: ItemTypeName,
    pub lot_id: String,
    pub supplier_lot: Option<String>,
    pub location: String,
    #[schema(value_type = f64)]
    pub quantity: Decimal,
    pub expiry: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// Receives a lot: the item's level at the location rises by the quantity (as an inventory
/// receipt does) and the lot is created; 409 when the item already has that lot.
#[utoipa::path(post, path = "/api/v1/lots", tag = "lots", request_body = ReceiveBody,
    responses((status = 201, body = LotState), (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn receive(
    State(state): State<AppState>,
    _: Auth<perm::Inventory>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ReceiveBody>,
) -> Result<(StatusCode, Json<LotState>), ApiError> {
    let item_id = ItemId::new(body.item_id).field("item_id")?;
    let lot_id = LotId::new(body.lot_id).field("lot_id")?;
    let at = now();
    let command = InventoryCommand::ReceiveLot(ReceiveLot {
        item_id: item_id.clone(),
        item_type: body.item_type.into(),
        lot_id: lot_id.clone(),
        supplier_lot: body
            .supplier_lot
            .map(Text::new)
            .transpose()
            .field("supplier_lot")?,
        location: Location::new(body.location).field("location")?,
        qty: Quantity::new(body.quantity).field("quantity")?,
        expiry: body.expiry,
        reason: body.reason.map(Text::new).transpose().field("reason")?,
        at,
    });
    let answer = run(&state, &ctx, &item_id, &lot_id, command, at).await?;
    Ok((StatusCode::CREATED, answer))
}

/// `?item_id=&location=&supplier_lot=&status=&machine_id=&order_id=&from=&to=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub item_id: Option<String>,
    /// Lots with stock at this location.
    pub location: Option<String>,
    pub supplier_lot: Option<String>,
    /// `available`, `held` or `scrapped`.
    pub status: Option<String>,
    /// Lots produced on this machine.
    pub machine_id: Option<String>,
    pub order_id: Option<String>,
    /// With `to`: lots with production in [from, to) (floor time).
    #[param(format = DateTime)]
    pub from: Option<DateTime<Utc>>,
    #[param(format = DateTime)]
    pub to: Option<DateTime<Utc>>,
    /// At most this many (default 500, at most 5000).
    pub limit: Option<i64>,
}

fn blank(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Lots by item, location, supplier lot, status, machine or order, with their stock per
/// location (read model): inventory by lot.
#[utoipa::path(get, path = "/api/v1/lots", tag = "lots", params(ListQuery),
    responses((status = 200, description = "lots", body = [Object])),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<q::LotView>>, ApiError> {
    let filter = LotFilter {
        item_id: blank(q.item_id),
        location: blank(q.location),
        supplier_lot: blank(q.supplier_lot),
        status: blank(q.status),
        machine_id: blank(q.machine_id),
        order_id: blank(q.order_id),
        from: q.from,
        to: q.to,
        limit: q.limit,
    };
    Ok(Json(q::list_lots(&state.pool, &filter).await?))
}

/// A lot with its ledger: every movement with its actor (read model).
#[utoipa::path(get, path = "/api/v1/lots/{item_id}/{lot_id}", tag = "lots",
    params(("item_id" = String, Path), ("lot_id" = String, Path)),
    responses((status = 200, description = "the lot and its movements", body = Object),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn get_lot(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath((item, lot)): ApiPath<(String, String)>,
) -> Result<Json<q::LotDetail>, ApiError> {
    q::get_lot(&state.pool, &item, &lot)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("item {item} has no lot {lot}")))
}

/// `?as_of=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraceQuery {
    /// Only the events recorded by then.
    #[param(format = DateTime)]
    pub as_of: Option<DateTime<Utc>>,
}

async fn trace(
    state: &AppState,
    item: &str,
    lot: &str,
    direction: Direction,
    as_of: Option<DateTime<Utc>>,
) -> Result<Json<q::Trace>, ApiError> {
    q::trace(&state.pool, item, lot, direction, as_of)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("item {item} has no lot {lot}")))
}

/// A lot's backward trace: every input lot, recursively, with quantities, and for each the
/// order, machine, operators, production window and inspections that made it (read model).
#[utoipa::path(get, path = "/api/v1/lots/{item_id}/{lot_id}/backward", tag = "lots",
    params(("item_id" = String, Path), ("lot_id" = String, Path), TraceQuery),
    responses((status = 200, description = "lots (depth 0: this one) and edges", body = Object),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn backward(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath((item, lot)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<TraceQuery>,
) -> Result<Json<q::Trace>, ApiError> {
    trace(&state, &item, &lot, Direction::Backward, query.as_of).await
}

/// A lot's forward trace: every lot and order it went into, recursively, down to finished
/// goods, each with its stock per location (read model).
#[utoipa::path(get, path = "/api/v1/lots/{item_id}/{lot_id}/forward", tag = "lots",
    params(("item_id" = String, Path), ("lot_id" = String, Path), TraceQuery),
    responses((status = 200, description = "lots (depth 0: this one) and edges", body = Object),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn forward(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath((item, lot)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<TraceQuery>,
) -> Result<Json<q::Trace>, ApiError> {
    trace(&state, &item, &lot, Direction::Forward, query.as_of).await
}

/// `POST .../split`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SplitBody {
    pub new_lot_id: String,
    pub location: String,
    #[schema(value_type = f64)]
    pub quantity: Decimal,
    pub reason: Option<String>,
}

/// Splits part of a lot at a location into a new lot of the same item (same supplier lot,
/// expiry, status). Answers with the new lot.
#[utoipa::path(post, path = "/api/v1/lots/{item_id}/{lot_id}/split", tag = "lots",
    params(("item_id" = String, Path), ("lot_id" = String, Path)), request_body = SplitBody,
    responses((status = 200, body = LotState), (status = 404, body = ProblemDocument),
        (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn split(
    State(state): State<AppState>,
    _: Auth<perm::Inventory>,
    ctx: Ctx,
    ApiPath((item, lot)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SplitBody>,
) -> Result<Json<LotState>, ApiError> {
    let (item_id, lot_id) = lot_path(&item, &lot)?;
    let new_lot_id = LotId::new(body.new_lot_id).field("new_lot_id")?;
    let at = now();
    let command = InventoryCommand::SplitLot(SplitLot {
        item_id: item_id.clone(),
        lot_id,
        new_lot_id: new_lot_id.clone(),
        location: Location::new(body.location).field("location")?,
        qty: Quantity::new(body.quantity).field("quantity")?,
        reason: body.reason.map(Text::new).transpose().field("reason")?,
        at,
    });
    run(&state, &ctx, &item_id, &new_lot_id, command, at).await
}

/// `POST .../move`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MoveBody {
    pub from: String,
    pub to: String,
    /// Default: all of the lot at `from`.
    #[schema(value_type = Option<f64>)]
    pub quantity: Option<Decimal>,
    pub reason: Option<String>,
}

/// Moves stock of a lot from one location to another (both levels change).
#[utoipa::path(post, path = "/api/v1/lots/{item_id}/{lot_id}/move", tag = "lots",
    params(("item_id" = String, Path), ("lot_id" = String, Path)), request_body = MoveBody,
    responses((status = 200, body = LotState), (status = 404, body = ProblemDocument),
        (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn move_lot(
    State(state): State<AppState>,
    _: Auth<perm::Inventory>,
    ctx: Ctx,
    ApiPath((item, lot)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<MoveBody>,
) -> Result<Json<LotState>, ApiError> {
    let (item_id, lot_id) = lot_path(&item, &lot)?;
    let at = now();
    let command = InventoryCommand::MoveLot(MoveLot {
        item_id: item_id.clone(),
        lot_id: lot_id.clone(),
        from: Location::new(body.from).field("from")?,
        to: Location::new(body.to).field("to")?,
        qty: body
            .quantity
            .map(Quantity::new)
            .transpose()
            .field("quantity")?,
        reason: body.reason.map(Text::new).transpose().field("reason")?,
        at,
    });
    run(&state, &ctx, &item_id, &lot_id, command, at).await
}

/// `POST /api/v1/lots/merge`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MergeBody {
    pub item_id: String,
    pub sources: Vec<String>,
    /// A new lot, or an existing available one.
    pub into: String,
    pub location: String,
    pub reason: Option<String>,
}

/// Merges all the stock of the source lots at a location into one lot of the same item; 409
/// when one of them is held or scrapped.
#[utoipa::path(post, path = "/api/v1/lots/merge", tag = "lots", request_body = MergeBody,
    responses((status = 200, body = LotState), (status = 404, body = ProblemDocument),
        (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn merge(
    State(state): State<AppState>,
    _: Auth<perm::Inventory>,
    ctx: Ctx,
    ApiJson(body): ApiJson<MergeBody>,
) -> Result<Json<LotState>, ApiError> {
    let item_id = ItemId::new(body.item_id).field("item_id")?;
    let into = LotId::new(body.into).field("into")?;
    let sources = body
        .sources
        .into_iter()
        .map(LotId::new)
        .collect::<Result<Vec<_>, _>>()
        .field("sources")?;
    let at = now();
    let command = InventoryCommand::MergeLots(MergeLots {
        item_id: item_id.clone(),
        sources,
        into: into.clone(),
        location: Location::new(body.location).field("location")?,
        reason: body.reason.map(Text::new).transpose().field("reason")?,
        at,
    });
    run(&state, &ctx, &item_id, &into, command, at).await
}

/// `POST .../hold`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct HoldBody {
    pub reason: String,
    /// Hold every lot of the forward trace too, in one request.
    #[serde(default)]
    pub forward: bool,
}

/// A lot named in a hold's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldLot {
    pub item_id: String,
    pub lot_id: String,
}

/// A lot a hold could not take, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusedLot {
    pub item_id: String,
    pub lot_id: String,
    pub reason: String,
}

/// What a hold did.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldAnswer {
    pub hold_id: String,
    /// Put on hold by this request (or by its first attempt, for a retry).
    pub held: Vec<HeldLot>,
    /// On hold already.
    pub already_held: Vec<HeldLot>,
    /// Not held (scrapped, say).
    pub refused: Vec<RefusedLot>,
    /// The inventory read model's position the forward trace was read at (forward holds).
    pub trace_position: Option<i64>,
}

/// Waits (at most 3 s) for the inventory read model to reach the log's head; its position.
async fn settled_position(state: &AppState) -> Result<i64, ApiError> {
    let head = state
        .store
        .head_position()
        .await
        .map_err(CommandError::from)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let at = shopfloor_projections::projection::checkpoint(&state.pool, Projection::Inventory)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if at >= head || tokio::time::Instant::now() >= deadline {
            return Ok(at);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts a lot on quality hold with a reason; with `forward: true`, every lot of its forward
/// trace too (one hold id, one `HoldLot` per lot, idempotent). A held lot is never consumed:
/// backflush takes other lots and records a shortage when none are left.
#[utoipa::path(post, path = "/api/v1/lots/{item_id}/{lot_id}/hold", tag = "lots",
    params(("item_id" = String, Path), ("lot_id" = String, Path)), request_body = HoldBody,
    responses((status = 200, body = HoldAnswer), (status = 404, body = ProblemDocument),
        (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn hold(
    State(state): State<AppState>,
    _: Auth<perm::QualityHolds>,
    ctx: Ctx,
    ApiPath((item, lot)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<HoldBody>,
) -> Result<Json<HoldAnswer>, ApiError> {
    let (item_id, lot_id) = lot_path(&item, &lot)?;
    let reason = Text::new(body.reason).field("reason")?;
    let base = ctx.command(None);
    let hold_id = Text::new(generated_id("HOLD", base.command_id.as_deref())).field("hold_id")?;
    let root = LotRef {
        item_id: item_id.clone(),
        lot_id: lot_id.clone(),
    };
    // The lot itself must exist (404 otherwise), whatever the read model says.
    lot_state(&state, &item_id, &lot_id, Seen::Now).await?;
    let mut lots = vec![root];
    let mut trace_position = None;
    if body.forward {
        trace_position = Some(settled_position(&state).await?);
        if let Some(t) = q::trace(&state.pool, &item, &lot, Direction::Forward, None).await? {
            for l in t.others() {
                if let (Ok(i), Ok(l)) = (ItemId::new(&l.lot.item_id), LotId::new(&l.lot.lot_id)) {
                    lots.push(LotRef {
                        item_id: i,
                        lot_id: l,
                    });
                }
            }
        }
    }
    let at = now();
    let plan = lot::plan_forward_hold(&hold_id, &reason, &lots, at);
    let mut answer = HoldAnswer {
        hold_id: hold_id.to_string(),
        held: Vec::new(),
        already_held: Vec::new(),
        refused: Vec::new(),
        trace_position,
    };
    hold_all(&state, &ctx, plan, at, &mut answer).await?;
    Ok(Json(answer))
}

/// The lot a planned hold command holds.
fn held_lot(c: &IssuedCommand) -> HeldLot {
    match &c.target {
        Target::InventoryItem {
            command: InventoryCommand::HoldLot(h),
            ..
        } => HeldLot {
            item_id: h.item_id.to_string(),
            lot_id: h.lot_id.to_string(),
        },
        other => HeldLot {
            item_id: other.stream_id().to_owned(),
            lot_id: String::new(),
        },
    }
}

/// Executes a hold plan through the writer. Each item stream's first command pins the
/// stream's version as stored, so the writer decides on the stream as it is in the store,
/// never on an aggregate another process (the process manager's backflush) has moved on; a
/// stream that moves meanwhile is planned again (the command ids make that safe).
async fn hold_all(
    state: &AppState,
    ctx: &Ctx,
    plan: Vec<IssuedCommand>,
    at: DateTime<Utc>,
    answer: &mut HoldAnswer,
) -> Result<(), ApiError> {
    let mut pending = plan;
    for _ in 0..4 {
        if pending.is_empty() {
            return Ok(());
        }
        let mut pinned: HashSet<String> = HashSet::new();
        let mut items = Vec::with_capacity(pending.len());
        for c in &pending {
            let stream = c.target.stream_id().to_owned();
            let mut item_ctx = ctx.command(Some(at));
            item_ctx.command_id = Some(c.command_id.clone());
            if pinned.insert(stream.clone()) {
                let (_, version) = state.commands.load::<InventoryItem>(&stream).await?;
                item_ctx.expected_version = Some(version).filter(|v| *v > 0);
            }
            items.push(BatchItem::new(c.target.clone(), item_ctx));
        }
        let results = state
            .commands
            .execute_batch(items, Atomicity::EachOnItsOwn)
            .await;
        let mut again = Vec::new();
        for (c, result) in pending.into_iter().zip(results) {
            let named = held_lot(&c);
            match result {
                Ok(o) if !o.events.is_empty() || o.duplicate => answer.held.push(named),
                Ok(_) => answer.already_held.push(named),
                Err(CommandError::VersionMismatch { .. } | CommandError::Aborted { .. }) => {
                    again.push(c)
                }
                Err(e @ CommandError::Rejected { .. }) => answer.refused.push(RefusedLot {
                    item_id: named.item_id,
                    lot_id: named.lot_id,
                    reason: e.to_string(),
                }),
                Err(e) => return Err(e.into()),
            }
        }
        pending = again;
    }
    for c in pending {
        let named = held_lot(&c);
        answer.refused.push(RefusedLot {
            item_id: named.item_id,
            lot_id: named.lot_id,
            reason: "its item kept changing; hold it again".into(),
        });
    }
    Ok(())
}

/// `POST .../release` and `.../scrap`: a quality decision.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DecisionBody {
    pub reason: String,
}

/// Releases a held lot (a quality decision, recorded as an event); 409 when it is not held.
#[utoipa::path(post, path = "/api/v1/lots/{item_id}/{lot_id}/release", tag = "lots",
    params(("item_id" = String, Path), ("lot_id" = String, Path)), request_body = DecisionBody,
    responses((status = 200, body = LotState), (status = 404, body = ProblemDocument),
        (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn release(
    State(state): State<AppState>,
    _: Auth<perm::QualityHolds>,
    ctx: Ctx,
    ApiPath((item, lot)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<LotState>, ApiError> {
    let (item_id, lot_id) = lot_path(&item, &lot)?;
    let at = now();
    let command = InventoryCommand::ReleaseLot(ReleaseLot {
        item_id: item_id.clone(),
        lot_id: lot_id.clone(),
        reason: Text::new(body.reason).field("reason")?,
        at,
    });
    run(&state, &ctx, &item_id, &lot_id, command, at).await
}

/// Scraps a lot (a quality decision): its stock leaves the item's levels.
#[utoipa::path(post, path = "/api/v1/lots/{item_id}/{lot_id}/scrap", tag = "lots",
    params(("item_id" = String, Path), ("lot_id" = String, Path)), request_body = DecisionBody,
    responses((status = 200, body = LotState), (status = 404, body = ProblemDocument),
        (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn scrap(
    State(state): State<AppState>,
    _: Auth<perm::QualityHolds>,
    ctx: Ctx,
    ApiPath((item, lot)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<LotState>, ApiError> {
    let (item_id, lot_id) = lot_path(&item, &lot)?;
    let at = now();
    let command = InventoryCommand::ScrapLot(ScrapLot {
        item_id: item_id.clone(),
        lot_id: lot_id.clone(),
        reason: Text::new(body.reason).field("reason")?,
        at,
    });
    run(&state, &ctx, &item_id, &lot_id, command, at).await
}

/// How production names output lots.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputName {
    None,
    PerOrder,
    PerShift,
}

/// The order backflush takes lots in.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PickName {
    Fifo,
    Fefo,
}

/// `PUT /api/v1/lot-rules/{item_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RuleBody {
    pub item_type: ItemTypeName,
    /// Output lots of this item's production (default `none`).
    pub output: Option<OutputName>,
    /// For `per_shift`: hours per shift (1–24, default 8) and the first shift's start hour
    /// (UTC, 0–23, default 6).
    pub shift_hours: Option<u32>,
    pub shift_start_hour: Option<u32>,
    /// The order backflush takes this item's lots in (default `fifo`).
    pub pick: Option<PickName>,
    /// Automatic holds: a failed inspection of the producing order holds its lots.
    #[serde(default)]
    pub hold_on_failed_inspection: bool,
    /// Automatic holds: an inspection with more defective parts per million of its sample
    /// than this (0–999,999) holds the producing order's lots.
    pub hold_above_defects_ppm: Option<u32>,
}

/// The rule as set.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleAnswer {
    pub item_id: String,
    #[schema(value_type = Object)]
    pub rule: LotRule,
    pub version: u64,
}

/// Sets an item's lot rule: how its production names output lots (none, per order, per
/// shift), in which order backflush takes its lots (FIFO or FEFO), and when its production
/// lots go on hold by themselves (a failed inspection, or one above a defect rate).
#[utoipa::path(put, path = "/api/v1/lot-rules/{item_id}", tag = "lots",
    params(("item_id" = String, Path)), request_body = RuleBody,
    responses((status = 200, body = RuleAnswer), (status = 400, body = ProblemDocument),
        (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn set_rule(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath(item): ApiPath<String>,
    ApiJson(body): ApiJson<RuleBody>,
) -> Result<Json<RuleAnswer>, ApiError> {
    let item_id = ItemId::new(&item).field("item_id")?;
    let output = match body.output.unwrap_or(OutputName::None) {
        OutputName::None => OutputLots::None,
        OutputName::PerOrder => OutputLots::PerOrder,
        OutputName::PerShift => OutputLots::PerShift {
            hours: body.shift_hours.unwrap_or(8),
            start_hour: body.shift_start_hour.unwrap_or(6),
        },
    };
    let pick = match body.pick.unwrap_or(PickName::Fifo) {
        PickName::Fifo => PickOrder::Fifo,
        PickName::Fefo => PickOrder::Fefo,
    };
    let hold = AutoHold {
        failed_inspection: body.hold_on_failed_inspection,
        above_defects_ppm: body.hold_above_defects_ppm,
    };
    let rule = LotRule { output, pick, hold };
    let at = now();
    let item_type: ItemType = body.item_type.into();
    let target = Target::InventoryItem {
        item_id: item_id.clone(),
        command: InventoryCommand::SetLotRule(SetLotRule {
            item_id: item_id.clone(),
            item_type,
            rule,
            at,
        }),
    };
    let outcome = state
        .commands
        .execute(target, &ctx.command(Some(at)))
        .await?;
    Ok(Json(RuleAnswer {
        item_id: item_id.to_string(),
        rule,
        version: outcome.stream_version,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_lists_each_lot_once() {
        let r = |i: &str, l: &str| LotRef {
            item_id: ItemId::new(i).unwrap(),
            lot_id: LotId::new(l).unwrap(),
        };
        let plan = lot::plan_forward_hold(
            &Text::new("H").unwrap(),
            &Text::new("r").unwrap(),
            &[r("a", "1"), r("a", "1"), r("b", "2")],
            now(),
        );
        assert_eq!(plan.len(), 2);
    }
}
