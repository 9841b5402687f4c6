//! Production orders: create, read (with inspections), move through the statuses, record
//! inspections.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use shopfloor_domain::order::{
    AssignOrder, BomLine, CancelOrder, CompleteOrder, CreateOrder, HoldOrder, OrderCommand,
    RecordInspection, ResumeOrder, StartOrder,
};
use shopfloor_domain::process::Target;
use shopfloor_domain::spc::Measurement;
use shopfloor_domain::values::{
    Actor, CharacteristicId, InspectionId, ItemId, Location, LotId, MachineId, OrderId,
    OrderQuantity, ProductId, Quantity, Text,
};
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, Ctx, OptionalJson};
use crate::routes::machines::not_in_future;
use crate::routes::people::require_operators;
use crate::routes::{generated_id, now, order_view, require_machine, Seen};
use crate::views::{InspectionView, MeasurementView, OrderView};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/production-orders", post(create))
        .route("/api/v1/production-orders/{order_id}", get(get_order))
        .route("/api/v1/production-orders/{order_id}/assign", post(assign))
        .route("/api/v1/production-orders/{order_id}/start", post(start))
        .route("/api/v1/production-orders/{order_id}/hold", post(hold))
        .route("/api/v1/production-orders/{order_id}/resume", post(resume))
        .route(
            "/api/v1/production-orders/{order_id}/complete",
            post(complete),
        )
        .route("/api/v1/production-orders/{order_id}/cancel", post(cancel))
        .route(
            "/api/v1/production-orders/{order_id}/inspections",
            get(inspections).post(record_inspection),
        )
}

/// One line of a bill of materials.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BomLineBody {
    pub item_id: String,
    /// Units of the item per unit made (good or scrap); > 0.
    #[schema(value_type = f64)]
    pub qty_per_unit: Decimal,
    /// Lots of the item this order consumes first, in this order, while they are
    /// available (not held or scrapped); then the item's pick order (ADR 0057).
    #[serde(default)]
    pub lots: Vec<String>,
}

/// `POST /api/v1/production-orders`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrderBody {
    /// Generated (`PO-…`) when left out.
    pub order_id: Option<String>,
    pub product_id: String,
    /// Units to make; an integer > 0.
    pub quantity: u64,
    #[serde(default)]
    pub bom: Vec<BomLineBody>,
    pub input_location: Option<String>,
    /// `FG` when left out.
    pub output_location: Option<String>,
}

pub(crate) fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::new(raw)
        .map_err(|_| ApiError::not_found(format!("production order {raw} does not exist")))
}

fn location(raw: Option<String>, field: &str) -> Result<Option<Location>, ApiError> {
    raw.filter(|s| !s.trim().is_empty())
        .map(Location::new)
        .transpose()
        .field(field)
}

/// Creates a production order.
#[utoipa::path(post, path = "/api/v1/production-orders", tag = "production orders",
    request_body = CreateOrderBody,
    responses(
        (status = 201, body = OrderView),
        (status = 400, body = ProblemDocument),
        (status = 409, description = "the id is taken", body = ProblemDocument),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _: Auth<perm::Orders>,
    ctx: Ctx,
    ApiJson(body): ApiJson<CreateOrderBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let id = match body.order_id.filter(|s| !s.trim().is_empty()) {
        Some(raw) => OrderId::new(raw).field("order_id")?,
        None => OrderId::new(generated_id("PO", ctx.command_id().as_deref())).field("order_id")?,
    };
    let bom = body
        .bom
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let lots = line
                .lots
                .into_iter()
                .enumerate()
                .map(|(k, lot)| LotId::new(lot).field(&format!("bom[{i}].lots[{k}]")))
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok(BomLine {
                item_id: ItemId::new(line.item_id).field(&format!("bom[{i}].item_id"))?,
                qty_per_unit: Quantity::new(line.qty_per_unit)
                    .field(&format!("bom[{i}].qty_per_unit"))?,
                lots,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let at = now();
    let command = CreateOrder {
        order_id: id.clone(),
        product_id: ProductId::new(body.product_id).field("product_id")?,
        quantity: OrderQuantity::new(body.quantity).field("quantity")?,
        bom,
        input_location: location(body.input_location, "input_location")?,
        output_location: location(body.output_location, "output_location")?,
        at,
    };
    let done = run(&state, &ctx, &id, OrderCommand::CreateOrder(command)).await?;
    Ok((
        StatusCode::CREATED,
        Json(order_view(&state, &id, Seen::AtLeast(done)).await?),
    ))
}

/// Executes an order command; returns the order's version after it.
async fn run(
    state: &AppState,
    ctx: &Ctx,
    id: &OrderId,
    command: OrderCommand,
) -> Result<u64, ApiError> {
    let target = Target::ProductionOrder {
        order_id: id.clone(),
        command,
    };
    let outcome = state
        .commands
        .execute(target, &ctx.command(Some(now())))
        .await?;
    Ok(outcome.stream_version)
}

/// An order with its counts and inspections (read-your-writes).
#[utoipa::path(get, path = "/api/v1/production-orders/{order_id}", tag = "production orders",
    params(("order_id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn get_order(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(order_view(&state, &order_id(&raw)?, Seen::Now).await?))
}

/// `POST …/assign`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignBody {
    /// A machine or workstation.
    pub machine_id: String,
    /// Replaces the operators assigned to the order (`[]` clears them); left out: they stay
    /// as they are. Every id must be a registered, active operator (else 422, nothing stored).
    pub operator_ids: Option<Vec<String>>,
}

/// Assigns (or re-assigns, before start) the order to a machine.
#[utoipa::path(post, path = "/api/v1/production-orders/{order_id}/assign", tag = "production orders",
    params(("order_id" = String, Path)), request_body = AssignBody,
    responses((status = 200, body = OrderView), (status = 400, body = ProblemDocument),
        (status = 404, description = "unknown order or machine", body = ProblemDocument),
        (status = 409, description = "the status forbids it", body = ProblemDocument),
        (status = 422, description = "an unknown or deactivated operator", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn assign(
    State(state): State<AppState>,
    _: Auth<perm::Orders>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Json<OrderView>, ApiError> {
    let id = order_id(&raw)?;
    let machine_id = MachineId::new(body.machine_id).field("machine_id")?;
    order_view(&state, &id, Seen::Now).await?;
    require_machine(&state, &machine_id).await?;
    let operator_ids = match body.operator_ids {
        Some(raw) => Some(require_operators(&state, raw).await?),
        None => None,
    };
    let command = OrderCommand::AssignOrder(AssignOrder {
        machine_id,
        operator_ids,
        at: now(),
    });
    let done = run(&state, &ctx, &id, command).await?;
    Ok(Json(order_view(&state, &id, Seen::AtLeast(done)).await?))
}

/// An optional reason (`hold`, `cancel`) and floor time.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReasonBody {
    pub reason: Option<String>,
    /// When it happened on the floor (RFC 3339); defaults to the server's clock. A
    /// command made offline carries the time it was made, so its figures land in the
    /// window it belongs to.
    pub timestamp: Option<DateTime<Utc>>,
}

/// The floor time of a transition (`start`, `resume`, `complete`); `{}` means now.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct FloorTimeBody {
    /// When it happened on the floor (RFC 3339); defaults to the server's clock.
    pub timestamp: Option<DateTime<Utc>>,
}

/// The floor time a command names, or now; never further ahead than the skew allows.
fn floor_time(timestamp: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, ApiError> {
    let now = now();
    not_in_future(timestamp.unwrap_or(now), now)
}

macro_rules! transition {
    ($name:ident, $path:tt, $doc:tt, $perm:ty, $body:ident, |$b:ident, $ctx:ident| $make:expr) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "production orders",
            params(("order_id" = String, Path)), request_body = $body,
            responses((status = 200, body = OrderView), (status = 404, body = ProblemDocument),
                (status = 409, description = "the status forbids it", body = ProblemDocument)),
            security(("bearer" = [])))]
        pub async fn $name(
            State(state): State<AppState>,
            _: Auth<$perm>,
            $ctx: Ctx,
            ApiPath(raw): ApiPath<String>,
            OptionalJson($b): OptionalJson<$body>,
        ) -> Result<Json<OrderView>, ApiError> {
            let id = order_id(&raw)?;
            let command = $make;
            let done = run(&state, &$ctx, &id, command).await?;
            Ok(Json(order_view(&state, &id, Seen::AtLeast(done)).await?))
        }
    };
}

transition!(
    start,
    "/api/v1/production-orders/{order_id}/start",
    "Starts an assigned order (409 from any other status).",
    perm::Production,
    FloorTimeBody,
    |b, ctx| OrderCommand::StartOrder(StartOrder {
        at: floor_time(b.timestamp)?
    })
);
transition!(
    resume,
    "/api/v1/production-orders/{order_id}/resume",
    "Resumes an order on hold.",
    perm::Production,
    FloorTimeBody,
    |b, ctx| OrderCommand::ResumeOrder(ResumeOrder {
        at: floor_time(b.timestamp)?
    })
);
transition!(
    complete,
    "/api/v1/production-orders/{order_id}/complete",
    "Completes an order in progress (409 from any other status).",
    perm::Production,
    FloorTimeBody,
    |b, ctx| OrderCommand::CompleteOrder(CompleteOrder {
        at: floor_time(b.timestamp)?
    })
);
transition!(
    hold,
    "/api/v1/production-orders/{order_id}/hold",
    "Puts an order in progress on hold.",
    perm::Production,
    ReasonBody,
    |b, ctx| OrderCommand::HoldOrder(HoldOrder {
        reason: reason_or(b.reason, || format!(
            "put on hold by {}",
            ctx.principal.name
        ))?,
        at: floor_time(b.timestamp)?,
    })
);
transition!(
    cancel,
    "/api/v1/production-orders/{order_id}/cancel",
    "Cancels an order that is neither completed nor cancelled.",
    perm::Orders,
    ReasonBody,
    |b, ctx| OrderCommand::CancelOrder(CancelOrder {
        reason: b
            .reason
            .filter(|r| !r.trim().is_empty())
            .map(Text::new)
            .transpose()
            .field("reason")?,
        at: floor_time(b.timestamp)?,
    })
);

fn reason_or(reason: Option<String>, default: impl FnOnce() -> String) -> Result<Text, ApiError> {
    match reason.filter(|r| !r.trim().is_empty()) {
        Some(r) => Text::new(r).field("reason"),
        None => Text::new(default()).field("reason"),
    }
}

/// The inspections recorded on an order.
#[utoipa::path(get, path = "/api/v1/production-orders/{order_id}/inspections", tag = "production orders",
    params(("order_id" = String, Path)),
    responses((status = 200, body = [InspectionView]), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn inspections(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<Vec<InspectionView>>, ApiError> {
    Ok(Json(
        order_view(&state, &order_id(&raw)?, Seen::Now)
            .await?
            .inspections,
    ))
}

/// `POST …/inspections`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InspectionBody {
    /// Generated when left out.
    pub inspection_id: Option<String>,
    pub sample_size: u64,
    pub defects: u64,
    /// Defaults to `defects == 0`.
    pub passed: Option<bool>,
    /// Defaults to the caller's token name.
    pub inspector: Option<String>,
    pub notes: Option<String>,
    /// Measured values of SPC characteristics, one subgroup each (ADR 0056): each
    /// `{"characteristic": id, "values": [number, ...]}` feeds the characteristic of that id
    /// when it is defined with the `measurements` source.
    #[serde(default)]
    pub measurements: Vec<MeasurementView>,
    /// When the sample was inspected on the floor (RFC 3339); defaults to now.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Records a quality inspection of a sample of the order's parts.
#[utoipa::path(post, path = "/api/v1/production-orders/{order_id}/inspections", tag = "production orders",
    params(("order_id" = String, Path)), request_body = InspectionBody,
    responses((status = 201, body = InspectionView), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn record_inspection(
    State(state): State<AppState>,
    _: Auth<perm::Production>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<InspectionBody>,
) -> Result<(StatusCode, Json<InspectionView>), ApiError> {
    let id = order_id(&raw)?;
    let inspection_id = match body.inspection_id.filter(|s| !s.trim().is_empty()) {
        Some(raw) => InspectionId::new(raw).field("inspection_id")?,
        None => InspectionId::new(generated_id("INSP", ctx.command_id().as_deref()))
            .field("inspection_id")?,
    };
    let inspector = body.inspector.unwrap_or_else(|| ctx.principal.name.clone());
    let command = OrderCommand::RecordInspection(RecordInspection {
        inspection_id: inspection_id.clone(),
        sample_size: body.sample_size,
        defects: body.defects,
        passed: body.passed.unwrap_or(body.defects == 0),
        inspector: Actor::new(inspector).field("inspector")?,
        notes: body
            .notes
            .filter(|n| !n.trim().is_empty())
            .map(Text::new)
            .transpose()
            .field("notes")?,
        measurements: measurements(body.measurements)?,
        at: floor_time(body.timestamp)?,
    });
    run(&state, &ctx, &id, command).await?;
    let view = order_view(&state, &id, Seen::Now).await?;
    let inspection = view
        .inspections
        .into_iter()
        .find(|i| i.inspection_id == inspection_id.as_str())
        .ok_or_else(|| ApiError::internal("recorded inspection not found"))?;
    Ok((StatusCode::CREATED, Json(inspection)))
}

/// The measurements of an inspection body, validated.
fn measurements(body: Vec<MeasurementView>) -> Result<Vec<Measurement>, ApiError> {
    body.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let field = format!("measurements[{i}]");
            let id = CharacteristicId::new(m.characteristic)
                .field(&format!("{field}.characteristic"))?;
            Measurement::new(id, m.values)
                .map_err(|e| ApiError::invalid_field(&format!("{field}.values"), e))
        })
        .collect()
}
