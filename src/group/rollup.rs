//! Cross-plant roll-ups (pure): each site's figures come from the standard queries on
//! that site's read models; here they are grouped by site, line, product or the whole
//! group, with the plant's roll-up rule: times and counts are summed first and the
//! ratios computed from the sums (ADR 0005, ADR 0061), never averaged.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shopfloor_projections::query::{
    roll_up, DowntimeReport, InventoryLevel, KpiQuery, KpiRow, OrderView, ParetoEntry,
};

/// The site of a row summed over every site.
pub const ALL: &str = "*";

/// How finely the group's figures are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// One row for the whole group.
    Group,
    /// One row per site.
    #[default]
    Site,
    /// One row per site and line.
    Line,
    /// One row per site and machine (KPIs, downtime), location (inventory) or order
    /// (orders).
    Detail,
}

/// A KPI row of a site (or `*`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteKpi {
    pub site: String,
    #[serde(flatten)]
    pub kpi: KpiRow,
}

/// Rolls per-machine KPI rows of every site up to `by`: the plant's own [`roll_up`]
/// (sums first, then ratios) over each cell.
pub fn kpis(rows: Vec<(String, KpiRow)>, by: By, q: &KpiQuery) -> Vec<SiteKpi> {
    if by == By::Detail {
        return rows
            .into_iter()
            .map(|(site, kpi)| SiteKpi { site, kpi })
            .collect();
    }
    let mut cells: BTreeMap<(String, Option<String>), Vec<KpiRow>> = BTreeMap::new();
    for (site, row) in rows {
        let key = match by {
            By::Group => (ALL.to_owned(), None),
            By::Site => (site, None),
            _ => (site, row.line.clone()),
        };
        cells.entry(key).or_default().push(row);
    }
    let mut out = Vec::new();
    for ((site, line), rows) in cells {
        let q = KpiQuery {
            line: line.or_else(|| q.line.clone()),
            ..q.clone()
        };
        out.extend(roll_up(rows, &q).into_iter().map(|kpi| SiteKpi {
            site: site.clone(),
            kpi,
        }));
    }
    out
}

/// Downtime of a site, a line or the group.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GroupDowntime {
    pub site: String,
    pub line: Option<String>,
    /// One machine's id in `detail`; `*` otherwise.
    pub machine_id: String,
    pub machines: usize,
    /// Unplanned stops overlapping the window.
    pub stops: u64,
    pub downtime_s: f64,
    pub downtime_minutes: f64,
    pub planned_stop_time_s: f64,
    pub run_time_s: f64,
    pub unknown_time_s: f64,
    /// Unplanned `down` stops starting in the window.
    pub failures: u64,
    /// Summed run time / summed failures.
    pub mtbf_s: Option<f64>,
    /// Summed repair time / summed failures.
    pub mttr_s: Option<f64>,
    /// Stop time by reason code as finally classified, largest first.
    #[schema(value_type = Vec<Object>)]
    pub pareto_by_reason: Vec<ParetoEntry>,
}

#[derive(Default)]
struct DowntimeSum {
    machines: usize,
    stops: u64,
    downtime_s: f64,
    planned_s: f64,
    run_s: f64,
    unknown_s: f64,
    failures: u64,
    repair_s: f64,
    pareto: BTreeMap<String, (u64, f64)>,
}

impl DowntimeSum {
    fn add(&mut self, r: &DowntimeReport) {
        self.machines += 1;
        self.stops += r.stops;
        self.downtime_s += r.downtime_s;
        self.planned_s += r.planned_stop_time_s;
        self.run_s += r.run_time_s;
        self.unknown_s += r.unknown_time_s;
        self.failures += r.failures;
        self.repair_s += r.mttr_s.unwrap_or(0.0) * r.failures as f64;
        for p in &r.pareto_by_reason_classified {
            let e = self.pareto.entry(p.key.clone()).or_default();
            e.0 += p.stops;
            e.1 += p.duration_s;
        }
    }

    fn finish(self, site: String, line: Option<String>, machine_id: String) -> GroupDowntime {
        let ratio = |n: f64, d: u64| (d > 0).then(|| n / d as f64);
        let total: f64 = self.pareto.values().map(|v| v.1).sum();
        let mut bars: Vec<(String, u64, f64)> = self
            .pareto
            .into_iter()
            .map(|(k, (n, d))| (k, n, d))
            .collect();
        bars.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        let mut running = 0.0;
        let pareto_by_reason = bars
            .into_iter()
            .map(|(key, stops, duration_s)| {
                running += duration_s;
                ParetoEntry {
                    key,
                    stops,
                    duration_s,
                    share: (total > 0.0).then(|| duration_s / total),
                    cumulative_share: (total > 0.0).then(|| running / total),
                }
            })
            .collect();
        GroupDowntime {
            site,
            line,
            machine_id,
            machines: self.machines,
            stops: self.stops,
            downtime_s: self.downtime_s,
            downtime_minutes: self.downtime_s / 60.0,
            planned_stop_time_s: self.planned_s,
            run_time_s: self.run_s,
            unknown_time_s: self.unknown_s,
            failures: self.failures,
            mtbf_s: ratio(self.run_s, self.failures),
            mttr_s: ratio(self.repair_s, self.failures),
            pareto_by_reason,
        }
    }
}

/// Rolls per-machine downtime reports `(site, line, report)` up to `by`.
pub fn downtime(rows: Vec<(String, String, DowntimeReport)>, by: By) -> Vec<GroupDowntime> {
    let mut cells: BTreeMap<(String, Option<String>, String), DowntimeSum> = BTreeMap::new();
    for (site, line, r) in rows {
        let key = match by {
            By::Group => (ALL.to_owned(), None, ALL.to_owned()),
            By::Site => (site, None, ALL.to_owned()),
            By::Line => (site, Some(line), ALL.to_owned()),
            By::Detail => (site, Some(line), r.machine_id.clone()),
        };
        cells.entry(key).or_default().add(&r);
    }
    cells
        .into_iter()
        .map(|((site, line, machine), sum)| sum.finish(site, line, machine))
        .collect()
}

/// Stock of an item at a site (or `*`), at a location in `detail`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GroupStock {
    pub site: String,
    pub item_id: String,
    pub item_type: String,
    /// The location in `detail`; `*` otherwise.
    pub location: String,
    #[schema(value_type = f64)]
    #[serde(with = "rust_decimal::serde::float")]
    pub quantity: Decimal,
}

/// Sums stock levels `(site, level)` by item up to `by` (`line` is taken as `site`:
/// stock is not kept by line).
pub fn inventory(rows: Vec<(String, InventoryLevel)>, by: By) -> Vec<GroupStock> {
    let mut cells: BTreeMap<(String, String, String, String), Decimal> = BTreeMap::new();
    for (site, l) in rows {
        let (site, location) = match by {
            By::Group => (ALL.to_owned(), ALL.to_owned()),
            By::Site | By::Line => (site, ALL.to_owned()),
            By::Detail => (site, l.location),
        };
        *cells
            .entry((site, l.item_id, l.item_type, location))
            .or_default() += l.quantity;
    }
    cells
        .into_iter()
        .map(
            |((site, item_id, item_type, location), quantity)| GroupStock {
                site,
                item_id,
                item_type,
                location,
                quantity,
            },
        )
        .collect()
}

/// Orders of a product at a site (or `*`): counts summed, yield from the sums.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GroupOrders {
    pub site: String,
    /// The line of the order's assigned machine in `line` and `detail` (`null` while
    /// unassigned); `*` otherwise.
    pub line: Option<String>,
    pub product_id: String,
    /// The order in `detail`; `*` otherwise.
    pub order_id: String,
    pub orders: u64,
    /// Orders by status.
    pub by_status: BTreeMap<String, u64>,
    pub quantity: i64,
    pub good_count: i64,
    pub scrap_count: i64,
    pub total_count: i64,
    /// good / total of the sums; `null` when nothing was made.
    pub production_yield: Option<f64>,
}

/// Sums orders `(site, line of the assigned machine, order)` by product up to `by`.
pub fn orders(rows: Vec<(String, Option<String>, OrderView)>, by: By) -> Vec<GroupOrders> {
    type Cell = (String, Option<String>, String, String);
    let all = || Some(ALL.to_owned());
    let mut cells: BTreeMap<Cell, GroupOrders> = BTreeMap::new();
    for (site, line, o) in rows {
        let (site, line, order_id) = match by {
            By::Group => (ALL.to_owned(), all(), ALL.to_owned()),
            By::Site => (site, all(), ALL.to_owned()),
            By::Line => (site, line, ALL.to_owned()),
            By::Detail => (site, line, o.order_id.clone()),
        };
        let key = (
            site.clone(),
            line.clone(),
            o.product_id.clone(),
            order_id.clone(),
        );
        let cell = cells.entry(key).or_insert_with(|| GroupOrders {
            site,
            line,
            product_id: o.product_id.clone(),
            order_id,
            orders: 0,
            by_status: BTreeMap::new(),
            quantity: 0,
            good_count: 0,
            scrap_count: 0,
            total_count: 0,
            production_yield: None,
        });
        cell.orders += 1;
        *cell.by_status.entry(o.status.clone()).or_default() += 1;
        cell.quantity += o.quantity;
        cell.good_count += o.good_count;
        cell.scrap_count += o.scrap_count;
        cell.total_count += o.total_count;
    }
    cells
        .into_values()
        .map(|mut c| {
            c.production_yield =
                (c.total_count > 0).then(|| c.good_count as f64 / c.total_count as f64);
            c
        })
        .collect()
}
