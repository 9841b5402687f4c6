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
    out
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
