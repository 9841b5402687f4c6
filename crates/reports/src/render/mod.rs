//! The renderers: pure, deterministic functions of a [`ReportData`] to bytes.
//! Nothing here reads the clock or a random source; every time in the output
//! comes from the data (the PDF's creation date is the anchor's `as_of`), maps
//! are never iterated, so the same data gives the same bytes.
//!
//! - [`json`]: the data itself, pretty-printed.
//! - [`csv`]: a zip of one CSV file per table (fixed file times and modes).
//! - [`pdf`]: an A4 document with vector charts and an embedded font.

pub mod csv;
mod extra;
pub mod layout;
pub mod pdf;

use crate::error::ReportError;
use crate::model::{Format, ReportData};

/// The report as JSON: the same data the PDF shows.
pub fn json(data: &ReportData) -> Result<Vec<u8>, ReportError> {
    let mut out =
        serde_json::to_vec_pretty(data).map_err(|e| ReportError::Render(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// The report in `format`.
pub fn render(data: &ReportData, format: Format) -> Result<Vec<u8>, ReportError> {
    match format {
        Format::Json => json(data),
        Format::Csv => csv::zip(data),
        Format::Pdf => pdf::pdf(data),
    }
}

/// A ratio as a percentage with one decimal, or an en dash when there is none.
pub fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{:.1} %", v * 100.0))
}

/// Seconds as `h:mm:ss`.
pub fn hms(s: f64) -> String {
    let total = s.max(0.0).round() as i64;
    format!("{}:{:02}:{:02}", total / 3600, total / 60 % 60, total % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_percentages() {
        assert_eq!(hms(3725.4), "1:02:05");
        assert_eq!(hms(0.0), "0:00:00");
        assert_eq!(percent(Some(0.8567)), "85.7 %");
        assert_eq!(percent(None), "–");
    }
}
