//! State intervals and downtime reports: Paretos as recorded and as classified,
//! micro-stops, MTBF/MTTR.

use chrono::Duration;
use shopfloor_projections::query::*;
use sqlx::PgPool;

use crate::floor::*;

async fn setup(pool: &PgPool) -> Floor {
    let f = Floor::new(pool);
    f.register("M1", "L1", 30.0).await;
    f.state("M1", "running", None, None, at("08:00")).await;
    f.state("M1", "idle", Some("small_stop.jam"), None, at("08:20"))
        .await;
    f.state(
        "M1",
        "running",
        None,
        None,
        at("08:20") + Duration::seconds(30),
    )
    .await;
    f.state(
        "M1",
        "down",
        Some("breakdown.mechanical"),
        None,
        at("09:00"),
    )
    .await;
    f.state("M1", "running", None, None, at("09:30")).await;
    f.state("M1", "idle", Some("planned.break"), None, at("10:00"))
        .await;
    f.state("M1", "running", None, None, at("10:15")).await;
    f.state("M1", "down", Some("jammed conveyor"), None, at("11:00"))
        .await;
    f
}

fn keys(p: &[ParetoEntry]) -> Vec<(&str, f64)> {
    p.iter().map(|e| (e.key.as_str(), e.duration_s)).collect()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn pareto_as_recorded_and_as_classified(pool: PgPool) {
    let f = setup(&pool).await;
    project_all(&pool).await;
    let before_classification: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(recorded_at) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    f.classify("M1", at("11:00"), "breakdown.electrical").await;
    project_all(&pool).await;

    let q = DowntimeQuery {
        machine_id: Some("M1".into()),
        line: None,
        from: at("08:00"),
        to: at("11:30"),
        as_of: None,
        micro_stop_threshold_s: None,
        scope: Default::default(),
    };
    let reports = downtime_report(&pool, &q).await.unwrap();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r.stops, 3);
    assert_eq!(r.downtime_s, 3630.0);
    assert_eq!(r.planned_stop_time_s, 900.0);
    assert_eq!(r.run_time_s, 8070.0);
    assert_eq!(
        keys(&r.pareto_by_reason_recorded),
        vec![
            ("breakdown.mechanical", 1800.0),
            ("unclassified", 1800.0),
            ("small_stop.jam", 30.0)
        ]
    );
    assert_eq!(
        keys(&r.pareto_by_reason_classified),
        vec![
            ("breakdown.electrical", 1800.0),
            ("breakdown.mechanical", 1800.0),
            ("small_stop.jam", 30.0)
        ]
    );
    assert_eq!(
        keys(&r.pareto_by_loss_recorded),
        vec![
            ("breakdown", 1800.0),
            ("unclassified", 1800.0),
            ("small_stop", 30.0)
        ]
    );
    assert_eq!(
        keys(&r.pareto_by_loss_classified),
        vec![("breakdown", 3600.0), ("small_stop", 30.0)]
    );
    let last = r.pareto_by_reason_classified.last().unwrap();
    assert_eq!(last.cumulative_share, Some(1.0));
    assert_eq!(r.micro_stops.count, 1);
    assert_eq!(r.micro_stops.duration_s, 30.0);
    assert_eq!(r.failures, 2);
    assert_eq!(r.mttr_s, Some(1800.0));
    assert_eq!(r.mtbf_s, Some(4035.0));

    // As known before the classification.
    let then = downtime_report(
        &pool,
        &DowntimeQuery {
            as_of: Some(before_classification),
            ..q.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        keys(&then[0].pareto_by_reason_classified),
        keys(&r.pareto_by_reason_recorded)
    );

    // A larger micro-stop threshold.
    let wide = downtime_report(
        &pool,
        &DowntimeQuery {
            micro_stop_threshold_s: Some(3600.0),
            ..q
        },
    )
    .await
    .unwrap();
    assert_eq!(wide[0].micro_stops.count, 2);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn state_intervals_on_floor_time(pool: PgPool) {
    let f = setup(&pool).await;
    f.classify("M1", at("09:00"), "planned.maintenance").await;
    project_all(&pool).await;
    let rows = state_intervals(
        &pool,
        &IntervalQuery {
            machine_id: "M1".into(),
            from: at("07:30"),
            to: at("09:15"),
            as_of: None,
        },
    )
    .await
    .unwrap();
    let got: Vec<(&str, f64)> = rows
        .iter()
        .map(|r| (r.state.as_str(), r.duration_s))
        .collect();
    assert_eq!(
        got,
        vec![
            ("unknown", 1800.0),
            ("running", 1200.0),
            ("idle", 30.0),
            ("running", 2370.0),
            ("down", 900.0)
        ]
    );
    let down = rows.last().unwrap();
    assert_eq!(down.end, Some(at("09:30")));
    assert_eq!(down.reason_code.as_deref(), Some("breakdown.mechanical"));
    assert_eq!(
        down.final_reason_code.as_deref(),
        Some("planned.maintenance")
    );
    assert!(down.planned);
    // The reclassified stop is now planned: it leaves planned production time.
    let k = kpi_metrics(&pool, &KpiQuery::machine("M1", at("09:00"), at("09:30")))
        .await
        .unwrap();
    assert_eq!(k[0].planned_production_time_s, 0.0);
}
