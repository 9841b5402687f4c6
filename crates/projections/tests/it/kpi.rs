//! KPIs against hand-computed figures: planned stops, a window cutting through
//! states, an all-planned window (nulls), late and shuffled events, `as_of`,
//! shifts crossing midnight, roll-ups, performance above 1.

use chrono::{Duration, NaiveTime};
use rand::seq::SliceRandom;
use shopfloor_projections::query::*;
use sqlx::PgPool;

use crate::floor::*;

/// M: 08:00 running, 09:00 down (breakdown), 09:30 running, 10:00 idle planned
/// (break), 10:15 running, 11:00 down. Parts: 08:10 10 good (outside the test
/// window), 08:45 50+2, 09:45 40+0, 10:20 8+0. Ideal cycle time 30 s.
fn history(m: &str) -> Vec<shopfloor_domain::machine::MachineEvent> {
    use shopfloor_domain::machine::MachineEvent;
    use shopfloor_domain::values::{CycleTime, MachineId};
    let parts = |good, scrap, hhmm| MachineEvent::MachinePartsProduced {
        scrap_reason: None,
        machine_id: MachineId::new(m).unwrap(),
        good,
        scrap,
        order_id: None,
        ideal_cycle_time_s: CycleTime::new(30.0).unwrap(),
        at: at(hhmm),
    };
    vec![
        state_event(m, "running", None, None, at("08:00")),
        state_event(m, "down", Some("breakdown.mechanical"), None, at("09:00")),
        state_event(m, "running", None, None, at("09:30")),
        state_event(m, "idle", Some("planned.break"), None, at("10:00")),
        state_event(m, "running", None, None, at("10:15")),
        state_event(m, "down", Some("jammed conveyor"), None, at("11:00")),
        parts(10, 0, "08:10"),
        parts(50, 2, "08:45"),
        parts(40, 0, "09:45"),
        parts(8, 0, "10:20"),
    ]
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

async fn one(pool: &PgPool, q: &KpiQuery) -> KpiRow {
    let rows = kpi_metrics(pool, q).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().unwrap()
}

fn assert_window_0830_1030(r: &KpiRow) {
    // 08:30-09:00 run 30, 09:00-09:30 down 30, 09:30-10:00 run 30,
    // 10:00-10:15 planned 15, 10:15-10:30 run 15.
    assert_eq!(r.planned_production_time_s, 105.0 * 60.0);
    assert_eq!(r.run_time_s, 75.0 * 60.0);
    assert_eq!(r.downtime_minutes, 30.0);
    assert_eq!(r.planned_stop_time_s, 15.0 * 60.0);
    assert_eq!((r.good_count, r.scrap_count, r.total_count), (98, 2, 100));
    assert!(close(r.availability, 75.0 / 105.0));
    assert!(close(r.performance, 100.0 * 30.0 / 4500.0));
    assert!(close(r.quality, 0.98));
    assert!(close(r.production_yield, 0.98));
    assert!(close(r.oee, 75.0 / 105.0 * (3000.0 / 4500.0) * 0.98));
    assert!(!r.performance_exceeds_one);
    assert_eq!(r.unknown_time_s, 0.0);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_window_cutting_through_states_with_a_planned_stop(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("M1", "L1", 30.0).await;
    for e in history("M1") {
        f.machine(e).await;
    }
    project_all(&pool).await;
    let r = one(&pool, &KpiQuery::machine("M1", at("08:30"), at("10:30"))).await;
    assert_eq!(r.machine_id, "M1");
    assert_eq!((r.from, r.to), (at("08:30"), at("10:30")));
    assert_window_0830_1030(&r);

    // The contract's field names.
    let v = serde_json::to_value(&r).unwrap();
    for field in [
        "machine_id",
        "from",
        "to",
        "planned_production_time_s",
        "run_time_s",
        "downtime_minutes",
        "availability",
        "performance",
        "quality",
        "oee",
        "good_count",
        "scrap_count",
        "total_count",
        "production_yield",
    ] {
        assert!(v.get(field).is_some(), "{field} missing");
    }

    // All planned stop: every ratio null.
    let r = one(&pool, &KpiQuery::machine("M1", at("10:00"), at("10:15"))).await;
    assert_eq!(r.planned_production_time_s, 0.0);
    assert_eq!(r.run_time_s, 0.0);
    assert_eq!(r.downtime_minutes, 0.0);
    assert_eq!(
        (r.availability, r.performance, r.quality, r.oee),
        (None, None, None, None)
    );
    assert!(!v["availability"].is_null());
    assert!(serde_json::to_value(&r).unwrap()["oee"].is_null());

    // Down all the time: availability 0, performance null (no run time).
    let r = one(&pool, &KpiQuery::machine("M1", at("09:05"), at("09:25"))).await;
    assert_eq!(r.availability, Some(0.0));
    assert_eq!(r.performance, None);
    assert_eq!(r.downtime_minutes, 20.0);

    // Before the first state event: unknown time counts as downtime (ADR 0005).
    let r = one(&pool, &KpiQuery::machine("M1", at("07:00"), at("09:00"))).await;
    assert_eq!(r.unknown_time_s, 3600.0);
    assert_eq!(r.planned_production_time_s, 7200.0);
    assert_eq!(r.run_time_s, 3600.0);
    assert_eq!(r.downtime_minutes, 60.0);

    // Hourly series: the hours sum to the window.
    let mut q = KpiQuery::machine("M1", at("08:30"), at("10:30"));
    q.granularity = Some(Granularity::Hour);
    let rows = kpi_metrics(&pool, &q).await.unwrap();
    let bounds: Vec<_> = rows.iter().map(|r| (r.from, r.to)).collect();
    assert_eq!(
        bounds,
        vec![
            (at("08:30"), at("09:00")),
            (at("09:00"), at("10:00")),
            (at("10:00"), at("10:30"))
        ]
    );
    let run: f64 = rows.iter().map(|r| r.run_time_s).sum();
    assert_eq!(run, 4500.0);
    assert_eq!(rows[1].downtime_minutes, 30.0);
    assert_eq!(rows[2].planned_production_time_s, 15.0 * 60.0);

    assert!(matches!(
        kpi_metrics(&pool, &KpiQuery::machine("nope", at("08:00"), at("09:00"))).await,
        Err(shopfloor_projections::QueryError::NotFound { .. })
    ));
    assert!(matches!(
        kpi_metrics(&pool, &KpiQuery::machine("M1", at("09:00"), at("08:00"))).await,
        Err(shopfloor_projections::QueryError::Invalid(_))
    ));
}

/// The same history appended shuffled, and a late event: figures are those of
/// floor time; `as_of` gives the figures as known before the late event.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn late_and_shuffled_events_and_as_of(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("M2", "L1", 30.0).await;
    let mut events = history("M2");
    events.shuffle(&mut rand::thread_rng());
    for e in events {
        f.machine(e).await;
    }
    project_all(&pool).await;
    let q = KpiQuery::machine("M2", at("08:30"), at("10:30"));
    assert_window_0830_1030(&one(&pool, &q).await);

    let before_late: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(recorded_at) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Late: the machine was actually idle (unplanned) 08:40-08:50, and 10 more parts at 08:50.
    f.state("M2", "idle", Some("small_stop.starved"), None, at("08:40"))
        .await;
    f.state("M2", "running", None, None, at("08:50")).await;
    f.parts("M2", 10, 0, 30.0, at("08:50")).await;
    project_all(&pool).await;
    let r = one(&pool, &q).await;
    assert_eq!(r.run_time_s, 65.0 * 60.0);
    assert_eq!(r.downtime_minutes, 40.0);
    assert_eq!(r.total_count, 110);

    let mut then = q.clone();
    then.as_of = Some(before_late);
    let r = one(&pool, &then).await;
    assert_window_0830_1030(&r);
    assert_eq!(r.as_of, Some(before_late));
}

/// Shifts crossing midnight in the plant's time zone; time outside the shifts is
/// not planned production time.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn shifts_crossing_midnight(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("M3", "L3", 10.0).await;
    f.state("M3", "running", None, None, t("2023-12-31T00:00:00Z"))
        .await;
    f.state(
        "M3",
        "down",
        Some("breakdown.electrical"),
        None,
        t("2024-01-01T23:00:00Z"),
    )
    .await;
    f.state("M3", "running", None, None, t("2024-01-02T01:00:00Z"))
        .await;
    project_all(&pool).await;
    let shift = |name: &str, a: &str, b: &str| ShiftDefinition {
        line: "L3".into(),
        shift_name: name.into(),
        start_time: NaiveTime::parse_from_str(a, "%H:%M").unwrap(),
        end_time: NaiveTime::parse_from_str(b, "%H:%M").unwrap(),
        days: (1..=7).collect(),
    };
    replace_shifts(
        &pool,
        "L3",
        &[
            shift("day", "06:00", "14:00"),
            shift("night", "22:00", "06:00"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(list_shifts(&pool, Some("L3")).await.unwrap().len(), 2);

    // UTC plant: [Jan 1 12:00, Jan 2 12:00) holds day 12-14 (2 h), night 22-06 (8 h,
    // down 23:00-01:00), day 06-12 (6 h).
    let mut q = KpiQuery::machine("M3", t("2024-01-01T12:00:00Z"), t("2024-01-02T12:00:00Z"));
    let r = one(&pool, &q).await;
    assert_eq!(r.planned_production_time_s, 16.0 * 3600.0);
    assert_eq!(r.run_time_s, 14.0 * 3600.0);
    assert_eq!(r.downtime_minutes, 120.0);
    assert_eq!(r.not_scheduled_time_s, 8.0 * 3600.0);
    q.granularity = Some(Granularity::Shift);
    let rows = kpi_metrics(&pool, &q).await.unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.shift.clone().unwrap(),
                r.from,
                r.to,
                r.planned_production_time_s,
                r.run_time_s,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "day".into(),
                t("2024-01-01T12:00:00Z"),
                t("2024-01-01T14:00:00Z"),
                7200.0,
                7200.0
            ),
            (
                "night".into(),
                t("2024-01-01T22:00:00Z"),
                t("2024-01-02T06:00:00Z"),
                28800.0,
                21600.0
            ),
            (
                "day".into(),
                t("2024-01-02T06:00:00Z"),
                t("2024-01-02T12:00:00Z"),
                21600.0,
                21600.0
            ),
        ]
    );

    // Berlin (UTC+1 in winter): the night shift starts at 21:00Z; days are local.
    set_plant_time_zone(&pool, "Europe/Berlin").await.unwrap();
    assert_eq!(plant_time_zone(&pool).await.unwrap(), "Europe/Berlin");
    let rows = kpi_metrics(&pool, &q).await.unwrap();
    assert_eq!(rows[1].shift.as_deref(), Some("night"));
    assert_eq!(
        (rows[1].from, rows[1].to),
        (t("2024-01-01T21:00:00Z"), t("2024-01-02T05:00:00Z"))
    );
    q.granularity = Some(Granularity::Day);
    let rows = kpi_metrics(&pool, &q).await.unwrap();
    let bounds: Vec<_> = rows.iter().map(|r| (r.from, r.to)).collect();
    assert_eq!(
        bounds,
        vec![
            (t("2024-01-01T12:00:00Z"), t("2024-01-01T23:00:00Z")),
            (t("2024-01-01T23:00:00Z"), t("2024-01-02T12:00:00Z")),
        ]
    );
    assert!(set_plant_time_zone(&pool, "Mars/Olympus").await.is_err());

    // No calendar: the whole window is planned.
    replace_shifts(&pool, "L3", &[]).await.unwrap();
    q.granularity = None;
    let r = one(&pool, &q).await;
    assert_eq!(r.planned_production_time_s, 24.0 * 3600.0);
}

/// Roll-ups sum times and counts and recompute the ratios; performance above 1
/// is reported as it is, with a flag.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn rollups_sum_and_performance_above_one_is_flagged(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("A", "L9", 60.0).await;
    f.register("B", "L9", 60.0).await;
    f.register("C", "other", 60.0).await;
    f.state("A", "running", None, None, at("08:00")).await;
    f.state("B", "running", None, None, at("08:00")).await;
    f.state("B", "down", None, None, at("08:30")).await;
    // A: 90 parts x 60 s in 60 min of run: performance 1.5.
    f.parts("A", 90, 0, 60.0, at("08:10")).await;
    f.parts("B", 20, 10, 60.0, at("08:10")).await;
    project_all(&pool).await;
    let a = one(&pool, &KpiQuery::machine("A", at("08:00"), at("09:00"))).await;
    assert_eq!(a.performance, Some(1.5));
    assert!(a.performance_exceeds_one);
    assert_eq!(a.oee, Some(1.5));

    let q = KpiQuery {
        machine_id: None,
        line: Some("L9".into()),
        from: at("08:00"),
        to: at("09:00"),
        as_of: None,
        granularity: None,
        rollup: false,
        scope: Default::default(),
    };
    let per_machine = kpi_metrics(&pool, &q).await.unwrap();
    assert_eq!(
        per_machine
            .iter()
            .map(|r| r.machine_id.as_str())
            .collect::<Vec<_>>(),
        vec!["A", "B"]
    );
    let r = one(&pool, &KpiQuery { rollup: true, ..q }).await;
    assert_eq!(r.machine_id, "*");
    assert_eq!(r.machine_count, 2);
    assert_eq!(r.planned_production_time_s, 7200.0);
    assert_eq!(r.run_time_s, 5400.0);
    assert_eq!(r.downtime_minutes, 30.0);
    assert_eq!((r.good_count, r.scrap_count, r.total_count), (110, 10, 120));
    assert!(close(r.availability, 0.75));
    assert!(close(r.performance, 120.0 * 60.0 / 5400.0));
    assert!(close(r.quality, 110.0 / 120.0));
    // Not the mean of the machines' ratios.
    let mean_quality = (per_machine[0].quality.unwrap() + per_machine[1].quality.unwrap()) / 2.0;
    assert!(!close(r.quality, mean_quality));
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn the_future_is_not_planned_time(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("F", "L1", 1.0).await;
    let now = chrono::Utc::now();
    f.state("F", "running", None, None, now - Duration::hours(1))
        .await;
    project_all(&pool).await;
    let r = one(
        &pool,
        &KpiQuery::machine("F", now - Duration::hours(1), now + Duration::hours(1)),
    )
    .await;
    assert!(
        r.planned_production_time_s >= 3600.0 && r.planned_production_time_s < 3700.0,
        "{r:?}"
    );
    assert_eq!(r.availability, Some(1.0));
}
