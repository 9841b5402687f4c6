//! What `/metrics` shows of each machine (ADR 0059): its state now, the OEE
//! and its factors over its line's running shift, and its parts over its life.
//!
//! The running shift of a line is the shift window of its calendar that holds
//! the evaluation time, else the last one that ended within a day (a board
//! between shifts keeps the figures of the shift just done); a line without
//! shifts uses the plant-local day so far. The KPIs are those of
//! `/kpi-metrics` over [shift start, now), so `/metrics` and the API agree.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tracing::instrument;

use super::calendar::{Calendar, ShiftWindow};
use super::hierarchy::HierarchyHistory;
use super::kpi::{kpi_metrics, KpiQuery};
use super::machines::{list_machines, MachineFilter};
use crate::error::QueryError;

/// One machine's figures for `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineGauges {
    pub machine_id: String,
    pub line: String,
    /// The machine's site and area in the equipment hierarchy now (ADR 0062;
    /// `default` for a line no area holds).
    pub site: String,
    pub area: String,
    /// `running`, `idle`, `down` or `unknown`.
    pub state: String,
    /// The window the KPIs cover: the running shift (or the day so far).
    pub from: DateTime<Utc>,
    pub availability: Option<f64>,
    pub performance: Option<f64>,
    pub quality: Option<f64>,
    pub oee: Option<f64>,
    /// Parts over the machine's life.
    pub good_total: i64,
    pub scrap_total: i64,
}

/// The start of the running shift of `windows` at `now` (pure): the window
/// holding `now`, else the last one that began before it.
pub(crate) fn running_shift(windows: &[ShiftWindow], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    windows
        .iter()
        .find(|w| w.from <= now && now < w.to)
        .or_else(|| {
            windows
                .iter()
                .filter(|w| w.from <= now)
                .max_by_key(|w| w.from)
        })
        .map(|w| w.from)
}

/// The gauges of every machine at `now`.
#[instrument(skip(pool), err)]
pub async fn machine_gauges(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<Vec<MachineGauges>, QueryError> {
    let machines = list_machines(pool, &MachineFilter::default()).await?;
    let mut lines: Vec<String> = machines.iter().map(|m| m.line.clone()).collect();
    lines.sort();
    lines.dedup();
    let calendar = Calendar::load(pool, &lines).await?;
    let mut kpis = HashMap::new();
    let mut starts = HashMap::new();
    for line in &lines {
        let from = calendar
            .shift_windows(line, now - Duration::days(1), now + Duration::seconds(1))
            .and_then(|w| running_shift(&w, now))
            .or_else(|| {
                calendar
                    .days(now - Duration::days(1), now)
                    .last()
                    .map(|d| d.0)
            })
            .unwrap_or(now - Duration::days(1));
        starts.insert(line.clone(), from);
        if from >= now {
            continue;
        }
        let q = KpiQuery {
            machine_id: None,
            line: Some(line.clone()),
            from,
            to: now,
            as_of: None,
            granularity: None,
            rollup: false,
            scope: Default::default(),
        };
        for row in kpi_metrics(pool, &q).await? {
            kpis.insert(row.machine_id.clone(), row);
        }
    }
    let history = HierarchyHistory::load(pool, None).await?;
    Ok(machines
        .into_iter()
        .map(|m| {
            let k = kpis.get(&m.machine_id);
            let path = history.path(&m.machine_id, &m.line, now);
            MachineGauges {
                site: path.site,
                area: path.area,
                from: starts.get(&m.line).copied().unwrap_or(now),
                availability: k.and_then(|k| k.availability),
                performance: k.and_then(|k| k.performance),
                quality: k.and_then(|k| k.quality),
                oee: k.and_then(|k| k.oee),
                good_total: m.good_count,
                scrap_total: m.scrap_count,
                state: m.current_status,
                line: m.line,
                machine_id: m.machine_id,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn w(from: u32, to: u32) -> ShiftWindow {
        let h = |x| Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap() + Duration::hours(x);
        ShiftWindow {
            from: h(from.into()),
            to: h(to.into()),
            name: format!("{from}-{to}"),
            team: None,
            breaks: vec![],
        }
    }

    #[test]
    fn the_running_shift_else_the_last_one() {
        let windows = [w(6, 14), w(14, 22)];
        let at = |x: i64| Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap() + Duration::hours(x);
        assert_eq!(running_shift(&windows, at(15)), Some(windows[1].from));
        assert_eq!(running_shift(&windows, at(6)), Some(windows[0].from));
        assert_eq!(
            running_shift(&windows, at(23)),
            Some(windows[1].from),
            "between shifts"
        );
        assert_eq!(running_shift(&windows, at(5)), None);
    }
}
