//! Corrected versions of scheduled reports (ADR 0051).
//!
//! A scheduled report is taken at a log position after its period ended. An event
//! recorded later with a floor time before the period's end (a late count, a state
//! sent late, a stop classified afterwards) may change the period's figures. The
//! scheduler then gathers the period again at the head of the log and compares
//! ([`diff`], pure). Where a figure changed, it makes a corrected version: a new
//! report at the new position, numbered `version + 1`, naming the report it
//! supersedes and listing every figure that changed with its value before and after
//! ([`Corrections`]). The earlier report stays as it was (its file and row are never
//! touched but for `superseded_by`), and still verifies at its own position.
//!
//! The corrections are part of the corrected report's data: a regeneration gathers
//! both positions again and gets the same list, so the corrected version verifies too.

use serde::Serialize;
use shopfloor_projections::query::KpiRow;

use crate::model::ReportData;

/// One figure that changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `total`, a machine id, `reason:<code>`, `scrap:<code>` or `order:<id>`.
    pub scope: String,
    pub figure: String,
    pub before: Option<f64>,
    pub after: Option<f64>,
}

/// What a corrected version replaces and what changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Corrections {
    pub version: i32,
    pub supersedes: String,
    pub supersedes_position: i64,
    pub changes: Vec<Change>,
}

/// Figures smaller than this apart are the same (floating-point noise).
const EPSILON: f64 = 1e-9;

fn differs(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() > EPSILON,
        (None, None) => false,
        _ => true,
    }
}

fn kpi_figures(k: Option<&KpiRow>) -> [(&'static str, Option<f64>); 11] {
    let f = |g: fn(&KpiRow) -> Option<f64>| k.and_then(g);
    [
        ("good_count", f(|k| Some(k.good_count as f64))),
        ("scrap_count", f(|k| Some(k.scrap_count as f64))),
        ("total_count", f(|k| Some(k.total_count as f64))),
        ("oee", f(|k| k.oee)),
        ("availability", f(|k| k.availability)),
        ("performance", f(|k| k.performance)),
        ("quality", f(|k| k.quality)),
        ("run_time_s", f(|k| Some(k.run_time_s))),
        ("downtime_s", f(|k| Some(k.downtime_s))),
        ("planned_stop_time_s", f(|k| Some(k.planned_stop_time_s))),
        ("unknown_time_s", f(|k| Some(k.unknown_time_s))),
    ]
}

fn push_kpis(out: &mut Vec<Change>, scope: &str, before: Option<&KpiRow>, after: Option<&KpiRow>) {
    for ((figure, b), (_, a)) in kpi_figures(before).into_iter().zip(kpi_figures(after)) {
        if differs(b, a) {
            out.push(Change {
                scope: scope.to_owned(),
                figure: figure.to_owned(),
                before: b,
                after: a,
            });
        }
    }
}

/// Keyed figures of both sides, compared per key in key order.
fn push_keyed(
    out: &mut Vec<Change>,
    figure: &str,
    before: Vec<(String, f64)>,
    after: Vec<(String, f64)>,
) {
    let mut keys: Vec<&String> = before.iter().chain(after.iter()).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    let find = |v: &[(String, f64)], k: &str| v.iter().find(|(x, _)| x == k).map(|(_, f)| *f);
    for k in keys {
        let (b, a) = (find(&before, k), find(&after, k));
        if differs(b, a) {
            out.push(Change {
                scope: k.clone(),
                figure: figure.to_owned(),
                before: b,
                after: a,
            });
        }
    }
}

/// Every figure that differs from `before` to `after`, in a fixed order: the whole
/// scope, each machine (by id), the stop time by reason, then (where both have the
/// sections) scrap by reason and parts per order (pure).
pub fn diff(before: &ReportData, after: &ReportData) -> Vec<Change> {
    let mut out = Vec::new();
    push_kpis(&mut out, "total", Some(&before.total), Some(&after.total));
    let mut ids: Vec<&str> = before
        .machines
        .iter()
        .chain(after.machines.iter())
        .map(|m| m.machine_id.as_str())
        .collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let find = |d: &'_ ReportData| {
            d.machines
                .iter()
                .find(|m| m.machine_id == id)
                .map(|m| m.kpi.clone())
        };
        push_kpis(&mut out, id, find(before).as_ref(), find(after).as_ref());
    }
    let reasons = |d: &ReportData| {
        d.pareto_by_reason
            .iter()
            .map(|e| (format!("reason:{}", e.key), e.duration_s))
            .collect()
    };
    push_keyed(&mut out, "stop_time_s", reasons(before), reasons(after));
    if let (Some(b), Some(a)) = (&before.sections, &after.sections) {
        let scrap = |s: &crate::sections::Sections| {
            s.scrap_by_reason
                .iter()
                .map(|r| {
                    let code = r.scrap_reason.as_deref().unwrap_or("none");
                    (format!("scrap:{code}"), r.scrap as f64)
                })
                .collect()
        };
        push_keyed(&mut out, "scrap", scrap(b), scrap(a));
        let good = |s: &crate::sections::Sections| {
            s.orders
                .iter()
                .map(|o| (format!("order:{}", o.order_id), o.good_in_period as f64))
                .collect()
        };
        push_keyed(&mut out, "good_in_period", good(b), good(a));
        let scrapped = |s: &crate::sections::Sections| {
            s.orders
                .iter()
                .map(|o| (format!("order:{}", o.order_id), o.scrap_in_period as f64))
                .collect()
        };
        push_keyed(&mut out, "scrap_in_period", scrapped(b), scrapped(a));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_figures_that_moved_are_listed() {
        assert!(!differs(Some(0.5), Some(0.5 + 1e-12)));
        assert!(differs(Some(0.5), Some(0.6)));
        assert!(differs(None, Some(0.0)));
        let mut out = Vec::new();
        push_keyed(
            &mut out,
            "scrap",
            vec![("scrap:a".into(), 3.0), ("scrap:b".into(), 1.0)],
            vec![("scrap:a".into(), 3.0), ("scrap:c".into(), 2.0)],
        );
        let got: Vec<(&str, Option<f64>, Option<f64>)> = out
            .iter()
            .map(|c| (c.scope.as_str(), c.before, c.after))
            .collect();
        assert_eq!(
            got,
            [("scrap:b", Some(1.0), None), ("scrap:c", None, Some(2.0))]
        );
    }
}
