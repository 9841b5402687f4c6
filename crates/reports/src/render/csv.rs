//! The CSV rendering: one table per file, in a zip with fixed file times (the
//! zip epoch, 1980-01-01) and modes, so the archive's bytes depend on the data
//! only. Numbers are written in Rust's shortest round-trip form, empty for none.

use std::io::{Cursor, Write};

use shopfloor_projections::query::{KpiRow, ParetoEntry};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::error::ReportError;
use crate::model::ReportData;

/// One CSV file: a name and its rows (the first is the header).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub rows: Vec<Vec<String>>,
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A table as CSV text (RFC 4180, CRLF line ends).
pub fn to_csv(table: &Table) -> String {
    let mut out = String::new();
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| field(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

const KPI_HEADER: [&str; 20] = [
    "machine_id",
    "line",
    "from",
    "to",
    "shift",
    "oee",
    "availability",
    "performance",
    "quality",
    "good_count",
    "scrap_count",
    "total_count",
    "production_yield",
    "planned_production_time_s",
    "run_time_s",
    "downtime_s",
    "planned_stop_time_s",
    "unknown_time_s",
    "not_scheduled_time_s",
    "machine_count",
];

fn kpi_cells(r: &KpiRow) -> Vec<String> {
    vec![
        r.machine_id.clone(),
        opt(r.line.as_ref()),
        r.from.to_rfc3339(),
        r.to.to_rfc3339(),
        opt(r.shift.as_ref()),
        opt(r.oee),
        opt(r.availability),
        opt(r.performance),
        opt(r.quality),
        r.good_count.to_string(),
        r.scrap_count.to_string(),
        r.total_count.to_string(),
        opt(r.production_yield),
        r.planned_production_time_s.to_string(),
        r.run_time_s.to_string(),
        r.downtime_s.to_string(),
        r.planned_stop_time_s.to_string(),
        r.unknown_time_s.to_string(),
        r.not_scheduled_time_s.to_string(),
        r.machine_count.to_string(),
    ]
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn pareto(name: &'static str, entries: &[ParetoEntry]) -> Table {
    let mut rows = vec![header(&[
        "key",
        "stops",
        "duration_s",
        "share",
        "cumulative_share",
    ])];
    rows.extend(entries.iter().map(|e| {
        vec![
            e.key.clone(),
            e.stops.to_string(),
            e.duration_s.to_string(),
            opt(e.share),
            opt(e.cumulative_share),
        ]
    }));
    Table { name, rows }
}

/// The report's tables, in a fixed order (pure).
pub fn tables(d: &ReportData) -> Vec<Table> {
    let report = Table {
        name: "report.csv",
        rows: vec![
            header(&[
                "report_id",
                "plant",
                "kind",
                "line",
                "from",
                "to",
                "time_zone",
                "position",
                "chain_hash",
                "as_of",
            ]),
            vec![
                d.report_id.clone(),
                d.plant.clone(),
                d.kind.as_str().to_owned(),
                opt(d.line.as_ref()),
                d.from.to_rfc3339(),
                d.to.to_rfc3339(),
                d.time_zone.clone(),
                d.anchor.position.to_string(),
                d.anchor.chain_hash.clone(),
                d.anchor.as_of.to_rfc3339(),
            ],
        ],
    };
    let mut total = vec![header(&KPI_HEADER)];
    total.push(kpi_cells(&d.total));
    let mut machines = vec![{
        let mut h = header(&KPI_HEADER);
        h.extend(header(&[
            "stops",
            "failures",
            "mtbf_s",
            "mttr_s",
            "micro_stops",
        ]));
        h
    }];
    machines.extend(d.machines.iter().map(|m| {
        let mut c = kpi_cells(&m.kpi);
        c.extend([
            m.stops.to_string(),
            m.failures.to_string(),
            opt(m.mtbf_s),
            opt(m.mttr_s),
            m.micro_stops.to_string(),
        ]);
        c
    }));
    let mut stops = vec![header(&[
        "machine_id",
        "state",
        "start",
        "end",
        "duration_s",
        "planned",
        "reason_code",
        "loss",
    ])];
    stops.extend(d.longest_stops.iter().map(|s| {
        vec![
            s.machine_id.clone(),
            s.state.clone(),
            s.start.to_rfc3339(),
            opt(s.end.map(|e| e.to_rfc3339())),
            s.duration_s.to_string(),
            s.planned.to_string(),
            opt(s.reason_code.as_ref()),
            opt(s.loss.as_ref()),
        ]
    }));
    let mut timeline = vec![header(&["machine_id", "state", "planned", "start", "end"])];
    for t in &d.timelines {
        timeline.extend(t.segments.iter().map(|s| {
            vec![
                t.machine_id.clone(),
                s.state.clone(),
                s.planned.to_string(),
                s.start.to_rfc3339(),
                s.end.to_rfc3339(),
            ]
        }));
    }
    let mut series = vec![header(&KPI_HEADER)];
    series.extend(d.series.iter().map(kpi_cells));
    let mut out = vec![
        report,
        Table {
            name: "total.csv",
            rows: total,
        },
        Table {
            name: "machines.csv",
            rows: machines,
        },
        pareto("pareto_by_reason.csv", &d.pareto_by_reason),
        pareto("pareto_by_loss.csv", &d.pareto_by_loss),
        Table {
            name: "longest_stops.csv",
            rows: stops,
        },
        Table {
            name: "timeline.csv",
            rows: timeline,
        },
    ];
    if let Some(t) = &d.trend {
        out.push(Table {
            name: "series.csv",
            rows: series,
        });
        let mut rows = vec![header(&KPI_HEADER)];
        rows.push(kpi_cells(&t.previous));
        out.push(Table {
            name: "previous_period.csv",
            rows,
        });
    }
    out.extend(extra_tables(d));
    out
}

fn table(name: &'static str, head: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Table {
    let mut all = vec![header(head)];
    all.extend(rows);
    Table { name, rows: all }
}

/// The tables of ADR 0051: corrections, sections, the order (pure).
fn extra_tables(d: &ReportData) -> Vec<Table> {
    let mut out = Vec::new();
    if let Some(c) = &d.corrections {
        out.push(table(
            "corrections.csv",
            &[
                "version",
                "supersedes",
                "supersedes_position",
                "scope",
                "figure",
                "before",
                "after",
            ],
            c.changes.iter().map(|ch| {
                vec![
                    c.version.to_string(),
                    c.supersedes.clone(),
                    c.supersedes_position.to_string(),
                    ch.scope.clone(),
                    ch.figure.clone(),
                    opt(ch.before),
                    opt(ch.after),
                ]
            }),
        ));
    }
    if let Some(s) = &d.sections {
        out.extend(section_tables(s));
    }
    if let Some(o) = &d.order {
        out.extend(order_tables(o));
    }
    out
}

fn task_table(name: &'static str, tasks: &[crate::sections::TaskLine]) -> Table {
    table(
        name,
        &[
            "task_id",
            "machine_id",
            "kind",
            "status",
            "scheduled_date",
            "completed_at",
            "description",
        ],
        tasks.iter().map(|t| {
            vec![
                t.task_id.clone(),
                t.machine_id.clone(),
                t.kind.clone(),
                t.status.clone(),
                t.scheduled_date.to_rfc3339(),
                opt(t.completed_at.map(|t| t.to_rfc3339())),
                opt(t.description.as_ref()),
            ]
        }),
    )
}

fn inspection_table(name: &'static str, v: &[crate::sections::InspectionLine]) -> Table {
    table(
        name,
        &[
            "inspection_id",
            "order_id",
            "at",
            "sample_size",
            "defects",
            "passed",
            "inspector",
        ],
        v.iter().map(|i| {
            vec![
                i.inspection_id.clone(),
                i.order_id.clone(),
                i.at.to_rfc3339(),
                i.sample_size.to_string(),
                i.defects.to_string(),
                i.passed.to_string(),
                opt(i.inspector.as_ref()),
            ]
        }),
    )
}

fn section_tables(s: &crate::sections::Sections) -> Vec<Table> {
    vec![
        table(
            "orders.csv",
            &[
                "order_id",
                "product_id",
                "status",
                "quantity",
                "machines",
                "good_in_period",
                "scrap_in_period",
                "good_total",
                "scrap_total",
                "progress",
            ],
            s.orders.iter().map(|o| {
                vec![
                    o.order_id.clone(),
                    o.product_id.clone(),
                    o.status.clone(),
                    o.quantity.to_string(),
                    o.machines.join(" "),
                    o.good_in_period.to_string(),
                    o.scrap_in_period.to_string(),
                    o.good_total.to_string(),
                    o.scrap_total.to_string(),
                    o.progress.to_string(),
                ]
            }),
        ),
        inspection_table("inspections.csv", &s.inspections),
        table(
            "scrap_by_reason.csv",
            &["scrap_reason", "name", "scrap", "reports", "share"],
            s.scrap_by_reason.iter().map(|r| {
                vec![
                    opt(r.scrap_reason.as_ref()),
                    r.name.clone(),
                    r.scrap.to_string(),
                    r.reports.to_string(),
                    opt(r.share),
                ]
            }),
        ),
        task_table("maintenance_done.csv", &s.maintenance_done),
        task_table("maintenance_due.csv", &s.maintenance_due),
        table(
            "alerts.csv",
            &[
                "alert_id",
                "kind",
                "severity",
                "machine_id",
                "raised_at",
                "acknowledged_by",
                "acknowledged_at",
                "resolved_at",
            ],
            s.alerts.iter().map(|a| {
                vec![
                    a.alert_id.clone(),
                    a.kind.clone(),
                    a.severity.clone(),
                    opt(a.machine_id.as_ref()),
                    a.raised_at.to_rfc3339(),
                    opt(a.acknowledged_by.as_ref()),
                    opt(a.acknowledged_at.map(|t| t.to_rfc3339())),
                    opt(a.resolved_at.map(|t| t.to_rfc3339())),
                ]
            }),
        ),
    ]
}

fn order_tables(o: &crate::order::OrderLife) -> Vec<Table> {
    vec![
        table(
            "order.csv",
            &[
                "order_id",
                "product_id",
                "quantity",
                "status",
                "good_count",
                "scrap_count",
                "progress",
                "production_yield",
                "labour_time_s",
            ],
            std::iter::once(vec![
                o.order_id.clone(),
                o.product_id.clone(),
                o.quantity.to_string(),
                o.status.clone(),
                o.good_count.to_string(),
                o.scrap_count.to_string(),
                o.progress.to_string(),
                opt(o.production_yield),
                o.labour_time_s.to_string(),
            ]),
        ),
        table(
            "order_history.csv",
            &["at", "position", "step", "detail"],
            o.history.iter().map(|h| {
                vec![
                    h.at.to_rfc3339(),
                    h.position.to_string(),
                    h.step.clone(),
                    h.detail.clone(),
                ]
            }),
        ),
        table(
            "order_production.csv",
            &[
                "machine_id",
                "good",
                "scrap",
                "reports",
                "first_at",
                "last_at",
            ],
            o.production.iter().map(|p| {
                vec![
                    p.machine_id.clone(),
                    p.good.to_string(),
                    p.scrap.to_string(),
                    p.reports.to_string(),
                    p.first_at.to_rfc3339(),
                    p.last_at.to_rfc3339(),
                ]
            }),
        ),
        table(
            "order_scrap_by_reason.csv",
            &["scrap_reason", "scrap"],
            o.scrap_by_reason
                .iter()
                .map(|r| vec![opt(r.scrap_reason.as_ref()), r.scrap.to_string()]),
        ),
        inspection_table("order_inspections.csv", &o.inspections),
        table(
            "order_consumption.csv",
            &["item_id", "requested", "consumed", "shortage", "movements"],
            o.consumption.iter().map(|c| {
                vec![
                    c.item_id.clone(),
                    c.requested.clone(),
                    c.consumed.clone(),
                    c.shortage.clone(),
                    c.movements.to_string(),
                ]
            }),
        ),
        table(
            "order_labour.csv",
            &[
                "operator_id",
                "machine_id",
                "clocked_on_at",
                "clocked_off_at",
                "time_s",
            ],
            o.labour.iter().map(|s| {
                vec![
                    s.operator_id.clone(),
                    opt(s.machine_id.as_ref()),
                    s.clocked_on_at.to_rfc3339(),
                    opt(s.clocked_off_at.map(|t| t.to_rfc3339())),
                    s.time_s.to_string(),
                ]
            }),
        ),
    ]
}

/// The tables as a zip of CSV files.
pub fn zip(d: &ReportData) -> Result<Vec<u8>, ReportError> {
    let err = |e: zip::result::ZipError| ReportError::Render(e.to_string());
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for t in tables(d) {
        w.start_file(t.name, options).map_err(err)?;
        w.write_all(to_csv(&t).as_bytes())
            .map_err(|e| ReportError::Render(e.to_string()))?;
    }
    Ok(w.finish().map_err(err)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_separators_are_quoted() {
        let t = Table {
            name: "t.csv",
            rows: vec![vec!["a,b".into(), "say \"hi\"".into(), "plain".into()]],
        };
        assert_eq!(to_csv(&t), "\"a,b\",\"say \"\"hi\"\"\",plain\r\n");
    }
}
