//! The factors of Shewhart control charts for subgroups of 2 to 25, as tabulated in every
//! SPC text (Montgomery, *Introduction to Statistical Quality Control*, Appendix Table VI;
//! ASTM E2587; the NIST/SEMATECH e-Handbook, section 6.3.2).
//!
//! The published charts of the textbooks are computed with these rounded values, so they are
//! used as printed rather than recomputed: a limit computed here matches the book's to the
//! digit. The unit tests check every row against the definitions (`A2 = 3/(d2 √n)`,
//! `D4 = 1 + 3 d3/d2`, `c4` from the gamma function, `A3 = 3/(c4 √n)`,
//! `B4 = 1 + 3 √(1 − c4²)/c4`), which catches a mistyped digit.

/// One row of the table: the factors for subgroups of `n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Factors {
    pub n: u32,
    /// Mean of the relative range `R/σ`: `σ̂ = R̄/d2`.
    pub d2: f64,
    /// Standard deviation of the relative range.
    pub d3: f64,
    /// X̄ chart from R̄: `x̄̄ ± A2 R̄`.
    pub a2: f64,
    /// R chart: `LCL = D3 R̄`, `UCL = D4 R̄`.
    pub d3_lower: f64,
    pub d4: f64,
    /// Mean of `s/σ`: `σ̂ = s̄/c4`.
    pub c4: f64,
    /// X̄ chart from s̄: `x̄̄ ± A3 s̄`.
    pub a3: f64,
    /// S chart: `LCL = B3 s̄`, `UCL = B4 s̄`.
    pub b3: f64,
    pub b4: f64,
}

/// The smallest and largest subgroup sizes of the table.
pub const MIN_SUBGROUP: u32 = 2;
pub const MAX_SUBGROUP: u32 = 25;

macro_rules! rows {
    ($([$n:literal, $d2:literal, $d3:literal, $a2:literal, $dl:literal, $d4:literal, $c4:literal, $a3:literal, $b3:literal, $b4:literal]),* $(,)?) => {
        [$(Factors { n: $n, d2: $d2, d3: $d3, a2: $a2, d3_lower: $dl, d4: $d4, c4: $c4, a3: $a3, b3: $b3, b4: $b4 }),*]
    };
}

/// n, d2, d3, A2, D3, D4, c4, A3, B3, B4.
const TABLE: [Factors; 24] = rows![
    [2, 1.128, 0.853, 1.880, 0.0, 3.267, 0.7979, 2.659, 0.0, 3.267],
    [3, 1.693, 0.888, 1.023, 0.0, 2.574, 0.8862, 1.954, 0.0, 2.568],
    [4, 2.059, 0.880, 0.729, 0.0, 2.282, 0.9213, 1.628, 0.0, 2.266],
    [5, 2.326, 0.864, 0.577, 0.0, 2.114, 0.9400, 1.427, 0.0, 2.089],
    [6, 2.534, 0.848, 0.483, 0.0, 2.004, 0.9515, 1.287, 0.030, 1.970],
    [7, 2.704, 0.833, 0.419, 0.076, 1.924, 0.9594, 1.182, 0.118, 1.882],
    [8, 2.847, 0.820, 0.373, 0.136, 1.864, 0.9650, 1.099, 0.185, 1.815],
    [9, 2.970, 0.808, 0.337, 0.184, 1.816, 0.9693, 1.032, 0.239, 1.761],
    [10, 3.078, 0.797, 0.308, 0.223, 1.777, 0.9727, 0.975, 0.284, 1.716],
    [11, 3.173, 0.787, 0.285, 0.256, 1.744, 0.9754, 0.927, 0.321, 1.679],
    [12, 3.258, 0.778, 0.266, 0.283, 1.717, 0.9776, 0.886, 0.354, 1.646],
    [13, 3.336, 0.770, 0.249, 0.307, 1.693, 0.9794, 0.850, 0.382, 1.618],
    [14, 3.407, 0.763, 0.235, 0.328, 1.672, 0.9810, 0.817, 0.406, 1.594],
    [15, 3.472, 0.756, 0.223, 0.347, 1.653, 0.9823, 0.789, 0.428, 1.572],
    [16, 3.532, 0.750, 0.212, 0.363, 1.637, 0.9835, 0.763, 0.448, 1.552],
    [17, 3.588, 0.744, 0.203, 0.378, 1.622, 0.9845, 0.739, 0.466, 1.534],
    [18, 3.640, 0.739, 0.194, 0.391, 1.608, 0.9854, 0.718, 0.482, 1.518],
    [19, 3.689, 0.734, 0.187, 0.403, 1.597, 0.9862, 0.698, 0.497, 1.503],
    [20, 3.735, 0.729, 0.180, 0.415, 1.585, 0.9869, 0.680, 0.510, 1.490],
    [21, 3.778, 0.724, 0.173, 0.425, 1.575, 0.9876, 0.663, 0.523, 1.477],
    [22, 3.819, 0.720, 0.167, 0.434, 1.566, 0.9882, 0.647, 0.534, 1.466],
    [23, 3.858, 0.716, 0.162, 0.443, 1.557, 0.9887, 0.633, 0.545, 1.455],
    [24, 3.895, 0.712, 0.157, 0.451, 1.548, 0.9892, 0.619, 0.555, 1.445],
    [25, 3.931, 0.708, 0.153, 0.459, 1.541, 0.9896, 0.606, 0.565, 1.435],
];

/// The factors for subgroups of `n` (2 to 25).
pub fn factors(n: u32) -> Option<&'static Factors> {
    TABLE.iter().find(|f| f.n == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `c4(n) = √(2/(n−1)) Γ(n/2)/Γ((n−1)/2)`; the gamma ratio by its recurrence
    /// `r(n+2) = r(n) · n/(n−1)` from `r(2) = 1/√π` and `r(3) = √π/2`.
    fn c4(n: u32) -> f64 {
        let pi = std::f64::consts::PI;
        let mut r = if n % 2 == 0 {
            1.0 / pi.sqrt()
        } else {
            pi.sqrt() / 2.0
        };
        let mut k = if n % 2 == 0 { 2 } else { 3 };
        while k < n {
            r *= f64::from(k) / f64::from(k - 1);
            k += 2;
        }
        (2.0 / f64::from(n - 1)).sqrt() * r
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn every_row_agrees_with_the_definitions_to_the_printed_digits() {
        for f in TABLE {
            let n = f64::from(f.n);
            assert!(
                close(f.a2, 3.0 / (f.d2 * n.sqrt()), 0.0015),
                "A2 at n={}",
                f.n
            );
            // D3 and D4 are printed from the unrounded d3 (0.8525 at n = 2): 0.002.
            assert!(
                close(f.d4, 1.0 + 3.0 * f.d3 / f.d2, 0.002),
                "D4 at n={}",
                f.n
            );
            let d3_lower = (1.0 - 3.0 * f.d3 / f.d2).max(0.0);
            assert!(close(f.d3_lower, d3_lower, 0.002), "D3 at n={}", f.n);
            assert!(
                close(f.c4, c4(f.n), 0.00006),
                "c4 at n={}: {}",
                f.n,
                c4(f.n)
            );
            let c4 = c4(f.n);
            assert!(
                close(f.a3, 3.0 / (c4 * n.sqrt()), 0.0015),
                "A3 at n={}",
                f.n
            );
            let k = 3.0 * (1.0 - c4 * c4).sqrt() / c4;
            assert!(close(f.b4, 1.0 + k, 0.0015), "B4 at n={}", f.n);
            assert!(close(f.b3, (1.0 - k).max(0.0), 0.0015), "B3 at n={}", f.n);
        }
        assert_eq!(TABLE.len() as u32, MAX_SUBGROUP - MIN_SUBGROUP + 1);
        assert!(factors(1).is_none() && factors(26).is_none());
        assert_eq!(factors(5).map(|f| f.a2), Some(0.577));
    }
}
