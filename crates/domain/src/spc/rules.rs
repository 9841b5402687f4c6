//! The run rules: patterns in a chart's points that signal a process out of statistical
//! control, evaluated on standardised points (`z = (x − CL)/σ` of the plotted statistic, so
//! a p or u chart whose band changes with the sample size is judged point by point).
//!
//! | rule | Western Electric | Nelson | pattern (the window ends at the point judged) |
//! | --- | --- | --- | --- |
//! | `beyond_limits` | 1 | 1 | one point beyond 3σ |
//! | `two_of_three_beyond_2_sigma` | 2 | 5 | 2 of the last 3 points beyond 2σ on the same side |
//! | `four_of_five_beyond_1_sigma` | 3 | 6 | 4 of the last 5 points beyond 1σ on the same side |
//! | `eight_on_one_side` | 4 | | 8 points in a row on one side of the centre line |
//! | `nine_on_one_side` | | 2 | 9 points in a row on one side of the centre line |
//! | `six_trending` | | 3 | 6 points in a row steadily increasing, or decreasing |
//! | `fourteen_alternating` | | 4 | 14 points in a row alternating up and down |
//! | `fifteen_within_1_sigma` | | 7 | 15 points in a row within 1σ of the centre line |
//! | `eight_beyond_1_sigma` | | 8 | 8 points in a row beyond 1σ, on either side |
//!
//! Conventions (the sources leave them open; these are Minitab's):
//! - "beyond kσ" is strictly beyond (`|z| > k`); "within 1σ" is strictly within (`|z| < 1`);
//!   a point on the centre line is on neither side and breaks a run; a tie breaks a trend
//!   and an alternation.
//! - For the "k of m" rules the point judged must itself be one of the k (the signal belongs
//!   to the point that completes the pattern), and fewer than m points may make the window
//!   at the start of a chart (2 points both beyond 2σ already signal).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One run rule (see the module docs for the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    BeyondLimits,
    #[serde(rename = "two_of_three_beyond_2_sigma")]
    TwoOfThreeBeyond2Sigma,
    #[serde(rename = "four_of_five_beyond_1_sigma")]
    FourOfFiveBeyond1Sigma,
    EightOnOneSide,
    NineOnOneSide,
    SixTrending,
    FourteenAlternating,
    #[serde(rename = "fifteen_within_1_sigma")]
    FifteenWithin1Sigma,
    #[serde(rename = "eight_beyond_1_sigma")]
    EightBeyond1Sigma,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::BeyondLimits,
        Rule::TwoOfThreeBeyond2Sigma,
        Rule::FourOfFiveBeyond1Sigma,
        Rule::EightOnOneSide,
        Rule::NineOnOneSide,
        Rule::SixTrending,
        Rule::FourteenAlternating,
        Rule::FifteenWithin1Sigma,
        Rule::EightBeyond1Sigma,
    ];

    /// The name as the API and the events spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BeyondLimits => "beyond_limits",
            Self::TwoOfThreeBeyond2Sigma => "two_of_three_beyond_2_sigma",
            Self::FourOfFiveBeyond1Sigma => "four_of_five_beyond_1_sigma",
            Self::EightOnOneSide => "eight_on_one_side",
            Self::NineOnOneSide => "nine_on_one_side",
            Self::SixTrending => "six_trending",
            Self::FourteenAlternating => "fourteen_alternating",
            Self::FifteenWithin1Sigma => "fifteen_within_1_sigma",
            Self::EightBeyond1Sigma => "eight_beyond_1_sigma",
        }
    }

    /// The rule of a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Plain words, for alerts and the dashboard.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::BeyondLimits => "a point beyond the control limits",
            Self::TwoOfThreeBeyond2Sigma => "2 of 3 points beyond 2 sigma on one side",
            Self::FourOfFiveBeyond1Sigma => "4 of 5 points beyond 1 sigma on one side",
            Self::EightOnOneSide => "8 points in a row on one side of the centre line",
            Self::NineOnOneSide => "9 points in a row on one side of the centre line",
            Self::SixTrending => "6 points in a row steadily increasing or decreasing",
            Self::FourteenAlternating => "14 points in a row alternating up and down",
            Self::FifteenWithin1Sigma => "15 points in a row within 1 sigma",
            Self::EightBeyond1Sigma => "8 points in a row beyond 1 sigma on either side",
        }
    }

    /// Whether the window of points ending at `i` shows this rule's pattern.
    pub fn violated_at(self, z: &[f64], i: usize) -> bool {
        if i >= z.len() {
            return false;
        }
        let upto = &z[..=i];
        match self {
            Self::BeyondLimits => z[i].abs() > 3.0,
            Self::TwoOfThreeBeyond2Sigma => k_of_m(upto, 2, 3, 2.0),
            Self::FourOfFiveBeyond1Sigma => k_of_m(upto, 4, 5, 1.0),
            Self::EightOnOneSide => run_on_one_side(upto, 8),
            Self::NineOnOneSide => run_on_one_side(upto, 9),
            Self::SixTrending => trending(upto, 6),
            Self::FourteenAlternating => alternating(upto, 14),
            Self::FifteenWithin1Sigma => {
                last(upto, 15).is_some_and(|w| w.iter().all(|v| v.abs() < 1.0))
            }
            Self::EightBeyond1Sigma => {
                last(upto, 8).is_some_and(|w| w.iter().all(|v| v.abs() > 1.0))
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule sets of the literature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSet {
    /// Western Electric *Statistical Quality Control Handbook* (1956), rules 1 to 4.
    WesternElectric,
    /// L. S. Nelson, "The Shewhart control chart: tests for special causes", *Journal of
    /// Quality Technology* 16 (1984), tests 1 to 8.
    Nelson,
}

impl RuleSet {
    /// The rules of the set, in their published order.
    pub fn rules(self) -> Vec<Rule> {
        use Rule as R;
        match self {
            Self::WesternElectric => vec![
                R::BeyondLimits,
                R::TwoOfThreeBeyond2Sigma,
                R::FourOfFiveBeyond1Sigma,
                R::EightOnOneSide,
            ],
            Self::Nelson => vec![
                R::BeyondLimits,
                R::NineOnOneSide,
                R::SixTrending,
                R::FourteenAlternating,
                R::TwoOfThreeBeyond2Sigma,
                R::FourOfFiveBeyond1Sigma,
                R::FifteenWithin1Sigma,
                R::EightBeyond1Sigma,
            ],
        }
    }
}

/// The last `n` points, when there are that many.
fn last(z: &[f64], n: usize) -> Option<&[f64]> {
    z.len().checked_sub(n).map(|start| &z[start..])
}

fn k_of_m(z: &[f64], k: usize, m: usize, beyond: f64) -> bool {
    let Some(&current) = z.last() else {
        return false;
    };
    let window = &z[z.len().saturating_sub(m)..];
    let side = current.signum();
    if current.abs() <= beyond {
        return false;
    }
    window
        .iter()
        .filter(|v| v.abs() > beyond && v.signum() == side)
        .count()
        >= k
}

fn run_on_one_side(z: &[f64], n: usize) -> bool {
    last(z, n).is_some_and(|w| w.iter().all(|v| *v > 0.0) || w.iter().all(|v| *v < 0.0))
}

fn trending(z: &[f64], n: usize) -> bool {
    last(z, n)
        .is_some_and(|w| w.windows(2).all(|p| p[1] > p[0]) || w.windows(2).all(|p| p[1] < p[0]))
}

fn alternating(z: &[f64], n: usize) -> bool {
    last(z, n).is_some_and(|w| {
        let steps: Vec<f64> = w.windows(2).map(|p| p[1] - p[0]).collect();
        steps.iter().all(|d| *d != 0.0) && steps.windows(2).all(|d| d[0].signum() != d[1].signum())
    })
}

/// For each point, the rules of `rules` whose pattern the window ending there shows.
pub fn evaluate(z: &[f64], rules: &[Rule]) -> Vec<Vec<Rule>> {
    (0..z.len())
        .map(|i| {
            rules
                .iter()
                .copied()
                .filter(|r| r.violated_at(z, i))
                .collect()
        })
        .collect()
}

/// The signals the newest point raises: each rule violated at the last point, except a run
/// rule already violated at the point before (one signal per episode of a pattern, not one
/// per point of a long run; every point beyond the limits is a signal of its own).
pub fn new_signals(z: &[f64], rules: &[Rule]) -> Vec<Rule> {
    let Some(i) = z.len().checked_sub(1) else {
        return Vec::new();
    };
    rules
        .iter()
        .copied()
        .filter(|r| r.violated_at(z, i))
        .filter(|r| *r == Rule::BeyondLimits || i == 0 || !r.violated_at(z, i - 1))
        .collect()
}
