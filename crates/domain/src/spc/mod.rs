//! Statistical process control (ADR 0056): characteristics under control charts, their
//! frozen and versioned control limits, and the run-rule signals of new points.
//!
//! Stream type `spc_characteristic`, one stream per [`CharacteristicId`]. A characteristic
//! is defined with its chart ([`ChartKind`]: X̄-R, X̄-S, I-MR, p, np, c, u), its subgroup
//! size, its specification limits and the run rules it is judged by. Samples reach it from
//! inspections (the measurements an inspection names it in, or the sample size and defects of
//! every inspection of a product, by the process manager: [`on_inspection_recorded`]) or
//! straight from the API. Each sample is one point: the aggregate computes what it plots and,
//! once limits are frozen, judges it by the run rules *in its decision*, so a signal is an
//! event recorded with the point that raised it, by the one writer, exactly once.
//!
//! Limits are frozen by a command, from a baseline of the characteristic's own samples (a
//! range of sample numbers among the last [`RETAINED`]) or from known parameters; each freeze
//! is a new version, and every later point records the version it was judged against.
//!
//! # Layout
//! - [`constants`]: the factors table (A2, D3, D4, d2, c4, A3, B3, B4) for n = 2 to 25.
//! - [`stats`]: subgroup statistics, limits from a baseline or a standard, capability.
//! - [`rules`]: the Western Electric and Nelson run rules on standardised points.
//! - this module: the aggregate ([`SpcCharacteristic`]), its commands and events, and the
//!   pure half of the inspection flow.

pub mod constants;
pub mod rules;
pub mod stats;

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

pub use rules::{Rule, RuleSet};
pub use stats::{
    capability, Band, Capability, ChartKind, ControlLimits, SampleData, SpecLimits, Standard,
    Subgroup,
};

use crate::order::OrderEvent;
use crate::process::{IssuedCommand, Target};
use crate::values::{Actor, CharacteristicId, InspectionId, MachineId, OrderId, ProductId, Text};
use crate::Decide;

/// The most recent points a characteristic keeps in its state: the baselines it can freeze
/// limits from, and what the chart shows. The run rules need at most 15.
pub const RETAINED: usize = 1_000;
/// The most recent signals a characteristic keeps in its state.
pub const RETAINED_SIGNALS: usize = 200;

/// Why an SPC command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpcError {
    #[error("the characteristic does not exist")]
    NotFound,
    #[error("characteristic {characteristic_id} already exists")]
    AlreadyExists { characteristic_id: CharacteristicId },
    #[error("a {} chart cannot have subgroups of {n}", chart.as_str())]
    SubgroupSize { chart: ChartKind, n: u32 },
    #[error("a sample of this characteristic must have size {expected}, not {got}")]
    SampleSize { expected: u64, got: u64 },
    #[error("a sample must hold at least one value, or a size above zero")]
    EmptySample,
    #[error("a sample may hold at most {max} values")]
    TooManyValues { max: usize },
    #[error("values must be finite numbers of at most 1e12 in absolute value")]
    BadValue,
    #[error("{count} defectives cannot be found among {size} parts")]
    CountExceedsSize { count: u64, size: u64 },
    #[error("a {} chart takes {}", chart.as_str(), if chart.is_variables() { "measured values" } else { "a count and a size" })]
    WrongSampleKind { chart: ChartKind },
    #[error("a baseline needs at least {min} samples")]
    BaselineTooShort { min: usize },
    #[error("the baseline {from_index}..={to_index} is not within the {samples} samples recorded")]
    BaselineRange {
        from_index: u64,
        to_index: u64,
        samples: u64,
    },
    #[error(
        "the baseline must start at sample {oldest} or later (older samples are not retained)"
    )]
    BaselineNotRetained { oldest: u64 },
    #[error("the limits would have no width: the baseline shows no variation")]
    NoVariation,
    #[error("the specification limits must satisfy LSL < USL, with the target between them")]
    SpecOrder,
    #[error("samples of a {} chart cannot come from {source_kind}", chart.as_str())]
    SourceMismatch {
        chart: ChartKind,
        source_kind: &'static str,
    },
}

/// Where a characteristic's samples come from, besides the API (which any may use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SampleSource {
    /// The measurements of inspections that name the characteristic (variables charts).
    Measurements,
    /// The sample size and defects of every inspection of orders of `product_id` (of every
    /// order when absent): attribute charts.
    Inspections {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product_id: Option<ProductId>,
    },
    /// Samples posted to the API only (a gauge, a script, a telemetry bridge).
    Manual,
}

impl SampleSource {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Measurements => "measurements",
            Self::Inspections { .. } => "inspections",
            Self::Manual => "manual",
        }
    }
}

/// Measured values of one characteristic in an inspection: one subgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub characteristic: CharacteristicId,
    pub values: Vec<f64>,
}

impl Measurement {
    /// Validates the values: 1 to [`stats::MAX_VALUES`] finite numbers.
    pub fn new(characteristic: CharacteristicId, values: Vec<f64>) -> Result<Self, SpcError> {
        if values.is_empty() {
            return Err(SpcError::EmptySample);
        }
        if values.len() > stats::MAX_VALUES {
            return Err(SpcError::TooManyValues {
                max: stats::MAX_VALUES,
            });
        }
        if values
            .iter()
            .any(|v| !v.is_finite() || v.abs() > stats::MAX_MEASURED)
        {
            return Err(SpcError::BadValue);
        }
        Ok(Self {
            characteristic,
            values,
        })
    }
}

/// Defines a characteristic and its chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefineCharacteristic {
    pub characteristic_id: CharacteristicId,
    pub name: Text,
    pub chart: ChartKind,
    /// Values per subgroup (X̄ charts: 2 to 25; I-MR and c: 1; np: the constant sample
    /// size; p and u: the nominal sample size).
    pub subgroup_size: u32,
    pub spec: SpecLimits,
    /// The run rules signals are raised for (deduplicated, in the order given).
    pub rules: Vec<Rule>,
    pub source: SampleSource,
    /// The machine the characteristic is made on, if one: scopes its alerts.
    pub machine_id: Option<MachineId>,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Records one sample (one point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSample {
    pub data: SampleData,
    /// The inspection it came from, if one.
    pub order_id: Option<OrderId>,
    pub inspection_id: Option<InspectionId>,
    pub at: DateTime<Utc>,
}

/// What limits are frozen from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LimitsBasis {
    /// The characteristic's samples `from_index..=to_index` (sample numbers, from 1).
    Baseline { from_index: u64, to_index: u64 },
    /// Known parameters.
    Standard(Standard),
}

/// Freezes new control limits (a new version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FreezeLimits {
    pub basis: LimitsBasis,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Every command a characteristic accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SpcCommand {
    DefineCharacteristic(DefineCharacteristic),
    RecordSample(RecordSample),
    FreezeLimits(FreezeLimits),
}

/// The chart of a pair a signal is on: the primary (X̄, X, p, np, c, u) or the spread
/// (R, S, MR) chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartPart {
    Primary,
    Spread,
}

/// A point of the baseline that a rule flags under the limits frozen from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub index: u64,
    pub rule: Rule,
    pub part: ChartPart,
}

/// What happened to a characteristic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum SpcEvent {
    SpcCharacteristicDefined {
        characteristic_id: CharacteristicId,
        name: Text,
        chart: ChartKind,
        subgroup_size: u32,
        spec: SpecLimits,
        rules: Vec<Rule>,
        source: SampleSource,
        machine_id: Option<MachineId>,
        by: Actor,
        at: DateTime<Utc>,
    },
    SpcSampleRecorded {
        characteristic_id: CharacteristicId,
        /// The sample number, from 1.
        index: u64,
        subgroup: Subgroup,
        /// The measured values (variables charts).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        values: Vec<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_id: Option<OrderId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inspection_id: Option<InspectionId>,
        /// The limits version it was judged against, and where it fell (in sigmas).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limits_version: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        z: Option<f64>,
        at: DateTime<Utc>,
    },
    SpcControlLimitsFrozen {
        characteristic_id: CharacteristicId,
        version: u32,
        basis: LimitsBasis,
        limits: ControlLimits,
        /// The first sample judged against them.
        from_sample: u64,
        /// Baseline points the rules flag under these limits (phase I: causes to look for).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        baseline_flags: Vec<Flag>,
        by: Actor,
        at: DateTime<Utc>,
    },
    SpcSignalRaised {
        characteristic_id: CharacteristicId,
        rule: Rule,
        part: ChartPart,
        /// The sample that completed the pattern, and its plotted value.
        index: u64,
        value: f64,
        z: f64,
        limits_version: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        machine_id: Option<MachineId>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for SpcEvent {
    fn event_type(&self) -> String {
        match self {
            Self::SpcCharacteristicDefined { .. } => "SpcCharacteristicDefined",
            Self::SpcSampleRecorded { .. } => "SpcSampleRecorded",
            Self::SpcControlLimitsFrozen { .. } => "SpcControlLimitsFrozen",
            Self::SpcSignalRaised { .. } => "SpcSignalRaised",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

/// A point of the chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub index: u64,
    pub subgroup: Subgroup,
    pub order_id: Option<OrderId>,
    pub inspection_id: Option<InspectionId>,
    pub limits_version: Option<u32>,
    pub z: Option<f64>,
    pub at: DateTime<Utc>,
}

/// A version of the control limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenLimits {
    pub version: u32,
    pub basis: LimitsBasis,
    pub limits: ControlLimits,
    pub from_sample: u64,
    pub baseline_flags: Vec<Flag>,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// A signal raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub rule: Rule,
    pub part: ChartPart,
    pub index: u64,
    pub value: f64,
    pub z: f64,
    pub limits_version: u32,
    pub at: DateTime<Utc>,
}

/// The state of a defined characteristic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Characteristic {
    pub characteristic_id: CharacteristicId,
    pub name: Text,
    pub chart: ChartKind,
    pub subgroup_size: u32,
    pub spec: SpecLimits,
    pub rules: Vec<Rule>,
    pub source: SampleSource,
    pub machine_id: Option<MachineId>,
    pub defined_by: Actor,
    pub defined_at: DateTime<Utc>,
    /// Samples recorded so far (the last one's number).
    pub samples: u64,
    /// The last [`RETAINED`] points.
    pub points: VecDeque<Point>,
    /// Every version of the limits, oldest first; the last one is in force.
    pub limits: Vec<FrozenLimits>,
    /// The last [`RETAINED_SIGNALS`] signals.
    pub signals: VecDeque<Signal>,
}

impl Characteristic {
    /// The limits in force.
    pub fn current_limits(&self) -> Option<&FrozenLimits> {
        self.limits.last()
    }

    /// Cp and Cpk of the limits in force against the spec (variables charts).
    pub fn capability(&self) -> Option<Capability> {
        let l = &self.current_limits()?.limits;
        capability(&self.spec, l.primary.center, l.process_sigma?)
    }

    /// The standardised points judged against the limits in force, oldest first.
    fn judged(&self, version: u32) -> Vec<f64> {
        self.points
            .iter()
            .filter(|p| p.limits_version == Some(version))
            .filter_map(|p| p.z)
            .collect()
    }

    fn decide_sample(&self, cmd: RecordSample) -> Result<Vec<SpcEvent>, SpcError> {
        let previous = self.points.back().map(|p| p.subgroup.value);
        let subgroup = stats::summarize(self.chart, self.subgroup_size, &cmd.data, previous)?;
        let index = self.samples + 1;
        let values = match cmd.data {
            SampleData::Values { values } => values,
            SampleData::Count { .. } => Vec::new(),
        };
        let frozen = self.current_limits();
        let band = frozen.map(|f| f.limits.band_at(subgroup.size));
        let z = band.map(|b| b.z(subgroup.value));
        let mut events = vec![SpcEvent::SpcSampleRecorded {
            characteristic_id: self.characteristic_id.clone(),
            index,
            subgroup,
            values,
            order_id: cmd.order_id,
            inspection_id: cmd.inspection_id,
            limits_version: frozen.map(|f| f.version),
            z,
            at: cmd.at,
        }];
        let (Some(frozen), Some(z)) = (frozen, z) else {
            return Ok(events);
        };
        let signal = |rule, part, value, z| SpcEvent::SpcSignalRaised {
            characteristic_id: self.characteristic_id.clone(),
            rule,
            part,
            index,
            value,
            z,
            limits_version: frozen.version,
            machine_id: self.machine_id.clone(),
            at: cmd.at,
        };
        let mut judged = self.judged(frozen.version);
        judged.push(z);
        for rule in rules::new_signals(&judged, &self.rules) {
            events.push(signal(rule, ChartPart::Primary, subgroup.value, z));
        }
        if let (Some(spread), Some(band)) = (subgroup.spread, frozen.limits.spread) {
            if self.rules.contains(&Rule::BeyondLimits) && band.outside(spread) {
                events.push(signal(
                    Rule::BeyondLimits,
                    ChartPart::Spread,
                    spread,
                    band.z(spread),
                ));
            }
        }
        Ok(events)
    }

    fn decide_freeze(&self, cmd: FreezeLimits) -> Result<Vec<SpcEvent>, SpcError> {
        let (limits, baseline_flags) = match cmd.basis {
            LimitsBasis::Baseline {
                from_index,
                to_index,
            } => {
                if from_index == 0 || from_index > to_index || to_index > self.samples {
                    return Err(SpcError::BaselineRange {
                        from_index,
                        to_index,
                        samples: self.samples,
                    });
                }
                let oldest = self.points.front().map_or(1, |p| p.index);
                if from_index < oldest {
                    return Err(SpcError::BaselineNotRetained { oldest });
                }
                let points: Vec<&Point> = self
                    .points
                    .iter()
                    .filter(|p| (from_index..=to_index).contains(&p.index))
                    .collect();
                let baseline: Vec<Subgroup> = points.iter().map(|p| p.subgroup).collect();
                let limits =
                    stats::limits_from_baseline(self.chart, self.subgroup_size, &baseline)?;
                let flags = baseline_flags(&limits, &points, &self.rules);
                (limits, flags)
            }
            LimitsBasis::Standard(standard) => (
                stats::limits_from_standard(self.chart, self.subgroup_size, standard)?,
                Vec::new(),
            ),
        };
        Ok(vec![SpcEvent::SpcControlLimitsFrozen {
            characteristic_id: self.characteristic_id.clone(),
            version: self.current_limits().map_or(1, |f| f.version + 1),
            basis: cmd.basis,
            limits,
            from_sample: self.samples + 1,
            baseline_flags,
            by: cmd.by,
            at: cmd.at,
        }])
    }
}

/// The baseline points the rules flag under limits computed from them (every point of
/// every pattern, as a phase I study lists them). I-MR moving ranges are judged from the
/// second baseline point on.
fn baseline_flags(limits: &ControlLimits, points: &[&Point], rules: &[Rule]) -> Vec<Flag> {
    let z: Vec<f64> = points
        .iter()
        .map(|p| limits.band_at(p.subgroup.size).z(p.subgroup.value))
        .collect();
    let mut flags = Vec::new();
    for (i, violated) in rules::evaluate(&z, rules).into_iter().enumerate() {
        for rule in violated {
            flags.push(Flag {
                index: points[i].index,
                rule,
                part: ChartPart::Primary,
            });
        }
    }
    if let (Some(band), true) = (limits.spread, rules.contains(&Rule::BeyondLimits)) {
        let skip = usize::from(limits.chart == ChartKind::Imr);
        for p in points.iter().skip(skip) {
            if p.subgroup.spread.is_some_and(|s| band.outside(s)) {
                flags.push(Flag {
                    index: p.index,
                    rule: Rule::BeyondLimits,
                    part: ChartPart::Spread,
                });
            }
        }
    }
    flags
}

/// The SPC characteristic aggregate: `None` until defined.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpcCharacteristic {
    characteristic: Option<Characteristic>,
}

impl SpcCharacteristic {
    /// The characteristic, once defined.
    pub fn characteristic(&self) -> Option<&Characteristic> {
        self.characteristic.as_ref()
    }
}

fn check_definition(cmd: &DefineCharacteristic) -> Result<(), SpcError> {
    cmd.chart.check_size(cmd.subgroup_size)?;
    cmd.spec.check()?;
    let fits = match cmd.source {
        SampleSource::Measurements => cmd.chart.is_variables(),
        SampleSource::Inspections { .. } => !cmd.chart.is_variables(),
        SampleSource::Manual => true,
    };
    if fits {
        Ok(())
    } else {
        Err(SpcError::SourceMismatch {
            chart: cmd.chart,
            source_kind: cmd.source.as_str(),
        })
    }
}

impl Decide for SpcCharacteristic {
    fn decide(&self, command: SpcCommand) -> Result<Vec<SpcEvent>, SpcError> {
        match (command, &self.characteristic) {
            (SpcCommand::DefineCharacteristic(cmd), None) => {
                check_definition(&cmd)?;
                let mut rules: Vec<Rule> = Vec::new();
                for r in cmd.rules {
                    if !rules.contains(&r) {
                        rules.push(r);
                    }
                }
                Ok(vec![SpcEvent::SpcCharacteristicDefined {
                    characteristic_id: cmd.characteristic_id,
                    name: cmd.name,
                    chart: cmd.chart,
                    subgroup_size: cmd.subgroup_size,
                    spec: cmd.spec,
                    rules,
                    source: cmd.source,
                    machine_id: cmd.machine_id,
                    by: cmd.by,
                    at: cmd.at,
                }])
            }
            (SpcCommand::DefineCharacteristic(_), Some(c)) => Err(SpcError::AlreadyExists {
                characteristic_id: c.characteristic_id.clone(),
            }),
            (_, None) => Err(SpcError::NotFound),
            (SpcCommand::RecordSample(cmd), Some(c)) => c.decide_sample(cmd),
            (SpcCommand::FreezeLimits(cmd), Some(c)) => c.decide_freeze(cmd),
        }
    }
}

impl Aggregate for SpcCharacteristic {
    const TYPE: &'static str = crate::StreamType::SpcCharacteristic.as_str();
    type Command = SpcCommand;
    type Event = SpcEvent;
    type Error = SpcError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            SpcEvent::SpcCharacteristicDefined {
                characteristic_id,
                name,
                chart,
                subgroup_size,
                spec,
                rules,
                source,
                machine_id,
                by,
                at,
            } => {
                self.characteristic = Some(Characteristic {
                    characteristic_id,
                    name,
                    chart,
                    subgroup_size,
                    spec,
                    rules,
                    source,
                    machine_id,
                    defined_by: by,
                    defined_at: at,
                    samples: 0,
                    points: VecDeque::new(),
                    limits: Vec::new(),
                    signals: VecDeque::new(),
                });
            }
            SpcEvent::SpcSampleRecorded {
                index,
                subgroup,
                order_id,
                inspection_id,
                limits_version,
                z,
                at,
                ..
            } => {
                if let Some(c) = self.characteristic.as_mut() {
                    c.samples = c.samples.max(index);
                    c.points.push_back(Point {
                        index,
                        subgroup,
                        order_id,
                        inspection_id,
                        limits_version,
                        z,
                        at,
                    });
                    while c.points.len() > RETAINED {
                        c.points.pop_front();
                    }
                }
            }
            SpcEvent::SpcControlLimitsFrozen {
                version,
                basis,
                limits,
                from_sample,
                baseline_flags,
                by,
                at,
                ..
            } => {
                if let Some(c) = self.characteristic.as_mut() {
                    c.limits.push(FrozenLimits {
                        version,
                        basis,
                        limits,
                        from_sample,
                        baseline_flags,
                        by,
                        at,
                    });
                }
            }
            SpcEvent::SpcSignalRaised {
                rule,
                part,
                index,
                value,
                z,
                limits_version,
                at,
                ..
            } => {
                if let Some(c) = self.characteristic.as_mut() {
                    c.signals.push_back(Signal {
                        rule,
                        part,
                        index,
                        value,
                        z,
                        limits_version,
                        at,
                    });
                    while c.signals.len() > RETAINED_SIGNALS {
                        c.signals.pop_front();
                    }
                }
            }
        }
    }
}

/// What the inspection flow needs to know of a characteristic, looked up by the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharacteristicFacts {
    pub characteristic_id: CharacteristicId,
    pub chart: ChartKind,
    pub source: SampleSource,
}

/// The characteristics an inspection event may feed, for the driver to look up: those its
/// measurements name (and, for every inspection, those fed by the inspections of its
/// order's product, which the driver finds by product).
pub fn measured_characteristics(event: &OrderEvent) -> Vec<&CharacteristicId> {
    match event {
        OrderEvent::OrderInspectionRecorded { measurements, .. } => {
            measurements.iter().map(|m| &m.characteristic).collect()
        }
        _ => Vec::new(),
    }
}

/// The inspection flow: an inspection recorded on an order of `product_id` → one sample for
/// each characteristic of `characteristics` it feeds: the values of a measurement naming a
/// characteristic fed by measurements, and the sample size and defects for each
/// characteristic fed by the inspections of that product (or of every product). Command ids
/// are `{event_id}/spc/{characteristic_id}`.
pub fn on_inspection_recorded(
    event_id: &str,
    event: &OrderEvent,
    product_id: &ProductId,
    characteristics: &[CharacteristicFacts],
) -> Vec<IssuedCommand> {
    let OrderEvent::OrderInspectionRecorded {
        order_id,
        inspection_id,
        sample_size,
        defects,
        measurements,
        at,
        ..
    } = event
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for facts in characteristics {
        let data = match &facts.source {
            SampleSource::Measurements => measurements
                .iter()
                .find(|m| m.characteristic == facts.characteristic_id)
                .map(|m| SampleData::Values {
                    values: m.values.clone(),
                }),
            SampleSource::Inspections { product_id: scope } => scope
                .as_ref()
                .is_none_or(|p| p == product_id)
                .then_some(SampleData::Count {
                    count: *defects,
                    size: *sample_size,
                }),
            SampleSource::Manual => None,
        };
        if let Some(data) = data {
            out.push(IssuedCommand {
                command_id: format!("{event_id}/spc/{}", facts.characteristic_id),
                target: Target::SpcCharacteristic {
                    characteristic_id: facts.characteristic_id.clone(),
                    command: SpcCommand::RecordSample(RecordSample {
                        data,
                        order_id: Some(order_id.clone()),
                        inspection_id: Some(inspection_id.clone()),
                        at: *at,
                    }),
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
