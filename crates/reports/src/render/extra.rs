//! The PDF blocks of ADR 0051: a corrected version's changes, the sections of a
//! shift, day or week report (orders, inspections, scrap by reason, maintenance,
//! alerts), and the order report. Pure, like the rest of the layout.

use super::layout::{machine_table, table, Layout, CONTENT_W, INK, MARGIN, MUTED};
use super::{hms, percent};
use crate::model::ReportData;

fn note(l: &mut Layout<'_>, text: &str) {
    l.need(14.0);
    let t = l.fit(text, 8.5, false, CONTENT_W);
    l.text(MARGIN, l.y, 8.5, false, MUTED, &t);
    l.y += 8.0;
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(
        || "–".to_owned(),
        |v| {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{v:.0}")
            } else {
                format!("{v:.4}")
            }
        },
    )
}

/// A corrected version: which report it supersedes and every figure that changed.
pub(super) fn corrections(l: &mut Layout<'_>, d: &ReportData) {
    let Some(c) = &d.corrections else { return };
    l.heading(&format!("Corrected version {}", c.version));
    let line = format!(
        "Supersedes {} (log position {}): events recorded after it changed {} figure(s).",
        c.supersedes,
        c.supersedes_position,
        c.changes.len()
    );
    let line = l.fit(&line, 9.0, true, CONTENT_W);
    l.text(MARGIN, l.y, 9.0, true, INK, &line);
    l.y += 6.0;
    let rows: Vec<Vec<String>> = c
        .changes
        .iter()
        .map(|ch| {
            vec![
                ch.scope.clone(),
                ch.figure.clone(),
                num(ch.before),
                num(ch.after),
            ]
        })
        .collect();
    table(
        l,
        &["Scope", "Figure", "Before", "After"],
        &[0.3, 0.3, 0.2, 0.2],
        &rows,
    );
}

/// Orders, inspections, scrap by reason, maintenance and alerts (layout 2).
pub(super) fn sections(l: &mut Layout<'_>, d: &ReportData) {
    let Some(s) = &d.sections else { return };
    l.heading("Orders worked");
    if s.orders.is_empty() {
        note(l, "No order was worked in this period.");
    } else {
        let rows: Vec<Vec<String>> = s
            .orders
            .iter()
            .map(|o| {
                vec![
                    o.order_id.clone(),
                    o.product_id.clone(),
                    o.status.clone(),
                    o.machines.join(", "),
                    o.good_in_period.to_string(),
                    o.scrap_in_period.to_string(),
                    format!("{} / {}", o.good_total, o.quantity),
                    percent(Some(o.progress)),
                ]
            })
            .collect();
        table(
            l,
            &[
                "Order", "Product", "Status", "Machines", "Good", "Scrap", "Total", "Progress",
            ],
            &[0.15, 0.14, 0.12, 0.15, 0.1, 0.1, 0.13, 0.11],
            &rows,
        );
    }
    l.heading("Quality: scrap by reason and inspections");
    if s.scrap_by_reason.is_empty() {
        note(l, "No scrap in this period.");
    } else {
        let rows: Vec<Vec<String>> = s
            .scrap_by_reason
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.scrap_reason.clone().unwrap_or_else(|| "–".into()),
                    r.scrap.to_string(),
                    r.reports.to_string(),
                    percent(r.share),
                ]
            })
            .collect();
        table(
            l,
            &["Scrap reason", "Code", "Scrap", "Reports", "Share"],
            &[0.3, 0.3, 0.14, 0.13, 0.13],
            &rows,
        );
    }
    l.y += 8.0;
    if s.inspections.is_empty() {
        note(l, "No inspection in this period.");
    } else {
        let rows: Vec<Vec<String>> = s
            .inspections
            .iter()
            .map(|i| {
                vec![
                    i.inspection_id.clone(),
                    i.order_id.clone(),
                    l.local(i.at),
                    i.sample_size.to_string(),
                    i.defects.to_string(),
                    if i.passed { "passed" } else { "failed" }.to_owned(),
                ]
            })
            .collect();
        table(
            l,
            &["Inspection", "Order", "At", "Sample", "Defects", "Result"],
            &[0.2, 0.18, 0.2, 0.14, 0.14, 0.14],
            &rows,
        );
    }
    maintenance(l, d);
    alerts(l, d);
    if s.rows_left_out > 0 {
        note(
            l,
            &format!(
                "{} more row(s) are in the JSON and CSV forms of this report only.",
                s.rows_left_out
            ),
        );
    }
    l.y += 4.0;
    note(
        l,
        "Changeovers are not reported: the domain records none yet (issue 17).",
    );
}

fn task_rows(l: &Layout<'_>, tasks: &[crate::sections::TaskLine], done: bool) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            vec![
                t.task_id.clone(),
                t.machine_id.clone(),
                t.kind.clone(),
                t.status.clone(),
                l.local(if done {
                    t.completed_at.unwrap_or(t.scheduled_date)
                } else {
                    t.scheduled_date
                }),
                t.description.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

fn maintenance(l: &mut Layout<'_>, d: &ReportData) {
    let Some(s) = &d.sections else { return };
    l.heading("Maintenance done and due");
    let widths = [0.16, 0.14, 0.13, 0.13, 0.18, 0.26];
    if s.maintenance_done.is_empty() {
        note(l, "No maintenance was completed in this period.");
    } else {
        let rows = task_rows(l, &s.maintenance_done, true);
        table(
            l,
            &[
                "Done",
                "Machine",
                "Kind",
                "Status",
                "Completed",
                "Description",
            ],
            &widths,
            &rows,
        );
    }
    l.y += 8.0;
    if s.maintenance_due.is_empty() {
        note(l, "No maintenance is due.");
    } else {
        let rows = task_rows(l, &s.maintenance_due, false);
        table(
            l,
            &[
                "Due",
                "Machine",
                "Kind",
                "Status",
                "Scheduled",
                "Description",
            ],
            &widths,
            &rows,
        );
    }
}

fn alerts(l: &mut Layout<'_>, d: &ReportData) {
    let Some(s) = &d.sections else { return };
    l.heading(&format!(
        "Alerts: {} raised, {} acknowledged",
        s.alerts_raised, s.alerts_acknowledged
    ));
    if s.alerts.is_empty() {
        note(l, "No alert was raised or acknowledged in this period.");
        return;
    }
    let rows: Vec<Vec<String>> = s
        .alerts
        .iter()
        .map(|a| {
            vec![
                a.alert_id.clone(),
                a.kind.clone(),
                a.machine_id.clone().unwrap_or_else(|| "–".into()),
                l.local(a.raised_at),
                a.acknowledged_by.clone().unwrap_or_else(|| "–".into()),
                a.resolved_at.map_or_else(|| "open".into(), |t| l.local(t)),
            ]
        })
        .collect();
    table(
        l,
        &[
            "Alert",
            "Kind",
            "Machine",
            "Raised",
            "Acknowledged by",
            "Resolved",
        ],
        &[0.2, 0.17, 0.13, 0.17, 0.16, 0.17],
        &rows,
    );
}

/// The order report: summary, history, production, scrap, inspections,
/// consumption, labour, and the KPIs of its machines over its life.
pub(super) fn order(l: &mut Layout<'_>, d: &ReportData) {
    let Some(o) = &d.order else { return };
    l.heading("Order");
    let facts = [
        ("Product", o.product_id.clone()),
        ("Status", o.status.clone()),
        ("Quantity", o.quantity.to_string()),
        ("Good", o.good_count.to_string()),
        ("Scrap", o.scrap_count.to_string()),
        ("Progress", percent(Some(o.progress))),
        ("Yield", percent(o.production_yield)),
        ("Labour", hms(o.labour_time_s)),
    ];
    let w = CONTENT_W / facts.len() as f32;
    for (i, (label, value)) in facts.iter().enumerate() {
        let x = MARGIN + i as f32 * w;
        l.text(x, l.y, 7.5, false, MUTED, label);
        let v = l.fit(value, 10.5, true, w - 4.0);
        l.text(x, l.y + 13.0, 10.5, true, INK, &v);
    }
    l.y += 18.0;
    l.heading("History");
    let rows: Vec<Vec<String>> = o
        .history
        .iter()
        .map(|h| vec![l.local(h.at), h.step.clone(), h.detail.clone()])
        .collect();
    table(l, &["At", "Step", "Detail"], &[0.22, 0.14, 0.64], &rows);
    l.heading("Production");
    if o.production.is_empty() {
        note(l, "No parts reported.");
    } else {
        let rows: Vec<Vec<String>> = o
            .production
            .iter()
            .map(|p| {
                vec![
                    p.machine_id.clone(),
                    p.good.to_string(),
                    p.scrap.to_string(),
                    p.reports.to_string(),
                    l.local(p.first_at),
                    l.local(p.last_at),
                ]
            })
            .collect();
        table(
            l,
            &["Machine", "Good", "Scrap", "Reports", "First", "Last"],
            &[0.2, 0.12, 0.12, 0.12, 0.22, 0.22],
            &rows,
        );
    }
    order_quality(l, d);
    order_material_and_labour(l, d);
    machine_table(l, d);
}

fn order_quality(l: &mut Layout<'_>, d: &ReportData) {
    let Some(o) = &d.order else { return };
    l.heading("Scrap by reason and inspections");
    if o.scrap_by_reason.is_empty() {
        note(l, "No scrap.");
    } else {
        let rows: Vec<Vec<String>> = o
            .scrap_by_reason
            .iter()
            .map(|r| {
                vec![
                    r.scrap_reason.clone().unwrap_or_else(|| "not given".into()),
                    r.scrap.to_string(),
                ]
            })
            .collect();
        table(l, &["Scrap reason", "Scrap"], &[0.7, 0.3], &rows);
    }
    l.y += 8.0;
    if o.inspections.is_empty() {
        note(l, "No inspection.");
    } else {
        let rows: Vec<Vec<String>> = o
            .inspections
            .iter()
            .map(|i| {
                vec![
                    i.inspection_id.clone(),
                    l.local(i.at),
                    i.sample_size.to_string(),
                    i.defects.to_string(),
                    if i.passed { "passed" } else { "failed" }.to_owned(),
                    i.inspector.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(
            l,
            &[
                "Inspection",
                "At",
                "Sample",
                "Defects",
                "Result",
                "Inspector",
            ],
            &[0.2, 0.2, 0.13, 0.13, 0.14, 0.2],
            &rows,
        );
    }
}

fn order_material_and_labour(l: &mut Layout<'_>, d: &ReportData) {
    let Some(o) = &d.order else { return };
    l.heading("Material consumed");
    if o.consumption.is_empty() {
        note(l, "No material consumed.");
    } else {
        let rows: Vec<Vec<String>> = o
            .consumption
            .iter()
            .map(|c| {
                vec![
                    c.item_id.clone(),
                    c.requested.clone(),
                    c.consumed.clone(),
                    c.shortage.clone(),
                    c.movements.to_string(),
                ]
            })
            .collect();
        table(
            l,
            &["Item", "Requested", "Consumed", "Shortage", "Movements"],
            &[0.28, 0.18, 0.18, 0.18, 0.18],
            &rows,
        );
    }
    l.heading("Labour");
    if o.labour.is_empty() {
        note(l, "No operator clocked on to this order.");
    } else {
        let rows: Vec<Vec<String>> = o
            .labour
            .iter()
            .map(|s| {
                vec![
                    s.operator_id.clone(),
                    s.machine_id.clone().unwrap_or_else(|| "–".into()),
                    l.local(s.clocked_on_at),
                    s.clocked_off_at
                        .map_or_else(|| "clocked on".into(), |t| l.local(t)),
                    hms(s.time_s),
                ]
            })
            .collect();
        table(
            l,
            &["Operator", "Machine", "On", "Off", "Time"],
            &[0.22, 0.18, 0.22, 0.22, 0.16],
            &rows,
        );
    }
}
