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

use super::shift_plan::{day_problem, in_force, NonWorking, Rotation, RotationVersion, ShiftSpec};
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

/// Records `rotation` as the calendar of `line` from the plant-local date
/// `effective_from` on (ADR 0060): days before keep the calendar they had.
#[instrument(skip(pool, rotation), err)]
pub async fn record_rotation(
    pool: &PgPool,
    line: &str,
    effective_from: NaiveDate,
    rotation: &Rotation,
    by: &str,
) -> Result<DateTime<Utc>, QueryError> {
    if let Some(problem) = rotation.problem() {
        return Err(QueryError::Invalid(problem));
    }
    let doc = serde_json::to_value(rotation)
        .map_err(|e| QueryError::Invalid(format!("the rotation does not encode: {e}")))?;
    Ok(sqlx::query_scalar(
        "INSERT INTO calendar_rotations (line, effective_from, rotation, recorded_by) \
         VALUES ($1, $2, $3, $4) RETURNING recorded_at",
    )
    .bind(line)
    .bind(effective_from)
    .bind(doc)
    .bind(by)
    .fetch_one(pool)
    .await?)
}

/// Replaces the shifts of `line` on the plant-local `day` (overtime, a short day;
/// none: no work that day).
#[instrument(skip(pool, shifts), err)]
pub async fn record_exception(
    pool: &PgPool,
    line: &str,
    day: NaiveDate,
    shifts: &[ShiftSpec],
    by: &str,
) -> Result<DateTime<Utc>, QueryError> {
    if let Some(problem) = day_problem(shifts) {
        return Err(QueryError::Invalid(problem));
    }
    let doc = serde_json::to_value(shifts)
        .map_err(|e| QueryError::Invalid(format!("the shifts do not encode: {e}")))?;
    Ok(sqlx::query_scalar(
        "INSERT INTO calendar_exceptions (line, day, shifts, recorded_by) \
         VALUES ($1, $2, $3, $4) RETURNING recorded_at",
    )
    .bind(line)
    .bind(day)
    .bind(doc)
    .bind(by)
    .fetch_one(pool)
    .await?)
}

/// Adds a non-working period (plant-wide, or of a site that exists); its id.
#[instrument(skip(pool), err)]
pub async fn add_non_working(
    pool: &PgPool,
    period: &NonWorking,
    by: &str,
) -> Result<i64, QueryError> {
    if period.name.trim().is_empty() {
        return Err(QueryError::Invalid(
            "a non-working period needs a name".into(),
        ));
    }
    if period.to <= period.from {
        return Err(QueryError::Invalid("`to` must be after `from`".into()));
    }
    if let Some(site) = &period.site {
        let known: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rm_hierarchy_nodes WHERE node_id = $1 AND level = 'site')",
        )
        .bind(site)
        .fetch_one(pool)
        .await?;
        if !known {
            return Err(QueryError::NotFound {
                kind: "site",
                id: site.clone(),
            });
        }
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO calendar_non_working (name, from_local, to_local, recorded_by, site) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(period.name.trim())
    .bind(period.from)
    .bind(period.to)
    .bind(by)
    .bind(&period.site)
    .fetch_one(pool)
    .await?)
}

/// Removes a non-working period from now on (`as_of` before now still sees it);
/// false when there is no such period in force.
#[instrument(skip(pool), err)]
pub async fn remove_non_working(pool: &PgPool, id: i64) -> Result<bool, QueryError> {
    let done = sqlx::query(
        "UPDATE calendar_non_working SET removed_at = clock_timestamp() \
         WHERE id = $1 AND removed_at IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A rotation of a line as recorded, with its effective date.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RotationRecord {
    pub line: String,
    pub effective_from: NaiveDate,
    #[sqlx(json)]
    pub rotation: Rotation,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: Option<String>,
}

/// A one-day exception of a line as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ExceptionRecord {
    pub line: String,
    pub day: NaiveDate,
    #[sqlx(json)]
    pub shifts: Vec<ShiftSpec>,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: Option<String>,
}

/// A non-working period in force.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct NonWorkingRecord {
    pub id: i64,
    pub name: String,
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    /// The ISA-95 site it applies to; absent: the whole plant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// The calendar's records: rotations, exceptions, non-working periods.
pub type CalendarRecords = (
    Vec<RotationRecord>,
    Vec<ExceptionRecord>,
    Vec<NonWorkingRecord>,
);

/// Rotations (the latest record of each effective date), exceptions (the latest
/// of each day) and the non-working periods in force, for the calendar view.
#[instrument(skip(pool), err)]
pub async fn calendar_records(pool: &PgPool) -> Result<CalendarRecords, QueryError> {
    let rotations = sqlx::query_as(
        "SELECT DISTINCT ON (line, effective_from) line, effective_from, rotation, recorded_at, \
           recorded_by FROM calendar_rotations ORDER BY line, effective_from, recorded_at DESC",
    )
    .fetch_all(pool)
    .await?;
    let exceptions = sqlx::query_as(
        "SELECT DISTINCT ON (line, day) line, day, shifts, recorded_at, recorded_by \
         FROM calendar_exceptions ORDER BY line, day, recorded_at DESC",
    )
    .fetch_all(pool)
    .await?;
    let non_working = sqlx::query_as(
        "SELECT id, name, from_local AS \"from\", to_local AS \"to\", site, recorded_at \
         FROM calendar_non_working WHERE removed_at IS NULL ORDER BY from_local, id",
    )
    .fetch_all(pool)
    .await?;
    Ok((rotations, exceptions, non_working))
}

/// The calendar as the KPI queries (and the report schedules) use it: weekly
/// shifts, rotations by effective date, one-day exceptions and non-working
/// periods (ADR 0060).
#[derive(Debug, Clone)]
pub struct Calendar {
    pub tz: Tz,
    shifts: HashMap<String, Vec<ShiftDefinition>>,
    rotations: HashMap<String, Vec<RotationVersion>>,
    exceptions: HashMap<(String, NaiveDate), Vec<ShiftSpec>>,
    non_working: Vec<NonWorking>,
    /// The ISA-95 site of each line that has one (the hierarchy as it stands).
    sites: HashMap<String, String>,
}

/// A shift occurrence in UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub name: String,
    /// The crew working it, when the rotation names one.
    pub team: Option<String>,
    /// Its breaks (planned time), clipped to the window, by start.
    pub breaks: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// One row of the calendar history query: a rotation (`r`), an exception (`e`)
/// or a non-working period (`n`).
#[derive(sqlx::FromRow)]
struct HistoryRow {
    kind: String,
    line: Option<String>,
    day: Option<NaiveDate>,
    doc: serde_json::Value,
}

/// The whole calendar of `lines` in one round trip: the time zone (`t`), the
/// weekly shifts (`w`), and the rotations, exceptions and non-working periods as
/// recorded by `as_of` (all of them without; the latest record of each date wins).
const HISTORY: &str = "SELECT 't' AS kind, NULL::text AS line, NULL::date AS day, \
       to_jsonb(time_zone) AS doc FROM plant_settings \
     UNION ALL SELECT 'w', line, NULL, jsonb_build_object('line', line, \
       'shift_name', shift_name, 'start_time', start_time, 'end_time', end_time, 'days', days) \
     FROM shift_definitions WHERE line = ANY($1) \
     UNION ALL SELECT 'r', line, day, doc FROM ( \
       SELECT DISTINCT ON (line, effective_from) line, effective_from AS day, rotation AS doc \
       FROM calendar_rotations WHERE line = ANY($1) \
         AND ($2::timestamptz IS NULL OR recorded_at <= $2) \
       ORDER BY line, effective_from, recorded_at DESC) r \
     UNION ALL SELECT 'e', line, day, doc FROM ( \
       SELECT DISTINCT ON (line, day) line, day, shifts AS doc FROM calendar_exceptions \
       WHERE line = ANY($1) AND ($2::timestamptz IS NULL OR recorded_at <= $2) \
       ORDER BY line, day, recorded_at DESC) e \
     UNION ALL SELECT 'n', NULL, NULL, \
       jsonb_build_object('name', name, 'from', from_local, 'to', to_local, 'site', site) \
     FROM calendar_non_working WHERE ($2::timestamptz IS NULL OR recorded_at <= $2) \
       AND (removed_at IS NULL OR ($2::timestamptz IS NOT NULL AND removed_at > $2)) \
     UNION ALL SELECT 's', l.node_id, NULL, to_jsonb(a.parent) \
     FROM rm_hierarchy_nodes l JOIN rm_hierarchy_nodes a ON a.node_id = l.parent \
     WHERE l.node_id = ANY($1) AND l.level = 'line' AND a.parent IS NOT NULL";

impl Calendar {
    pub async fn load(pool: &PgPool, lines: &[String]) -> Result<Self, QueryError> {
        Self::load_as_of(pool, lines, None).await
    }

    /// The calendar of `lines` as it was recorded by `as_of` (the weekly shifts
    /// and the time zone have no history: they are as they are now).
    pub async fn load_as_of(
        pool: &PgPool,
        lines: &[String],
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Self, QueryError> {
        let rows = sqlx::query_as::<_, HistoryRow>(HISTORY)
            .bind(lines)
            .bind(as_of)
            .fetch_all(pool)
            .await?;
        let mut calendar = Self {
            tz: Tz::UTC,
            shifts: HashMap::new(),
            rotations: HashMap::new(),
            exceptions: HashMap::new(),
            non_working: Vec::new(),
            sites: HashMap::new(),
        };
        for row in rows {
            calendar.add(row)?;
        }
        for shifts in calendar.shifts.values_mut() {
            shifts
                .sort_by(|a, b| (a.start_time, &a.shift_name).cmp(&(b.start_time, &b.shift_name)));
        }
        for versions in calendar.rotations.values_mut() {
            versions.sort_by_key(|v| v.effective_from);
        }
        Ok(calendar)
    }

    fn add(&mut self, row: HistoryRow) -> Result<(), QueryError> {
        let bad = |e: serde_json::Error| {
            QueryError::Database(sqlx::Error::Decode(
                format!("a stored calendar entry does not decode: {e}").into(),
            ))
        };
        match (row.kind.as_str(), row.line, row.day) {
            ("t", _, _) => {
                let name: String = serde_json::from_value(row.doc).map_err(bad)?;
                self.tz = Tz::from_str(&name).unwrap_or(Tz::UTC);
            }
            ("w", Some(line), _) => {
                let shift: ShiftDefinition = serde_json::from_value(row.doc).map_err(bad)?;
                self.shifts.entry(line).or_default().push(shift);
            }
            ("r", Some(line), Some(day)) => {
                let rotation = serde_json::from_value(row.doc).map_err(bad)?;
                self.rotations
                    .entry(line)
                    .or_default()
                    .push(RotationVersion {
                        effective_from: day,
                        rotation,
                    });
            }
            ("e", Some(line), Some(day)) => {
                let shifts = serde_json::from_value(row.doc).map_err(bad)?;
                self.exceptions.insert((line, day), shifts);
            }
            ("n", _, _) => self
                .non_working
                .push(serde_json::from_value(row.doc).map_err(bad)?),
            ("s", Some(line), _) => {
                let site: String = serde_json::from_value(row.doc).map_err(bad)?;
                self.sites.insert(line, site);
            }
            _ => {}
        }
        Ok(())
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

    /// The shift occurrences of `line` overlapping [from, to), clipped to it and
    /// cut by the non-working periods, by start; `None` when the line has no
    /// calendar (no weekly shifts, rotation or exception).
    pub fn shift_windows(
        &self,
        line: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<Vec<ShiftWindow>> {
        let weekly = self.shifts.get(line).filter(|s| !s.is_empty());
        let rotations = self.rotations.get(line).filter(|v| !v.is_empty());
        let excepted = self.exceptions.keys().any(|(l, _)| l == line);
        if weekly.is_none() && rotations.is_none() && !excepted {
            return None;
        }
        let off = self.non_working_between(line, from, to);
        let mut out = Vec::new();
        let mut day = self.local_date(from) - Duration::days(1);
        let last = self.local_date(to);
        while day <= last {
            for spec in self.shifts_on(line, day, weekly, rotations) {
                self.push_occurrence(&mut out, day, &spec, (from, to), &off);
            }
            day += Duration::days(1);
        }
        out.sort_by(|x, y| x.from.cmp(&y.from).then(x.name.cmp(&y.name)));
        Some(out)
    }

    /// The shifts of `line` that begin on the plant-local `day`: the day's
    /// exception, else the rotation in force, else the weekly shifts.
    fn shifts_on(
        &self,
        line: &str,
        day: NaiveDate,
        weekly: Option<&Vec<ShiftDefinition>>,
        rotations: Option<&Vec<RotationVersion>>,
    ) -> Vec<ShiftSpec> {
        if let Some(shifts) = self.exceptions.get(&(line.to_owned(), day)) {
            return shifts.clone();
        }
        if let Some(rotation) = rotations.and_then(|v| in_force(v, day)) {
            return rotation.shifts_on(day).to_vec();
        }
        let weekday = i16::try_from(day.weekday().number_from_monday()).unwrap_or(0);
        weekly
            .into_iter()
            .flatten()
            .filter(|s| s.days.contains(&weekday))
            .map(|s| ShiftSpec {
                shift: s.shift_name.clone(),
                team: None,
                start: s.start_time,
                end: s.end_time,
                breaks: Vec::new(),
            })
            .collect()
    }

    /// The non-working periods of `line` (plant-wide, or of its site) overlapping
    /// [from, to) in UTC, merged, by start.
    fn non_working_between(
        &self,
        line: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let site = self.sites.get(line);
        let mut v: Vec<_> = self
            .non_working
            .iter()
            .filter(|n| n.site.is_none() || n.site.as_ref() == site)
            .map(|n| (self.utc(n.from), self.utc(n.to)))
            .filter(|(a, b)| a < b && *a < to && *b > from)
            .collect();
        v.sort();
        let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    /// Adds the occurrence of `spec` beginning on `day`: its pieces outside the
    /// non-working periods `off`, clipped to `window`, each with its breaks.
    fn push_occurrence(
        &self,
        out: &mut Vec<ShiftWindow>,
        day: NaiveDate,
        spec: &ShiftSpec,
        window: (DateTime<Utc>, DateTime<Utc>),
        off: &[(DateTime<Utc>, DateTime<Utc>)],
    ) {
        let local_start = day.and_time(spec.start);
        let end_day = if spec.end > spec.start {
            day
        } else {
            day + Duration::days(1)
        };
        let (start, end) = (self.utc(local_start), self.utc(end_day.and_time(spec.end)));
        let breaks: Vec<(DateTime<Utc>, DateTime<Utc>)> = spec
            .break_offsets()
            .map(|(a, b)| {
                let at = |m: i64| self.utc(local_start + Duration::minutes(m));
                (at(a), at(b))
            })
            .collect();
        let mut cursor = start.max(window.0);
        let stop = end.min(window.1);
        for &(a, b) in off.iter().chain(std::iter::once(&(stop, stop))) {
            let piece_end = a.min(stop);
            if cursor < piece_end {
                out.push(ShiftWindow {
                    from: cursor,
                    to: piece_end,
                    name: spec.shift.clone(),
                    team: spec.team.clone(),
                    breaks: breaks
                        .iter()
                        .map(|&(x, y)| (x.max(cursor), y.min(piece_end)))
                        .filter(|(x, y)| x < y)
                        .collect(),
                });
            }
            cursor = cursor.max(b);
            if cursor >= stop {
                break;
            }
        }
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
