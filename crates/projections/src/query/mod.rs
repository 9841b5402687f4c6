//! What the API reads: async functions over the read models, each taking a
//! `&PgPool` (and filters) and returning `Serialize` views whose field names are
//! the CONTRACT's.
//!
//! # Layout
//! - [`machines`]: the machine status board (`list_machines`, `get_machine`).
//! - [`orders`]: production orders with progress, yield and scrap rate.
//! - [`maintenance`]: maintenance tasks, with `overdue` derived from the clock.
//! - [`inventory`]: stock levels and the movement ledger.
//! - [`lots`]: lots, a lot's ledger, backward and forward traces (genealogy, ADR 0057).
//! - [`kpi`]: ISO 22400-2 KPIs for any window, `as_of`, hour/shift/day series,
//!   roll-ups (ADR 0005).
//! - [`downtime`]: state intervals, downtime Pareto (as recorded and as
//!   classified), micro-stops, MTBF/MTTR.
//! - [`hierarchy`]: the equipment hierarchy (ADR 0062): the tree, machine paths at a
//!   floor time as of a recorded time, and the [`Scope`] filter of the KPI queries.
//! - [`calendar`]: the plant time zone and the shift calendars per line.
//! - [`people`]: operators and their labour (time on orders, parts while clocked on).
//! - [`scrap`]: scrap by scrap reason over a window (ADR 0050).
//! - [`spc`]: SPC characteristics and their run-rule signals (ADR 0056).
//! - [`stops`]: unclassified stops across the plant.
//! - [`parked`]: poison events set aside by the projectors, and projection status.
//!
//! Decimal quantities are JSON numbers; times are RFC 3339 (UTC). Ratios whose
//! denominator is zero are `null`.

pub mod calendar;
pub mod catalogue;
pub mod changeovers;
pub mod downtime;
pub mod gauges;
pub mod hierarchy;
pub mod inventory;
pub mod kpi;
pub mod lots;
pub mod machines;
pub mod maintenance;
pub mod orders;
pub mod parked;
pub mod people;
pub mod scrap;
pub mod shift_plan;
pub mod spc;
pub mod stops;

pub use calendar::{
    list_shifts, plant_time_zone, replace_shifts, set_plant_time_zone, shifts_from_now, Calendar,
    ShiftDefinition, ShiftWindow,
};
pub use catalogue::{iso_kpis, CatalogueQuery, IsoKpis};
pub use changeovers::{
    changeover_report, Changeover, ChangeoverQuery, ChangeoverReport, ChangeoverStats, Trigger,
};
pub use downtime::{
    downtime_report, state_intervals, DowntimeQuery, DowntimeReport, IntervalQuery, ParetoEntry,
    StateInterval,
};
pub use gauges::{machine_gauges, MachineGauges};
pub use hierarchy::{hierarchy_tree, HierarchyView, MachinePath, Scope};
pub use inventory::{
    inventory_levels, inventory_movements, InventoryFilter, InventoryLevel, MovementFilter,
    MovementView,
};
pub use kpi::{kpi_metrics, roll_up, Granularity, KpiQuery, KpiRow};
pub use machines::{get_machine, list_machines, MachineFilter, MachineView};
pub use maintenance::{get_task, list_tasks, TaskFilter, TaskView};
pub use orders::{get_order, list_orders, OrderFilter, OrderView};
pub use parked::{parked_events, projection_status, ParkedEvent, ParkedFilter, ProjectionStatus};
pub use people::{labour, list_operators, LabourOf, LabourReport, OperatorRow};
pub use scrap::{scrap_by_reason, ScrapByReason, ScrapQuery, ScrapReport};
pub use stops::{unclassified_stops, StopFilter, UnclassifiedStop};

/// `num / den`, or `None` when the denominator is zero.
/// A value from the database that is out of the range it must be in: an error,
/// never silently a zero.
pub(crate) fn out_of_range(what: &str, value: impl std::fmt::Display) -> crate::error::QueryError {
    crate::error::QueryError::Database(sqlx::Error::Decode(
        format!("{what} {value} from the database is out of range").into(),
    ))
}

pub(crate) fn ratio(num: f64, den: f64) -> Option<f64> {
    (den != 0.0).then(|| num / den)
}
