//! The renderers on their own: same data, same bytes, for every format; the PDF
//! parses (poppler's `pdftotext`) and holds the plant's name and page numbers.

use chrono::{DateTime, Duration, TimeZone, Utc};
use shopfloor_projections::query::{KpiRow, ParetoEntry};
use shopfloor_reports::model::{MachineFigures, Segment, Stop, Timeline};
use shopfloor_reports::render::{csv, render};
use shopfloor_reports::{Anchor, Format, ReportData, ReportKind};

fn t(h: i64, m: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0).unwrap() + Duration::hours(h) + Duration::minutes(m)
}

fn kpi(id: &str, oee: f64, good: i64, scrap: i64) -> KpiRow {
    KpiRow {
        machine_id: id.into(),
        from: t(0, 0),
        to: t(8, 0),
        planned_production_time_s: 27000.0,
        run_time_s: 27000.0 * oee.sqrt(),
        downtime_minutes: 27000.0 * (1.0 - oee.sqrt()) / 60.0,
        availability: Some(oee.sqrt()),
        performance: Some(oee.sqrt()),
        quality: Some(good as f64 / (good + scrap) as f64),
        oee: Some(oee),
        good_count: good,
        scrap_count: scrap,
        total_count: good + scrap,
        production_yield: Some(good as f64 / (good + scrap) as f64),
        performance_exceeds_one: false,
        scrap_rate: Some(scrap as f64 / (good + scrap) as f64),
        line: Some("L1".into()),
        shift: None,
        team: None,
        machine_count: 1,
        planned_stop_time_s: 1800.0,
        downtime_s: 27000.0 * (1.0 - oee.sqrt()),
        unknown_time_s: 120.0,
        not_scheduled_time_s: 0.0,
        ideal_time_s: 20000.0,
        as_of: Some(t(9, 0)),
    }
}

fn pareto(key: &str, stops: u64, d: f64, share: f64, cum: f64) -> ParetoEntry {
    ParetoEntry {
        key: key.into(),
        stops,
        duration_s: d,
        share: Some(share),
        cumulative_share: Some(cum),
    }
}

/// A shift report of a line with `n` machines and a plant name with a comma.
pub fn sample(n: usize) -> ReportData {
    let machines: Vec<MachineFigures> = (0..n)
        .map(|i| {
            let id = format!("PRESS-{i:02}");
            MachineFigures {
                kpi: kpi(
                    &id,
                    0.5 + (i % 5) as f64 * 0.1,
                    9000 + i as i64 * 13,
                    40 + i as i64,
                ),
                machine_id: id,
                line: Some("L1".into()),
                stops: 3 + i as u64 % 4,
                failures: 1,
                mtbf_s: Some(9000.0),
                mttr_s: Some(600.0),
                micro_stops: 2,
            }
        })
        .collect();
    let timelines = (0..n)
        .map(|i| Timeline {
            machine_id: format!("PRESS-{i:02}"),
            segments: vec![
                Segment {
                    state: "running".into(),
                    planned: false,
                    start: t(0, 0),
                    end: t(2, 10 * i as i64 % 60),
                },
                Segment {
                    state: "down".into(),
                    planned: false,
                    start: t(2, 10 * i as i64 % 60),
                    end: t(3, 0),
                },
                Segment {
                    state: "running".into(),
                    planned: false,
                    start: t(3, 0),
                    end: t(4, 0),
                },
                Segment {
                    state: "idle".into(),
                    planned: true,
                    start: t(4, 0),
                    end: t(4, 30),
                },
                Segment {
                    state: "running".into(),
                    planned: false,
                    start: t(4, 30),
                    end: t(7, 20),
                },
                Segment {
                    state: "idle".into(),
                    planned: false,
                    start: t(7, 20),
                    end: t(8, 0),
                },
            ],
        })
        .collect();
    let mut total = kpi("*", 0.68, 95000, 610);
    total.machine_count = n;
    ReportData {
        report_id: "RPT-0123456789ABCDEF".into(),
        plant: "Werk Süd, Halle 3".into(),
        time_zone: "Europe/Berlin".into(),
        kind: ReportKind::Shift,
        line: Some("L1".into()),
        from: t(0, 0),
        to: t(8, 0),
        anchor: Anchor {
            position: 123456,
            chain_hash: "ab".repeat(32),
            as_of: t(9, 0),
        },
        total,
        machines,
        pareto_by_reason: vec![
            pareto("breakdown.mechanical", 4, 5400.0, 0.5, 0.5),
            pareto("material.missing", 6, 2700.0, 0.25, 0.75),
            pareto("changeover", 2, 1800.0, 0.1667, 0.9167),
            pareto("unclassified", 3, 900.0, 0.0833, 1.0),
        ],
        pareto_by_loss: vec![pareto("availability", 15, 10800.0, 1.0, 1.0)],
        longest_stops: (0..n.min(10))
            .map(|i| Stop {
                machine_id: format!("PRESS-{i:02}"),
                state: "down".into(),
                start: t(2, 0),
                end: Some(t(3, 0)),
                duration_s: 3600.0 - i as f64 * 60.0,
                planned: false,
                reason_code: Some("breakdown.mechanical".into()),
                loss: Some("availability".into()),
            })
            .collect(),
        timelines,
        series: Vec::new(),
        trend: None,
        sections: None,
        order: None,
        corrections: None,
    }
}

#[test]
fn the_same_data_gives_the_same_bytes_in_every_format() {
    let data = sample(20);
    for format in [Format::Json, Format::Csv, Format::Pdf] {
        let a = render(&data, format).unwrap();
        let b = render(&data.clone(), format).unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, b, "{format:?} is not deterministic");
        // A different figure gives different bytes (the comparison can fail).
        let mut other = data.clone();
        other.machines[3].kpi.good_count += 1;
        assert_ne!(
            render(&other, format).unwrap(),
            a,
            "{format:?} ignores a figure"
        );
    }
}

#[test]
fn the_csv_zip_holds_one_file_per_table() {
    let data = sample(3);
    let tables = csv::tables(&data);
    let names: Vec<&str> = tables.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "report.csv",
            "total.csv",
            "machines.csv",
            "pareto_by_reason.csv",
            "pareto_by_loss.csv",
            "longest_stops.csv",
            "timeline.csv"
        ]
    );
    let report = csv::to_csv(&tables[0]);
    assert!(report.contains("\"Werk Süd, Halle 3\""), "{report}");
    assert!(report.contains("123456"), "{report}");
    let zip = csv::zip(&data).unwrap();
    assert_eq!(&zip[..2], b"PK");
    assert_eq!(csv::to_csv(&tables[2]).lines().count(), 4);
}

fn pdftotext(pdf: &[u8]) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args(["-layout"])
        .arg(&path)
        .arg("-")
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn the_pdf_parses_and_shows_the_plant_and_page_numbers() {
    let pdf = render(&sample(40), Format::Pdf).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    // scripts/s3.sh installs poppler-utils; without it this test cannot check the text.
    let text = pdftotext(&pdf).expect("pdftotext is missing: run scripts/s3.sh");
    assert!(text.contains("Werk Süd, Halle 3"), "{text}");
    assert!(text.contains("Shift report"), "{text}");
    // Forty machines take more than a page; every page says which of how many it is.
    let n: usize = text
        .split("Page 1 of ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"Page 1 of n\": {text}"));
    assert!(n >= 2, "{n} pages");
    for i in 1..=n {
        assert!(
            text.contains(&format!("Page {i} of {n}")),
            "page {i} of {n}: {text}"
        );
    }
    assert!(text.contains("log position 123456"), "{text}");
    assert!(text.contains("PRESS-39"), "{text}");
    assert!(text.contains("breakdown.mechanical"), "{text}");
    // The sample in the docs (docs/reports/, SHOPFLOOR_REPORT_SAMPLE_DIR): twelve machines.
    if let Ok(dir) = std::env::var("SHOPFLOOR_REPORT_SAMPLE_DIR") {
        let sample = render(&sample(12), Format::Pdf).unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join("sample-shift-report.pdf"),
            sample,
        )
        .unwrap();
    }
}

/// A shift report with the sections of layout 2 and a corrected version's changes.
fn with_sections() -> ReportData {
    use shopfloor_projections::query::ScrapByReason;
    use shopfloor_reports::sections::{AlertLine, InspectionLine, OrderWorked, Sections, TaskLine};
    use shopfloor_reports::versions::{Change, Corrections};
    let mut d = sample(3);
    d.sections = Some(Sections {
        orders: vec![OrderWorked {
            order_id: "PO-4711".into(),
            product_id: "BRACKET".into(),
            status: "in_progress".into(),
            quantity: 5000,
            machines: vec!["PRESS-01".into()],
            good_in_period: 1200,
            scrap_in_period: 14,
            good_total: 2500,
            scrap_total: 30,
            progress: 0.5,
        }],
        inspections: vec![InspectionLine {
            inspection_id: "INS-9".into(),
            order_id: "PO-4711".into(),
            at: t(3, 0),
            sample_size: 20,
            defects: 1,
            passed: true,
            inspector: Some("qa.lee".into()),
        }],
        scrap_count: 14,
        scrap_by_reason: vec![ScrapByReason {
            scrap_reason: Some("scrap.dimension".into()),
            name: "Out of tolerance".into(),
            scrap: 14,
            reports: 2,
            share: Some(1.0),
        }],
        maintenance_done: vec![TaskLine {
            task_id: "TASK-DONE-1".into(),
            machine_id: "PRESS-00".into(),
            kind: "preventive".into(),
            status: "completed".into(),
            scheduled_date: t(1, 0),
            completed_at: Some(t(2, 0)),
            description: Some("Lubricate".into()),
        }],
        maintenance_due: vec![],
        alerts_raised: 1,
        alerts_acknowledged: 1,
        alerts: vec![AlertLine {
            alert_id: "ALERT-77".into(),
            kind: "machine_down".into(),
            severity: "critical".into(),
            machine_id: Some("PRESS-02".into()),
            raised_at: t(4, 0),
            acknowledged_by: Some("sup.kim".into()),
            acknowledged_at: Some(t(4, 5)),
            resolved_at: None,
        }],
        rows_left_out: 0,
    });
    d.corrections = Some(Corrections {
        version: 2,
        supersedes: "RPT-0123456789ABCDEF".into(),
        supersedes_position: 123000,
        changes: vec![Change {
            scope: "PRESS-01".into(),
            figure: "good_count".into(),
            before: Some(9013.0),
            after: Some(9513.0),
        }],
    });
    d
}

#[test]
fn sections_and_corrections_reach_every_format() {
    let data = with_sections();
    let names: Vec<&str> = csv::tables(&data).iter().map(|t| t.name).collect();
    for name in [
        "corrections.csv",
        "orders.csv",
        "inspections.csv",
        "scrap_by_reason.csv",
        "maintenance_done.csv",
        "maintenance_due.csv",
        "alerts.csv",
    ] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&render(&data, Format::Json).unwrap()).unwrap();
    assert_eq!(json["corrections"]["changes"][0]["after"], 9513.0);
    assert_eq!(json["sections"]["orders"][0]["order_id"], "PO-4711");
    // A report of layout 1 has none of them, in JSON or CSV.
    let old: serde_json::Value =
        serde_json::from_slice(&render(&sample(3), Format::Json).unwrap()).unwrap();
    assert!(old.get("sections").is_none() && old.get("corrections").is_none());
    let pdf = render(&data, Format::Pdf).unwrap();
    assert_eq!(pdf, render(&data.clone(), Format::Pdf).unwrap());
    let text = pdftotext(&pdf).expect("pdftotext is missing: run scripts/s3.sh");
    for needle in [
        "Corrected version 2",
        "RPT-0123456789ABCDEF",
        "9513",
        "Orders worked",
        "PO-4711",
        "Out of tolerance",
        "INS-9",
        "TASK-DONE-1",
        "ALERT-77",
        "sup.kim",
        "issue 17",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn an_order_report_shows_the_orders_life() {
    use shopfloor_reports::order::{
        Consumption, HistoryLine, LabourSession, OrderLife, OrderProduction, OrderScrap,
    };
    let mut d = sample(1);
    d.kind = ReportKind::Order;
    d.line = None;
    d.order = Some(OrderLife {
        order_id: "PO-4711".into(),
        product_id: "BRACKET".into(),
        quantity: 5000,
        status: "completed".into(),
        good_count: 4990,
        scrap_count: 31,
        progress: 0.998,
        production_yield: Some(4990.0 / 5021.0),
        history: vec![HistoryLine {
            at: t(0, 0),
            position: 17,
            step: "created".into(),
            detail: "5000 × BRACKET".into(),
        }],
        production: vec![OrderProduction {
            machine_id: "PRESS-00".into(),
            good: 4990,
            scrap: 31,
            reports: 12,
            first_at: t(0, 10),
            last_at: t(7, 50),
        }],
        scrap_by_reason: vec![OrderScrap {
            scrap_reason: Some("scrap.surface".into()),
            scrap: 31,
        }],
        inspections: vec![],
        consumption: vec![Consumption {
            item_id: "STEEL-COIL".into(),
            requested: "2510.5".into(),
            shortage: "0".into(),
            consumed: "2510.5".into(),
            movements: 12,
        }],
        labour: vec![LabourSession {
            operator_id: "OP-ADA".into(),
            machine_id: Some("PRESS-00".into()),
            clocked_on_at: t(0, 0),
            clocked_off_at: Some(t(8, 0)),
            time_s: 28800.0,
        }],
        labour_time_s: 28800.0,
    });
    let names: Vec<&str> = csv::tables(&d).iter().map(|t| t.name).collect();
    for name in [
        "order.csv",
        "order_history.csv",
        "order_production.csv",
        "order_scrap_by_reason.csv",
        "order_inspections.csv",
        "order_consumption.csv",
        "order_labour.csv",
    ] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
    let pdf = render(&d, Format::Pdf).unwrap();
    assert_eq!(pdf, render(&d.clone(), Format::Pdf).unwrap());
    let text = pdftotext(&pdf).expect("pdftotext is missing: run scripts/s3.sh");
    for needle in [
        "Order report",
        "order PO-4711",
        "BRACKET",
        "STEEL-COIL",
        "2510.5",
        "OP-ADA",
        "8:00:00",
        "scrap.surface",
        "No inspection.",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
