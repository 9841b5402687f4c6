//! `shopfloor bench genealogy`: the speed of a lot's backward and forward trace (ADR 0057)
//! over a depth-6 tree of about 10,000 lots.
//!
//! The tree is made the way a plant makes it, through the one writer: the leaves are lot
//! receipts of one raw item; each lot of the level above is an output lot (`ProduceLot`)
//! whose production consumed `fanout` units of the item below (`ConsumeLots` into it, FIFO:
//! each parent takes the next `fanout` child lots). With fan-outs 4, 4, 4, 5, 5, 5 from the
//! root: 1 + 4 + 16 + 64 + 320 + 1,600 + 8,000 = 10,005 lots. The inventory read model is
//! then built from the log (`apply_from_store`), and each trace is timed as the API answers
//! it: the read-model query plus the JSON serialization of the answer.

use std::time::Instant;

use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::json;
use shopfloor_commands::{Atomicity, BatchItem, CommandContext, CommandService};
use shopfloor_domain::inventory::{ConsumeStock, InventoryCommand, ItemType, ProduceStock};
use shopfloor_domain::lot::{ConsumeLots, LotRef, ProduceLot, ReceiveLot};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{ItemId, Location, LotId, OrderId, Quantity, Text};
use shopfloor_eventstore::{EventStore, Source};
use shopfloor_projections::query::lots::{trace, Direction};
use shopfloor_projections::Projection;

use crate::bench::{run_id, Summary};

/// Fan-out of each level, from the root down.
const FANOUT: [usize; 6] = [4, 4, 4, 5, 5, 5];

fn v<T: std::str::FromStr>(s: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| anyhow::anyhow!("{s}: {e}"))
}

fn item(run: &str, level: usize) -> String {
    format!("g{run}-L{level}")
}

fn lot(level: usize, i: usize) -> String {
    format!("P{level}-{i}")
}

/// Lots at each level (level 0: the root).
fn widths() -> Vec<usize> {
    let mut w = vec![1];
    for f in FANOUT {
        let last = *w.last().unwrap_or(&1);
        w.push(last * f);
    }
    w
}

async fn send(service: &CommandService, targets: Vec<Target>) -> anyhow::Result<()> {
    let ctx = CommandContext::new("bench", Source::Api);
    let items = targets
        .into_iter()
        .map(|t| BatchItem::new(t, ctx.clone()))
        .collect();
    for r in service.execute_batch(items, Atomicity::EachOnItsOwn).await {
        r?;
    }
    Ok(())
}

/// Builds the tree through the writer; returns the number of lots.
async fn build(service: &CommandService, run: &str) -> anyhow::Result<usize> {
    let widths = widths();
    let leaves = FANOUT.len();
    let at = Utc::now();
    let raw = v::<ItemId>(&item(run, leaves))?;
    let mut batch = Vec::new();
    for i in 0..widths[leaves] {
        batch.push(Target::InventoryItem {
            item_id: raw.clone(),
            command: InventoryCommand::ReceiveLot(ReceiveLot {
                item_id: raw.clone(),
                item_type: ItemType::Raw,
                lot_id: v(&lot(leaves, i))?,
                supplier_lot: Some(Text::new(format!("SUP-{}", i / 100))?),
                location: v("RAW")?,
                qty: Quantity::new(Decimal::ONE)?,
                expiry: None,
                reason: None,
                at,
            }),
        });
        if batch.len() == 500 {
            send(service, std::mem::take(&mut batch)).await?;
        }
    }
    send(service, std::mem::take(&mut batch)).await?;
    for level in (0..leaves).rev() {
        let product = v::<ItemId>(&item(run, level))?;
        let child = v::<ItemId>(&item(run, level + 1))?;
        let fanout = Decimal::from(FANOUT[level] as u64);
        for i in 0..widths[level] {
            let order = v::<OrderId>(&format!("{run}-O{level}-{i}"))?;
            let lot_id = v::<LotId>(&lot(level, i))?;
            batch.push(Target::InventoryItem {
                item_id: product.clone(),
                command: InventoryCommand::ProduceLot(ProduceLot {
                    produce: ProduceStock {
                        item_id: product.clone(),
                        order_id: order.clone(),
                        location: v::<Location>("FG")?,
                        qty: Quantity::new(Decimal::ONE)?,
                        at,
                    },
                    lot_id: lot_id.clone(),
                    machine_id: Some(v("M-1")?),
                }),
            });
            batch.push(Target::InventoryItem {
                item_id: child.clone(),
                command: InventoryCommand::ConsumeLots(ConsumeLots {
                    consume: ConsumeStock {
                        item_id: child.clone(),
                        order_id: order,
                        qty: Quantity::new(fanout)?,
                        location: None,
                        at,
                    },
                    into: Some(LotRef {
                        item_id: product.clone(),
                        lot_id,
                    }),
                    prefer: Vec::new(),
                }),
            });
            if batch.len() >= 400 {
                send(service, std::mem::take(&mut batch)).await?;
            }
        }
        send(service, std::mem::take(&mut batch)).await?;
    }
    Ok(widths.iter().sum())
}

/// Times `n` traces of `(item, lot)` one way: query and JSON; returns the summary and the
/// trace's size.
async fn time_traces(
    pool: &sqlx::PgPool,
    item: &str,
    lot: &str,
    direction: Direction,
    n: usize,
) -> anyhow::Result<(Summary, usize, usize, u32)> {
    let mut latencies = Vec::with_capacity(n);
    let (mut lots, mut bytes, mut depth) = (0, 0, 0);
    let started = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        let t = trace(pool, item, lot, direction, None)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no lot {item}/{lot}"))?;
        let body = serde_json::to_vec(&t)?;
        latencies.push(t0.elapsed());
        (lots, bytes, depth) = (t.lots.len(), body.len(), t.depth);
    }
    let summary = Summary {
        ops: n,
        secs: started.elapsed().as_secs_f64(),
        latencies,
    };
    Ok((summary, lots, bytes, depth))
}

/// `bench genealogy`.
pub async fn genealogy(pool: sqlx::PgPool, iterations: usize) -> anyhow::Result<serde_json::Value> {
    let run = run_id();
    let service = CommandService::new(EventStore::new(pool.clone())).with_group_commit(256);
    eprintln!(
        "building a depth-{} tree of lots (run {run})…",
        FANOUT.len()
    );
    let t0 = Instant::now();
    let lots = build(&service, &run).await?;
    let built = t0.elapsed();
    eprintln!(
        "{lots} lots in {:.1} s; building the read model…",
        built.as_secs_f64()
    );
    let t1 = Instant::now();
    shopfloor_projections::projection::apply_from_store(&pool, Projection::Inventory).await?;
    let projected = t1.elapsed();
    let root = (item(&run, 0), lot(0, 0));
    let leaves = FANOUT.len();
    let leaf = (item(&run, leaves), lot(leaves, widths()[leaves] / 2));
    // Warm the caches once each way.
    time_traces(&pool, &root.0, &root.1, Direction::Backward, 1).await?;
    let (back, back_lots, back_bytes, back_depth) =
        time_traces(&pool, &root.0, &root.1, Direction::Backward, iterations).await?;
    let (fwd, fwd_lots, fwd_bytes, fwd_depth) =
        time_traces(&pool, &leaf.0, &leaf.1, Direction::Forward, iterations).await?;
    let mid = (item(&run, 3), lot(3, 7));
    let (mid_fwd, mid_lots, _, _) =
        time_traces(&pool, &mid.0, &mid.1, Direction::Forward, iterations).await?;
    Ok(json!({
        "lots": lots,
        "fanout": FANOUT,
        "build_secs": built.as_secs_f64(),
        "projection_secs": projected.as_secs_f64(),
        "backward_from_root": back.json(json!({"lots": back_lots, "depth": back_depth, "json_bytes": back_bytes})),
        "forward_from_leaf": fwd.json(json!({"lots": fwd_lots, "depth": fwd_depth, "json_bytes": fwd_bytes})),
        "forward_from_level_3": mid_fwd.json(json!({"lots": mid_lots})),
        "note": "each figure: the read-model query (recursive CTE + details + stock + orders) and the JSON of the answer, in process",
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tree_has_ten_thousand_lots_over_six_levels() {
        let w = super::widths();
        assert_eq!(w.len(), 7);
        assert_eq!(w.iter().sum::<usize>(), 10_005);
    }
}
