//! Calendars that match real plants (ADR 0060), against hand-computed windows and
//! KPIs: a night-shift rotation crossing midnight and the spring DST change in
//! Europe/Berlin, a break, a team, a holiday, a one-day exception, a new rotation
//! from a date, and `as_of` before it was recorded.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use shopfloor_projections::query::calendar::{
    add_non_working, calendar_records, record_exception, record_rotation, remove_non_working,
};
use shopfloor_projections::query::shift_plan::{BreakSpec, NonWorking, Rotation, ShiftSpec};
use shopfloor_projections::query::*;
use sqlx::PgPool;

use crate::floor::*;

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

fn date(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, d).unwrap()
}

/// Night shift N of team A, 22:00–06:00 with a break 00:00–00:30, every other
/// night from Saturday 2026-03-28 (a 2-day rotation: on, off).
fn nights() -> Rotation {
    Rotation {
        anchor: date(3, 28),
        days: vec![
            vec![ShiftSpec {
                shift: "N".into(),
                team: Some("A".into()),
                start: hm(22, 0),
                end: hm(6, 0),
                breaks: vec![BreakSpec {
                    start: hm(0, 0),
                    end: hm(0, 30),
                }],
            }],
            vec![],
        ],
    }
}

fn windows(c: &Calendar, from: &str, to: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>, String)> {
    c.shift_windows("L1", t(from), t(to))
        .unwrap()
        .into_iter()
        .map(|w| {
            (
                w.from,
                w.to,
                format!("{}/{}", w.name, w.team.unwrap_or_default()),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn rotation_dst_break_holiday_exception_and_effective_dates(pool: PgPool) {
    set_plant_time_zone(&pool, "Europe/Berlin").await.unwrap();
    record_rotation(&pool, "L1", date(3, 1), &nights(), "sup")
        .await
        .unwrap();
    // Easter Monday evening into Tuesday is a holiday: 2026-03-30 22:00 to 03-31 02:00.
    let holiday = NonWorking {
        name: "Easter".into(),
        from: date(3, 30).and_time(hm(22, 0)),
        to: date(3, 31).and_time(hm(2, 0)),
        site: None,
    };
    add_non_working(&pool, &holiday, "sup").await.unwrap();
    // No night shift on 2026-04-01 (a cycle's "on" day): an exception.
    record_exception(&pool, "L1", date(4, 1), &[], "sup")
        .await
        .unwrap();

    let c = Calendar::load(&pool, &["L1".to_string()]).await.unwrap();
    // 03-28 22:00 CET = 21:00Z; 03-29 06:00 CEST = 04:00Z: 7 hours across the
    // change. 03-30 22:00 CEST = 20:00Z to 03-31 04:00Z, the holiday cuts it to
    // 00:00Z. 04-01: the exception. 04-03 20:00Z–04:00Z.
    assert_eq!(
        windows(&c, "2026-03-28T00:00:00Z", "2026-04-05T00:00:00Z"),
        vec![
            (
                t("2026-03-28T21:00:00Z"),
                t("2026-03-29T04:00:00Z"),
                "N/A".into()
            ),
            (
                t("2026-03-31T00:00:00Z"),
                t("2026-03-31T04:00:00Z"),
                "N/A".into()
            ),
            (
                t("2026-04-03T20:00:00Z"),
                t("2026-04-04T04:00:00Z"),
                "N/A".into()
            ),
        ]
    );
    let first = &c
        .shift_windows("L1", t("2026-03-28T00:00:00Z"), t("2026-03-30T00:00:00Z"))
        .unwrap()[0];
    assert_eq!(
        first.breaks,
        vec![(t("2026-03-28T23:00:00Z"), t("2026-03-28T23:30:00Z"))],
        "00:00–00:30 CET"
    );
    let cut = &c
        .shift_windows("L1", t("2026-03-30T00:00:00Z"), t("2026-04-01T00:00:00Z"))
        .unwrap()[0];
    assert!(cut.breaks.is_empty(), "the break fell in the holiday");

    // KPIs of the first night: idle through the break, down 01:00–01:30Z.
    let f = Floor::new(&pool);
    f.register("M1", "L1", 30.0).await;
    f.state("M1", "running", None, None, t("2026-03-28T20:00:00Z"))
        .await;
    f.state("M1", "idle", None, None, t("2026-03-28T23:00:00Z"))
        .await;
    f.state("M1", "running", None, None, t("2026-03-28T23:30:00Z"))
        .await;
    f.state("M1", "down", None, None, t("2026-03-29T01:00:00Z"))
        .await;
    f.state("M1", "running", None, None, t("2026-03-29T01:30:00Z"))
        .await;
    f.state("M1", "idle", None, None, t("2026-03-29T06:00:00Z"))
        .await;
    project_all(&pool).await;
    let mut q = KpiQuery::machine("M1", t("2026-03-28T12:00:00Z"), t("2026-03-29T12:00:00Z"));
    q.granularity = Some(Granularity::Shift);
    let rows = kpi_metrics(&pool, &q).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r.shift.as_deref(), r.team.as_deref()),
        (Some("N"), Some("A"))
    );
    assert_eq!(r.planned_stop_time_s, 1_800.0, "the break");
    assert_eq!(r.planned_production_time_s, 25_200.0 - 1_800.0);
    assert_eq!(r.run_time_s, 25_200.0 - 3_600.0);
    assert_eq!(r.downtime_s, 1_800.0);
    assert_eq!(r.unknown_time_s, 0.0);

    // From 04-02 a day shift of team B (06:00–14:00, every day); recorded now,
    // so `as_of` before it still sees the nights on 04-03.
    let before: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let days = Rotation {
        anchor: date(4, 2),
        days: vec![vec![ShiftSpec {
            shift: "D".into(),
            team: Some("B".into()),
            start: hm(6, 0),
            end: hm(14, 0),
            breaks: vec![],
        }]],
    };
    record_rotation(&pool, "L1", date(4, 2), &days, "sup")
        .await
        .unwrap();
    let now = Calendar::load(&pool, &["L1".to_string()]).await.unwrap();
    assert_eq!(
        windows(&now, "2026-03-31T00:00:00Z", "2026-04-04T00:00:00Z"),
        vec![
            (
                t("2026-03-31T00:00:00Z"),
                t("2026-03-31T04:00:00Z"),
                "N/A".into()
            ),
            (
                t("2026-04-02T04:00:00Z"),
                t("2026-04-02T12:00:00Z"),
                "D/B".into()
            ),
            (
                t("2026-04-03T04:00:00Z"),
                t("2026-04-03T12:00:00Z"),
                "D/B".into()
            ),
        ],
        "history before 04-02 keeps the nights"
    );
    let then = Calendar::load_as_of(&pool, &["L1".to_string()], Some(before))
        .await
        .unwrap();
    assert_eq!(
        windows(&then, "2026-04-03T00:00:00Z", "2026-04-04T00:00:00Z"),
        vec![(
            t("2026-04-03T20:00:00Z"),
            t("2026-04-04T00:00:00Z"),
            "N/A".into()
        )]
    );

    // Removing the holiday gives the Easter night back, except `as_of` before.
    let (_, _, periods) = calendar_records(&pool).await.unwrap();
    assert_eq!(periods.len(), 1);
    let removed_before: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(remove_non_working(&pool, periods[0].id).await.unwrap());
    assert!(!remove_non_working(&pool, periods[0].id).await.unwrap());
    let now = Calendar::load(&pool, &["L1".to_string()]).await.unwrap();
    assert_eq!(
        windows(&now, "2026-03-30T12:00:00Z", "2026-03-31T12:00:00Z"),
        vec![(
            t("2026-03-30T20:00:00Z"),
            t("2026-03-31T04:00:00Z"),
            "N/A".into()
        )]
    );
    let then = Calendar::load_as_of(&pool, &["L1".to_string()], Some(removed_before))
        .await
        .unwrap();
    assert_eq!(
        windows(&then, "2026-03-30T12:00:00Z", "2026-03-31T12:00:00Z"),
        vec![(
            t("2026-03-31T00:00:00Z"),
            t("2026-03-31T04:00:00Z"),
            "N/A".into()
        )]
    );
    assert!(record_rotation(
        &pool,
        "L1",
        date(5, 1),
        &Rotation {
            anchor: date(5, 1),
            days: vec![]
        },
        "sup"
    )
    .await
    .is_err());
}
