//! Projection `hierarchy` (ADR 0062): the equipment hierarchy's nodes as they stand
//! (`rm_hierarchy_nodes`), every parent each node had (`rm_hierarchy_parents`) and every
//! placement of a machine in a work cell (`rm_hierarchy_placements`), each with the floor
//! time it takes effect from and the time it was recorded, so a query can resolve the
//! tree at a floor time as known by `as_of` (`query::hierarchy`).
//!
//! The hierarchy changes a few times a year, so the chunk is applied event by event with
//! one small statement each, like `spc`. History rows are keyed by the event's position
//! and inserted with `ON CONFLICT DO NOTHING`; every value comes from the event or its
//! record, so a replay gives the same rows.

use serde_json::json;
use shopfloor_domain::hierarchy::HierarchyEvent;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{last_updates, pg_ts};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

async fn insert_parent(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    node_id: &str,
    parent: Option<&str>,
    effective_from: &chrono::DateTime<chrono::Utc>,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO rm_hierarchy_parents (node_id, position, parent, effective_from, \
             recorded_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(node_id)
    .bind(event.position)
    .bind(parent)
    .bind(pg_ts(effective_from)?)
    .bind(pg_ts(&event.recorded_at)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Applies one event.
async fn apply(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    e: &HierarchyEvent,
) -> Result<(), ApplyError> {
    match e {
        HierarchyEvent::HierarchyNodeCreated {
            node_id,
            level,
            name,
            parent,
            at,
            ..
        } => {
            let parent = parent.as_ref().map(|p| p.as_str());
            sqlx::query(
                "INSERT INTO rm_hierarchy_nodes (node_id, level, name, parent, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (node_id) DO NOTHING",
            )
            .bind(node_id.as_str())
            .bind(level.as_str())
            .bind(name.as_str())
            .bind(parent)
            .bind(pg_ts(at)?)
            .execute(&mut *conn)
            .await?;
            insert_parent(conn, event, node_id.as_str(), parent, at).await?;
        }
        HierarchyEvent::HierarchyNodeMoved {
            node_id,
            parent,
            effective_from,
            at,
            ..
        } => {
            let parent = parent.as_ref().map(|p| p.as_str());
            sqlx::query(
                "UPDATE rm_hierarchy_nodes SET parent = $2, updated_at = GREATEST(updated_at, $3) \
                 WHERE node_id = $1",
            )
            .bind(node_id.as_str())
            .bind(parent)
            .bind(pg_ts(at)?)
            .execute(&mut *conn)
            .await?;
            insert_parent(conn, event, node_id.as_str(), parent, effective_from).await?;
        }
        HierarchyEvent::HierarchyNodeRenamed {
            node_id, name, at, ..
        } => {
            sqlx::query(
                "UPDATE rm_hierarchy_nodes SET name = $2, updated_at = GREATEST(updated_at, $3) \
                 WHERE node_id = $1",
            )
            .bind(node_id.as_str())
            .bind(name.as_str())
            .bind(pg_ts(at)?)
            .execute(&mut *conn)
            .await?;
        }
        HierarchyEvent::HierarchyMachinePlaced {
            machine_id,
            line,
            cell,
            effective_from,
            ..
        } => {
            sqlx::query(
                "INSERT INTO rm_hierarchy_placements (machine_id, position, line, cell, \
                     effective_from, recorded_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(machine_id.as_str())
            .bind(event.position)
            .bind(line.as_str())
            .bind(cell.as_ref().map(|c| c.as_str()))
            .bind(pg_ts(effective_from)?)
            .bind(pg_ts(&event.recorded_at)?)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Applies a chunk, event by event in position order; one live update
/// (`hierarchy:plant`) tells dashboards to reload the tree.
pub(crate) async fn apply_chunk(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &HierarchyEvent)],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    for (event, e) in items {
        apply(conn, event, e).await?;
    }
    Ok(last_updates(
        items,
        |_| Some("hierarchy:plant"),
        |event, _| {
            Some(LiveUpdate {
                topic: "hierarchy:plant".to_owned(),
                data: json!({ "event_type": event.event_type, "position": event.position }),
            })
        },
    ))
}
