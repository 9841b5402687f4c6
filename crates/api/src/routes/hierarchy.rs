//! The equipment hierarchy (ADR 0062): create, move and rename nodes, place machines in
//! work cells (permission `settings`), and read the tree.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopfloor_domain::hierarchy::{
    CreateNode, HierarchyCommand, HierarchyNode, Level, MoveNode, PlaceMachine, RenameNode,
    PLANT_STREAM,
};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{Actor, MachineId, NodeId, Text};
use shopfloor_domain::{EquipmentHierarchy, Machine};
use shopfloor_projections::query;
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, Ctx};
use crate::routes::now;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/hierarchy", get(tree))
        .route("/api/v1/hierarchy/nodes", post(create_node))
        .route("/api/v1/hierarchy/nodes/{node_id}/move", post(move_node))
        .route(
            "/api/v1/hierarchy/nodes/{node_id}/rename",
            post(rename_node),
        )
        .route(
            "/api/v1/hierarchy/machines/{machine_id}/place",
            post(place_machine),
        )
}

/// One node as it stands after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub node_id: String,
    /// `enterprise`, `site`, `area`, `line` or `work_cell`.
    pub level: String,
    pub name: String,
    pub parent: Option<String>,
    /// The effective time of its last move, if it moved.
    pub moved_from: Option<DateTime<Utc>>,
}

impl From<&HierarchyNode> for NodeView {
    fn from(n: &HierarchyNode) -> Self {
        Self {
            node_id: n.node_id.to_string(),
            level: n.level.as_str().to_owned(),
            name: n.name.to_string(),
            parent: n.parent.as_ref().map(ToString::to_string),
            moved_from: n.moved_from,
        }
    }
}

/// A node of `GET /api/v1/hierarchy` (children nest the same shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct TreeNodeDoc {
    pub node_id: String,
    pub level: String,
    pub name: String,
    /// The implicit `default` site or area, or a line no node names yet.
    pub implicit: bool,
    #[schema(value_type = Vec<Object>)]
    pub children: Vec<serde_json::Value>,
    /// Machines directly on this line or in this work cell.
    pub machines: Vec<String>,
}

/// A machine and where it stands now.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlacedMachineDoc {
    pub machine_id: String,
    pub enterprise: Option<String>,
    pub site: String,
    pub area: String,
    pub line: String,
    pub cell: Option<String>,
}

/// `GET /api/v1/hierarchy`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HierarchyDoc {
    pub roots: Vec<TreeNodeDoc>,
    pub machines: Vec<PlacedMachineDoc>,
}

/// The equipment hierarchy as it stands now: the tree (lines not in an area under the
/// implicit `default` site and area) and where every machine stands.
#[utoipa::path(get, path = "/api/v1/hierarchy", tag = "hierarchy",
    responses((status = 200, body = HierarchyDoc)),
    security(("bearer" = [])))]
pub async fn tree(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
) -> Result<Json<query::HierarchyView>, ApiError> {
    Ok(Json(query::hierarchy_tree(&state.pool).await?))
}

/// `POST /api/v1/hierarchy/nodes`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateNodeBody {
    /// Stable id (an MQTT topic level: no `/`, `+`, `#` or spaces). A line's id is the
    /// `line` its machines name.
    pub node_id: String,
    /// `enterprise`, `site`, `area`, `line` or `work_cell`.
    #[schema(value_type = String)]
    pub level: Level,
    pub name: String,
    /// A node one level up; none: a top-level node.
    pub parent: Option<String>,
}

/// `POST /api/v1/hierarchy/nodes/{node_id}/move`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MoveNodeBody {
    /// The new parent, one level up; null: a top-level node.
    pub parent: Option<String>,
    /// RFC 3339, not in the future; default now.
    pub effective_from: Option<DateTime<Utc>>,
}

/// `POST /api/v1/hierarchy/nodes/{node_id}/rename`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameNodeBody {
    pub name: String,
}

/// `POST /api/v1/hierarchy/machines/{machine_id}/place`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlaceMachineBody {
    /// A work cell of the machine's line; null: directly on the line.
    pub cell: Option<String>,
    /// RFC 3339, not in the future; default now.
    pub effective_from: Option<DateTime<Utc>>,
}

/// A node id from a body or path.
fn node_id(raw: &str, field: &str) -> Result<NodeId, ApiError> {
    NodeId::new(raw).field(field)
}

/// Creates a node. Creating the same node again changes nothing; another node with the
/// same id is a 409.
#[utoipa::path(post, path = "/api/v1/hierarchy/nodes", tag = "hierarchy",
    request_body = CreateNodeBody,
    responses((status = 201, body = NodeView), (status = 400, body = ProblemDocument),
        (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn create_node(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiJson(body): ApiJson<CreateNodeBody>,
) -> Result<(StatusCode, Json<NodeView>), ApiError> {
    let id = node_id(&body.node_id, "node_id")?;
    let command = HierarchyCommand::CreateNode(CreateNode {
        node_id: id.clone(),
        level: body.level,
        name: Text::new(body.name).field("name")?,
        parent: body
            .parent
            .as_deref()
            .map(|p| node_id(p, "parent"))
            .transpose()?,
        by: Actor::new(&ctx.principal.name).field("by")?,
        at: now(),
    });
    let view = change(&state, &ctx, &id, command).await?;
    Ok((StatusCode::CREATED, view))
}

/// Moves a node under another parent of the level above, from `effective_from`. A node
/// cannot move under itself or its descendants, nor before its previous move.
#[utoipa::path(post, path = "/api/v1/hierarchy/nodes/{node_id}/move", tag = "hierarchy",
    params(("node_id" = String, Path)), request_body = MoveNodeBody,
    responses((status = 200, body = NodeView), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn move_node(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<MoveNodeBody>,
) -> Result<Json<NodeView>, ApiError> {
    let id = node_id(&raw, "node_id")?;
    let at = now();
    let command = HierarchyCommand::MoveNode(MoveNode {
        node_id: id.clone(),
        parent: body
            .parent
            .as_deref()
            .map(|p| node_id(p, "parent"))
            .transpose()?,
        effective_from: body.effective_from.unwrap_or(at),
        by: Actor::new(&ctx.principal.name).field("by")?,
        at,
    });
    change(&state, &ctx, &id, command).await
}

/// Renames a node (its id, which machines and topics name, stays).
#[utoipa::path(post, path = "/api/v1/hierarchy/nodes/{node_id}/rename", tag = "hierarchy",
    params(("node_id" = String, Path)), request_body = RenameNodeBody,
    responses((status = 200, body = NodeView), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn rename_node(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<RenameNodeBody>,
) -> Result<Json<NodeView>, ApiError> {
    let id = node_id(&raw, "node_id")?;
    let command = HierarchyCommand::RenameNode(RenameNode {
        node_id: id.clone(),
        name: Text::new(body.name).field("name")?,
        by: Actor::new(&ctx.principal.name).field("by")?,
        at: now(),
    });
    change(&state, &ctx, &id, command).await
}

/// Where a machine stands after a placement.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlacementView {
    pub machine_id: String,
    pub line: String,
    pub cell: Option<String>,
    pub effective_from: DateTime<Utc>,
}

/// Places a machine in a work cell of its line (null: directly on its line), from
/// `effective_from`.
#[utoipa::path(post, path = "/api/v1/hierarchy/machines/{machine_id}/place", tag = "hierarchy",
    params(("machine_id" = String, Path)), request_body = PlaceMachineBody,
    responses((status = 200, body = PlacementView), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn place_machine(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<PlaceMachineBody>,
) -> Result<Json<PlacementView>, ApiError> {
    let machine_id = MachineId::new(&raw)
        .map_err(|_| ApiError::not_found(format!("machine {raw} is not registered")))?;
    let (machine, _) = state.commands.load::<Machine>(machine_id.as_str()).await?;
    let line = machine
        .machine()
        .map(|m| m.line.clone())
        .ok_or_else(|| ApiError::not_found(format!("machine {machine_id} is not registered")))?;
    let at = now();
    let effective_from = body.effective_from.unwrap_or(at);
    let cell = body
        .cell
        .as_deref()
        .map(|c| node_id(c, "cell"))
        .transpose()?;
    let command = HierarchyCommand::PlaceMachine(PlaceMachine {
        machine_id: machine_id.clone(),
        line: line.clone(),
        cell: cell.clone(),
        effective_from,
        by: Actor::new(&ctx.principal.name).field("by")?,
        at,
    });
    let outcome = state
        .commands
        .execute(
            Target::EquipmentHierarchy { command },
            &ctx.command(Some(at)),
        )
        .await?;
    let (h, _) = state
        .commands
        .load_at_least::<EquipmentHierarchy>(PLANT_STREAM, outcome.stream_version)
        .await?;
    let placed = h.placement(machine_id.as_str());
    Ok(Json(PlacementView {
        machine_id: machine_id.to_string(),
        line: line.to_string(),
        cell: placed.and_then(|p| p.cell.as_ref().map(ToString::to_string)),
        effective_from: placed.map_or(effective_from, |p| p.effective_from),
    }))
}

/// Sends a change to the hierarchy and answers with the node as it now is.
async fn change(
    state: &AppState,
    ctx: &Ctx,
    id: &NodeId,
    command: HierarchyCommand,
) -> Result<Json<NodeView>, ApiError> {
    let outcome = state
        .commands
        .execute(
            Target::EquipmentHierarchy { command },
            &ctx.command(Some(now())),
        )
        .await?;
    let (h, _) = state
        .commands
        .load_at_least::<EquipmentHierarchy>(PLANT_STREAM, outcome.stream_version)
        .await?;
    h.node(id.as_str())
        .map(|n| Json(NodeView::from(n)))
        .ok_or_else(|| ApiError::internal(format!("node {id} vanished")))
}
