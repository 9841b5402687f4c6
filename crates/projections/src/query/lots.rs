//! Lots and genealogy (ADR 0057): lots by item, location, supplier lot, status or machine; a
//! lot with its ledger; and its backward and forward traces, now or `as_of` a time.
//!
//! A trace is one recursive CTE over `rm_lot_edges` (`UNION` on the lot key: every lot once,
//! so merges that loop back terminate), then one query for the lots' details and one for
//! their stock, plus the operators and inspections of the orders that made them. Depth is
//! the breadth-first distance from the root, computed here over the edges returned.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use crate::error::QueryError;

/// Filters of [`list_lots`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LotFilter {
    pub item_id: Option<String>,
    /// Lots with stock at this location.
    pub location: Option<String>,
    pub supplier_lot: Option<String>,
    /// `available`, `held` or `scrapped`.
    pub status: Option<String>,
    /// Lots produced on this machine (with `from` / `to`: produced in that floor-time window).
    pub machine_id: Option<String>,
    pub order_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// At most this many (default 500, at most 5000).
    pub limit: Option<i64>,
}

/// A lot's stock at one location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LotStock {
    pub location: String,
    #[serde(with = "rust_decimal::serde::float")]
    pub quantity: Decimal,
}

/// A lot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct LotView {
    pub item_id: String,
    pub lot_id: String,
    pub item_type: String,
    pub supplier_lot: Option<String>,
    pub expiry: Option<DateTime<Utc>>,
    /// `received`, `produced`, `split` or `merged`.
    pub origin: String,
    /// The lot it was split from.
    pub parent_lot: Option<String>,
    /// The order that produced it.
    pub order_id: Option<String>,
    /// The machine that produced it.
    pub machine_id: Option<String>,
    /// `available`, `held` or `scrapped`.
    pub status: String,
    pub hold_reason: Option<String>,
    pub hold_id: Option<String>,
    /// Floor time of its creation.
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    /// Floor time of its first and last production (produced lots): with the machine, the
    /// shift it ran in.
    pub produced_from: Option<DateTime<Utc>>,
    pub produced_to: Option<DateTime<Utc>>,
    /// Stock per location (locations at zero left out).
    #[sqlx(skip)]
    pub stock: Vec<LotStock>,
    /// The sum of `stock`.
    #[sqlx(skip)]
    #[serde(with = "rust_decimal::serde::float")]
    pub quantity: Decimal,
}

const LOT_COLUMNS: &str = "l.item_id, l.lot_id, l.item_type, l.supplier_lot, l.expiry, l.origin, \
    l.parent_lot, l.order_id, l.machine_id, l.status, l.hold_reason, l.hold_id, l.created_at, \
    l.created_by, l.produced_from, l.produced_to";

/// Lots, by item and lot id.
#[instrument(skip(pool), err)]
pub async fn list_lots(pool: &PgPool, filter: &LotFilter) -> Result<Vec<LotView>, QueryError> {
    let limit = filter.limit.unwrap_or(500).clamp(1, 5000);
    let sql = format!(
        "SELECT {LOT_COLUMNS} FROM rm_lots l \
         WHERE ($1::text IS NULL OR l.item_id = $1) \
         AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM rm_lot_stock s WHERE s.item_id = l.item_id \
             AND s.lot_id = l.lot_id AND s.location = $2 AND s.quantity > 0)) \
         AND ($3::text IS NULL OR l.supplier_lot = $3) AND ($4::text IS NULL OR l.status = $4) \
         AND ($5::text IS NULL OR l.machine_id = $5) AND ($6::text IS NULL OR l.order_id = $6) \
         AND (($7::timestamptz IS NULL AND $8::timestamptz IS NULL) OR EXISTS (SELECT 1 \
             FROM rm_lot_movements m WHERE m.item_id = l.item_id AND m.lot_id = l.lot_id \
             AND m.kind = 'produced' AND ($7 IS NULL OR m.at >= $7) AND ($8 IS NULL OR m.at < $8))) \
         ORDER BY l.item_id, l.lot_id LIMIT $9"
    );
    let mut lots: Vec<LotView> = sqlx::query_as(&sql)
        .bind(filter.item_id.as_deref())
        .bind(filter.location.as_deref())
        .bind(filter.supplier_lot.as_deref())
        .bind(filter.status.as_deref())
        .bind(filter.machine_id.as_deref())
        .bind(filter.order_id.as_deref())
        .bind(filter.from)
        .bind(filter.to)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    let keys: Vec<(String, String)> = lots
        .iter()
        .map(|l| (l.item_id.clone(), l.lot_id.clone()))
        .collect();
    let stock = stock_of(pool, &keys, None).await?;
    for lot in &mut lots {
        set_stock(lot, &stock);
    }
    Ok(lots)
}

type Key = (String, String);

fn set_stock(lot: &mut LotView, stock: &HashMap<Key, Vec<LotStock>>) {
    lot.stock = stock
        .get(&(lot.item_id.clone(), lot.lot_id.clone()))
        .cloned()
        .unwrap_or_default();
    lot.quantity = lot.stock.iter().map(|s| s.quantity).sum();
}

/// The stock of `keys` per location (now, or as of `as_of`), without the zeros.
async fn stock_of(
    pool: &PgPool,
    keys: &[Key],
    as_of: Option<DateTime<Utc>>,
) -> Result<HashMap<Key, Vec<LotStock>>, QueryError> {
    let (items, lots): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(i, l)| (i.as_str(), l.as_str())).unzip();
    let sql = match as_of {
        None => {
            "SELECT s.item_id, s.lot_id, s.location, s.quantity FROM rm_lot_stock s \
             JOIN UNNEST($1::text[], $2::text[]) AS k(item_id, lot_id) USING (item_id, lot_id) \
             WHERE s.quantity > 0 AND $3::timestamptz IS NULL ORDER BY 1, 2, 3"
        }
        Some(_) => {
            "SELECT * FROM (SELECT DISTINCT ON (m.item_id, m.lot_id, m.location) m.item_id, \
             m.lot_id, m.location, m.new_qty AS quantity FROM rm_lot_movements m \
             JOIN UNNEST($1::text[], $2::text[]) AS k(item_id, lot_id) USING (item_id, lot_id) \
             WHERE m.location IS NOT NULL AND m.new_qty IS NOT NULL AND m.recorded_at <= $3 \
             ORDER BY m.item_id, m.lot_id, m.location, m.position DESC, m.seq DESC) s \
             WHERE s.quantity > 0 ORDER BY 1, 2, 3"
        }
    };
    let rows: Vec<(String, String, String, Decimal)> = sqlx::query_as(sql)
        .bind(&items)
        .bind(&lots)
        .bind(as_of)
        .fetch_all(pool)
        .await?;
    let mut out: HashMap<Key, Vec<LotStock>> = HashMap::new();
    for (item, lot, location, quantity) in rows {
        out.entry((item, lot))
            .or_default()
            .push(LotStock { location, quantity });
    }
    Ok(out)
}

/// One change of a lot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct LotMovement {
    pub position: i64,
    pub seq: i32,
    pub location: Option<String>,
    /// `received`, `produced`, `consumed`, `adjusted`, `split_out`, `split_in`, `merged_out`,
    /// `merged_in`, `moved_out`, `moved_in`, `held`, `released`, `scrapped`.
    pub kind: String,
    #[serde(with = "rust_decimal::serde::float")]
    pub delta: Decimal,
    #[serde(with = "rust_decimal::serde::float_option")]
    pub new_qty: Option<Decimal>,
    /// The lot's status afterwards.
    pub status: String,
    pub reason: Option<String>,
    pub order_id: Option<String>,
    pub actor: Option<String>,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// A lot with its ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LotDetail {
    #[serde(flatten)]
    pub lot: LotView,
    /// Oldest first.
    pub movements: Vec<LotMovement>,
}

/// A lot and its ledger; None when it does not exist.
#[instrument(skip(pool), err)]
pub async fn get_lot(
    pool: &PgPool,
    item_id: &str,
    lot_id: &str,
) -> Result<Option<LotDetail>, QueryError> {
    let sql = format!("SELECT {LOT_COLUMNS} FROM rm_lots l WHERE l.item_id = $1 AND l.lot_id = $2");
    let Some(mut lot): Option<LotView> = sqlx::query_as(&sql)
        .bind(item_id)
        .bind(lot_id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let stock = stock_of(pool, &[(item_id.to_owned(), lot_id.to_owned())], None).await?;
    set_stock(&mut lot, &stock);
    let movements = sqlx::query_as(
        "SELECT position, seq, location, kind, delta, new_qty, status, reason, order_id, actor, at, \
         recorded_at FROM rm_lot_movements WHERE item_id = $1 AND lot_id = $2 \
         ORDER BY position, seq LIMIT 10000",
    )
    .bind(item_id)
    .bind(lot_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(LotDetail { lot, movements }))
}

/// Which way a trace goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Every input lot, recursively.
    Backward,
    /// Every lot it went into, recursively.
    Forward,
}

/// What went from one lot into another (summed over the events that did it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEdge {
    pub from_item: String,
    pub from_lot: String,
    pub to_item: String,
    pub to_lot: String,
    /// `consumed` (backflush), `split` or `merged`.
    pub kind: String,
    pub order_id: Option<String>,
    #[serde(with = "rust_decimal::serde::float")]
    pub qty: Decimal,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// The quality record of the order that produced a lot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderQuality {
    pub inspections: i64,
    pub inspections_failed: i64,
}

/// A lot in a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceLot {
    /// Its distance from the traced lot (0: the lot itself).
    pub depth: u32,
    #[serde(flatten)]
    pub lot: LotView,
    /// Operators clocked on the order that produced it.
    pub operators: Vec<String>,
    /// Inspections of the order that produced it.
    pub inspections: Option<OrderQuality>,
}

/// A lot's backward or forward trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub direction: Direction,
    pub item_id: String,
    pub lot_id: String,
    pub as_of: Option<DateTime<Utc>>,
    /// The deepest level reached.
    pub depth: u32,
    /// The lot itself first, then by depth, item and lot.
    pub lots: Vec<TraceLot>,
    pub edges: Vec<TraceEdge>,
}

impl Trace {
    /// The lots of the trace other than the root.
    pub fn others(&self) -> impl Iterator<Item = &TraceLot> {
        self.lots.iter().filter(|l| l.depth > 0)
    }
}

/// (from item, from lot, to item, to lot, kind, order): what an edge is summed over.
type EdgeKey = (String, String, String, String, String, Option<String>);

/// One edge row of the walk, before summing.
#[derive(sqlx::FromRow)]
struct EdgeRow {
    from_item: String,
    from_lot: String,
    to_item: String,
    to_lot: String,
    kind: String,
    order_id: Option<String>,
    qty: Decimal,
    at: DateTime<Utc>,
}

/// The edges reachable from a lot, one way, summed per (from, to, kind, order). The walk
/// recurses over edges (not lots), so the edges come out of the one statement; `UNION`
/// keeps each edge once, so a merge that loops back ends the walk.
async fn trace_edges(
    pool: &PgPool,
    item_id: &str,
    lot_id: &str,
    direction: Direction,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<TraceEdge>, QueryError> {
    // (near, far): backward walks from `to` to `from`, forward the other way.
    let (near, far) = match direction {
        Direction::Backward => ("to", "from"),
        Direction::Forward => ("from", "to"),
    };
    let cols = "e.position, e.seq, e.from_item, e.from_lot, e.to_item, e.to_lot, e.kind, \
        e.order_id, e.qty, e.at";
    let sql = format!(
        "WITH RECURSIVE walk AS ( \
             SELECT {cols} FROM rm_lot_edges e WHERE e.{near}_item = $1 AND e.{near}_lot = $2 \
                 AND ($3::timestamptz IS NULL OR e.recorded_at <= $3) \
             UNION \
             SELECT {cols} FROM walk w JOIN rm_lot_edges e \
                 ON e.{near}_item = w.{far}_item AND e.{near}_lot = w.{far}_lot \
                 WHERE ($3::timestamptz IS NULL OR e.recorded_at <= $3)) \
         SELECT from_item, from_lot, to_item, to_lot, kind, order_id, qty, at FROM walk"
    );
    let rows: Vec<EdgeRow> = sqlx::query_as(&sql)
        .bind(item_id)
        .bind(lot_id)
        .bind(as_of)
        .fetch_all(pool)
        .await?;
    let mut summed: BTreeMap<EdgeKey, TraceEdge> = BTreeMap::new();
    for r in rows {
        let key = (
            r.from_item.clone(),
            r.from_lot.clone(),
            r.to_item.clone(),
            r.to_lot.clone(),
            r.kind.clone(),
            r.order_id.clone(),
        );
        summed
            .entry(key)
            .and_modify(|e| {
                e.qty += r.qty;
                e.first_at = e.first_at.min(r.at);
                e.last_at = e.last_at.max(r.at);
            })
            .or_insert(TraceEdge {
                from_item: r.from_item,
                from_lot: r.from_lot,
                to_item: r.to_item,
                to_lot: r.to_lot,
                kind: r.kind,
                order_id: r.order_id,
                qty: r.qty,
                first_at: r.at,
                last_at: r.at,
            });
    }
    Ok(summed.into_values().collect())
}

/// Breadth-first depth of every lot reached from `root` over `edges`.
fn depths(root: &Key, edges: &[TraceEdge], direction: Direction) -> BTreeMap<Key, u32> {
    let mut next: HashMap<Key, Vec<Key>> = HashMap::new();
    for e in edges {
        let from = (e.from_item.clone(), e.from_lot.clone());
        let to = (e.to_item.clone(), e.to_lot.clone());
        let (a, b) = match direction {
            Direction::Backward => (to, from),
            Direction::Forward => (from, to),
        };
        next.entry(a).or_default().push(b);
    }
    let mut depth = BTreeMap::new();
    depth.insert(root.clone(), 0);
    let mut queue = VecDeque::from([root.clone()]);
    while let Some(k) = queue.pop_front() {
        let d = depth[&k];
        for n in next.get(&k).into_iter().flatten() {
            if !depth.contains_key(n) {
                depth.insert(n.clone(), d + 1);
                queue.push_back(n.clone());
            }
        }
    }
    depth
}

/// A lot row with its stock (now) as JSON, for [`lots_as_of`].
#[derive(sqlx::FromRow)]
struct LotWithStock {
    #[sqlx(flatten)]
    lot: LotView,
    stock: Option<sqlx::types::Json<Vec<LotStock>>>,
}

/// The lots of `keys` with their stock, now (one pass: each lot's row and its stock rows),
/// or as of `as_of` (status, stock and production window from their ledger).
async fn lots_as_of(
    pool: &PgPool,
    keys: &[Key],
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<LotView>, QueryError> {
    let (items, lots): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(i, l)| (i.as_str(), l.as_str())).unzip();
    let Some(as_of) = as_of else {
        let sql = format!(
            "SELECT {LOT_COLUMNS}, (SELECT json_agg(json_build_object('location', s.location, \
                 'quantity', s.quantity) ORDER BY s.location) FROM rm_lot_stock s \
                 WHERE s.item_id = l.item_id AND s.lot_id = l.lot_id AND s.quantity > 0) AS stock \
             FROM rm_lots l JOIN UNNEST($1::text[], $2::text[]) AS k(item_id, lot_id) \
             USING (item_id, lot_id)"
        );
        let rows: Vec<LotWithStock> = sqlx::query_as(&sql)
            .bind(&items)
            .bind(&lots)
            .fetch_all(pool)
            .await?;
        return Ok(rows
            .into_iter()
            .map(|r| {
                let mut lot = r.lot;
                lot.stock = r.stock.map(|s| s.0).unwrap_or_default();
                lot.quantity = lot.stock.iter().map(|s| s.quantity).sum();
                lot
            })
            .collect());
    };
    let sql = "SELECT l.item_id, l.lot_id, l.item_type, l.supplier_lot, l.expiry, l.origin, \
         l.parent_lot, l.order_id, l.machine_id, COALESCE((SELECT m.status FROM rm_lot_movements m \
         WHERE m.item_id = l.item_id AND m.lot_id = l.lot_id AND m.recorded_at <= $3 \
         ORDER BY m.position DESC, m.seq DESC LIMIT 1), l.status) AS status, l.hold_reason, \
         l.hold_id, l.created_at, l.created_by, p.produced_from, p.produced_to \
         FROM rm_lots l JOIN UNNEST($1::text[], $2::text[]) AS k(item_id, lot_id) \
         USING (item_id, lot_id) LEFT JOIN LATERAL (SELECT min(m.at) AS produced_from, \
         max(m.at) AS produced_to FROM rm_lot_movements m WHERE m.item_id = l.item_id \
         AND m.lot_id = l.lot_id AND m.kind = 'produced' AND m.recorded_at <= $3) p ON true \
         WHERE l.created_recorded <= $3";
    let mut rows: Vec<LotView> = sqlx::query_as(sql)
        .bind(&items)
        .bind(&lots)
        .bind(as_of)
        .fetch_all(pool)
        .await?;
    let stock = stock_of(pool, keys, Some(as_of)).await?;
    for row in &mut rows {
        if row.status != "held" {
            row.hold_reason = None;
            row.hold_id = None;
        }
        set_stock(row, &stock);
    }
    Ok(rows)
}

/// What the orders of a trace add: operators and inspections.
struct OrderFacts {
    operators: HashMap<String, Vec<String>>,
    quality: HashMap<String, OrderQuality>,
}

async fn order_facts(pool: &PgPool, lots: &[LotView]) -> Result<OrderFacts, QueryError> {
    let mut orders: Vec<&str> = lots.iter().filter_map(|l| l.order_id.as_deref()).collect();
    orders.sort_unstable();
    orders.dedup();
    let operators: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT order_id, array_agg(DISTINCT operator_id ORDER BY operator_id) \
         FROM rm_labour_sessions WHERE order_id = ANY($1) GROUP BY order_id",
    )
    .bind(&orders)
    .fetch_all(pool)
    .await?;
    let quality: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT order_id, inspections, inspections_failed FROM rm_orders WHERE order_id = ANY($1)",
    )
    .bind(&orders)
    .fetch_all(pool)
    .await?;
    Ok(OrderFacts {
        operators: operators.into_iter().collect(),
        quality: quality
            .into_iter()
            .map(|(o, inspections, inspections_failed)| {
                (
                    o,
                    OrderQuality {
                        inspections,
                        inspections_failed,
                    },
                )
            })
            .collect(),
    })
}

/// A lot's backward or forward trace, now or as of `as_of` (events recorded by then only);
/// None when the lot does not exist (then).
#[instrument(skip(pool), err)]
pub async fn trace(
    pool: &PgPool,
    item_id: &str,
    lot_id: &str,
    direction: Direction,
    as_of: Option<DateTime<Utc>>,
) -> Result<Option<Trace>, QueryError> {
    let edges = trace_edges(pool, item_id, lot_id, direction, as_of).await?;
    let root = (item_id.to_owned(), lot_id.to_owned());
    let depth = depths(&root, &edges, direction);
    let keys: Vec<Key> = depth.keys().cloned().collect();
    let lots = lots_as_of(pool, &keys, as_of).await?;
    if !lots
        .iter()
        .any(|l| l.item_id == root.0 && l.lot_id == root.1)
    {
        return Ok(None);
    }
    let facts = order_facts(pool, &lots).await?;
    let mut out: Vec<TraceLot> = lots
        .into_iter()
        .map(|lot| {
            let key = (lot.item_id.clone(), lot.lot_id.clone());
            let order = lot.order_id.clone().unwrap_or_default();
            TraceLot {
                depth: depth.get(&key).copied().unwrap_or_default(),
                operators: facts.operators.get(&order).cloned().unwrap_or_default(),
                inspections: facts.quality.get(&order).cloned(),
                lot,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (a.depth, &a.lot.item_id, &a.lot.lot_id).cmp(&(b.depth, &b.lot.item_id, &b.lot.lot_id))
    });
    Ok(Some(Trace {
        direction,
        item_id: item_id.to_owned(),
        lot_id: lot_id.to_owned(),
        as_of,
        depth: out.iter().map(|l| l.depth).max().unwrap_or_default(),
        lots: out,
        edges,
    }))
}
