//! The PDF rendering with `krilla` (ADR 0041): the [`layout`](super::layout)
//! plan drawn as vector paths and text in DejaVu Sans, embedded (subset) from
//! the binary. The document's metadata is fixed by the data: its creation date
//! is the anchor's `as_of`, its document id the report id, so the bytes depend
//! on the data only.

use std::sync::OnceLock;

use chrono::{Datelike, Timelike};
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::{DateTime, Metadata};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use krilla::Document;
use rustybuzz::ttf_parser::Face;

use super::layout::{plan, Align, Measure, Op, Rgb, PAGE_H, PAGE_W};
use crate::error::ReportError;
use crate::model::ReportData;

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/LICENSE-DejaVu.txt).
static REGULAR: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans-Bold.ttf");

/// Text widths from the embedded fonts' advances.
#[derive(Debug)]
pub struct FontMetrics {
    regular: Face<'static>,
    bold: Face<'static>,
}

impl FontMetrics {
    /// The metrics of the embedded fonts (parsed once).
    pub fn get() -> &'static FontMetrics {
        static M: OnceLock<FontMetrics> = OnceLock::new();
        M.get_or_init(|| FontMetrics {
            regular: Face::parse(REGULAR, 0).expect("the embedded regular font parses"),
            bold: Face::parse(BOLD, 0).expect("the embedded bold font parses"),
        })
    }
}

impl Measure for FontMetrics {
    fn width(&self, text: &str, size: f32, bold: bool) -> f32 {
        let face = if bold { &self.bold } else { &self.regular };
        let units: u32 = text
            .chars()
            .map(|c| {
                face.glyph_index(c)
                    .and_then(|g| face.glyph_hor_advance(g))
                    .map_or(0, u32::from)
            })
            .sum();
        units as f32 * size / f32::from(face.units_per_em())
    }
}

fn fonts() -> (Font, Font) {
    static F: OnceLock<(Font, Font)> = OnceLock::new();
    F.get_or_init(|| {
        (
            Font::new(REGULAR.into(), 0).expect("the embedded regular font loads"),
            Font::new(BOLD.into(), 0).expect("the embedded bold font loads"),
        )
    })
    .clone()
}

fn color(c: Rgb) -> krilla::paint::Paint {
    rgb::Color::new(c.0, c.1, c.2).into()
}

fn fill(c: Rgb) -> Fill {
    Fill {
        paint: color(c),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }
}

/// The report as a PDF.
pub fn pdf(data: &ReportData) -> Result<Vec<u8>, ReportError> {
    let metrics = FontMetrics::get();
    let plan = plan(data, metrics);
    let (regular, bold) = fonts();
    let mut doc = Document::new();
    let t = data.anchor.as_of;
    doc.set_metadata(
        Metadata::new()
            .title(format!("{} — {}", data.plant, data.kind.title()))
            .creator("Shopfloor".to_owned())
            .producer("Shopfloor reports (krilla)".to_owned())
            .document_id(data.report_id.clone())
            .creation_date(
                DateTime::new(u16::try_from(t.year()).unwrap_or(1970))
                    .month(t.month() as u8)
                    .day(t.day() as u8)
                    .hour(t.hour() as u8)
                    .minute(t.minute() as u8)
                    .second(t.second() as u8)
                    .utc_offset_hour(0)
                    .utc_offset_minute(0),
            ),
    );
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
        .ok_or_else(|| ReportError::Render("the A4 page size is invalid".into()))?;
    for ops in &plan.pages {
        let mut page = doc.start_page_with(settings.clone());
        let mut surface = page.surface();
        for op in ops {
            draw(&mut surface, op, metrics, &regular, &bold);
        }
        surface.finish();
        page.finish();
    }
    doc.finish()
        .map_err(|e| ReportError::Render(format!("{e:?}")))
}

fn draw(s: &mut Surface<'_>, op: &Op, m: &FontMetrics, regular: &Font, bold: &Font) {
    match op {
        Op::Text {
            x,
            y,
            size,
            bold: b,
            color: c,
            align,
            text,
        } => {
            if text.is_empty() {
                return;
            }
            let w = m.width(text, *size, *b);
            let x = match align {
                Align::Left => *x,
                Align::Right => x - w,
                Align::Center => x - w / 2.0,
            };
            s.set_stroke(None);
            s.set_fill(Some(fill(*c)));
            let font = if *b { bold } else { regular };
            s.draw_text(
                Point::from_xy(x, *y),
                font.clone(),
                *size,
                text,
                false,
                TextDirection::LeftToRight,
            );
        }
        Op::Rect {
            x,
            y,
            w,
            h,
            fill: c,
        } => {
            let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) else {
                return;
            };
            let mut pb = PathBuilder::new();
            pb.push_rect(rect);
            if let Some(path) = pb.finish() {
                s.set_stroke(None);
                s.set_fill(Some(fill(*c)));
                s.draw_path(&path);
            }
        }
        Op::Line {
            points,
            width,
            color: c,
        } => {
            let mut pb = PathBuilder::new();
            for (i, (x, y)) in points.iter().enumerate() {
                if i == 0 {
                    pb.move_to(*x, *y);
                } else {
                    pb.line_to(*x, *y);
                }
            }
            if let Some(path) = pb.finish() {
                s.set_fill(None);
                s.set_stroke(Some(Stroke {
                    paint: color(*c),
                    width: *width,
                    ..Stroke::default()
                }));
                s.draw_path(&path);
            }
        }
    }
}
