//! Downtime reason codes: a small tree of codes grouped by category and OEE loss.
//!
//! A code is `group.leaf` (`breakdown.mechanical`), plus the single code [`UNCLASSIFIED`]. Each
//! [`ReasonDefinition`] says whether the stop is planned (planned stops leave the planned
//! production time, ISO 22400) and, for unplanned ones, which of the six big losses it is.
//!
//! The machine aggregate resolves the free-text `reason` of a state change against the
//! catalogue in force: a known code is recorded as such; anything else is recorded as
//! [`UNCLASSIFIED`] with the raw text kept, to be classified later (`ClassifyStop`). The
//! catalogue serializes, so the API can list it (`tree()` gives it grouped).
//!
//! The catalogue in force is [`ReasonCatalogue::builtin`] as the plant has amended it: codes
//! added, renamed, re-categorised or retired by supervisors, as events of the
//! [`crate::reason_codes::PlantReasons`] aggregate (ADR 0053). Aggregates have no services, so
//! the writer hands the machine the plant's catalogue as an outside fact
//! ([`crate::Machine::decide_with`]).

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::values::ReasonCode;

/// The code of a stop whose reason is not (yet) known.
pub const UNCLASSIFIED: &str = "unclassified";
/// The code the ingest uses when a machine falls silent.
pub const NO_SIGNAL: &str = "small_stop.no_signal";

/// Planned stops are excluded from planned production time; unplanned ones are downtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCategory {
    Planned,
    Unplanned,
}

/// The six big losses of OEE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Availability loss: equipment failure.
    Breakdown,
    /// Availability loss: changeovers, setups and adjustments.
    SetupAdjustment,
    /// Performance loss: short stops, jams, idling.
    SmallStop,
    /// Performance loss: running slower than the ideal cycle time.
    ReducedSpeed,
    /// Quality loss: rejects while starting up.
    StartupReject,
    /// Quality loss: rejects in steady production.
    ProductionReject,
}

/// One reason code of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonDefinition {
    pub code: ReasonCode,
    /// A display name for dashboards.
    pub name: String,
    pub category: ReasonCategory,
    /// The big loss it counts against; `None` for planned stops and for `unclassified`.
    pub loss: Option<Loss>,
}

impl ReasonDefinition {
    /// Whether a stop with this reason is planned.
    pub fn planned(&self) -> bool {
        self.category == ReasonCategory::Planned
    }

    /// The group of the code: the part before the first dot (`breakdown` for
    /// `breakdown.mechanical`), or the whole code.
    pub fn group(&self) -> &str {
        let code = self.code.as_str();
        code.split_once('.').map_or(code, |(group, _)| group)
    }
}

/// A group of codes sharing a prefix, as listed by [`ReasonCatalogue::tree`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonGroup {
    pub group: String,
    pub reasons: Vec<ReasonDefinition>,
}

/// The set of known reason codes, sorted by code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCatalogue {
    reasons: Vec<ReasonDefinition>,
}

static BUILTIN: LazyLock<ReasonCatalogue> = LazyLock::new(ReasonCatalogue::default_catalogue);

#[rustfmt::skip]
const DEFAULT_REASONS: &[(&str, &str, ReasonCategory, Option<Loss>)] = {
    use Loss::*;
    use ReasonCategory::*;
    &[
        ("planned.break", "Break", Planned, None),
        ("planned.maintenance", "Planned maintenance", Planned, None),
        ("planned.end_of_shift", "End of shift", Planned, None),
        ("planned.no_demand", "No production scheduled", Planned, None),
        ("planned.meeting", "Meeting or training", Planned, None),
        ("breakdown.mechanical", "Mechanical failure", Unplanned, Some(Breakdown)),
        ("breakdown.electrical", "Electrical failure", Unplanned, Some(Breakdown)),
        ("breakdown.tooling", "Tool failure", Unplanned, Some(Breakdown)),
        ("setup.changeover", "Changeover", Unplanned, Some(SetupAdjustment)),
        ("setup.adjustment", "Adjustment", Unplanned, Some(SetupAdjustment)),
        ("small_stop.jam", "Jam", Unplanned, Some(SmallStop)),
        ("small_stop.no_signal", "No signal from machine", Unplanned, Some(SmallStop)),
        ("small_stop.blocked", "Blocked by downstream", Unplanned, Some(SmallStop)),
        ("small_stop.starved", "Starved of material", Unplanned, Some(SmallStop)),
        ("reduced_speed.slow_cycle", "Slow cycles", Unplanned, Some(ReducedSpeed)),
        ("reduced_speed.operator", "Reduced speed by operator", Unplanned, Some(ReducedSpeed)),
        ("quality.startup_reject", "Start-up rejects", Unplanned, Some(StartupReject)),
        ("quality.production_reject", "Production rejects", Unplanned, Some(ProductionReject)),
        (UNCLASSIFIED, "Unclassified", Unplanned, None),
    ]
};

impl ReasonCatalogue {
    /// The built-in catalogue, shared.
    pub fn builtin() -> &'static ReasonCatalogue {
        &BUILTIN
    }

    /// A catalogue of the given definitions (sorted by code; a later duplicate replaces an
    /// earlier one). It always contains [`UNCLASSIFIED`].
    pub fn new(definitions: impl IntoIterator<Item = ReasonDefinition>) -> Self {
        let mut reasons: Vec<ReasonDefinition> = Vec::new();
        for definition in definitions {
            match reasons.iter_mut().find(|r| r.code == definition.code) {
                Some(existing) => *existing = definition,
                None => reasons.push(definition),
            }
        }
        if !reasons.iter().any(|r| r.code.as_str() == UNCLASSIFIED) {
            if let Ok(code) = ReasonCode::new(UNCLASSIFIED) {
                reasons.push(ReasonDefinition {
                    code,
                    name: String::from("Unclassified"),
                    category: ReasonCategory::Unplanned,
                    loss: None,
                });
            }
        }
        reasons.sort_by(|a, b| a.code.cmp(&b.code));
        Self { reasons }
    }

    fn default_catalogue() -> Self {
        Self::new(
            DEFAULT_REASONS
                .iter()
                .filter_map(|&(code, name, category, loss)| {
                    ReasonCode::new(code).ok().map(|code| ReasonDefinition {
                        code,
                        name: name.to_owned(),
                        category,
                        loss,
                    })
                }),
        )
    }

    /// The definition of `code`, matched exactly or, failing that, ignoring ASCII case.
    pub fn get(&self, code: &str) -> Option<&ReasonDefinition> {
        let code = code.trim();
        self.reasons
            .iter()
            .find(|r| r.code.as_str() == code)
            .or_else(|| {
                self.reasons
                    .iter()
                    .find(|r| r.code.as_str().eq_ignore_ascii_case(code))
            })
    }

    /// The definition of [`UNCLASSIFIED`].
    pub fn unclassified(&self) -> Option<&ReasonDefinition> {
        self.get(UNCLASSIFIED)
    }

    /// All definitions, sorted by code.
    pub fn reasons(&self) -> &[ReasonDefinition] {
        &self.reasons
    }

    /// The definitions grouped by the prefix of their code, groups sorted by name.
    pub fn tree(&self) -> Vec<ReasonGroup> {
        let mut groups: Vec<ReasonGroup> = Vec::new();
        for reason in &self.reasons {
            match groups.iter_mut().find(|g| g.group == reason.group()) {
                Some(group) => group.reasons.push(reason.clone()),
                None => groups.push(ReasonGroup {
                    group: reason.group().to_owned(),
                    reasons: vec![reason.clone()],
                }),
            }
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups
    }
}

impl Default for ReasonCatalogue {
    /// The built-in catalogue.
    fn default() -> Self {
        Self::builtin().clone()
    }
}

/// The group every scrap reason code belongs to.
pub const SCRAP_GROUP: &str = "scrap";

/// One scrap reason: why parts reported as scrap were rejected (ADR 0050).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrapReasonDefinition {
    /// `scrap.leaf`, e.g. `scrap.dimensional`.
    pub code: ReasonCode,
    /// A display name for the floor app and dashboards.
    pub name: String,
    /// The OEE quality loss it counts against.
    pub loss: Loss,
}

#[rustfmt::skip]
const SCRAP_REASONS: &[(&str, &str, Loss)] = {
    use Loss::*;
    &[
        ("scrap.assembly", "Assembly error", ProductionReject),
        ("scrap.damage", "Handling damage", ProductionReject),
        ("scrap.dimensional", "Out of tolerance", ProductionReject),
        ("scrap.material", "Material defect", ProductionReject),
        ("scrap.other", "Other", ProductionReject),
        ("scrap.startup", "Start-up reject", StartupReject),
        ("scrap.surface", "Surface defect", ProductionReject),
    ]
};

static SCRAP_CATALOGUE: LazyLock<Vec<ScrapReasonDefinition>> = LazyLock::new(|| {
    SCRAP_REASONS
        .iter()
        .filter_map(|&(code, name, loss)| {
            ReasonCode::new(code)
                .ok()
                .map(|code| ScrapReasonDefinition {
                    code,
                    name: name.to_owned(),
                    loss,
                })
        })
        .collect()
});

/// The built-in scrap reasons, sorted by code: the bounded set a parts report's
/// `scrap_reason` is checked against.
pub fn scrap_reasons() -> &'static [ScrapReasonDefinition] {
    &SCRAP_CATALOGUE
}

/// The scrap reason `code`, matched exactly or, failing that, ignoring ASCII case.
pub fn scrap_reason(code: &str) -> Option<&'static ScrapReasonDefinition> {
    let code = code.trim();
    let reasons = scrap_reasons();
    reasons
        .iter()
        .find(|r| r.code.as_str() == code)
        .or_else(|| {
            reasons
                .iter()
                .find(|r| r.code.as_str().eq_ignore_ascii_case(code))
        })
}
