//! The order report (ADR 0051): one production order's whole life as of a log
//! position: its state history, production per machine, scrap by reason,
//! inspections, material consumption and labour.
//!
//! Everything is folded from the log up to the position ([`crate::log`]), except the
//! scrap by reason, which is the parts facts of the order's machines recorded by the
//! anchor's `as_of` (the same facts and filter as `/api/v1/scrap`). The order's life
//! is [created, completed or cancelled), or [created, `as_of`) while it is open.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;

use crate::error::ReportError;
use crate::log::{self, Fact};
use crate::sections::{fold_order, inspection, InspectionLine};

/// Parts an order's machine reported for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderProduction {
    pub machine_id: String,
    pub good: u64,
    pub scrap: u64,
    pub reports: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// The order's scrap of one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderScrap {
    /// A scrap reason code; `null` for scrap reported without one.
    pub scrap_reason: Option<String>,
    pub scrap: i64,
}

/// Material the order consumed, per item (backflush, `InventoryConsumed`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Consumption {
    pub item_id: String,
    /// Decimal quantities as strings, exactly as recorded.
    pub requested: String,
    pub shortage: String,
    pub consumed: String,
    pub movements: u64,
}

/// One operator's clock-on to the order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabourSession {
    pub operator_id: String,
    pub machine_id: Option<String>,
    pub clocked_on_at: DateTime<Utc>,
    /// Absent while clocked on at the position.
    pub clocked_off_at: Option<DateTime<Utc>>,
    /// Seconds on the order (open sessions: until the end of the order's life).
    pub time_s: f64,
}

/// One step of the order's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryLine {
    pub at: DateTime<Utc>,
    pub position: i64,
    /// `created`, `assigned`, `started`, `held`, `resumed`, `completed`, `cancelled`.
    pub step: String,
    pub detail: String,
}

/// An order's whole life as of the report's position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderLife {
    pub order_id: String,
    pub product_id: String,
    pub quantity: u64,
    pub status: String,
    pub good_count: u64,
    pub scrap_count: u64,
    /// `good_count / quantity`.
    pub progress: f64,
    /// good / (good + scrap); `null` before any part.
    pub production_yield: Option<f64>,
    pub history: Vec<HistoryLine>,
    pub production: Vec<OrderProduction>,
    pub scrap_by_reason: Vec<OrderScrap>,
    pub inspections: Vec<InspectionLine>,
    pub consumption: Vec<Consumption>,
    pub labour: Vec<LabourSession>,
    /// Sum of `labour[].time_s`.
    pub labour_time_s: f64,
}

/// The order's events at the position and its life window; `NotFound` when the log
/// has no such order by then.
pub async fn order_facts(
    pool: &PgPool,
    order_id: &str,
    position: i64,
    as_of: DateTime<Utc>,
) -> Result<(Vec<Fact>, DateTime<Utc>, DateTime<Utc>), ReportError> {
    let facts = log::streams(pool, "production_order", &[order_id.to_owned()], position).await?;
    let created = facts
        .iter()
        .find(|f| f.event_type == "OrderCreated")
        .and_then(|f| f.at)
        .ok_or_else(|| ReportError::NotFound(format!("order {order_id}")))?;
    let (from, to) = life(&facts, created, as_of);
    Ok((facts, from, to))
}

/// [created, completed or cancelled) or [created, as_of); at least a second long.
/// Floor times may precede the creation (parts reported for an earlier time): the
/// life starts at the earliest floor time of the order's events (pure).
pub fn life(
    facts: &[Fact],
    created: DateTime<Utc>,
    as_of: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let created = facts
        .iter()
        .filter_map(|f| f.at)
        .fold(created, DateTime::min);
    let end = facts
        .iter()
        .rev()
        .find(|f| matches!(f.event_type.as_str(), "OrderCompleted" | "OrderCancelled"))
        .and_then(|f| f.at)
        .unwrap_or(as_of);
    (created, end.max(created + TimeDelta::seconds(1)))
}

/// Gathers the order's life at the position.
pub async fn gather(
    pool: &PgPool,
    order_id: &str,
    facts: &[Fact],
    to: DateTime<Utc>,
    position: i64,
    as_of: DateTime<Utc>,
) -> Result<OrderLife, ReportError> {
    let ids = [order_id.to_owned()];
    let inventory = log::by_field(pool, "inventory_item", "order_id", &ids, position).await?;
    let labour = log::by_field(pool, "operator", "order_id", &ids, position).await?;
    let fold = fold_order(facts.iter(), None);
    let scrap: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT scrap_reason, sum(scrap)::int8 FROM rm_parts_facts \
         WHERE machine_id = ANY($1) AND order_id = $2 AND recorded_at <= $3 AND scrap > 0 \
         GROUP BY scrap_reason",
    )
    .bind(&fold.machines)
    .bind(order_id)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    Ok(assemble(order_id, facts, scrap, &inventory, &labour, to))
}

/// Puts the order's life together (pure).
pub fn assemble(
    order_id: &str,
    facts: &[Fact],
    scrap: Vec<(Option<String>, i64)>,
    inventory: &[Fact],
    labour: &[Fact],
    end: DateTime<Utc>,
) -> OrderLife {
    let fold = fold_order(facts.iter(), None);
    let mut scrap_by_reason: Vec<OrderScrap> = scrap
        .into_iter()
        .map(|(scrap_reason, scrap)| OrderScrap {
            scrap_reason,
            scrap,
        })
        .collect();
    scrap_by_reason.sort_by(|a, b| {
        b.scrap
            .cmp(&a.scrap)
            .then(a.scrap_reason.cmp(&b.scrap_reason))
    });
    let labour = sessions(labour, end);
    let total = fold.good_total + fold.scrap_total;
    OrderLife {
        order_id: order_id.to_owned(),
        product_id: fold.product_id.clone(),
        quantity: fold.quantity,
        status: fold.status.clone(),
        good_count: fold.good_total,
        scrap_count: fold.scrap_total,
        progress: if fold.quantity == 0 {
            0.0
        } else {
            fold.good_total as f64 / fold.quantity as f64
        },
        production_yield: (total > 0).then(|| fold.good_total as f64 / total as f64),
        history: history(facts),
        production: production(facts),
        scrap_by_reason,
        inspections: facts
            .iter()
            .filter(|f| f.event_type == "OrderInspectionRecorded")
            .map(|f| inspection(order_id, f))
            .collect(),
        consumption: consumption(inventory),
        labour_time_s: labour.iter().map(|s| s.time_s).sum(),
        labour,
    }
}

/// The status steps of the order (pure).
pub fn history(facts: &[Fact]) -> Vec<HistoryLine> {
    facts
        .iter()
        .filter_map(|f| {
            let step = match f.event_type.as_str() {
                "OrderCreated" => "created",
                "OrderAssigned" => "assigned",
                "OrderStarted" => "started",
                "OrderHeld" => "held",
                "OrderResumed" => "resumed",
                "OrderCompleted" => "completed",
                "OrderCancelled" => "cancelled",
                _ => return None,
            };
            let mut detail = Vec::new();
            if let (Some(p), Some(q)) = (&f.product_id, f.quantity) {
                detail.push(format!("{q} × {p}"));
            }
            if let Some(m) = &f.machine_id {
                detail.push(format!("machine {m}"));
            }
            if let Some(ops) = f.operator_ids.as_ref().filter(|o| !o.is_empty()) {
                detail.push(format!("operators {}", ops.join(", ")));
            }
            if let (Some(g), Some(s)) = (f.good_count, f.scrap_count) {
                detail.push(format!("good {g}, scrap {s}"));
            }
            if let Some(r) = &f.reason {
                detail.push(r.clone());
            }
            Some(HistoryLine {
                at: f.at.unwrap_or_default(),
                position: f.position,
                step: step.to_owned(),
                detail: detail.join(" · "),
            })
        })
        .collect()
}

/// Parts per machine from the order's parts reports (pure).
pub fn production(facts: &[Fact]) -> Vec<OrderProduction> {
    let mut by: BTreeMap<&str, OrderProduction> = BTreeMap::new();
    for f in facts
        .iter()
        .filter(|f| f.event_type == "OrderPartsReported")
    {
        let (Some(m), Some(at)) = (f.machine_id.as_deref(), f.at) else {
            continue;
        };
        let p = by.entry(m).or_insert_with(|| OrderProduction {
            machine_id: m.to_owned(),
            good: 0,
            scrap: 0,
            reports: 0,
            first_at: at,
            last_at: at,
        });
        p.good += f.good.unwrap_or(0);
        p.scrap += f.scrap.unwrap_or(0);
        p.reports += 1;
        p.first_at = p.first_at.min(at);
        p.last_at = p.last_at.max(at);
    }
    by.into_values().collect()
}

fn decimal(v: Option<&serde_json::Value>) -> Decimal {
    match v {
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or_default(),
        Some(serde_json::Value::Number(n)) => n.to_string().parse().unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

/// Consumption per item from the order's `InventoryConsumed` events (pure).
pub fn consumption(facts: &[Fact]) -> Vec<Consumption> {
    let mut by: BTreeMap<&str, (Decimal, Decimal, u64)> = BTreeMap::new();
    for f in facts.iter().filter(|f| f.event_type == "InventoryConsumed") {
        let Some(item) = f.item_id.as_deref().or(Some(f.stream_id.as_str())) else {
            continue;
        };
        let e = by.entry(item).or_default();
        e.0 += decimal(f.requested.as_ref());
        e.1 += decimal(f.shortage.as_ref());
        e.2 += 1;
    }
    by.into_iter()
        .map(|(item, (requested, shortage, movements))| Consumption {
            item_id: item.to_owned(),
            requested: requested.normalize().to_string(),
            shortage: shortage.normalize().to_string(),
            consumed: (requested - shortage).normalize().to_string(),
            movements,
        })
        .collect()
}

/// Clock-on sessions to the order; open ones count until `end` (pure).
pub fn sessions(facts: &[Fact], end: DateTime<Utc>) -> Vec<LabourSession> {
    let mut out: Vec<LabourSession> = Vec::new();
    for f in facts {
        let (Some(op), Some(at)) = (f.operator_id.as_deref(), f.at) else {
            continue;
        };
        match f.event_type.as_str() {
            "OperatorClockedOn" => out.push(LabourSession {
                operator_id: op.to_owned(),
                machine_id: f.machine_id.clone(),
                clocked_on_at: at,
                clocked_off_at: None,
                time_s: 0.0,
            }),
            "OperatorClockedOff" => {
                let on = f.clocked_on_at;
                if let Some(s) = out.iter_mut().find(|s| {
                    s.operator_id == op
                        && s.clocked_off_at.is_none()
                        && on.is_none_or(|on| on == s.clocked_on_at)
                }) {
                    s.clocked_off_at = Some(at);
                }
            }
            _ => {}
        }
    }
    for s in &mut out {
        let stop = s.clocked_off_at.unwrap_or(end.max(s.clocked_on_at));
        s.time_s = (stop - s.clocked_on_at).num_milliseconds().max(0) as f64 / 1000.0;
    }
    out.sort_by(|a, b| {
        a.clocked_on_at
            .cmp(&b.clocked_on_at)
            .then(a.operator_id.cmp(&b.operator_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testing::{at, fact};

    #[test]
    fn labour_pairs_clock_on_and_off_and_counts_open_sessions_to_the_end() {
        let on = |op: &str, h| Fact {
            operator_id: Some(op.into()),
            ..fact(op, "OperatorClockedOn", h)
        };
        let facts = vec![
            on("OP-1", 6),
            on("OP-2", 7),
            Fact {
                operator_id: Some("OP-1".into()),
                clocked_on_at: Some(at(6)),
                ..fact("OP-1", "OperatorClockedOff", 8)
            },
        ];
        let s = sessions(&facts, at(10));
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].operator_id.as_str(), s[0].time_s), ("OP-1", 7200.0));
        assert_eq!((s[1].clocked_off_at, s[1].time_s), (None, 10800.0));
    }

    #[test]
    fn consumption_sums_per_item_less_the_shortage() {
        let c = |req: &str, short: &str| Fact {
            item_id: Some("STEEL".into()),
            requested: Some(serde_json::json!(req)),
            shortage: Some(serde_json::json!(short)),
            ..fact("STEEL", "InventoryConsumed", 7)
        };
        let v = consumption(&[c("2.5", "0"), c("1.5", "0.5")]);
        assert_eq!(v.len(), 1);
        assert_eq!(
            (
                v[0].requested.as_str(),
                v[0].shortage.as_str(),
                v[0].consumed.as_str()
            ),
            ("4", "0.5", "3.5")
        );
    }

    #[test]
    fn the_life_ends_at_completion_or_the_anchor() {
        let created = at(6);
        let open = vec![fact("O", "OrderCreated", 6)];
        assert_eq!(life(&open, created, at(9)), (at(6), at(9)));
        let done = vec![fact("O", "OrderCreated", 6), fact("O", "OrderCompleted", 8)];
        assert_eq!(life(&done, created, at(9)), (at(6), at(8)));
        let early = vec![
            fact("O", "OrderCreated", 6),
            fact("O", "OrderPartsReported", 4),
        ];
        assert_eq!(life(&early, created, at(9)), (at(4), at(9)));
    }
}
