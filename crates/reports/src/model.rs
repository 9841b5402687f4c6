//! What a report is: the request, the log position it is anchored at, and the
//! figures gathered there. Every collection is a `Vec` in a fixed order (machines
//! by id, Pareto bars largest first, stops longest first), so a renderer never
//! depends on a hash map's order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopfloor_projections::query::{KpiRow, ParetoEntry};

/// The period a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    Shift,
    Day,
    Week,
    /// One production order's whole life (ADR 0051).
    Order,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shift => "shift",
            Self::Day => "day",
            Self::Week => "week",
            Self::Order => "order",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Shift, Self::Day, Self::Week, Self::Order]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The title printed on the report.
    pub fn title(self) -> &'static str {
        match self {
            Self::Shift => "Shift report",
            Self::Day => "Day report",
            Self::Week => "Week report",
            Self::Order => "Order report",
        }
    }
}

/// The file a report is rendered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pdf,
    Csv,
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pdf, Self::Csv, Self::Json]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The media type of the rendered file (CSV: a zip of one CSV per table).
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Csv => "application/zip",
            Self::Json => "application/json",
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Csv => "zip",
            Self::Json => "json",
        }
    }
}

/// What to report on: a period of one line, or of the whole site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRequest {
    pub kind: ReportKind,
    /// One line; the whole site when absent.
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub format: Format,
    /// The order of an order report (its `from` and `to` are the order's life,
    /// found when the report is gathered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// Where in the log a report's figures are taken: every event up to `position`
/// and none after it. `as_of` is the recorded time of the event at `position`;
/// the read models' facts are filtered on it (the log's recorded times never
/// decrease, and the anchor is chosen so that no later event shares it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub position: i64,
    /// Hex of the chain hash of the event at `position` (ADR 0013).
    pub chain_hash: String,
    pub as_of: DateTime<Utc>,
}

/// One machine's row: its KPIs (exactly `/api/v1/kpi-metrics`), its downtime
/// split and failure figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineFigures {
    pub machine_id: String,
    pub line: Option<String>,
    pub kpi: KpiRow,
    /// Unplanned stops overlapping the window.
    pub stops: u64,
    pub failures: u64,
    pub mtbf_s: Option<f64>,
    pub mttr_s: Option<f64>,
    pub micro_stops: u64,
}

/// One stop of a machine, with its reason as finally classified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stop {
    pub machine_id: String,
    pub state: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    /// Seconds inside the window.
    pub duration_s: f64,
    pub planned: bool,
    pub reason_code: Option<String>,
    pub loss: Option<String>,
}

/// A piece of a machine's state timeline, clipped to the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub state: String,
    pub planned: bool,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The state timeline of one machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub machine_id: String,
    pub segments: Vec<Segment>,
}

/// The change of a figure against the previous period of the same length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub previous_from: DateTime<Utc>,
    pub previous_to: DateTime<Utc>,
    /// The whole scope over the previous period (`/api/v1/kpi-metrics?rollup=true`).
    pub previous: KpiRow,
    pub oee_change: Option<f64>,
    pub availability_change: Option<f64>,
    pub performance_change: Option<f64>,
    pub quality_change: Option<f64>,
    pub good_change: i64,
    pub scrap_change: i64,
}

/// Everything a report shows, gathered at one [`Anchor`]. The renderers are pure
/// functions of this value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportData {
    pub report_id: String,
    pub plant: String,
    pub time_zone: String,
    pub kind: ReportKind,
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub anchor: Anchor,
    /// The whole scope (`/api/v1/kpi-metrics?rollup=true`).
    pub total: KpiRow,
    pub machines: Vec<MachineFigures>,
    /// Unplanned stop time of the scope by reason code, as finally classified.
    pub pareto_by_reason: Vec<ParetoEntry>,
    /// ... and by loss category.
    pub pareto_by_loss: Vec<ParetoEntry>,
    pub longest_stops: Vec<Stop>,
    pub timelines: Vec<Timeline>,
    /// Per shift (or day) of the window, the whole scope: day and week reports.
    pub series: Vec<KpiRow>,
    /// Against the previous period: day and week reports.
    pub trend: Option<Trend>,
    /// Orders, inspections, scrap by reason, maintenance and alerts of the period
    /// (layout 2, ADR 0051); absent from reports of layout 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sections: Option<crate::sections::Sections>,
    /// The order of an order report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<crate::order::OrderLife>,
    /// A corrected version: the report it supersedes and what changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrections: Option<crate::versions::Corrections>,
}
