//! The statistics of control charts: what a subgroup plots, control limits from a baseline
//! (or from known parameters), the band a point is judged against, and process capability.
//!
//! All of it is pure `f64` arithmetic on measured values (a dimension, a weight): these are
//! estimates, not quantities of material, so `Decimal` buys nothing here.

use serde::{Deserialize, Serialize};

use super::constants::{factors, Factors, MAX_SUBGROUP, MIN_SUBGROUP};
use super::SpcError;

/// The kind of control chart a characteristic is plotted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// Subgroup means and ranges (subgroups of 2 to 25 values).
    XbarR,
    /// Subgroup means and standard deviations (subgroups of 2 to 25 values).
    XbarS,
    /// Individual values and moving ranges of two.
    Imr,
    /// Fraction defective (defectives among `size` inspected; the size may vary).
    P,
    /// Number defective (a constant sample size).
    Np,
    /// Defects per inspection unit (a constant area of opportunity).
    C,
    /// Defects per unit (`size` units inspected; the size may vary).
    U,
}

impl ChartKind {
    pub const ALL: [ChartKind; 7] = [
        Self::XbarR,
        Self::XbarS,
        Self::Imr,
        Self::P,
        Self::Np,
        Self::C,
        Self::U,
    ];

    /// The name as the API spells it (`xbar_r`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::XbarR => "xbar_r",
            Self::XbarS => "xbar_s",
            Self::Imr => "imr",
            Self::P => "p",
            Self::Np => "np",
            Self::C => "c",
            Self::U => "u",
        }
    }

    /// Whether it plots measured values (variables) rather than counts (attributes).
    pub const fn is_variables(self) -> bool {
        matches!(self, Self::XbarR | Self::XbarS | Self::Imr)
    }

    /// Whether every sample must have the characteristic's subgroup size.
    const fn fixed_size(self) -> bool {
        matches!(self, Self::XbarR | Self::XbarS | Self::Imr | Self::Np)
    }

    /// The subgroup sizes a characteristic of this kind may be defined with.
    pub fn check_size(self, n: u32) -> Result<(), SpcError> {
        let ok = match self {
            Self::XbarR | Self::XbarS => (MIN_SUBGROUP..=MAX_SUBGROUP).contains(&n),
            Self::Imr | Self::C => n == 1,
            Self::P | Self::Np | Self::U => n >= 1,
        };
        if ok {
            Ok(())
        } else {
            Err(SpcError::SubgroupSize { chart: self, n })
        }
    }
}

/// What one sample brings: measured values (variables charts) or a count among a size
/// (attribute charts: defectives among the parts inspected, or defects found on the units
/// inspected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleData {
    Values { values: Vec<f64> },
    Count { count: u64, size: u64 },
}

/// The largest absolute measured value accepted (a typo beyond it is refused at the edge).
pub const MAX_MEASURED: f64 = 1e12;
/// The most values one sample may carry.
pub const MAX_VALUES: usize = 100;

/// A subgroup as plotted: its statistic, its spread (range, standard deviation or moving
/// range), its size, and the count of an attribute sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Subgroup {
    /// x̄, x, p, np, c or u.
    pub value: f64,
    /// R (X̄-R), s (X̄-S), the moving range (I-MR, none for the first value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
    /// Values in the subgroup, or parts/units inspected.
    pub size: u64,
    /// Defectives or defects (attribute charts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// The plotted statistics of a sample on a chart of `kind` with subgroup size `n`;
/// `previous` is the value plotted before (the moving range of an I-MR chart).
pub fn summarize(
    kind: ChartKind,
    n: u32,
    data: &SampleData,
    previous: Option<f64>,
) -> Result<Subgroup, SpcError> {
    match (kind.is_variables(), data) {
        (true, SampleData::Values { values }) => {
            check_values(values)?;
            if values.len() != n as usize {
                return Err(SpcError::SampleSize {
                    expected: u64::from(n),
                    got: values.len() as u64,
                });
            }
            let size = values.len() as u64;
            let value = mean(values);
            let spread = match kind {
                ChartKind::XbarR => Some(range(values)),
                ChartKind::XbarS => Some(std_dev(values)),
                _ => previous.map(|p| (value - p).abs()),
            };
            Ok(Subgroup {
                value,
                spread,
                size,
                count: None,
            })
        }
        (false, &SampleData::Count { count, size }) => {
            if size == 0 {
                return Err(SpcError::EmptySample);
            }
            if kind.fixed_size() && size != u64::from(n) {
                return Err(SpcError::SampleSize {
                    expected: u64::from(n),
                    got: size,
                });
            }
            if matches!(kind, ChartKind::P | ChartKind::Np) && count > size {
                return Err(SpcError::CountExceedsSize { count, size });
            }
            let c = count as f64;
            let value = match kind {
                ChartKind::P | ChartKind::U => c / size as f64,
                _ => c,
            };
            Ok(Subgroup {
                value,
                spread: None,
                size,
                count: Some(count),
            })
        }
        _ => Err(SpcError::WrongSampleKind { chart: kind }),
    }
}

fn check_values(values: &[f64]) -> Result<(), SpcError> {
    if values.is_empty() {
        return Err(SpcError::EmptySample);
    }
    if values.len() > MAX_VALUES {
        return Err(SpcError::TooManyValues { max: MAX_VALUES });
    }
    if values
        .iter()
        .any(|v| !v.is_finite() || v.abs() > MAX_MEASURED)
    {
        return Err(SpcError::BadValue);
    }
    Ok(())
}

pub(crate) fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn range(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    max - min
}

/// The sample standard deviation (divisor n − 1).
fn std_dev(values: &[f64]) -> f64 {
    let m = mean(values);
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    (ss / (values.len() as f64 - 1.0)).sqrt()
}

/// A centre line and its control limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub center: f64,
    pub ucl: f64,
    /// Never below zero where the statistic cannot be (ranges, counts, fractions).
    pub lcl: f64,
    /// One sigma of the plotted statistic: the width of a zone for the run rules.
    pub sigma: f64,
}

impl Band {
    fn new(center: f64, sigma: f64, floor_at_zero: bool) -> Self {
        let lcl = center - 3.0 * sigma;
        Self {
            center,
            ucl: center + 3.0 * sigma,
            lcl: if floor_at_zero { lcl.max(0.0) } else { lcl },
            sigma,
        }
    }

    /// Where `x` lies in sigmas from the centre line.
    pub fn z(&self, x: f64) -> f64 {
        (x - self.center) / self.sigma
    }

    /// Whether `x` is above the UCL or below the LCL.
    pub fn outside(&self, x: f64) -> bool {
        x > self.ucl || x < self.lcl
    }
}

/// The control limits of a chart, as frozen: the primary chart's band at the nominal
/// subgroup size, the spread chart's band (X̄-R, X̄-S, I-MR), and the process sigma the
/// limits imply (variables charts: for Cp and Cpk).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ControlLimits {
    pub chart: ChartKind,
    /// The subgroup size the primary band is for (p and u charts: the nominal size; a sample
    /// of another size gets its own band, see [`ControlLimits::band_at`]).
    pub size: u64,
    pub primary: Band,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<Band>,
    /// σ̂ of the individual values (R̄/d2, s̄/c4, MR̄/d2, or given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_sigma: Option<f64>,
}

impl ControlLimits {
    /// The primary band a sample of `size` is judged against: the frozen one, except on p
    /// and u charts, whose limits depend on each sample's size.
    pub fn band_at(&self, size: u64) -> Band {
        let center = self.primary.center;
        let n = size.max(1) as f64;
        match self.chart {
            ChartKind::P => Band::new(center, (center * (1.0 - center) / n).sqrt(), true),
            ChartKind::U => Band::new(center, (center / n).sqrt(), true),
            _ => self.primary,
        }
    }
}

/// Known parameters ("standard given"): the process mean and sigma of a variables chart, or
/// the centre (p, n·p, c, u) of an attribute chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Standard {
    pub center: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
}

fn table(n: u32) -> Result<&'static Factors, SpcError> {
    factors(n).ok_or(SpcError::SubgroupSize {
        chart: ChartKind::XbarR,
        n,
    })
}

/// Control limits from a baseline of subgroups (phase I, "no standard given"), with the
/// textbook formulas and factors:
/// - X̄-R: `x̄̄ ± A2 R̄`; R: `D3 R̄`, `D4 R̄`; σ̂ = R̄/d2.
/// - X̄-S: `x̄̄ ± A3 s̄`; S: `B3 s̄`, `B4 s̄`; σ̂ = s̄/c4.
/// - I-MR: `x̄ ± 3 MR̄/d2` (d2 = 1.128); MR: `D4 MR̄` (3.267), 0; the moving ranges are those
///   inside the baseline (m − 1 of them).
/// - p: `p̄ = Σd/Σn`, `p̄ ± 3 √(p̄(1−p̄)/n)`; np: `n p̄ ± 3 √(n p̄ (1−p̄))`.
/// - c: `c̄ ± 3 √c̄`; u: `ū = Σc/Σn`, `ū ± 3 √(ū/n)`.
pub fn limits_from_baseline(
    kind: ChartKind,
    n: u32,
    baseline: &[Subgroup],
) -> Result<ControlLimits, SpcError> {
    if baseline.len() < 2 {
        return Err(SpcError::BaselineTooShort { min: 2 });
    }
    let m = baseline.len() as f64;
    let center = baseline.iter().map(|s| s.value).sum::<f64>() / m;
    let limits = match kind {
        ChartKind::XbarR | ChartKind::XbarS => {
            let f = table(n)?;
            let spread_bar = baseline.iter().filter_map(|s| s.spread).sum::<f64>() / m;
            let (a, lower, upper, divisor) = if kind == ChartKind::XbarR {
                (f.a2, f.d3_lower, f.d4, f.d2)
            } else {
                (f.a3, f.b3, f.b4, f.c4)
            };
            variables(kind, n, center, spread_bar, a, lower, upper, divisor)
        }
        ChartKind::Imr => {
            let f = table(2)?;
            let moving: Vec<f64> = baseline
                .windows(2)
                .map(|w| (w[1].value - w[0].value).abs())
                .collect();
            let mr_bar = mean(&moving);
            variables(kind, 1, center, mr_bar, 3.0 / f.d2, 0.0, f.d4, f.d2)
        }
        ChartKind::P | ChartKind::U => {
            let counts: u64 = baseline.iter().filter_map(|s| s.count).sum();
            let sizes: u64 = baseline.iter().map(|s| s.size).sum();
            let center = counts as f64 / sizes as f64;
            attribute(kind, u64::from(n), center)
        }
        ChartKind::Np | ChartKind::C => attribute(kind, u64::from(n), center),
    };
    check_spread(limits)
}

/// Control limits from known parameters (phase II, "standard given"): a variables chart
/// needs the mean and σ (X̄: `μ ± 3σ/√n`; R: `d2σ`, `(d2 ± 3d3)σ`; S: `c4σ`,
/// `(c4 ± 3√(1−c4²))σ`; I: `μ ± 3σ`, MR: `d2σ` with n = 2), an attribute chart its centre
/// (p, n·p, c or u).
pub fn limits_from_standard(
    kind: ChartKind,
    n: u32,
    standard: Standard,
) -> Result<ControlLimits, SpcError> {
    if !standard.center.is_finite() || standard.center.abs() > MAX_MEASURED {
        return Err(SpcError::BadValue);
    }
    let limits = if kind.is_variables() {
        let sigma = standard
            .sigma
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or(SpcError::NoVariation)?;
        let spread_n = if kind == ChartKind::Imr { 2 } else { n };
        let f = table(spread_n)?;
        let spread = match kind {
            ChartKind::XbarS => {
                let k = 3.0 * (1.0 - f.c4 * f.c4).sqrt();
                band_between(f.c4 * sigma, (f.c4 + k) * sigma, (f.c4 - k) * sigma)
            }
            _ => band_between(
                f.d2 * sigma,
                (f.d2 + 3.0 * f.d3) * sigma,
                (f.d2 - 3.0 * f.d3) * sigma,
            ),
        };
        ControlLimits {
            chart: kind,
            size: u64::from(n),
            primary: Band::new(standard.center, sigma / f64::from(n).sqrt(), false),
            spread: Some(spread),
            process_sigma: Some(sigma),
        }
    } else {
        let valid = match kind {
            ChartKind::P => (0.0..1.0).contains(&standard.center) && standard.center > 0.0,
            _ => standard.center > 0.0,
        };
        if !valid {
            return Err(SpcError::BadValue);
        }
        attribute(kind, u64::from(n), standard.center)
    };
    check_spread(limits)
}

fn band_between(center: f64, ucl: f64, lcl: f64) -> Band {
    Band {
        center,
        ucl,
        lcl: lcl.max(0.0),
        sigma: (ucl - center) / 3.0,
    }
}

#[allow(clippy::too_many_arguments)]
fn variables(
    kind: ChartKind,
    n: u32,
    center: f64,
    spread_bar: f64,
    a: f64,
    lower: f64,
    upper: f64,
    divisor: f64,
) -> ControlLimits {
    let half = a * spread_bar;
    ControlLimits {
        chart: kind,
        size: u64::from(n),
        primary: Band {
            center,
            ucl: center + half,
            lcl: center - half,
            sigma: half / 3.0,
        },
        spread: Some(band_between(
            spread_bar,
            upper * spread_bar,
            lower * spread_bar,
        )),
        process_sigma: Some(spread_bar / divisor),
    }
}

fn attribute(kind: ChartKind, n: u64, center: f64) -> ControlLimits {
    let nf = n as f64;
    let primary = match kind {
        ChartKind::Np => {
            let p = center / nf;
            Band::new(center, (center * (1.0 - p)).sqrt(), true)
        }
        ChartKind::C => Band::new(center, center.sqrt(), true),
        _ => Band::new(center, 0.0, true),
    };
    let limits = ControlLimits {
        chart: kind,
        size: n,
        primary,
        spread: None,
        process_sigma: None,
    };
    match kind {
        ChartKind::P | ChartKind::U => ControlLimits {
            primary: limits.band_at(n),
            ..limits
        },
        _ => limits,
    }
}

/// Limits with no width (a baseline without variation) would flag every later point.
fn check_spread(limits: ControlLimits) -> Result<ControlLimits, SpcError> {
    let band = limits.primary;
    if band.sigma.is_finite() && band.sigma > 0.0 && band.center.is_finite() {
        Ok(limits)
    } else {
        Err(SpcError::NoVariation)
    }
}

/// Specification limits of a characteristic (either may be absent: a one-sided spec).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsl: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usl: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
}

impl SpecLimits {
    /// Finite values, LSL below USL, the target between them.
    pub fn check(&self) -> Result<(), SpcError> {
        let all = [self.lsl, self.usl, self.target];
        if all
            .iter()
            .flatten()
            .any(|v| !v.is_finite() || v.abs() > MAX_MEASURED)
        {
            return Err(SpcError::BadValue);
        }
        if let (Some(l), Some(u)) = (self.lsl, self.usl) {
            if l >= u {
                return Err(SpcError::SpecOrder);
            }
        }
        if let Some(t) = self.target {
            if self.lsl.is_some_and(|l| t < l) || self.usl.is_some_and(|u| t > u) {
                return Err(SpcError::SpecOrder);
            }
        }
        Ok(())
    }
}

/// Process capability against the specification: `Cp = (USL − LSL)/6σ`,
/// `Cpk = min(CPU, CPL)` with `CPU = (USL − μ)/3σ`, `CPL = (μ − LSL)/3σ`; μ is the centre
/// line and σ the within-subgroup sigma of the frozen limits. With a one-sided spec, Cp is
/// absent and Cpk is the one side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    pub mean: f64,
    pub sigma: f64,
    pub cp: Option<f64>,
    pub cpk: Option<f64>,
    pub cpu: Option<f64>,
    pub cpl: Option<f64>,
}

/// The capability of a process with `mean` and `sigma` against `spec`; `None` without a
/// positive sigma or any spec limit.
pub fn capability(spec: &SpecLimits, mean: f64, sigma: f64) -> Option<Capability> {
    if !(sigma.is_finite() && sigma > 0.0) || (spec.lsl.is_none() && spec.usl.is_none()) {
        return None;
    }
    let cpu = spec.usl.map(|u| (u - mean) / (3.0 * sigma));
    let cpl = spec.lsl.map(|l| (mean - l) / (3.0 * sigma));
    let cp = match (spec.lsl, spec.usl) {
        (Some(l), Some(u)) => Some((u - l) / (6.0 * sigma)),
        _ => None,
    };
    let cpk = match (cpu, cpl) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Some(Capability {
        mean,
        sigma,
        cp,
        cpk,
        cpu,
        cpl,
    })
}
