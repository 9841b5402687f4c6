//! `shopfloor bench reports`: the time to generate a shift report of a line of
//! `machines` machines, in each format, over a generated history (ADR 0041).
//! Each report is generated through `Reports::generate` (anchor, gather at the
//! position, render, store in a temporary folder, record), one after the other.

use std::time::{Duration, Instant};

use serde_json::json;
use shopfloor_eventstore::EventStore;
use shopfloor_reports::{Format, ReportKind, ReportRequest, ReportStore, Reports, StorageSettings};

use crate::bench::{generate_history, run_id, Summary};

/// The peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `bench reports`.
pub async fn reports(
    pool: sqlx::PgPool,
    machines: usize,
    shifts: usize,
) -> anyhow::Result<serde_json::Value> {
    let store = EventStore::new(pool.clone());
    let line = format!("rb{}", run_id());
    // The history covers every shift asked for.
    let days = u32::try_from(shifts.div_ceil(3)).unwrap_or(1).max(1);
    eprintln!("generating {machines} machines × {days} days of history on line {line}…");
    let (_, start) = generate_history(&store, machines, days, &line).await?;
    eprintln!("building the read models…");
    shopfloor_projections::replay(&pool, None, |_, _| {}).await?;
    let dir = tempfile::tempdir()?;
    let files = ReportStore::open(&StorageSettings::Filesystem(dir.path().to_path_buf()))?;
    let reports = Reports::new(pool.clone(), files, "Bench plant");
    let mut out = serde_json::Map::new();
    let mut all = Vec::new();
    for format in [Format::Json, Format::Csv, Format::Pdf] {
        let mut latencies = Vec::with_capacity(shifts);
        let mut bytes = 0;
        for i in 0..shifts {
            let from = start + chrono::Duration::hours(8 * i as i64);
            let req = ReportRequest {
                kind: ReportKind::Shift,
                line: Some(line.clone()),
                from,
                to: from + chrono::Duration::hours(8),
                format,
                order_id: None,
            };
            let t0 = Instant::now();
            let meta = reports.generate(&req, "bench", None).await?;
            latencies.push(t0.elapsed());
            bytes += meta.size_bytes;
        }
        all.extend(latencies.iter().copied());
        let secs = latencies.iter().map(Duration::as_secs_f64).sum();
        let s = Summary {
            ops: latencies.len(),
            secs,
            latencies,
        }
        .json(json!({ "mean_bytes": bytes / shifts.max(1) as i64 }));
        eprintln!("{}: {s}", format.as_str());
        out.insert(format.as_str().to_owned(), s);
    }
    // Where the time goes: gathering the figures at the position (the database) and
    // rendering them (pure), measured apart on the same shifts.
    let anchor = shopfloor_reports::anchor::take_anchor(&pool).await?;
    let (mut gather_t, mut render_t) = (Vec::new(), [Vec::new(), Vec::new(), Vec::new()]);
    for i in 0..shifts {
        let from = start + chrono::Duration::hours(8 * i as i64);
        let req = ReportRequest {
            kind: ReportKind::Shift,
            line: Some(line.clone()),
            from,
            to: from + chrono::Duration::hours(8),
            format: Format::Pdf,
            order_id: None,
        };
        let input = shopfloor_reports::gather::GatherInput {
            report_id: "RPT-BENCH",
            plant: "Bench plant",
            request: &req,
            layout: shopfloor_reports::service::LAYOUT,
            anchor: &anchor,
        };
        let t0 = Instant::now();
        let data = shopfloor_reports::gather::gather(&pool, &input).await?;
        gather_t.push(t0.elapsed());
        for (k, format) in [Format::Json, Format::Csv, Format::Pdf]
            .into_iter()
            .enumerate()
        {
            let t0 = Instant::now();
            shopfloor_reports::render::render(&data, format)?;
            render_t[k].push(t0.elapsed());
        }
    }
    let ms = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    out.insert(
        "p50_ms_apart".to_owned(),
        json!({
            "gather": ms(&mut gather_t),
            "render_json": ms(&mut render_t[0]),
            "render_csv": ms(&mut render_t[1]),
            "render_pdf": ms(&mut render_t[2]),
        }),
    );
    let secs = all.iter().map(Duration::as_secs_f64).sum();
    Ok(Summary {
        ops: all.len(),
        secs,
        latencies: all,
    }
    .json(json!({
        "bench": "reports", "machines": machines, "shifts": shifts,
        "per_format": out, "peak_rss_mib": peak_rss_mib(),
    })))
}
