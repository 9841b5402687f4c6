//! The plant calendar: its time zone and each line's shifts, read by the KPI
//! queries (planned production time) and the report schedules.
//!
//! These are settings, not events (ADR 0053). The weekly shifts apply to every
//! window, past ones included; rotations take effect from a date, exceptions
//! replace one day, and non-working periods are removed rather than deleted, all
//! kept as an append-only history so `as_of` answers as they were known (ADR 0060).
//! Each change is recorded with the acting person.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use shopfloor_projections::query::calendar::{
    self as cal, ExceptionRecord, NonWorkingRecord, RotationRecord,
};
use shopfloor_projections::query::shift_plan::{NonWorking, Rotation, ShiftSpec};
use shopfloor_projections::query::{self, ShiftDefinition};
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::error::{ApiError, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, Ctx};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/calendar", get(calendar))
        .route("/api/v1/calendar/time-zone", put(set_time_zone))
        .route("/api/v1/calendar/lines/{line}/shifts", put(set_shifts))
        .route(
            "/api/v1/calendar/lines/{line}/rotations/{effective_from}",
            put(set_rotation),
        )
        .route(
            "/api/v1/calendar/lines/{line}/exceptions/{day}",
            put(set_exception),
        )
        .route("/api/v1/calendar/non-working", post(add_non_working))
        .route(
            "/api/v1/calendar/non-working/{id}",
            delete(remove_non_working),
        )
}

/// One shift of a line, in plant-local wall-clock time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShiftView {
    pub shift_name: String,
    /// `HH:MM` or `HH:MM:SS`, plant-local.
    pub start_time: String,
    /// Not after the start: the shift ends the next day; equal: a 24-hour shift.
    pub end_time: String,
    /// ISO weekdays (1 = Monday .. 7 = Sunday) on which it starts; all when left out.
    #[serde(default)]
    pub days: Option<Vec<i16>>,
}

/// The shifts of one line.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineShifts {
    pub line: String,
    pub shifts: Vec<ShiftView>,
}

/// The plant calendar.
#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarView {
    /// The plant's IANA time zone.
    pub time_zone: String,
    /// Lines with weekly shifts, by line; a line without any calendar plans all
    /// its time.
    pub lines: Vec<LineShifts>,
    /// Rotations by line and the date they take effect (ADR 0060).
    #[schema(value_type = Vec<Object>)]
    pub rotations: Vec<RotationRecord>,
    /// One-day exceptions by line and day.
    #[schema(value_type = Vec<Object>)]
    pub exceptions: Vec<ExceptionRecord>,
    /// Plant-wide non-working periods in force.
    #[schema(value_type = Vec<Object>)]
    pub non_working: Vec<NonWorkingRecord>,
}

fn view(s: &ShiftDefinition) -> ShiftView {
    ShiftView {
        shift_name: s.shift_name.clone(),
        start_time: s.start_time.format("%H:%M").to_string(),
        end_time: s.end_time.format("%H:%M").to_string(),
        days: Some(s.days.clone()),
    }
}

/// The lines' shifts, grouped by line (the rows come sorted by line).
fn by_line(rows: &[ShiftDefinition]) -> Vec<LineShifts> {
    let mut lines: Vec<LineShifts> = Vec::new();
    for row in rows {
        match lines.last_mut() {
            Some(last) if last.line == row.line => last.shifts.push(view(row)),
            _ => lines.push(LineShifts {
                line: row.line.clone(),
                shifts: vec![view(row)],
            }),
        }
    }
    lines
}

/// The plant's time zone and every line's shifts.
#[utoipa::path(get, path = "/api/v1/calendar", tag = "reference",
    responses((status = 200, body = CalendarView)),
    security(("bearer" = [])))]
pub async fn calendar(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
) -> Result<Json<CalendarView>, ApiError> {
    calendar_view(&state).await.map(Json)
}

async fn calendar_view(state: &AppState) -> Result<CalendarView, ApiError> {
    let time_zone = query::plant_time_zone(&state.pool).await?;
    let rows = query::list_shifts(&state.pool, None).await?;
    let (rotations, exceptions, non_working) = cal::calendar_records(&state.pool).await?;
    Ok(CalendarView {
        time_zone,
        lines: by_line(&rows),
        rotations,
        exceptions,
        non_working,
    })
}

/// `PUT /api/v1/calendar/time-zone`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TimeZoneBody {
    /// An IANA name, e.g. `Europe/Berlin`.
    pub time_zone: String,
}

/// Sets the plant's time zone: shifts and day buckets are local to it.
#[utoipa::path(put, path = "/api/v1/calendar/time-zone", tag = "reference",
    request_body = TimeZoneBody,
    responses((status = 200, body = CalendarView), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn set_time_zone(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiJson(body): ApiJson<TimeZoneBody>,
) -> Result<Json<CalendarView>, ApiError> {
    query::set_plant_time_zone(&state.pool, body.time_zone.trim()).await?;
    tracing::info!(by = %ctx.principal.name, time_zone = %body.time_zone, "plant time zone set");
    calendar_view(&state).await.map(Json)
}

/// `PUT /api/v1/calendar/lines/{line}/shifts`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ShiftsBody {
    /// The line's whole shift list; empty removes it (all time is planned).
    pub shifts: Vec<ShiftView>,
}

fn local_time(field: &str, value: &str) -> Result<NaiveTime, ApiError> {
    NaiveTime::parse_from_str(value.trim(), "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(value.trim(), "%H:%M"))
        .map_err(|_| ApiError::invalid_field(field, format!("{value:?} is not a time HH:MM")))
}

/// The shift definitions a body gives for `line` (pure).
fn definitions(line: &str, body: ShiftsBody) -> Result<Vec<ShiftDefinition>, ApiError> {
    body.shifts
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(ShiftDefinition {
                line: line.to_owned(),
                shift_name: s.shift_name.trim().to_owned(),
                start_time: local_time(&format!("shifts[{i}].start_time"), &s.start_time)?,
                end_time: local_time(&format!("shifts[{i}].end_time"), &s.end_time)?,
                days: s.days.unwrap_or_else(|| (1..=7).collect()),
            })
        })
        .collect()
}

/// Replaces a line's shifts (an empty list removes them).
#[utoipa::path(put, path = "/api/v1/calendar/lines/{line}/shifts", tag = "reference",
    params(("line" = String, Path)), request_body = ShiftsBody,
    responses((status = 200, body = LineShifts), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn set_shifts(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath(line): ApiPath<String>,
    ApiJson(body): ApiJson<ShiftsBody>,
) -> Result<Json<LineShifts>, ApiError> {
    let line = line.trim().to_owned();
    if line.is_empty() {
        return Err(ApiError::invalid_field("line", "a line needs a name"));
    }
    let shifts = definitions(&line, body)?;
    query::replace_shifts(&state.pool, &line, &shifts).await?;
    tracing::info!(by = %ctx.principal.name, %line, shifts = shifts.len(), "line shifts replaced");
    let rows = query::list_shifts(&state.pool, Some(&line)).await?;
    Ok(Json(LineShifts {
        line,
        shifts: rows.iter().map(view).collect(),
    }))
}

fn line_of(line: String) -> Result<String, ApiError> {
    let line = line.trim().to_owned();
    if line.is_empty() {
        return Err(ApiError::invalid_field("line", "a line needs a name"));
    }
    Ok(line)
}

fn plant_date(field: &str, value: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::invalid_field(field, format!("{value:?} is not a date YYYY-MM-DD")))
}

/// Records a line's rotation from a plant-local date on: `{"anchor": "2026-03-02",
/// "days": [[{"shift", "team"?, "start", "end", "breaks"?: [{"start", "end"}]}], ...]}`,
/// day 0 of the cycle being the anchor. Days before keep the calendar they had.
#[utoipa::path(put, path = "/api/v1/calendar/lines/{line}/rotations/{effective_from}",
    tag = "reference",
    params(("line" = String, Path), ("effective_from" = String, Path, description = "YYYY-MM-DD, plant-local")),
    request_body = Object,
    responses((status = 200, body = CalendarView), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn set_rotation(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath((line, effective_from)): ApiPath<(String, String)>,
    ApiJson(rotation): ApiJson<Rotation>,
) -> Result<Json<CalendarView>, ApiError> {
    let line = line_of(line)?;
    let from = plant_date("effective_from", &effective_from)?;
    cal::record_rotation(&state.pool, &line, from, &rotation, &ctx.principal.name).await?;
    tracing::info!(by = %ctx.principal.name, %line, %from, "line rotation recorded");
    calendar_view(&state).await.map(Json)
}

/// `PUT /api/v1/calendar/lines/{line}/exceptions/{day}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExceptionBody {
    /// The day's shifts (same shape as a rotation day); empty: no work that day.
    #[schema(value_type = Vec<Object>)]
    pub shifts: Vec<ShiftSpec>,
}

/// Replaces one day's shifts of a line (overtime, a short day, a day off).
#[utoipa::path(put, path = "/api/v1/calendar/lines/{line}/exceptions/{day}",
    tag = "reference",
    params(("line" = String, Path), ("day" = String, Path, description = "YYYY-MM-DD, plant-local")),
    request_body = ExceptionBody,
    responses((status = 200, body = CalendarView), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn set_exception(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath((line, day)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ExceptionBody>,
) -> Result<Json<CalendarView>, ApiError> {
    let line = line_of(line)?;
    let day = plant_date("day", &day)?;
    cal::record_exception(&state.pool, &line, day, &body.shifts, &ctx.principal.name).await?;
    tracing::info!(by = %ctx.principal.name, %line, %day, "calendar exception recorded");
    calendar_view(&state).await.map(Json)
}

/// Adds a plant-wide non-working period: `{"name", "from", "to"}` in plant-local
/// time (`YYYY-MM-DDTHH:MM:SS`).
#[utoipa::path(post, path = "/api/v1/calendar/non-working", tag = "reference",
    request_body = Object,
    responses((status = 201, body = CalendarView), (status = 400, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn add_non_working(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiJson(period): ApiJson<NonWorking>,
) -> Result<(StatusCode, Json<CalendarView>), ApiError> {
    let id = cal::add_non_working(&state.pool, &period, &ctx.principal.name).await?;
    tracing::info!(by = %ctx.principal.name, id, name = %period.name, "non-working period added");
    Ok((StatusCode::CREATED, Json(calendar_view(&state).await?)))
}

/// Removes a non-working period from now on (`as_of` before still sees it).
#[utoipa::path(delete, path = "/api/v1/calendar/non-working/{id}", tag = "reference",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn remove_non_working(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    if !cal::remove_non_working(&state.pool, id).await? {
        return Err(ApiError::not_found(format!(
            "no non-working period {id} in force"
        )));
    }
    tracing::info!(by = %ctx.principal.name, id, "non-working period removed");
    Ok(StatusCode::NO_CONTENT)
}
