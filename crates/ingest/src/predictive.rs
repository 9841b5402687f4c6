//! Condition monitoring of one sensor: a learned baseline, drift, trend and threshold
//! rules (ADR 0008).
//!
//! - **Baseline**: mean and variance learned exactly (Welford) over the first
//!   `warmup_samples`, then as exponentially weighted mean and variance with weight
//!   `alpha`. It learns only while the sensor looks normal (both CUSUM sums under
//!   half their threshold and the sample within 4 σ), so a slow drift cannot teach
//!   the baseline that drifting is normal.
//! - **Drift**: a two-sided CUSUM of the standardized residuals with slack `cusum_k`
//!   and threshold `cusum_h` (in σ). It accumulates small persistent deviations that
//!   a per-sample threshold misses, and ignores white noise (its false-alarm run
//!   length at k = 0.5, h = 12 is in the hundreds of thousands of samples).
//! - **Trend**: a fast and a slow EWMA of the raw value (`trend_alpha`, `trend_beta`);
//!   their difference divided by the difference of their lags is the slope. Only a
//!   slope that is significant (the gap over 4 times its noise, for 5 samples in a
//!   row) and heads to an alarm limit reached within `horizon_s` counts.
//! - **Threshold**: the fast EWMA beyond `alarm_high`/`alarm_low`.
//!
//! An alert carries the evidence; the next one for the same sensor waits `cooldown_s`
//! of floor time. Samples older than the last one seen (late or historical data) are
//! stored by the caller but never judged here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shopfloor_domain::maintenance::PredictiveEvidence;

use crate::config::{PredictiveSettings, SensorSettings};

/// The learned state of one sensor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub n: u64,
    pub mean: f64,
    /// Welford's sum of squares during warm-up; unused after.
    pub m2: f64,
    pub var: f64,
    pub cusum_pos: f64,
    pub cusum_neg: f64,
    /// When the current excursion (CUSUM above zero) began.
    pub excursion_start: Option<DateTime<Utc>>,
    pub fast: Option<f64>,
    pub slow: Option<f64>,
    /// EWMA of the seconds between samples.
    pub dt: Option<f64>,
    /// Consecutive samples with a significant trend to a limit.
    pub trend_run: u32,
    pub last_at: Option<DateTime<Utc>>,
    pub last_alert: Option<DateTime<Utc>>,
}

/// The sensor needs maintenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub evidence: PredictiveEvidence,
    /// When the task should be done.
    pub due: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// What observing a sample did.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Older than the last sample: not judged.
    Late,
    Learned,
    Alert(Box<Alert>),
}

impl Baseline {
    fn std(&self) -> f64 {
        self.var
            .max(0.0)
            .sqrt()
            .max(1e-6 * self.mean.abs().max(1.0))
    }

    /// Observes one sample of `sensor`.
    pub fn observe(
        &mut self,
        settings: &PredictiveSettings,
        limits: Option<&SensorSettings>,
        sensor: &str,
        value: f64,
        at: DateTime<Utc>,
    ) -> Judgement {
        if self.last_at.is_some_and(|last| at <= last) {
            return Judgement::Late;
        }
        let dt = self
            .last_at
            .map(|last| ((at - last).num_milliseconds() as f64 / 1000.0).max(1e-3));
        self.last_at = Some(at);
        if let Some(dt) = dt {
            self.dt = Some(self.dt.map_or(dt, |d| d + 0.05 * (dt - d)));
        }
        let fast = self
            .fast
            .map_or(value, |f| f + settings.trend_alpha * (value - f));
        let slow = self
            .slow
            .map_or(value, |s| s + settings.trend_beta * (value - s));
        self.fast = Some(fast);
        self.slow = Some(slow);

        // Warm-up: exact mean and variance.
        if self.n < settings.warmup_samples.max(2) {
            self.n += 1;
            let delta = value - self.mean;
            self.mean += delta / self.n as f64;
            self.m2 += delta * (value - self.mean);
            if self.n > 1 {
                self.var = self.m2 / (self.n - 1) as f64;
            }
            return Judgement::Learned;
        }
        self.n += 1;
        let std = self.std();
        let z = (value - self.mean) / std;
        let k = settings.cusum_k;
        let h = settings.cusum_h;
        let was_quiet = self.cusum_pos == 0.0 && self.cusum_neg == 0.0;
        self.cusum_pos = (self.cusum_pos + z - k).max(0.0);
        self.cusum_neg = (self.cusum_neg - z - k).max(0.0);
        if self.cusum_pos == 0.0 && self.cusum_neg == 0.0 {
            self.excursion_start = None;
        } else if was_quiet || self.excursion_start.is_none() {
            self.excursion_start = Some(at);
        }
        if self.cusum_pos < h / 2.0 && self.cusum_neg < h / 2.0 && z.abs() < 4.0 {
            let diff = value - self.mean;
            let incr = settings.alpha * diff;
            self.mean += incr;
            self.var = (1.0 - settings.alpha) * (self.var + diff * incr);
        }

        let cooling = self.last_alert.is_some_and(|last| {
            at < last + chrono::Duration::seconds(i64::try_from(settings.cooldown_s).unwrap_or(0))
        });

        let mut details: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        let lead = chrono::Duration::seconds(i64::try_from(settings.lead_time_s).unwrap_or(0));
        let mut due = at + lead;
        let mut detector: Option<&str> = None;

        // Threshold.
        if let Some(l) = limits {
            if l.alarm_high.is_some_and(|hi| fast > hi) || l.alarm_low.is_some_and(|lo| fast < lo) {
                detector = Some("threshold");
                due = at;
                details.insert("alarm_high".into(), json!(l.alarm_high));
                details.insert("alarm_low".into(), json!(l.alarm_low));
            }
        }
        // Trend.
        let lag = |a: f64| if a > 0.0 { (1.0 - a) / a } else { 0.0 };
        let lag_gap = lag(settings.trend_beta) - lag(settings.trend_alpha);
        if detector.is_none() && lag_gap > 0.0 {
            let gap = fast - slow;
            let af = settings.trend_alpha;
            let as_ = settings.trend_beta;
            let cov = af * as_ / (1.0 - (1.0 - af) * (1.0 - as_));
            let noise = (af / (2.0 - af) + as_ / (2.0 - as_) - 2.0 * cov)
                .max(0.0)
                .sqrt()
                * std;
            let slope = gap / (lag_gap * self.dt.unwrap_or(1.0)); // per second
            let to_limit = limits.and_then(|l| {
                if slope > 0.0 {
                    l.alarm_high.map(|hi| (hi - fast) / slope)
                } else if slope < 0.0 {
                    l.alarm_low.map(|lo| (lo - fast) / slope)
                } else {
                    None
                }
            });
            let significant = gap.abs() > 4.0 * noise;
            match to_limit {
                Some(t) if significant && t > 0.0 && t < settings.horizon_s as f64 => {
                    self.trend_run += 1;
                    if self.trend_run >= 5 {
                        detector = Some("trend");
                        details.insert("slope_per_hour".into(), json!(slope * 3600.0));
                        details.insert("time_to_limit_s".into(), json!(t));
                        let t = chrono::Duration::milliseconds((t * 500.0) as i64);
                        if at + t < due {
                            due = at + t;
                        }
                    }
                }
                _ => self.trend_run = 0,
            }
        }
        // Drift.
        if detector.is_none() && (self.cusum_pos > h || self.cusum_neg > h) {
            detector = Some("cusum");
        }
        let Some(detector) = detector else {
            return Judgement::Learned;
        };
        if cooling {
            return Judgement::Learned;
        }
        details.insert("detector".into(), json!(detector));
        details.insert("cusum_pos".into(), json!(self.cusum_pos));
        details.insert("cusum_neg".into(), json!(self.cusum_neg));
        details.insert("smoothed_value".into(), json!(fast));
        let evidence = PredictiveEvidence {
            sensor: sensor.to_string(),
            observed_value: value,
            baseline_mean: self.mean,
            baseline_std_dev: std,
            deviation_sigma: (fast - self.mean) / std,
            samples: self.n,
            window_start: self.excursion_start.unwrap_or(at),
            window_end: at,
            details,
        };
        self.last_alert = Some(at);
        self.cusum_pos = 0.0;
        self.cusum_neg = 0.0;
        self.excursion_start = None;
        self.trend_run = 0;
        Judgement::Alert(Box::new(Alert { evidence, due, at }))
    }
}
