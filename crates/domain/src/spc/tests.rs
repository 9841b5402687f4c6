//! Control limits checked against published worked examples, every run rule against a
//! constructed series that triggers exactly that rule and a near miss that does not, and the
//! aggregate's decisions.
//!
//! Sources (each example says which):
//! - D. C. Montgomery, *Introduction to Statistical Quality Control*, 6th ed., Wiley 2009
//!   (the same examples keep their data in the 7th and 8th editions).
//! - NIST/SEMATECH e-Handbook of Statistical Methods, section 6.3 (Univariate and
//!   multivariate control charts), <https://www.itl.nist.gov/div898/handbook/pmc/section3/>.
//!
//! Where a book rounds an intermediate figure (c̄ = 19.85), the comment recomputes the limit by
//! hand from the raw data and the factors table, and the test checks both: the exact value to
//! 1e-3 and the printed one to its last printed digit.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};

use super::rules::{evaluate, new_signals};
use super::stats::{limits_from_baseline, limits_from_standard, summarize};
use super::*;

fn close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} is not {expected} ± {tolerance}"
    );
}

fn counts(kind: ChartKind, size: u64, counts: &[u64]) -> Vec<Subgroup> {
    counts
        .iter()
        .map(|&count| {
            summarize(kind, size as u32, &SampleData::Count { count, size }, None).unwrap()
        })
        .collect()
}

fn individuals(values: &[f64]) -> Vec<Subgroup> {
    let mut previous = None;
    values
        .iter()
        .map(|&v| {
            let s = summarize(
                ChartKind::Imr,
                1,
                &SampleData::Values { values: vec![v] },
                previous,
            )
            .unwrap();
            previous = Some(v);
            s
        })
        .collect()
}

/// The 1-based numbers of the points beyond the limits.
fn beyond(limits: &ControlLimits, points: &[Subgroup]) -> Vec<usize> {
    points
        .iter()
        .enumerate()
        .filter(|(_, p)| limits.band_at(p.size).outside(p.value))
        .map(|(i, _)| i + 1)
        .collect()
}

/// Montgomery, Example 7.1 (Table 7.1): 30 samples of n = 50 frozen orange-juice cans, the
/// number of nonconforming cans in each. The same counts are the worked p-chart example of the
/// NIST/SEMATECH e-Handbook, section 6.3.3.2 (30 wafers of 50 chips).
const ORANGE_JUICE: [u64; 30] = [
    12, 15, 8, 10, 4, 7, 16, 9, 14, 10, 5, 6, 17, 12, 22, 8, 10, 5, 13, 11, 20, 18, 24, 15, 9, 12,
    7, 13, 9, 6,
];

#[test]
fn p_chart_of_montgomery_example_7_1() {
    // Σd = 347, Σn = 1500: p̄ = 0.231333; σ = √(0.231333 · 0.768667 / 50) = 0.059635;
    // UCL = p̄ + 3σ = 0.410237, LCL = p̄ − 3σ = 0.052430.
    // Published: p̄ = 0.2313, UCL = 0.4102, LCL = 0.0524; samples 15 and 23 above the UCL.
    let points = counts(ChartKind::P, 50, &ORANGE_JUICE);
    let limits = limits_from_baseline(ChartKind::P, 50, &points).unwrap();
    close(limits.primary.center, 347.0 / 1500.0, 1e-12);
    close(limits.primary.center, 0.2313, 0.00005);
    close(limits.primary.ucl, 0.4102, 0.00005);
    close(limits.primary.lcl, 0.0524, 0.00005);
    close(limits.primary.sigma, 0.059635, 0.000001);
    assert_eq!(beyond(&limits, &points), vec![15, 23]);
}

#[test]
fn np_chart_of_the_same_data() {
    // n·p̄ = 50 · 0.231333 = 11.5667; σ = √(11.5667 · (1 − 0.231333)) = 2.98176;
    // UCL = 20.5119, LCL = 2.6214 (by hand from Montgomery's Table 7.1 data; np charts of
    // the same samples flag the same points as the p chart: 15 and 23).
    let points = counts(ChartKind::Np, 50, &ORANGE_JUICE);
    let limits = limits_from_baseline(ChartKind::Np, 50, &points).unwrap();
    close(limits.primary.center, 11.5667, 0.0001);
    close(limits.primary.ucl, 20.5119, 0.0001);
    close(limits.primary.lcl, 2.6214, 0.0001);
    assert_eq!(beyond(&limits, &points), vec![15, 23]);
}

#[test]
fn c_chart_of_montgomery_example_7_3() {
    // Montgomery, Example 7.3 (Table 7.7): nonconformities in 26 successive samples of 100
    // printed circuit boards. Σc = 516, c̄ = 19.846; √c̄ = 4.45494;
    // UCL = 19.846 + 13.3648 = 33.2110, LCL = 6.4813.
    // Published (c̄ rounded to 19.85 first): UCL = 33.22, LCL = 6.48; samples 6 and 20 are
    // outside.
    let data = [
        21, 24, 16, 12, 15, 5, 28, 20, 31, 25, 20, 24, 16, 19, 10, 17, 13, 22, 18, 39, 30, 24, 16,
        19, 17, 15,
    ];
    let points = counts(ChartKind::C, 1, &data);
    let limits = limits_from_baseline(ChartKind::C, 1, &points).unwrap();
    close(limits.primary.center, 516.0 / 26.0, 1e-12);
    close(limits.primary.ucl, 33.2110, 0.001);
    close(limits.primary.lcl, 6.4813, 0.001);
    close(limits.primary.ucl, 33.22, 0.01);
    close(limits.primary.lcl, 6.48, 0.005);
    assert_eq!(beyond(&limits, &points), vec![6, 20]);
}

#[test]
fn c_chart_of_the_nist_handbook_wafer_defects() {
    // NIST/SEMATECH e-Handbook, section 6.3.3.1 (counts control charts): defects on 25
    // wafers. Σc = 400, c̄ = 16, UCL = 16 + 3·4 = 28, LCL = 16 − 12 = 4. Wafer 24 (31
    // defects) is above the UCL; wafer 3 (28) lies on it, which is not beyond.
    let data = [
        16, 14, 28, 16, 12, 20, 10, 12, 10, 17, 19, 17, 14, 16, 15, 13, 14, 16, 11, 20, 11, 19, 16,
        31, 13,
    ];
    let points = counts(ChartKind::C, 1, &data);
    let limits = limits_from_baseline(ChartKind::C, 1, &points).unwrap();
    close(limits.primary.center, 16.0, 1e-12);
    close(limits.primary.ucl, 28.0, 1e-12);
    close(limits.primary.lcl, 4.0, 1e-12);
    assert_eq!(beyond(&limits, &points), vec![24]);
}

#[test]
fn u_chart_of_montgomery_example_7_4() {
    // Montgomery, Example 7.4 (Table 7.9): total nonconformities in 20 samples of n = 5
    // personal computers. Σc = 193, ū = 193/100 = 1.93; √(ū/5) = 0.621289;
    // UCL = 1.93 + 1.86387 = 3.79387, LCL = 0.06613. Published: ū = 1.93, UCL = 3.79,
    // LCL = 0.07; no point outside.
    let data = [
        10, 12, 8, 14, 10, 16, 11, 7, 10, 15, 9, 5, 7, 11, 12, 6, 8, 10, 7, 5,
    ];
    let points = counts(ChartKind::U, 5, &data);
    let limits = limits_from_baseline(ChartKind::U, 5, &points).unwrap();
    close(limits.primary.center, 1.93, 1e-12);
    close(limits.primary.ucl, 3.79387, 0.00001);
    close(limits.primary.lcl, 0.06613, 0.00001);
    close(limits.primary.ucl, 3.79, 0.005);
    close(limits.primary.lcl, 0.07, 0.005);
    assert!(beyond(&limits, &points).is_empty());
    // A sample of another size gets its own band: n = 10 → 1.93 ± 3 √0.193.
    let band = limits.band_at(10);
    close(band.ucl, 1.93 + 3.0 * 0.193_f64.sqrt(), 1e-12);
}

#[test]
fn individuals_chart_of_montgomery_example_6_5() {
    // Montgomery, Example 6.5 (Table 6.6): the weekly cost of processing mortgage loan
    // applications, 20 weeks. x̄ = 6010/20 = 300.5; the 19 moving ranges sum to 148,
    // MR̄ = 7.789474; UCL = 300.5 + 3 · 7.789474 / 1.128 = 321.2167, LCL = 279.7833;
    // MR chart UCL = D4 MR̄ = 3.267 · 7.789474 = 25.4482, LCL = 0.
    // Published: x̄ = 300.5, MR̄ = 7.79, UCL = 321.22, LCL = 279.78, MR UCL = 25.45; all
    // points inside.
    let data = [
        310.0, 288.0, 297.0, 298.0, 307.0, 303.0, 294.0, 297.0, 308.0, 306.0, 294.0, 299.0, 297.0,
        299.0, 314.0, 295.0, 293.0, 306.0, 301.0, 304.0,
    ];
    let points = individuals(&data);
    assert_eq!(points[0].spread, None);
    assert_eq!(points[1].spread, Some(22.0));
    let limits = limits_from_baseline(ChartKind::Imr, 1, &points).unwrap();
    close(limits.primary.center, 300.5, 1e-12);
    close(limits.primary.ucl, 321.2167, 0.0001);
    close(limits.primary.lcl, 279.7833, 0.0001);
    close(limits.primary.ucl, 321.22, 0.005);
    let spread = limits.spread.unwrap();
    close(spread.center, 148.0 / 19.0, 1e-12);
    close(spread.ucl, 25.4482, 0.0001);
    close(spread.lcl, 0.0, 0.0);
    close(limits.process_sigma.unwrap(), 148.0 / 19.0 / 1.128, 1e-12);
    assert!(beyond(&limits, &points).is_empty());
}

/// Two subgroups whose mean and spread are a published summary, so the X̄ limits follow from
/// x̄̄ and R̄ (or s̄) as the book computes them.
fn summary(mean: f64, spread: f64, n: u64) -> Vec<Subgroup> {
    let s = Subgroup {
        value: mean,
        spread: Some(spread),
        size: n,
        count: None,
    };
    vec![s, s]
}

#[test]
fn xbar_r_limits_of_montgomery_example_6_1_piston_rings() {
    // Montgomery, Example 6.3 (piston-ring inside diameter, Table 6.3: 25 samples of 5):
    // x̄̄ = 74.001, R̄ = 0.023. X̄: 74.001 ± A2 R̄ = 74.001 ± 0.577 · 0.023 = 74.014271 /
    // 73.987729; R: D4 R̄ = 2.114 · 0.023 = 0.048622, D3 R̄ = 0. σ̂ = R̄/d2 = 0.023/2.326
    // = 0.009888. Published: UCL = 74.014, LCL = 73.988, R UCL = 0.049, σ̂ = 0.0099.
    let limits = limits_from_baseline(ChartKind::XbarR, 5, &summary(74.001, 0.023, 5)).unwrap();
    close(limits.primary.ucl, 74.014271, 1e-6);
    close(limits.primary.lcl, 73.987729, 1e-6);
    close(limits.primary.ucl, 74.014, 0.0005);
    close(limits.primary.lcl, 73.988, 0.0005);
    let r = limits.spread.unwrap();
    close(r.ucl, 0.048622, 1e-6);
    close(r.lcl, 0.0, 0.0);
    close(limits.process_sigma.unwrap(), 0.0099, 0.00005);
    // Capability (Montgomery, section 6.2.5, same data): spec 74.000 ± 0.05 mm; with σ̂
    // rounded to 0.0099 the book prints Cp = 0.10 / (6 · 0.0099) = 1.68; unrounded,
    // 0.10 / (6 · 0.009888) = 1.6855.
    let spec = SpecLimits {
        lsl: Some(73.95),
        usl: Some(74.05),
        target: Some(74.0),
    };
    close(
        capability(&spec, 74.001, 0.0099).unwrap().cp.unwrap(),
        1.68,
        0.005,
    );
    let cap = capability(&spec, limits.primary.center, limits.process_sigma.unwrap()).unwrap();
    close(cap.cp.unwrap(), 0.10 / (6.0 * 0.023 / 2.326), 1e-9);
    close(cap.cp.unwrap(), 1.6855, 0.0001);
    // Cpk = min(74.05 − 74.001, 74.001 − 73.95) / 3σ̂ = 0.049 / 0.029665 = 1.6518.
    close(cap.cpk.unwrap(), 0.049 / (3.0 * 0.023 / 2.326), 1e-9);
    close(cap.cpk.unwrap(), 1.65, 0.005);
}

#[test]
fn xbar_s_limits_of_montgomery_example_6_4_piston_rings() {
    // Montgomery, Example 6.4 (the same piston rings on X̄ and S charts): s̄ = 0.0094.
    // X̄: 74.001 ± A3 s̄ = 74.001 ± 1.427 · 0.0094 = 74.014414 / 73.987586; S:
    // B4 s̄ = 2.089 · 0.0094 = 0.019637, B3 s̄ = 0; σ̂ = s̄/c4 = 0.0094/0.9400 = 0.0100.
    // Published: UCL = 74.014, LCL = 73.988, S UCL = 0.0196, σ̂ = 0.0100.
    let limits = limits_from_baseline(ChartKind::XbarS, 5, &summary(74.001, 0.0094, 5)).unwrap();
    close(limits.primary.ucl, 74.014414, 1e-6);
    close(limits.primary.lcl, 73.987586, 1e-6);
    let s = limits.spread.unwrap();
    close(s.ucl, 0.019637, 1e-6);
    close(s.ucl, 0.0196, 0.00005);
    close(limits.process_sigma.unwrap(), 0.0100, 1e-9);
}

#[test]
fn xbar_r_and_s_from_raw_subgroups_computed_by_hand() {
    // Three subgroups of n = 4: {1,2,3,4} x̄ 2.5 R 3 s 1.290994; {2,3,4,5} x̄ 3.5 R 3
    // s 1.290994; {2,2,3,5} x̄ 3 R 3 s √2 = 1.414214. x̄̄ = 3, R̄ = 3, s̄ = 1.332067.
    // X̄-R: 3 ± 0.729 · 3 = 5.187 / 0.813; R: 2.282 · 3 = 6.846, 0.
    // X̄-S: 3 ± 1.628 · 1.332067 = 5.168605 / 0.831395; S: 2.266 · 1.332067 = 3.018464.
    let raw = [
        vec![1.0, 2.0, 3.0, 4.0],
        vec![2.0, 3.0, 4.0, 5.0],
        vec![2.0, 2.0, 3.0, 5.0],
    ];
    let sub = |kind| -> Vec<Subgroup> {
        raw.iter()
            .map(|v| summarize(kind, 4, &SampleData::Values { values: v.clone() }, None).unwrap())
            .collect()
    };
    let r = limits_from_baseline(ChartKind::XbarR, 4, &sub(ChartKind::XbarR)).unwrap();
    close(r.primary.center, 3.0, 1e-12);
    close(r.primary.ucl, 5.187, 1e-9);
    close(r.primary.lcl, 0.813, 1e-9);
    close(r.spread.unwrap().ucl, 6.846, 1e-9);
    let s = limits_from_baseline(ChartKind::XbarS, 4, &sub(ChartKind::XbarS)).unwrap();
    close(s.spread.unwrap().center, 1.332067, 1e-6);
    close(s.primary.ucl, 5.168605, 1e-6);
    close(s.primary.lcl, 0.831395, 1e-6);
    close(s.spread.unwrap().ucl, 3.018464, 1e-6);
}

#[test]
fn standard_given_limits() {
    // μ = 10, σ = 2, n = 4: X̄ 10 ± 3 · 2/2 = 13 / 7; R: d2σ = 4.118, (d2 + 3d3)σ = 9.398,
    // (d2 − 3d3)σ < 0 → 0.
    let l = limits_from_standard(
        ChartKind::XbarR,
        4,
        Standard {
            center: 10.0,
            sigma: Some(2.0),
        },
    )
    .unwrap();
    close(l.primary.ucl, 13.0, 1e-12);
    close(l.primary.lcl, 7.0, 1e-12);
    let r = l.spread.unwrap();
    close(r.center, 4.118, 1e-12);
    close(r.ucl, 9.398, 1e-9);
    close(r.lcl, 0.0, 0.0);
    // p = 0.1, n = 100: 0.1 ± 3 · 0.03 = 0.19 / 0.01.
    let p = limits_from_standard(
        ChartKind::P,
        100,
        Standard {
            center: 0.1,
            sigma: None,
        },
    )
    .unwrap();
    close(p.primary.ucl, 0.19, 1e-12);
    close(p.primary.lcl, 0.01, 1e-12);
    assert_eq!(
        limits_from_standard(
            ChartKind::Imr,
            1,
            Standard {
                center: 1.0,
                sigma: None
            }
        ),
        Err(SpcError::NoVariation)
    );
}

#[test]
fn a_baseline_without_variation_freezes_nothing() {
    let flat = individuals(&[5.0, 5.0, 5.0]);
    assert_eq!(
        limits_from_baseline(ChartKind::Imr, 1, &flat),
        Err(SpcError::NoVariation)
    );
    assert_eq!(
        limits_from_baseline(ChartKind::P, 50, &counts(ChartKind::P, 50, &[0, 0])),
        Err(SpcError::NoVariation)
    );
}

#[test]
fn one_sided_capability() {
    let spec = SpecLimits {
        lsl: None,
        usl: Some(16.0),
        target: None,
    };
    let cap = capability(&spec, 10.0, 1.0).unwrap();
    assert_eq!(cap.cp, None);
    close(cap.cpk.unwrap(), 2.0, 1e-12);
    assert!(capability(&SpecLimits::default(), 10.0, 1.0).is_none());
}

// ---- run rules -------------------------------------------------------------------------------
//
// Each series is on a chart with CL = 10 and σ = 1 (an individuals chart with known
// parameters), so a value is its own zone: 12.5 is 2.5σ above the centre. Every series is
// judged by the whole rule set its rule belongs to, and must flag exactly that rule; the near
// miss, one step short of the pattern, must flag nothing.

fn z_of(values: &[f64]) -> Vec<f64> {
    let l = limits_from_standard(
        ChartKind::Imr,
        1,
        Standard {
            center: 10.0,
            sigma: Some(1.0),
        },
    )
    .unwrap();
    values.iter().map(|v| l.primary.z(*v)).collect()
}

fn flagged(values: &[f64], set: RuleSet) -> BTreeSet<Rule> {
    evaluate(&z_of(values), &set.rules())
        .into_iter()
        .flatten()
        .collect()
}

fn only(rule: Rule) -> BTreeSet<Rule> {
    BTreeSet::from([rule])
}

fn check(rule: Rule, sets: &[RuleSet], triggers: &[f64], near_miss: &[f64]) {
    for set in sets {
        assert!(set.rules().contains(&rule));
        assert_eq!(flagged(triggers, *set), only(rule), "{rule} in {set:?}");
        assert_eq!(
            flagged(near_miss, *set),
            BTreeSet::new(),
            "near miss of {rule}"
        );
    }
}

const BOTH: [RuleSet; 2] = [RuleSet::WesternElectric, RuleSet::Nelson];

#[test]
fn rule_beyond_limits() {
    check(Rule::BeyondLimits, &BOTH, &[10.0, 13.2], &[10.0, 12.9]);
    check(Rule::BeyondLimits, &BOTH, &[10.0, 6.7], &[10.0, 7.1]);
}

#[test]
fn rule_two_of_three_beyond_2_sigma() {
    check(
        Rule::TwoOfThreeBeyond2Sigma,
        &BOTH,
        &[10.0, 12.5, 9.5, 12.5],
        // the second is beyond 2σ on the other side
        &[10.0, 12.5, 9.5, 7.5],
    );
    // four points apart is not within three
    assert_eq!(
        flagged(&[10.0, 12.5, 9.5, 9.8, 12.5], RuleSet::Nelson),
        BTreeSet::new()
    );
}

#[test]
fn rule_four_of_five_beyond_1_sigma() {
    check(
        Rule::FourOfFiveBeyond1Sigma,
        &BOTH,
        &[10.0, 11.5, 11.5, 9.5, 11.5, 11.5],
        &[10.0, 11.5, 11.5, 9.5, 10.5, 11.5],
    );
}

#[test]
fn rule_eight_on_one_side() {
    let mut run = vec![9.5];
    run.extend([10.5; 8]);
    let mut short = vec![9.5];
    short.extend([10.5; 7]);
    check(
        Rule::EightOnOneSide,
        &[RuleSet::WesternElectric],
        &run,
        &short,
    );
    // Nelson waits for nine.
    assert_eq!(flagged(&run, RuleSet::Nelson), BTreeSet::new());
}

#[test]
fn rule_nine_on_one_side() {
    let mut run = vec![10.5];
    run.extend([9.5; 9]);
    let mut short = vec![10.5];
    short.extend([9.5; 8]);
    // a point on the centre line breaks the run
    short.extend([10.0, 9.5]);
    check(Rule::NineOnOneSide, &[RuleSet::Nelson], &run, &short);
}

#[test]
fn rule_six_trending() {
    check(
        Rule::SixTrending,
        &[RuleSet::Nelson],
        &[9.0, 9.4, 9.8, 10.2, 10.6, 11.0],
        // a tie breaks the trend
        &[9.0, 9.4, 9.8, 10.2, 10.2, 11.0],
    );
    check(
        Rule::SixTrending,
        &[RuleSet::Nelson],
        &[11.0, 10.6, 10.2, 9.8, 9.4, 9.0],
        &[10.6, 10.2, 9.8, 9.4, 9.0],
    );
}

#[test]
fn rule_fourteen_alternating() {
    let zigzag: Vec<f64> = (0..14)
        .map(|i| if i % 2 == 0 { 10.6 } else { 9.4 })
        .collect();
    check(
        Rule::FourteenAlternating,
        &[RuleSet::Nelson],
        &zigzag,
        &zigzag[..13],
    );
}

#[test]
fn rule_fifteen_within_1_sigma() {
    // Up, up, down, down around the centre: no alternation, no trend, no run on one side.
    let hugging = [
        10.5, 10.3, 9.6, 9.8, 10.4, 10.2, 9.5, 9.7, 10.5, 10.3, 9.6, 9.8, 10.4, 10.2, 9.5,
    ];
    check(
        Rule::FifteenWithin1Sigma,
        &[RuleSet::Nelson],
        &hugging,
        &hugging[..14],
    );
    let mut broken = hugging.to_vec();
    broken[7] = 11.2;
    assert_eq!(flagged(&broken, RuleSet::Nelson), BTreeSet::new());
}

#[test]
fn rule_eight_beyond_1_sigma() {
    let wide: Vec<f64> = (0..8)
        .map(|i| if i % 2 == 0 { 11.5 } else { 8.5 })
        .collect();
    let mut near = wide.clone();
    near[4] = 10.5;
    check(Rule::EightBeyond1Sigma, &[RuleSet::Nelson], &wide, &near);
}

#[test]
fn a_long_run_is_one_signal_and_each_point_beyond_is_its_own() {
    let rules = RuleSet::WesternElectric.rules();
    let run = z_of(&[10.5; 12]);
    let signals: Vec<Vec<Rule>> = (1..=run.len())
        .map(|n| new_signals(&run[..n], &rules))
        .collect();
    assert_eq!(signals[7], vec![Rule::EightOnOneSide]);
    assert!(signals
        .iter()
        .enumerate()
        .all(|(i, s)| i == 7 || s.is_empty()));
    let out = z_of(&[13.5, 13.5]);
    assert_eq!(
        new_signals(&out[..1], &[Rule::BeyondLimits]),
        vec![Rule::BeyondLimits]
    );
    assert_eq!(
        new_signals(&out, &[Rule::BeyondLimits]),
        vec![Rule::BeyondLimits]
    );
}

// ---- the aggregate ---------------------------------------------------------------------------

fn t(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 8, minute, 0).unwrap()
}

fn define(chart: ChartKind, n: u32, source: SampleSource) -> SpcCommand {
    SpcCommand::DefineCharacteristic(DefineCharacteristic {
        characteristic_id: CharacteristicId::new("bore").unwrap(),
        name: Text::new("Bore diameter").unwrap(),
        chart,
        subgroup_size: n,
        spec: SpecLimits {
            lsl: Some(290.0),
            usl: Some(320.0),
            target: None,
        },
        rules: RuleSet::WesternElectric.rules(),
        source,
        machine_id: Some(MachineId::new("M1").unwrap()),
        by: Actor::new("qe").unwrap(),
        at: t(0),
    })
}

fn sample(values: Vec<f64>, minute: u32) -> SpcCommand {
    SpcCommand::RecordSample(RecordSample {
        data: SampleData::Values { values },
        order_id: None,
        inspection_id: None,
        at: t(minute),
    })
}

fn freeze(basis: LimitsBasis) -> SpcCommand {
    SpcCommand::FreezeLimits(FreezeLimits {
        basis,
        by: Actor::new("qe").unwrap(),
        at: t(30),
    })
}

const MORTGAGE: [f64; 20] = [
    310.0, 288.0, 297.0, 298.0, 307.0, 303.0, 294.0, 297.0, 308.0, 306.0, 294.0, 299.0, 297.0,
    299.0, 314.0, 295.0, 293.0, 306.0, 301.0, 304.0,
];

fn mortgage_characteristic() -> SpcCharacteristic {
    let mut a = SpcCharacteristic::default();
    a.execute(define(ChartKind::Imr, 1, SampleSource::Measurements))
        .unwrap();
    for (i, v) in MORTGAGE.iter().enumerate() {
        let events = a.execute(sample(vec![*v], i as u32 + 1)).unwrap();
        assert_eq!(events.len(), 1, "no limits yet: no signal");
    }
    a
}

#[test]
fn limits_frozen_from_a_baseline_judge_later_points() {
    let mut a = mortgage_characteristic();
    let events = a
        .execute(freeze(LimitsBasis::Baseline {
            from_index: 1,
            to_index: 20,
        }))
        .unwrap();
    let SpcEvent::SpcControlLimitsFrozen {
        version,
        limits,
        from_sample,
        baseline_flags,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!((*version, *from_sample), (1, 21));
    close(limits.primary.ucl, 321.2167, 0.0001);
    assert!(baseline_flags.is_empty(), "{baseline_flags:?}");
    // In control, then a point above the UCL: one signal, on the I chart; its moving range
    // (330 − 301 = 29) is above the MR chart's UCL (25.45) as well.
    let e = a.execute(sample(vec![301.0], 31)).unwrap();
    assert_eq!(e.len(), 1);
    let e = a.execute(sample(vec![330.0], 32)).unwrap();
    let signals: Vec<(Rule, ChartPart, u64)> = e
        .iter()
        .filter_map(|e| match e {
            SpcEvent::SpcSignalRaised {
                rule, part, index, ..
            } => Some((*rule, *part, *index)),
            _ => None,
        })
        .collect();
    assert_eq!(
        signals,
        vec![
            (Rule::BeyondLimits, ChartPart::Primary, 22),
            (Rule::BeyondLimits, ChartPart::Spread, 22)
        ]
    );
    let c = a.characteristic().unwrap();
    assert_eq!(c.signals.len(), 2);
    assert_eq!(c.points.back().unwrap().limits_version, Some(1));
    let cap = c.capability().unwrap();
    close(cap.cp.unwrap(), 30.0 / (6.0 * 148.0 / 19.0 / 1.128), 1e-9);
    // A second freeze is version 2, judged from the next sample on.
    let e = a
        .execute(freeze(LimitsBasis::Baseline {
            from_index: 3,
            to_index: 22,
        }))
        .unwrap();
    assert!(matches!(
        e[0],
        SpcEvent::SpcControlLimitsFrozen {
            version: 2,
            from_sample: 23,
            ..
        }
    ));
}

#[test]
fn refusals() {
    let mut a = mortgage_characteristic();
    assert_eq!(
        a.decide(define(ChartKind::Imr, 1, SampleSource::Measurements)),
        Err(SpcError::AlreadyExists {
            characteristic_id: CharacteristicId::new("bore").unwrap()
        })
    );
    assert_eq!(
        a.decide(freeze(LimitsBasis::Baseline {
            from_index: 5,
            to_index: 21
        })),
        Err(SpcError::BaselineRange {
            from_index: 5,
            to_index: 21,
            samples: 20
        })
    );
    assert_eq!(
        a.decide(sample(vec![1.0, 2.0], 40)),
        Err(SpcError::SampleSize {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        a.decide(SpcCommand::RecordSample(RecordSample {
            data: SampleData::Count { count: 1, size: 5 },
            order_id: None,
            inspection_id: None,
            at: t(40)
        })),
        Err(SpcError::WrongSampleKind {
            chart: ChartKind::Imr
        })
    );
    assert_eq!(
        a.decide(sample(vec![f64::NAN], 40)),
        Err(SpcError::BadValue)
    );
    let fresh = SpcCharacteristic::default();
    assert_eq!(fresh.decide(sample(vec![1.0], 1)), Err(SpcError::NotFound));
    assert_eq!(
        fresh.decide(define(ChartKind::XbarR, 1, SampleSource::Measurements)),
        Err(SpcError::SubgroupSize {
            chart: ChartKind::XbarR,
            n: 1
        })
    );
    assert_eq!(
        fresh.decide(define(ChartKind::P, 50, SampleSource::Measurements)),
        Err(SpcError::SourceMismatch {
            chart: ChartKind::P,
            source_kind: "measurements"
        })
    );
    let _ = a.execute(sample(vec![300.0], 41)).unwrap();
}

#[test]
fn a_phase_one_baseline_lists_its_flagged_points() {
    let mut a = SpcCharacteristic::default();
    a.execute(define(
        ChartKind::P,
        50,
        SampleSource::Inspections { product_id: None },
    ))
    .unwrap();
    for (i, d) in ORANGE_JUICE.iter().enumerate() {
        a.execute(SpcCommand::RecordSample(RecordSample {
            data: SampleData::Count {
                count: *d,
                size: 50,
            },
            order_id: None,
            inspection_id: None,
            at: t(i as u32),
        }))
        .unwrap();
    }
    let e = a
        .execute(freeze(LimitsBasis::Baseline {
            from_index: 1,
            to_index: 30,
        }))
        .unwrap();
    let SpcEvent::SpcControlLimitsFrozen { baseline_flags, .. } = &e[0] else {
        panic!()
    };
    let beyond: Vec<u64> = baseline_flags
        .iter()
        .filter(|f| f.rule == Rule::BeyondLimits)
        .map(|f| f.index)
        .collect();
    assert_eq!(beyond, vec![15, 23]);
}

#[test]
fn the_inspection_flow_feeds_the_characteristics_it_names() {
    let event = OrderEvent::OrderInspectionRecorded {
        order_id: OrderId::new("PO-1").unwrap(),
        inspection_id: InspectionId::new("I1").unwrap(),
        sample_size: 50,
        defects: 3,
        passed: false,
        inspector: Actor::new("qa").unwrap(),
        notes: None,
        measurements: vec![Measurement::new(
            CharacteristicId::new("bore").unwrap(),
            vec![10.0, 10.2],
        )
        .unwrap()],
        at: t(5),
    };
    let facts = |id: &str, chart, source| CharacteristicFacts {
        characteristic_id: CharacteristicId::new(id).unwrap(),
        chart,
        source,
    };
    let product = ProductId::new("P1").unwrap();
    let issued = on_inspection_recorded(
        "E1",
        &event,
        &product,
        &[
            facts("bore", ChartKind::XbarR, SampleSource::Measurements),
            facts(
                "defectives",
                ChartKind::P,
                SampleSource::Inspections {
                    product_id: Some(product.clone()),
                },
            ),
            facts(
                "other-product",
                ChartKind::P,
                SampleSource::Inspections {
                    product_id: Some(ProductId::new("P2").unwrap()),
                },
            ),
            facts("weight", ChartKind::Imr, SampleSource::Measurements),
        ],
    );
    let ids: Vec<&str> = issued.iter().map(|c| c.command_id.as_str()).collect();
    assert_eq!(ids, vec!["E1/spc/bore", "E1/spc/defectives"]);
    assert!(matches!(
        &issued[1].target,
        Target::SpcCharacteristic {
            command: SpcCommand::RecordSample(RecordSample {
                data: SampleData::Count { count: 3, size: 50 },
                ..
            }),
            ..
        }
    ));
    assert_eq!(measured_characteristics(&event).len(), 1);
}

#[test]
fn serde_names_are_the_api_names() {
    for rule in Rule::ALL {
        assert_eq!(serde_json::to_value(rule).unwrap(), rule.as_str());
        assert_eq!(Rule::parse(rule.as_str()), Some(rule));
    }
    for chart in ChartKind::ALL {
        assert_eq!(serde_json::to_value(chart).unwrap(), chart.as_str());
    }
    assert_eq!(
        serde_json::from_value::<RuleSet>(serde_json::json!("western_electric")).unwrap(),
        RuleSet::WesternElectric
    );
}
