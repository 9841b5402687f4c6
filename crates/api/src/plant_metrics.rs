//! The plant on `/metrics` (ADR 0059): per machine, its state, the OEE and its
//! factors over its line's running shift, and its good and scrap parts, so that a
//! plant's Prometheus and Grafana chart and alert without SQL.
//!
//! Every API process refreshes them every `SHOPFLOOR_PLANT_METRICS_MS` from the
//! read models ([`query::machine_gauges`], the same figures as `/kpi-metrics`).
//! Labels are `site`, `area` (from the equipment hierarchy, ADR 0062; `default`
//! for a line no area holds), `line` and `machine` only (and `state` on the state
//! family), so the series are bounded by the machines: 4 state series, 4 KPI gauges
//! and 2 counters per machine (site and area follow from the machine, they add no
//! series, except while a moved machine's old series lingers). A KPI without a value (no run time yet, no parts) is
//! NaN, which Prometheus' comparisons leave out.

use std::time::Duration;

use chrono::Utc;
use shopfloor_projections::query::{self, MachineGauges};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The states a machine's state family has a series for.
pub const STATES: [&str; 4] = ["running", "idle", "down", "unknown"];

/// Default refresh period.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(15);

/// Sets the families from `gauges`.
pub fn record(gauges: &[MachineGauges]) {
    for g in gauges {
        let labels = [
            ("site", g.site.clone()),
            ("area", g.area.clone()),
            ("line", g.line.clone()),
            ("machine", g.machine_id.clone()),
        ];
        for state in STATES {
            let mut with_state = labels.to_vec();
            with_state.push(("state", state.to_owned()));
            metrics::gauge!("shopfloor_machine_state", &with_state).set(if g.state == state {
                1.0
            } else {
                0.0
            });
        }
        let value = |v: Option<f64>| v.unwrap_or(f64::NAN);
        metrics::gauge!("shopfloor_machine_shift_oee", &labels).set(value(g.oee));
        metrics::gauge!("shopfloor_machine_shift_availability", &labels).set(value(g.availability));
        metrics::gauge!("shopfloor_machine_shift_performance", &labels).set(value(g.performance));
        metrics::gauge!("shopfloor_machine_shift_quality", &labels).set(value(g.quality));
        metrics::counter!("shopfloor_machine_parts_good_total", &labels)
            .absolute(u64::try_from(g.good_total).unwrap_or(0));
        metrics::counter!("shopfloor_machine_parts_scrap_total", &labels)
            .absolute(u64::try_from(g.scrap_total).unwrap_or(0));
    }
    metrics::gauge!("shopfloor_plant_metrics_refreshed_timestamp_seconds")
        .set(Utc::now().timestamp_millis() as f64 / 1000.0);
}

/// Refreshes the plant's families every `every` until `cancel`; a failed refresh
/// is logged and retried at the next tick.
pub async fn run(pool: PgPool, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match query::machine_gauges(&pool, Utc::now()).await {
            Ok(gauges) => record(&gauges),
            Err(e) => warn!(error = %e, "refreshing the plant's metrics"),
        }
    }
}
