//! The sections of a shift, day or week report beside the KPIs (layout 2, ADR 0051):
//! orders worked and their progress, inspections, scrap by reason, maintenance done
//! and due, alerts raised and acknowledged.
//!
//! Scrap by reason comes from the API's own query (`scrap_by_reason`, `GET
//! /api/v1/scrap`) with the anchor's `as_of`; the rest is folded from the log up to
//! the anchor's position ([`crate::log`]), so it is what the log said then, on every
//! regeneration. The folds are pure ([`orders_worked`], [`maintenance`], [`alerts`]).
//!
//! Changeovers are not here: the domain has no changeover yet (issue 17).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shopfloor_projections::query::{self, ScrapByReason, ScrapQuery};
use sqlx::PgPool;

use crate::error::ReportError;
use crate::log::{self, Fact};

/// At most this many rows of one section table (the rest are counted, not listed).
pub const MAX_ROWS: usize = 50;

/// One order worked in the period on the scope's machines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderWorked {
    pub order_id: String,
    pub product_id: String,
    /// Status as of the report's position.
    pub status: String,
    pub quantity: u64,
    /// The machines that reported parts for it in the period, by id.
    pub machines: Vec<String>,
    /// Parts reported in the period (floor time).
    pub good_in_period: i64,
    pub scrap_in_period: i64,
    /// Totals as of the report's position.
    pub good_total: u64,
    pub scrap_total: u64,
    /// `good_total / quantity`.
    pub progress: f64,
}

/// One quality inspection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectionLine {
    pub inspection_id: String,
    pub order_id: String,
    pub at: DateTime<Utc>,
    pub sample_size: u64,
    pub defects: u64,
    pub passed: bool,
    pub inspector: Option<String>,
}

/// One maintenance task, as of the report's position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskLine {
    pub task_id: String,
    pub machine_id: String,
    pub kind: String,
    pub status: String,
    pub scheduled_date: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

/// One alert raised or acknowledged in the period, as of the report's position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertLine {
    pub alert_id: String,
    pub kind: String,
    pub severity: String,
    pub machine_id: Option<String>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The sections of a report (layout 2).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sections {
    pub orders: Vec<OrderWorked>,
    pub inspections: Vec<InspectionLine>,
    /// Scrapped parts in the period: `/api/v1/scrap` for the scope.
    pub scrap_count: i64,
    pub scrap_by_reason: Vec<ScrapByReason>,
    /// Tasks completed in the period.
    pub maintenance_done: Vec<TaskLine>,
    /// Tasks open at the position and scheduled before the period's end (due or overdue).
    pub maintenance_due: Vec<TaskLine>,
    pub alerts_raised: u64,
    pub alerts_acknowledged: u64,
    /// Alerts raised or acknowledged in the period.
    pub alerts: Vec<AlertLine>,
    /// Rows left out of the tables above (each at most [`MAX_ROWS`]).
    pub rows_left_out: u64,
}

/// What the sections are gathered for.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub line: Option<&'a str>,
    /// The scope's machines registered by the position, by id.
    pub machines: &'a [String],
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: DateTime<Utc>,
    pub position: i64,
}

fn in_window(at: Option<DateTime<Utc>>, s: &Scope<'_>) -> bool {
    at.is_some_and(|t| t >= s.from && t < s.to)
}

/// Parts per (order, machine) in the window, as of the anchor.
type PartsByOrder = BTreeMap<String, BTreeMap<String, (i64, i64)>>;

async fn parts_by_order(pool: &PgPool, s: &Scope<'_>) -> Result<PartsByOrder, ReportError> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT order_id, machine_id, sum(good)::int8, sum(scrap)::int8 FROM rm_parts_facts \
         WHERE machine_id = ANY($1) AND at >= $2 AND at < $3 AND recorded_at <= $4 \
           AND order_id IS NOT NULL \
         GROUP BY order_id, machine_id",
    )
    .bind(s.machines)
    .bind(s.from)
    .bind(s.to)
    .bind(s.as_of)
    .fetch_all(pool)
    .await?;
    let mut out = PartsByOrder::new();
    for (order, machine, good, scrap) in rows {
        out.entry(order).or_default().insert(machine, (good, scrap));
    }
    Ok(out)
}

/// Gathers the sections at the anchor.
pub async fn gather(pool: &PgPool, s: &Scope<'_>) -> Result<Sections, ReportError> {
    let parts = parts_by_order(pool, s).await?;
    let mut order_ids: Vec<String> =
        log::active_in(pool, "production_order", s.from, s.to, s.position).await?;
    order_ids.extend(parts.keys().cloned());
    order_ids.sort();
    order_ids.dedup();
    let order_facts = log::streams(pool, "production_order", &order_ids, s.position).await?;
    let scrap = query::scrap_by_reason(
        pool,
        &ScrapQuery {
            machine_id: None,
            line: s.line.map(str::to_owned),
            from: s.from,
            to: s.to,
            as_of: Some(s.as_of),
            scope: Default::default(),
        },
    )
    .await?;
    let task_facts = log::by_field(
        pool,
        "maintenance_task",
        "machine_id",
        s.machines,
        s.position,
    )
    .await?;
    let alert_facts = alert_facts(pool, s).await?;
    Ok(assemble(
        s,
        &parts,
        &order_facts,
        scrap.scrap_count,
        scrap.by_reason,
        &task_facts,
        &alert_facts,
    ))
}

/// The events of the alerts about the scope's machines (site reports: every alert).
async fn alert_facts(pool: &PgPool, s: &Scope<'_>) -> Result<Vec<Fact>, ReportError> {
    let raised: Vec<String> = sqlx::query_scalar(
        "SELECT stream_id FROM events WHERE stream_type = 'alert' AND event_type = 'AlertRaised' \
         AND position <= $1 AND ($2::text IS NULL OR payload ->> 'machine_id' = ANY($3))",
    )
    .bind(s.position)
    .bind(s.line)
    .bind(s.machines)
    .fetch_all(pool)
    .await?;
    log::streams(pool, "alert", &raised, s.position).await
}

/// Puts the sections together (pure).
fn assemble(
    s: &Scope<'_>,
    parts: &PartsByOrder,
    order_facts: &[Fact],
    scrap_count: i64,
    scrap_by_reason: Vec<ScrapByReason>,
    task_facts: &[Fact],
    alert_facts: &[Fact],
) -> Sections {
    let (mut orders, mut inspections) = orders_worked(s, parts, order_facts);
    let (mut maintenance_done, mut maintenance_due) = maintenance(s, task_facts);
    let mut alerts = alerts(s, alert_facts);
    let alerts_raised = alerts
        .iter()
        .filter(|a| in_window(Some(a.raised_at), s))
        .count() as u64;
    let alerts_acknowledged = alerts
        .iter()
        .filter(|a| in_window(a.acknowledged_at, s))
        .count() as u64;
    let mut left_out = 0;
    cap(&mut orders, &mut left_out);
    cap(&mut inspections, &mut left_out);
    cap(&mut maintenance_done, &mut left_out);
    cap(&mut maintenance_due, &mut left_out);
    cap(&mut alerts, &mut left_out);
    Sections {
        orders,
        inspections,
        scrap_count,
        scrap_by_reason,
        maintenance_done,
        maintenance_due,
        alerts_raised,
        alerts_acknowledged,
        alerts,
        rows_left_out: left_out,
    }
}

/// Keeps the first [`MAX_ROWS`] of `v`, counting the rest in `left_out`.
fn cap<T>(v: &mut Vec<T>, left_out: &mut u64) {
    *left_out += v.len().saturating_sub(MAX_ROWS) as u64;
    v.truncate(MAX_ROWS);
}

/// An order folded from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderFold {
    pub product_id: String,
    pub quantity: u64,
    pub status: String,
    pub machines: Vec<String>,
    pub good_total: u64,
    pub scrap_total: u64,
    /// Started, held, resumed, completed or inspected in the window.
    pub worked_in_window: bool,
}

/// Folds an order's events (in log order) into its state (pure).
pub fn fold_order<'a>(
    facts: impl Iterator<Item = &'a Fact>,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> OrderFold {
    let mut o = OrderFold::default();
    for f in facts {
        let status = match f.event_type.as_str() {
            "OrderCreated" => {
                o.product_id = f.product_id.clone().unwrap_or_default();
                o.quantity = f.quantity.unwrap_or(0);
                Some("created")
            }
            "OrderAssigned" => Some("assigned"),
            "OrderStarted" | "OrderResumed" => Some("in_progress"),
            "OrderHeld" => Some("on_hold"),
            "OrderCompleted" => Some("completed"),
            "OrderCancelled" => Some("cancelled"),
            "OrderPartsReported" => {
                o.good_total = f.good_count.unwrap_or(o.good_total);
                o.scrap_total = f.scrap_count.unwrap_or(o.scrap_total);
                None
            }
            _ => None,
        };
        if let Some(st) = status {
            // A parts report does not change the status; re-assignment keeps it `assigned`
            // only from `created` or `assigned`.
            if !(f.event_type == "OrderAssigned" && o.status != "created" && !o.status.is_empty()) {
                o.status = st.to_owned();
            }
        }
        if let Some(m) = &f.machine_id {
            if !o.machines.contains(m) {
                o.machines.push(m.clone());
            }
        }
        let worked = matches!(
            f.event_type.as_str(),
            "OrderStarted"
                | "OrderHeld"
                | "OrderResumed"
                | "OrderCompleted"
                | "OrderInspectionRecorded"
        );
        if worked && window.is_some_and(|(a, b)| f.at.is_some_and(|t| t >= a && t < b)) {
            o.worked_in_window = true;
        }
    }
    o.machines.sort();
    o
}

/// The orders worked in the window on the scope's machines, and their inspections in
/// the window (pure).
pub fn orders_worked(
    s: &Scope<'_>,
    parts: &PartsByOrder,
    facts: &[Fact],
) -> (Vec<OrderWorked>, Vec<InspectionLine>) {
    let mut by_order: BTreeMap<&str, Vec<&Fact>> = BTreeMap::new();
    for f in facts {
        by_order.entry(f.stream_id.as_str()).or_default().push(f);
    }
    let mut orders = Vec::new();
    let mut inspections = Vec::new();
    for (id, fs) in by_order {
        let fold = fold_order(fs.iter().copied(), Some((s.from, s.to)));
        let in_scope = s.line.is_none() || fold.machines.iter().any(|m| s.machines.contains(m));
        let made = parts.get(id);
        if !(in_scope && (fold.worked_in_window || made.is_some())) {
            continue;
        }
        let (good, scrap) = made.map_or((0, 0), |m| {
            m.values().fold((0, 0), |(g, sc), (a, b)| (g + a, sc + b))
        });
        orders.push(OrderWorked {
            order_id: id.to_owned(),
            product_id: fold.product_id.clone(),
            status: fold.status.clone(),
            quantity: fold.quantity,
            machines: made.map_or_else(Vec::new, |m| m.keys().cloned().collect()),
            good_in_period: good,
            scrap_in_period: scrap,
            good_total: fold.good_total,
            scrap_total: fold.scrap_total,
            progress: if fold.quantity == 0 {
                0.0
            } else {
                fold.good_total as f64 / fold.quantity as f64
            },
        });
        inspections.extend(
            fs.iter()
                .filter(|f| f.event_type == "OrderInspectionRecorded" && in_window(f.at, s))
                .map(|f| inspection(id, f)),
        );
    }
    inspections.sort_by(|a, b| a.at.cmp(&b.at).then(a.inspection_id.cmp(&b.inspection_id)));
    (orders, inspections)
}

/// An inspection event as a line.
pub fn inspection(order_id: &str, f: &Fact) -> InspectionLine {
    InspectionLine {
        inspection_id: f.inspection_id.clone().unwrap_or_default(),
        order_id: order_id.to_owned(),
        at: f.at.unwrap_or_default(),
        sample_size: f.sample_size.unwrap_or(0),
        defects: f.defects.unwrap_or(0),
        passed: f.passed.unwrap_or(false),
        inspector: f.inspector.clone(),
    }
}

/// Maintenance done in the window, and due (open, scheduled before its end) (pure).
pub fn maintenance(s: &Scope<'_>, facts: &[Fact]) -> (Vec<TaskLine>, Vec<TaskLine>) {
    let mut tasks: BTreeMap<&str, TaskLine> = BTreeMap::new();
    for f in facts {
        let id = f.stream_id.as_str();
        if f.event_type == "MaintenanceTaskScheduled" {
            tasks.insert(
                id,
                TaskLine {
                    task_id: id.to_owned(),
                    machine_id: f.machine_id.clone().unwrap_or_default(),
                    kind: f.kind.clone().unwrap_or_default(),
                    status: "scheduled".into(),
                    scheduled_date: f.scheduled_date.or(f.at).unwrap_or_default(),
                    completed_at: None,
                    description: f.description.clone(),
                },
            );
            continue;
        }
        let Some(t) = tasks.get_mut(id) else { continue };
        match f.event_type.as_str() {
            "MaintenanceTaskStarted" => t.status = "in_progress".into(),
            "MaintenanceTaskCompleted" => {
                t.status = "completed".into();
                t.completed_at = f.at;
            }
            "MaintenanceTaskCancelled" => t.status = "cancelled".into(),
            _ => {}
        }
    }
    let mut done: Vec<TaskLine> = tasks
        .values()
        .filter(|t| t.status == "completed" && in_window(t.completed_at, s))
        .cloned()
        .collect();
    done.sort_by(|a, b| {
        a.completed_at
            .cmp(&b.completed_at)
            .then(a.task_id.cmp(&b.task_id))
    });
    let mut due: Vec<TaskLine> = tasks
        .values()
        .filter(|t| {
            matches!(t.status.as_str(), "scheduled" | "in_progress") && t.scheduled_date < s.to
        })
        .cloned()
        .collect();
    due.sort_by(|a, b| {
        a.scheduled_date
            .cmp(&b.scheduled_date)
            .then(a.task_id.cmp(&b.task_id))
    });
    (done, due)
}

/// The alerts raised or acknowledged in the window, as of the position (pure).
pub fn alerts(s: &Scope<'_>, facts: &[Fact]) -> Vec<AlertLine> {
    let mut by_id: BTreeMap<&str, AlertLine> = BTreeMap::new();
    for f in facts {
        let id = f.stream_id.as_str();
        if f.event_type == "AlertRaised" {
            by_id.insert(
                id,
                AlertLine {
                    alert_id: id.to_owned(),
                    kind: f.kind.clone().unwrap_or_default(),
                    severity: f.severity.clone().unwrap_or_default(),
                    machine_id: f.machine_id.clone(),
                    raised_at: f.raised_at.unwrap_or_default(),
                    acknowledged_by: None,
                    acknowledged_at: None,
                    resolved_at: None,
                },
            );
            continue;
        }
        let Some(a) = by_id.get_mut(id) else { continue };
        match f.event_type.as_str() {
            "AlertAcknowledged" => {
                a.acknowledged_by = f.by.clone();
                a.acknowledged_at = f.at;
            }
            "AlertResolved" => a.resolved_at = f.at,
            _ => {}
        }
    }
    let mut v: Vec<AlertLine> = by_id
        .into_values()
        .filter(|a| in_window(Some(a.raised_at), s) || in_window(a.acknowledged_at, s))
        .collect();
    v.sort_by(|a, b| {
        a.raised_at
            .cmp(&b.raised_at)
            .then(a.alert_id.cmp(&b.alert_id))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testing::{at, fact};

    fn scope(machines: &[String]) -> Scope<'_> {
        Scope {
            line: Some("L1"),
            machines,
            from: at(6),
            to: at(14),
            as_of: at(15),
            position: 100,
        }
    }

    #[test]
    fn orders_fold_to_their_status_and_totals() {
        let machines = vec!["M-1".to_owned()];
        let s = scope(&machines);
        let facts = vec![
            Fact {
                product_id: Some("P".into()),
                quantity: Some(100),
                ..fact("O-1", "OrderCreated", 1)
            },
            Fact {
                machine_id: Some("M-1".into()),
                ..fact("O-1", "OrderStarted", 7)
            },
            Fact {
                machine_id: Some("M-1".into()),
                good_count: Some(40),
                scrap_count: Some(2),
                ..fact("O-1", "OrderPartsReported", 8)
            },
            Fact {
                inspection_id: Some("I-1".into()),
                sample_size: Some(5),
                defects: Some(1),
                passed: Some(true),
                ..fact("O-1", "OrderInspectionRecorded", 9)
            },
            // Another line's order: left out.
            Fact {
                machine_id: Some("M-9".into()),
                ..fact("O-2", "OrderStarted", 7)
            },
        ];
        let mut parts = PartsByOrder::new();
        parts
            .entry("O-1".into())
            .or_default()
            .insert("M-1".into(), (40, 2));
        let (orders, inspections) = orders_worked(&s, &parts, &facts);
        assert_eq!(orders.len(), 1);
        let o = &orders[0];
        assert_eq!(
            (o.status.as_str(), o.good_total, o.quantity),
            ("in_progress", 40, 100)
        );
        assert_eq!((o.good_in_period, o.scrap_in_period), (40, 2));
        assert!((o.progress - 0.4).abs() < 1e-9);
        assert_eq!(inspections.len(), 1);
        assert_eq!(inspections[0].defects, 1);
    }

    #[test]
    fn maintenance_done_in_the_window_and_due_before_its_end() {
        let machines = vec!["M-1".to_owned()];
        let s = scope(&machines);
        let sched = |id: &str, h: u32| Fact {
            machine_id: Some("M-1".into()),
            kind: Some("preventive".into()),
            scheduled_date: Some(at(h)),
            ..fact(id, "MaintenanceTaskScheduled", 1)
        };
        let facts = vec![
            sched("T-1", 8),
            sched("T-2", 10),
            sched("T-3", 20),
            sched("T-4", 2),
            fact("T-1", "MaintenanceTaskCompleted", 9),
            fact("T-4", "MaintenanceTaskCancelled", 3),
        ];
        let (done, due) = maintenance(&s, &facts);
        assert_eq!(
            done.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
            ["T-1"]
        );
        assert_eq!(
            due.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
            ["T-2"]
        );
    }

    #[test]
    fn alerts_raised_or_acknowledged_in_the_window() {
        let machines = vec!["M-1".to_owned()];
        let s = scope(&machines);
        let raised = |id: &str, h: u32| Fact {
            kind: Some("machine_down".into()),
            raised_at: Some(at(h)),
            machine_id: Some("M-1".into()),
            ..fact(id, "AlertRaised", h)
        };
        let facts = vec![
            raised("A-1", 5),
            Fact {
                by: Some("sup".into()),
                ..fact("A-1", "AlertAcknowledged", 7)
            },
            raised("A-2", 9),
            raised("A-3", 3),
        ];
        let v = alerts(&s, &facts);
        assert_eq!(
            v.iter().map(|a| a.alert_id.as_str()).collect::<Vec<_>>(),
            ["A-1", "A-2"]
        );
        assert_eq!(v[0].acknowledged_by.as_deref(), Some("sup"));
    }
}
