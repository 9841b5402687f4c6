//! The plant calendar: the plant's time zone and the shift definitions per line.
//!
//! These are settings, not events: they live in `plant_settings` and
//! `shift_definitions` (written here, read by the KPI queries) and are not
//! touched by replay. Shifts are plant-local wall-clock times; one whose end is
//! not after its start crosses midnight, and equal start and end is a 24-hour
//! shift. Turning them into UTC windows goes through the time zone's rules, so a
//! shift across a DST change is an hour shorter or longer, as it is on the floor.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use crate::error::QueryError;

/// One shift of a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ShiftDefinition {
    pub line: String,
    pub shift_name: String,
    /// Plant-local start, e.g. `22:00:00`.
    pub start_time: NaiveTime,
    /// Plant-local end; not after the start: the shift ends the next day.
    pub end_time: NaiveTime,
    /// ISO weekdays (1 = Monday .. 7 = Sunday) on which the shift starts.
    #[serde(default = "every_day")]
    pub days: Vec<i16>,
}

fn every_day() -> Vec<i16> {
    (1..=7).collect()
}

/// The plant's IANA time zone name (default `UTC`).
#[instrument(skip(pool), err)]
pub async fn plant_time_zone(pool: &PgPool) -> Result<String, QueryError> {
    let tz: Option<String> = sqlx::query_scalar("SELECT time_zone FROM plant_settings")
        .fetch_optional(pool)
        .await?;
    Ok(tz.unwrap_or_else(|| "UTC".to_owned()))
}

/// Sets the plant's time zone (an IANA name such as `Europe/Berlin`).
#[instrument(skip(pool), err)]
pub async fn set_plant_time_zone(pool: &PgPool, time_zone: &str) -> Result<(), QueryError> {
    Tz::from_str(time_zone)
        .map_err(|_| QueryError::Invalid(format!("{time_zone:?} is not an IANA time zone")))?;
    sqlx::query(
        "INSERT INTO plant_settings (id, time_zone) VALUES (true, $1) \
         ON CONFLICT (id) DO UPDATE SET time_zone = excluded.time_zone",
    )
    .bind(time_zone)
    .execute(pool)
    .await?;
    Ok(())
}

/// The shifts of one line, or of every line.
#[instrument(skip(pool), err)]
pub async fn list_shifts(
    pool: &PgPool,
    line: Option<&str>,
) -> Result<Vec<ShiftDefinition>, QueryError> {
    let rows = sqlx::query_as::<_, ShiftDefinition>(
        "SELECT line, shift_name, start_time, end_time, days FROM shift_definitions \
         WHERE ($1::text IS NULL OR line = $1) ORDER BY line, start_time, shift_name",
    )
    .bind(line)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Two 8-hour shifts for `line`, the first beginning at `now` in the plant's time zone (to the
/// second): the calendar of a demo. Time before the demo began is outside every shift (not
/// planned production time), so neither its first screen nor a "today" or "last 24 h" window
/// counts it as downtime (DESIGN trap 16). After 16 hours the demo is off shift until
/// `shopfloor simulate` starts again (and sets a new calendar).
#[instrument(skip(pool), err)]
pub async fn shifts_from_now(
    pool: &PgPool,
    line: &str,
    now: DateTime<Utc>,
) -> Result<(), QueryError> {
    let tz = Tz::from_str(&plant_time_zone(pool).await?).unwrap_or(Tz::UTC);
    replace_shifts(
        pool,
        line,
        &demo_shifts(line, now.with_timezone(&tz).naive_local()),
    )
    .await
}

/// The demo's shifts from the plant-local time `start` (pure): two of 8 hours, each on the
/// weekday it begins only, so that yesterday holds no shift (no planned time before the demo).
pub fn demo_shifts(line: &str, start: NaiveDateTime) -> Vec<ShiftDefinition> {
    let start = start.with_nanosecond(0).unwrap_or(start);
    (0..2)
        .map(|k| {
            let from = start + Duration::hours(8 * k);
            ShiftDefinition {
                line: line.to_owned(),
                shift_name: format!("demo-{}", k + 1),
                start_time: from.time(),
                end_time: (from + Duration::hours(8)).time(),
                days: vec![i16::try_from(from.weekday().number_from_monday()).unwrap_or(1)],
            }
        })
        .collect()
}

/// Replaces the shift calendar of `line` (an empty list removes it: the whole
/// time is then planned production time, less planned stops).
#[instrument(skip(pool, shifts), err)]
pub async fn replace_shifts(
    pool: &PgPool,
    line: &str,
    shifts: &[ShiftDefinition],
) -> Result<(), QueryError> {
    for (i, s) in shifts.iter().enumerate() {
        if s.shift_name.trim().is_empty() {
            return Err(QueryError::Invalid("a shift needs a name".into()));
        }
        if shifts[..i].iter().any(|t| t.shift_name == s.shift_name) {
            return Err(QueryError::Invalid(format!(
                "shift {} is named twice",
                s.shift_name
            )));
        }
        if s.days.is_empty() || s.days.iter().any(|d| !(1..=7).contains(d)) {
            return Err(QueryError::Invalid(format!(
                "shift {}: days must be ISO weekdays 1..7",
                s.shift_name
            )));
        }
    }
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM shift_definitions WHERE line = $1")
        .bind(line)
        .execute(&mut *tx)
        .await?;
    for s in shifts {
        sqlx::query(
            "INSERT INTO shift_definitions (line, shift_name, start_time, end_time, days) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(line)
        .bind(&s.shift_name)
        .bind(s.start_time)
        .bind(s.end_time)
        .bind(&s.days)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The calendar as the KPI queries (and the report schedules) use it.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub tz: Tz,
    shifts: HashMap<String, Vec<ShiftDefinition>>,
}

/// A shift occurrence in UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub name: String,
}

impl Calendar {
    pub async fn load(pool: &PgPool, lines: &[String]) -> Result<Self, QueryError> {
        let tz_name = plant_time_zone(pool).await?;
        let tz = Tz::from_str(&tz_name).unwrap_or(Tz::UTC);
        let rows = sqlx::query_as::<_, ShiftDefinition>(
            "SELECT line, shift_name, start_time, end_time, days FROM shift_definitions \
             WHERE line = ANY($1) ORDER BY line, start_time, shift_name",
        )
        .bind(lines)
        .fetch_all(pool)
        .await?;
        let mut shifts: HashMap<String, Vec<ShiftDefinition>> = HashMap::new();
        for r in rows {
            shifts.entry(r.line.clone()).or_default().push(r);
        }
        Ok(Self { tz, shifts })
    }

    /// The UTC instant of a plant-local time (the earlier one when the clock goes
    /// back; just after the gap when it jumps forward).
    pub fn utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
            LocalResult::None => {
                let later = local + Duration::hours(1);
                match self.tz.from_local_datetime(&later) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
                    LocalResult::None => Utc.from_utc_datetime(&local),
                }
            }
        }
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    /// The shift occurrences of `line` overlapping [from, to), clipped to it, by
    /// start; `None` when the line has no calendar.
    pub fn shift_windows(
        &self,
        line: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<Vec<ShiftWindow>> {
        let shifts = self.shifts.get(line).filter(|s| !s.is_empty())?;
        let mut out = Vec::new();
        let mut day = self.local_date(from) - Duration::days(1);
        let last = self.local_date(to);
        while day <= last {
            let weekday = i16::try_from(day.weekday().number_from_monday()).unwrap_or(0);
            for s in shifts.iter().filter(|s| s.days.contains(&weekday)) {
                let start = self.utc(day.and_time(s.start_time));
                let end_day = if s.end_time > s.start_time {
                    day
                } else {
                    day + Duration::days(1)
                };
                let end = self.utc(end_day.and_time(s.end_time));
                let (a, b) = (start.max(from), end.min(to));
                if a < b {
                    out.push(ShiftWindow {
                        from: a,
                        to: b,
                        name: s.shift_name.clone(),
                    });
                }
            }
            day += Duration::days(1);
        }
        out.sort_by(|x, y| x.from.cmp(&y.from).then(x.name.cmp(&y.name)));
        Some(out)
    }

    /// Plant-local day boundaries covering [from, to), clipped.
    pub fn days(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut out = Vec::new();
        let mut day = self.local_date(from);
        loop {
            let start = self.utc(day.and_time(NaiveTime::MIN));
            let end = self.utc((day + Duration::days(1)).and_time(NaiveTime::MIN));
            if start >= to {
                break;
            }
            let (a, b) = (start.max(from), end.min(to));
            if a < b {
                out.push((a, b));
            }
            day += Duration::days(1);
        }
        out
    }

    /// Plant-local hour boundaries covering [from, to), clipped.
    pub(crate) fn hours(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let local = from.with_timezone(&self.tz);
        let floor = local
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .map_or(from, |t| t.with_timezone(&Utc));
        let mut out = Vec::new();
        let mut start = floor;
        while start < to {
            let end = start + Duration::hours(1);
            let (a, b) = (start.max(from), end.min(to));
            if a < b {
                out.push((a, b));
            }
            start = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_shifts_begin_at_its_start_on_their_own_weekday_only() {
        // Tuesday 2026-12-01 20:15:07.5 local: the second shift begins on Wednesday.
        let start = NaiveDate::from_ymd_opt(2026, 12, 1)
            .and_then(|d| d.and_hms_milli_opt(20, 15, 7, 500))
            .unwrap();
        let shifts = demo_shifts("L1", start);
        assert_eq!(shifts.len(), 2);
        assert_eq!(
            shifts[0].start_time,
            NaiveTime::from_hms_opt(20, 15, 7).unwrap()
        );
        assert_eq!(
            shifts[0].end_time,
            NaiveTime::from_hms_opt(4, 15, 7).unwrap()
        );
        assert_eq!(shifts[0].days, vec![2]);
        assert_eq!(
            shifts[1].start_time,
            NaiveTime::from_hms_opt(4, 15, 7).unwrap()
        );
        assert_eq!(shifts[1].days, vec![3]);
    }
}
