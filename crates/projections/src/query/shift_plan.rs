//! Calendars that match real plants (ADR 0060), the pure part: rotations over N
//! days with teams and breaks, one-day exceptions, and non-working periods, all
//! in plant-local wall-clock time. [`super::calendar::Calendar`] loads them (as
//! known at `as_of`) and turns them into UTC windows through the time zone's
//! rules.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

/// Longest rotation, in days.
pub const MAX_CYCLE_DAYS: usize = 366;

/// A break inside a shift: planned time (plant-local; a break whose start is
/// before its shift's start falls on the shift's second day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakSpec {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

/// One shift of a rotation day (or of an exception).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftSpec {
    pub shift: String,
    /// The crew that works it (A/B/C/D…), when the plant names crews.
    #[serde(default)]
    pub team: Option<String>,
    /// Plant-local start.
    pub start: NaiveTime,
    /// Plant-local end; not after the start: the shift ends the next day.
    pub end: NaiveTime,
    #[serde(default)]
    pub breaks: Vec<BreakSpec>,
}

/// A rotation: day `k` of the cycle is `days[k]`, day 0 being `anchor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub anchor: NaiveDate,
    pub days: Vec<Vec<ShiftSpec>>,
}

/// Minutes after a shift's start at which `t` falls (on its first or second day).
fn offset_min(start: NaiveTime, t: NaiveTime) -> i64 {
    let d = (t - start).num_minutes();
    if d < 0 {
        d + 24 * 60
    } else {
        d
    }
}

/// The shift's length in minutes (24 h when start equals end).
pub(crate) fn length_min(s: &ShiftSpec) -> i64 {
    match offset_min(s.start, s.end) {
        0 => 24 * 60,
        d => d,
    }
}

impl ShiftSpec {
    /// Why the shift cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.shift.trim().is_empty() {
            return Some("a shift needs a name".into());
        }
        if self.team.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Some(format!("shift {}: a team needs a name", self.shift));
        }
        let len = length_min(self);
        let mut last_end = 0;
        for b in &self.breaks {
            let (s, e) = (
                offset_min(self.start, b.start),
                offset_min(self.start, b.end),
            );
            if e <= s || e > len || s < last_end {
                return Some(format!(
                    "shift {}: break {}–{} must lie inside the shift, after the previous break",
                    self.shift, b.start, b.end
                ));
            }
            last_end = e;
        }
        None
    }

    /// The breaks as (start, end) offsets in minutes from the shift's start.
    pub(crate) fn break_offsets(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.breaks.iter().map(|b| {
            (
                offset_min(self.start, b.start),
                offset_min(self.start, b.end),
            )
        })
    }
}

/// Why a day's shifts cannot be used, if they cannot.
pub fn day_problem(shifts: &[ShiftSpec]) -> Option<String> {
    for (i, s) in shifts.iter().enumerate() {
        if let Some(p) = s.problem() {
            return Some(p);
        }
        if shifts[..i].iter().any(|t| t.shift == s.shift) {
            return Some(format!("shift {} is named twice on one day", s.shift));
        }
    }
    None
}

impl Rotation {
    /// Why the rotation cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.days.is_empty() || self.days.len() > MAX_CYCLE_DAYS {
            return Some(format!(
                "a rotation has 1 to {MAX_CYCLE_DAYS} days, not {}",
                self.days.len()
            ));
        }
        self.days.iter().find_map(|d| day_problem(d))
    }

    /// The shifts that begin on `day` (its day of the cycle, counted from the
    /// anchor, also before it).
    pub fn shifts_on(&self, day: NaiveDate) -> &[ShiftSpec] {
        let n = self.days.len() as i64;
        if n == 0 {
            return &[];
        }
        let k = (day - self.anchor).num_days().rem_euclid(n);
        usize::try_from(k)
            .ok()
            .and_then(|k| self.days.get(k))
            .map_or(&[][..], Vec::as_slice)
    }
}

/// A rotation in force from a plant-local date on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationVersion {
    pub effective_from: NaiveDate,
    pub rotation: Rotation,
}

/// The rotation in force on `day` among `versions` (sorted by effective date).
pub fn in_force(versions: &[RotationVersion], day: NaiveDate) -> Option<&Rotation> {
    versions
        .iter()
        .rev()
        .find(|v| v.effective_from <= day)
        .map(|v| &v.rotation)
}

/// A period without work (a holiday, a shutdown), plant-local: plant-wide, or of one
/// ISA-95 site (the lines under it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonWorking {
    pub name: String,
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    /// The site it applies to; none: every line of the plant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn shift(name: &str, team: &str, start: NaiveTime, end: NaiveTime) -> ShiftSpec {
        ShiftSpec {
            shift: name.into(),
            team: Some(team.into()),
            start,
            end,
            breaks: vec![],
        }
    }

    #[test]
    fn a_four_on_four_off_rotation_repeats_every_eight_days_also_before_its_anchor() {
        let anchor = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let day = vec![shift("day", "A", t(6, 0), t(18, 0))];
        let rot = Rotation {
            anchor,
            days: [vec![day; 4], vec![vec![]; 4]].concat(),
        };
        assert_eq!(rot.problem(), None);
        let d = |k: i64| anchor + chrono::Duration::days(k);
        assert_eq!(rot.shifts_on(d(0)).len(), 1);
        assert_eq!(rot.shifts_on(d(3)).len(), 1);
        assert!(rot.shifts_on(d(4)).is_empty());
        assert_eq!(rot.shifts_on(d(8)).len(), 1);
        assert!(
            rot.shifts_on(d(-1)).is_empty(),
            "day 7 of the previous cycle"
        );
        assert_eq!(rot.shifts_on(d(-8)).len(), 1);
    }

    #[test]
    fn breaks_must_lie_inside_their_shift_also_across_midnight() {
        let mut night = shift("night", "C", t(22, 0), t(6, 0));
        night.breaks = vec![
            BreakSpec {
                start: t(23, 30),
                end: t(23, 45),
            },
            BreakSpec {
                start: t(2, 0),
                end: t(2, 30),
            },
        ];
        assert_eq!(night.problem(), None);
        assert_eq!(
            night.break_offsets().collect::<Vec<_>>(),
            vec![(90, 105), (240, 270)]
        );
        night.breaks.push(BreakSpec {
            start: t(6, 0),
            end: t(6, 30),
        });
        assert!(night.problem().is_some(), "after the shift's end");
        night.breaks.pop();
        night.breaks.reverse();
        assert!(night.problem().is_some(), "out of order");
        assert_eq!(length_min(&shift("all", "A", t(6, 0), t(6, 0))), 24 * 60);
    }

    #[test]
    fn the_version_in_force_is_the_latest_that_began() {
        let r = |k: u32| Rotation {
            anchor: NaiveDate::from_ymd_opt(2026, 1, k).unwrap(),
            days: vec![vec![]],
        };
        let v = |m: u32, k: u32| RotationVersion {
            effective_from: NaiveDate::from_ymd_opt(2026, m, 1).unwrap(),
            rotation: r(k),
        };
        let versions = [v(1, 1), v(3, 2)];
        let day = |m: u32, d: u32| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        assert_eq!(in_force(&versions, day(2, 28)), Some(&r(1)));
        assert_eq!(in_force(&versions, day(3, 1)), Some(&r(2)));
        assert_eq!(in_force(&versions, day(12, 31)), Some(&r(2)));
        assert_eq!(
            in_force(&versions, day(1, 1) - chrono::Duration::days(1)),
            None
        );
    }
}
