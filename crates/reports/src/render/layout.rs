//! The PDF's layout, planned as data before anything is drawn: pages of text,
//! rectangles and lines in points on A4 (origin top left). Planning needs only
//! the text widths (a [`Measure`]); the page count is known when the plan is
//! done, so every footer can say "page i of n". [`super::pdf`] draws the plan.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{extra, hms, percent};
use crate::model::{ReportData, ReportKind, Segment};

pub const PAGE_W: f32 = 595.28;
pub const PAGE_H: f32 = 841.89;
pub const MARGIN: f32 = 42.0;
pub(crate) const TOP: f32 = 64.0;
pub(crate) const BOTTOM: f32 = PAGE_H - 56.0;
pub(crate) const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

pub const INK: Rgb = Rgb(33, 37, 41);
pub const MUTED: Rgb = Rgb(108, 117, 125);
pub const RULE: Rgb = Rgb(206, 212, 218);
pub const ACCENT: Rgb = Rgb(31, 95, 165);
pub const RUNNING: Rgb = Rgb(47, 158, 68);
pub const IDLE: Rgb = Rgb(245, 159, 0);
pub const DOWN: Rgb = Rgb(224, 49, 49);
pub const PLANNED: Rgb = Rgb(116, 143, 252);
pub const UNKNOWN: Rgb = Rgb(206, 212, 218);
pub(crate) const BAND: Rgb = Rgb(241, 243, 245);

/// Horizontal alignment of a text at its `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
    Center,
}

/// One drawing operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Text whose baseline starts (or ends, or is centred) at `x`, `y`.
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        color: Rgb,
        align: Align,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Rgb,
    },
    Line {
        points: Vec<(f32, f32)>,
        width: f32,
        color: Rgb,
    },
}

/// The width of a text in points at a size, regular or bold.
pub trait Measure {
    fn width(&self, text: &str, size: f32, bold: bool) -> f32;
}

/// The planned pages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub pages: Vec<Vec<Op>>,
}

/// Lays out pages, moving a cursor down and starting a new page when a block
/// does not fit.
pub(crate) struct Layout<'a> {
    m: &'a dyn Measure,
    pub(crate) pages: Vec<Vec<Op>>,
    pub(crate) y: f32,
    tz: Tz,
}

impl<'a> Layout<'a> {
    fn new(m: &'a dyn Measure, tz: Tz) -> Self {
        Self {
            m,
            pages: vec![Vec::new()],
            y: TOP,
            tz,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        self.pages.last_mut().expect("a page")
    }

    /// Makes room for `h` points, on a new page if needed.
    pub(crate) fn need(&mut self, h: f32) {
        if self.y + h > BOTTOM && self.y > TOP {
            self.pages.push(Vec::new());
            self.y = TOP;
        }
    }

    pub(crate) fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, color: Rgb, text: &str) {
        self.text_aligned(x, y, size, bold, color, Align::Left, text);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn text_aligned(
        &mut self,
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        color: Rgb,
        align: Align,
        text: &str,
    ) {
        self.ops().push(Op::Text {
            x,
            y,
            size,
            bold,
            color,
            align,
            text: text.to_owned(),
        });
    }

    pub(crate) fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: Rgb) {
        if w > 0.0 && h > 0.0 {
            self.ops().push(Op::Rect { x, y, w, h, fill });
        }
    }

    pub(crate) fn line(&mut self, points: Vec<(f32, f32)>, width: f32, color: Rgb) {
        self.ops().push(Op::Line {
            points,
            width,
            color,
        });
    }

    /// A text cut to fit `w` points, with an ellipsis.
    pub(crate) fn fit(&self, text: &str, size: f32, bold: bool, w: f32) -> String {
        if self.m.width(text, size, bold) <= w {
            return text.to_owned();
        }
        let mut chars: Vec<char> = text.chars().collect();
        while !chars.is_empty() {
            chars.pop();
            let t: String = chars.iter().collect::<String>() + "…";
            if self.m.width(&t, size, bold) <= w {
                return t;
            }
        }
        String::new()
    }

    pub(crate) fn heading(&mut self, title: &str) {
        self.need(40.0);
        self.y += 22.0;
        let y = self.y;
        self.text(MARGIN, y, 12.0, true, ACCENT, title);
        self.y += 5.0;
        let y = self.y;
        self.line(vec![(MARGIN, y), (PAGE_W - MARGIN, y)], 0.6, RULE);
        self.y += 12.0;
    }

    pub(crate) fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }
}

/// Plans the whole document (pure).
pub fn plan(d: &ReportData, m: &dyn Measure) -> Plan {
    let tz: Tz = d.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let mut l = Layout::new(m, tz);
    title_block(&mut l, d);
    extra::corrections(&mut l, d);
    if d.kind == ReportKind::Order {
        extra::order(&mut l, d);
    } else {
        summary(&mut l, d);
        if d.trend.is_some() {
            trend(&mut l, d);
        }
        oee_chart(&mut l, d);
        pareto_chart(&mut l, d);
        timeline_chart(&mut l, d);
        machine_table(&mut l, d);
        stops_table(&mut l, d);
        if matches!(d.kind, ReportKind::Day | ReportKind::Week) {
            series_table(&mut l, d);
        }
        extra::sections(&mut l, d);
    }
    let n = l.pages.len();
    for (i, page) in l.pages.iter_mut().enumerate() {
        page.extend(frame(d, m, i + 1, n));
    }
    Plan { pages: l.pages }
}

/// Header and footer of page `i` of `n`.
fn frame(d: &ReportData, m: &dyn Measure, i: usize, n: usize) -> Vec<Op> {
    let t = |x, y, size, bold, color, align, text: String| Op::Text {
        x,
        y,
        size,
        bold,
        color,
        align,
        text,
    };
    let hash: String = d.anchor.chain_hash.chars().take(16).collect();
    let right = format!("{} · {}", d.kind.title(), scope(d));
    let _ = m;
    vec![
        t(MARGIN, 34.0, 8.0, true, MUTED, Align::Left, d.plant.clone()),
        t(
            PAGE_W - MARGIN,
            34.0,
            8.0,
            false,
            MUTED,
            Align::Right,
            right,
        ),
        Op::Line {
            points: vec![(MARGIN, 40.0), (PAGE_W - MARGIN, 40.0)],
            width: 0.5,
            color: RULE,
        },
        Op::Line {
            points: vec![(MARGIN, PAGE_H - 40.0), (PAGE_W - MARGIN, PAGE_H - 40.0)],
            width: 0.5,
            color: RULE,
        },
        t(
            MARGIN,
            PAGE_H - 28.0,
            7.0,
            false,
            MUTED,
            Align::Left,
            format!(
                "{} · log position {} · chain hash {hash}…",
                d.report_id, d.anchor.position
            ),
        ),
        t(
            PAGE_W - MARGIN,
            PAGE_H - 28.0,
            8.0,
            false,
            MUTED,
            Align::Right,
            format!("Page {i} of {n}"),
        ),
    ]
}

fn scope(d: &ReportData) -> String {
    if let Some(o) = &d.order {
        return format!("order {}", o.order_id);
    }
    d.line
        .as_ref()
        .map_or_else(|| "whole site".to_owned(), |l| format!("line {l}"))
}

pub(crate) fn title_block(l: &mut Layout<'_>, d: &ReportData) {
    l.y = TOP + 18.0;
    l.text(MARGIN, l.y, 20.0, true, INK, &d.plant);
    l.y += 20.0;
    let title = format!("{} · {}", d.kind.title(), scope(d));
    l.text(MARGIN, l.y, 13.0, false, INK, &title);
    l.y += 16.0;
    let period = format!("{} – {} ({})", l.local(d.from), l.local(d.to), d.time_zone);
    l.text(MARGIN, l.y, 10.0, false, MUTED, &period);
    l.y += 14.0;
    let anchor = format!(
        "Figures as of log position {}, recorded by {} UTC",
        d.anchor.position,
        d.anchor.as_of.format("%Y-%m-%d %H:%M:%S%.6f")
    );
    l.text(MARGIN, l.y, 8.0, false, MUTED, &anchor);
    l.y += 11.0;
    let hash = format!("Chain hash {}", d.anchor.chain_hash);
    l.text(MARGIN, l.y, 7.0, false, MUTED, &hash);
    l.y += 6.0;
}

fn summary(l: &mut Layout<'_>, d: &ReportData) {
    l.heading("Summary");
    let t = &d.total;
    let tiles = [
        ("OEE", percent(t.oee)),
        ("Availability", percent(t.availability)),
        ("Performance", percent(t.performance)),
        ("Quality", percent(t.quality)),
    ];
    let w = (CONTENT_W - 3.0 * 8.0) / 4.0;
    for (i, (label, value)) in tiles.iter().enumerate() {
        let x = MARGIN + i as f32 * (w + 8.0);
        l.rect(x, l.y, w, 46.0, BAND);
        l.text(x + 8.0, l.y + 14.0, 8.0, false, MUTED, label);
        l.text(x + 8.0, l.y + 36.0, 18.0, true, INK, value);
    }
    l.y += 60.0;
    let facts = [
        ("Good", t.good_count.to_string()),
        ("Scrap", t.scrap_count.to_string()),
        ("Yield", percent(t.production_yield)),
        ("Run", hms(t.run_time_s)),
        ("Down", hms(t.downtime_s - t.unknown_time_s)),
        ("Planned stops", hms(t.planned_stop_time_s)),
        ("Unknown", hms(t.unknown_time_s)),
    ];
    let w = CONTENT_W / facts.len() as f32;
    for (i, (label, value)) in facts.iter().enumerate() {
        let x = MARGIN + i as f32 * w;
        l.text(x, l.y, 7.5, false, MUTED, label);
        l.text(x, l.y + 13.0, 10.5, true, INK, value);
    }
    l.y += 18.0;
}

fn trend(l: &mut Layout<'_>, d: &ReportData) {
    let Some(tr) = &d.trend else { return };
    l.heading("Against the previous period");
    let pts =
        |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{:+.1} pts", v * 100.0));
    let line = format!(
        "{} – {}: OEE {} ({}), availability {}, performance {}, quality {}, good {:+}, scrap {:+}",
        l.local(tr.previous_from),
        l.local(tr.previous_to),
        percent(tr.previous.oee),
        pts(tr.oee_change),
        pts(tr.availability_change),
        pts(tr.performance_change),
        pts(tr.quality_change),
        tr.good_change,
        tr.scrap_change
    );
    let line = l.fit(&line, 8.5, false, CONTENT_W);
    l.text(MARGIN, l.y, 8.5, false, INK, &line);
    l.y += 6.0;
}

fn oee_chart(l: &mut Layout<'_>, d: &ReportData) {
    l.heading("OEE by machine");
    let label_w = 90.0;
    let value_w = 150.0;
    let bar_w = CONTENT_W - label_w - value_w;
    let scale = d
        .machines
        .iter()
        .filter_map(|m| m.kpi.oee)
        .fold(1.0_f64, f64::max) as f32;
    if d.machines.is_empty() {
        l.text(MARGIN, l.y, 9.0, false, MUTED, "No machines in scope.");
        l.y += 8.0;
    }
    for m in &d.machines {
        l.need(13.0);
        let y = l.y;
        let name = l.fit(&m.machine_id, 8.0, false, label_w - 6.0);
        l.text(MARGIN, y + 7.0, 8.0, false, INK, &name);
        l.rect(MARGIN + label_w, y, bar_w, 8.0, BAND);
        let oee = m.kpi.oee.unwrap_or(0.0) as f32;
        l.rect(MARGIN + label_w, y, bar_w * oee / scale, 8.0, ACCENT);
        let k = &m.kpi;
        let txt = format!(
            "{}  A {} P {} Q {}",
            percent(k.oee),
            percent(k.availability),
            percent(k.performance),
            percent(k.quality)
        );
        let txt = l.fit(&txt, 7.0, false, value_w - 6.0);
        l.text(
            MARGIN + label_w + bar_w + 6.0,
            y + 7.0,
            7.0,
            false,
            INK,
            &txt,
        );
        l.y += 12.0;
    }
}

fn pareto_chart(l: &mut Layout<'_>, d: &ReportData) {
    l.heading("Downtime Pareto by reason (unplanned stop time)");
    let bars: Vec<_> = d.pareto_by_reason.iter().take(12).collect();
    if bars.is_empty() {
        l.text(MARGIN, l.y, 9.0, false, MUTED, "No unplanned stops.");
        l.y += 8.0;
        return;
    }
    let h = 120.0;
    l.need(h + 50.0);
    let (x0, y0) = (MARGIN + 30.0, l.y);
    let w = CONTENT_W - 60.0;
    let max = bars.iter().map(|b| b.duration_s).fold(0.0, f64::max) as f32;
    let slot = w / bars.len() as f32;
    // Axis and grid: 0, 50 and 100 % of the largest bar.
    for f in [0.0, 0.5, 1.0] {
        let y = y0 + h - h * f;
        l.line(vec![(x0, y), (x0 + w, y)], 0.3, RULE);
        l.text_aligned(
            x0 - 4.0,
            y + 3.0,
            6.5,
            false,
            MUTED,
            Align::Right,
            &hms(f64::from(max * f)),
        );
    }
    let mut cumulative = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        let x = x0 + i as f32 * slot;
        let bh = if max > 0.0 {
            h * b.duration_s as f32 / max
        } else {
            0.0
        };
        l.rect(x + slot * 0.15, y0 + h - bh, slot * 0.7, bh, DOWN);
        let label = l.fit(&b.key, 6.0, false, slot - 2.0);
        l.text_aligned(
            x + slot / 2.0,
            y0 + h + 9.0,
            6.0,
            false,
            INK,
            Align::Center,
            &label,
        );
        l.text_aligned(
            x + slot / 2.0,
            y0 + h + 17.0,
            6.0,
            false,
            MUTED,
            Align::Center,
            &format!("{} ×{}", hms(b.duration_s), b.stops),
        );
        let c = b.cumulative_share.unwrap_or(0.0) as f32;
        cumulative.push((x + slot / 2.0, y0 + h - h * c));
    }
    // The cumulative share on the right-hand scale (0–100 %).
    l.line(cumulative.clone(), 1.2, INK);
    for (x, y) in cumulative {
        l.rect(x - 1.6, y - 1.6, 3.2, 3.2, INK);
    }
    for f in [0.0, 0.5, 1.0] {
        let y = y0 + h - h * f;
        l.text(
            x0 + w + 4.0,
            y + 3.0,
            6.5,
            false,
            MUTED,
            &format!("{:.0} %", f * 100.0),
        );
    }
    l.y = y0 + h + 34.0;
    if !d.pareto_by_loss.is_empty() {
        let parts: Vec<String> = d
            .pareto_by_loss
            .iter()
            .map(|p| format!("{} {} ({})", p.key, hms(p.duration_s), percent(p.share)))
            .collect();
        let text = l.fit(
            &format!("By loss: {}", parts.join(" · ")),
            8.0,
            false,
            CONTENT_W,
        );
        l.text(MARGIN, l.y, 8.0, false, INK, &text);
        l.y += 4.0;
    }
}

fn state_color(s: &Segment) -> Rgb {
    if s.planned {
        return PLANNED;
    }
    match s.state.as_str() {
        "running" => RUNNING,
        "idle" => IDLE,
        "down" => DOWN,
        _ => UNKNOWN,
    }
}

fn timeline_chart(l: &mut Layout<'_>, d: &ReportData) {
    l.heading("State timeline");
    let label_w = 90.0;
    let w = CONTENT_W - label_w;
    let (t0, t1) = (d.from.timestamp_micros(), d.to.timestamp_micros());
    let span = (t1 - t0).max(1) as f32;
    let xat = |t: DateTime<Utc>| MARGIN + label_w + w * (t.timestamp_micros() - t0) as f32 / span;
    // Legend.
    let mut x = MARGIN + label_w;
    for (name, c) in [
        ("running", RUNNING),
        ("idle", IDLE),
        ("down", DOWN),
        ("planned stop", PLANNED),
        ("unknown", UNKNOWN),
    ] {
        l.rect(x, l.y - 6.0, 8.0, 8.0, c);
        l.text(x + 11.0, l.y + 1.0, 7.0, false, INK, name);
        x += 16.0 + l.m.width(name, 7.0, false);
    }
    l.y += 10.0;
    for t in &d.timelines {
        l.need(13.0);
        let y = l.y;
        let name = l.fit(&t.machine_id, 8.0, false, label_w - 6.0);
        l.text(MARGIN, y + 7.0, 8.0, false, INK, &name);
        l.rect(MARGIN + label_w, y, w, 8.0, UNKNOWN);
        for s in &t.segments {
            let (a, b) = (xat(s.start), xat(s.end));
            l.rect(a, y, (b - a).max(0.3), 8.0, state_color(s));
        }
        l.y += 12.0;
    }
    // Time axis: eight ticks in the plant's time zone.
    l.need(14.0);
    let y = l.y;
    for i in 0..=8 {
        let t = d.from + (d.to - d.from) * i / 8;
        let x = xat(t);
        l.line(vec![(x, y - 2.0), (x, y + 1.0)], 0.4, MUTED);
        let fmt = if d.kind == ReportKind::Week {
            "%a %d %H:%M"
        } else {
            "%H:%M"
        };
        let label = t.with_timezone(&l.tz).format(fmt).to_string();
        l.text_aligned(x, y + 9.0, 6.0, false, MUTED, Align::Center, &label);
    }
    l.y += 10.0;
}

/// A table: headers, column widths (fractions of the content width), rows; the
/// header repeats on every new page.
pub(crate) fn table(l: &mut Layout<'_>, heads: &[&str], widths: &[f32], rows: &[Vec<String>]) {
    let cols: Vec<(f32, f32)> = {
        let mut x = MARGIN;
        widths
            .iter()
            .map(|f| {
                let w = f * CONTENT_W;
                let c = (x, w);
                x += w;
                c
            })
            .collect()
    };
    let head = |l: &mut Layout<'_>| {
        let y = l.y;
        for (i, h) in heads.iter().enumerate() {
            let (x, w) = cols[i];
            let (ax, al) = if i == 0 {
                (x, Align::Left)
            } else {
                (x + w - 3.0, Align::Right)
            };
            l.text_aligned(ax, y, 7.5, true, MUTED, al, h);
        }
        l.line(
            vec![(MARGIN, y + 4.0), (PAGE_W - MARGIN, y + 4.0)],
            0.5,
            RULE,
        );
        l.y += 14.0;
    };
    l.need(28.0);
    head(l);
    for (r, row) in rows.iter().enumerate() {
        if l.y + 12.0 > BOTTOM {
            l.need(BOTTOM);
            head(l);
        }
        let y = l.y;
        if r % 2 == 1 {
            l.rect(MARGIN, y - 8.5, CONTENT_W, 12.0, BAND);
        }
        for (i, cell) in row.iter().enumerate() {
            let (x, w) = cols[i];
            let text = l.fit(cell, 7.5, false, w - 5.0);
            let (ax, al) = if i == 0 {
                (x, Align::Left)
            } else {
                (x + w - 3.0, Align::Right)
            };
            l.text_aligned(ax, y, 7.5, false, INK, al, &text);
        }
        l.y += 12.0;
    }
}

pub(crate) fn machine_table(l: &mut Layout<'_>, d: &ReportData) {
    l.heading("Machines");
    let rows: Vec<Vec<String>> = d
        .machines
        .iter()
        .map(|m| {
            let k = &m.kpi;
            vec![
                m.machine_id.clone(),
                percent(k.oee),
                percent(k.availability),
                percent(k.performance),
                percent(k.quality),
                k.good_count.to_string(),
                k.scrap_count.to_string(),
                hms(k.run_time_s),
                hms(k.downtime_s - k.unknown_time_s),
                hms(k.planned_stop_time_s),
                hms(k.unknown_time_s),
                m.stops.to_string(),
            ]
        })
        .collect();
    table(
        l,
        &[
            "Machine", "OEE", "A", "P", "Q", "Good", "Scrap", "Run", "Down", "Planned", "Unknown",
            "Stops",
        ],
        &[
            0.14, 0.075, 0.075, 0.075, 0.075, 0.08, 0.07, 0.08, 0.08, 0.09, 0.09, 0.07,
        ],
        &rows,
    );
}

fn stops_table(l: &mut Layout<'_>, d: &ReportData) {
    l.heading("Longest stops");
    if d.longest_stops.is_empty() {
        l.text(MARGIN, l.y, 9.0, false, MUTED, "No stops.");
        l.y += 8.0;
        return;
    }
    let rows: Vec<Vec<String>> = d
        .longest_stops
        .iter()
        .map(|s| {
            vec![
                s.machine_id.clone(),
                if s.planned {
                    format!("{} (planned)", s.state)
                } else {
                    s.state.clone()
                },
                l.local(s.start),
                hms(s.duration_s),
                s.reason_code.clone().unwrap_or_else(|| "–".into()),
                s.loss.clone().unwrap_or_else(|| "–".into()),
            ]
        })
        .collect();
    table(
        l,
        &["Machine", "State", "Start", "Duration", "Reason", "Loss"],
        &[0.18, 0.14, 0.18, 0.12, 0.22, 0.16],
        &rows,
    );
}

fn series_table(l: &mut Layout<'_>, d: &ReportData) {
    let what = if d.kind == ReportKind::Week {
        "By day"
    } else {
        "By shift"
    };
    l.heading(what);
    let rows: Vec<Vec<String>> = d
        .series
        .iter()
        .map(|k| {
            vec![
                match &k.shift {
                    Some(s) => format!("{} {s}", l.local(k.from)),
                    None => l.local(k.from),
                },
                percent(k.oee),
                percent(k.availability),
                percent(k.performance),
                percent(k.quality),
                k.good_count.to_string(),
                k.scrap_count.to_string(),
                hms(k.run_time_s),
            ]
        })
        .collect();
    table(
        l,
        &["Period", "OEE", "A", "P", "Q", "Good", "Scrap", "Run"],
        &[0.26, 0.1, 0.1, 0.1, 0.1, 0.12, 0.11, 0.11],
        &rows,
    );
}
