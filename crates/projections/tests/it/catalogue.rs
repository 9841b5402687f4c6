//! Changeovers and the ISO 22400-2 catalogue (ADR 0058) against hand-computed
//! figures, with a late classification and `as_of`.

use chrono::{DateTime, Utc};
use serde_json::json;
use shopfloor_domain::machine::MachineEvent;
use shopfloor_domain::order::OrderEvent;
use shopfloor_projections::query::*;
use sqlx::PgPool;

use crate::floor::*;

fn order(value: serde_json::Value) -> OrderEvent {
    serde_json::from_value(value).unwrap()
}

/// Parts of M1 for `order` (ideal cycle time 30 s).
fn parts(order: &str, good: u64, scrap: u64, hhmm: &str) -> MachineEvent {
    serde_json::from_value(
        json!({"event_type": "MachinePartsProduced", "machine_id": "M1",
        "good": good, "scrap": scrap, "order_id": order, "ideal_cycle_time_s": 30.0,
        "at": at(hhmm), "scrap_reason": null}),
    )
    .unwrap()
}

/// M1 (ideal 30 s), 08:00–12:00, no calendar:
/// - 08:00 order o1 (product A) starts, running; 09:00 100 good; 10:00 o1
///   completes, idle (unclassified);
/// - 10:05 down, later classified `setup.changeover`; 10:10 order o2 (product
///   B) starts; 10:30 running; 10:35 0 good 3 scrap; 10:45 20 good 1 scrap
///   (the first good part of B);
/// - 11:00 down `breakdown.mechanical` (a failure) until 11:20 running;
/// - 11:30 an inspection of o2: 10 parts, 1 defective.
async fn history(f: &Floor) -> DateTime<Utc> {
    f.register("M1", "L1", 30.0).await;
    for (id, product) in [("o1", "A"), ("o2", "B")] {
        f.append(
            "production_order",
            id,
            order_created(id, product, 100, at("07:00")),
        )
        .await;
    }
    let start = |id: &str, hhmm: &str| {
        order(
            json!({"event_type": "OrderStarted", "order_id": id, "machine_id": "M1", "at": at(hhmm)}),
        )
    };
    f.append("production_order", "o1", start("o1", "08:00"))
        .await;
    f.state("M1", "running", None, None, at("08:00")).await;
    f.machine(parts("o1", 100, 0, "09:00")).await;
    f.append(
        "production_order",
        "o1",
        order(
            json!({"event_type": "OrderCompleted", "order_id": "o1", "good_count": 100,
            "scrap_count": 0, "at": at("10:00")}),
        ),
    )
    .await;
    f.state("M1", "idle", None, None, at("10:00")).await;
    f.state("M1", "down", None, None, at("10:05")).await;
    f.append("production_order", "o2", start("o2", "10:10"))
        .await;
    f.state("M1", "running", None, None, at("10:30")).await;
    f.machine(parts("o2", 0, 3, "10:35")).await;
    f.machine(parts("o2", 20, 1, "10:45")).await;
    f.state(
        "M1",
        "down",
        Some("breakdown.mechanical"),
        None,
        at("11:00"),
    )
    .await;
    f.state("M1", "running", None, None, at("11:20")).await;
    f.append(
        "production_order",
        "o2",
        order(
            json!({"event_type": "OrderInspectionRecorded", "order_id": "o2",
            "inspection_id": "i1", "sample_size": 10, "defects": 1, "passed": false,
            "inspector": "qa", "notes": null, "at": at("11:30")}),
        ),
    )
    .await;
    let before: DateTime<Utc> = sqlx::query_scalar("SELECT max(recorded_at) FROM events")
        .fetch_one(&f.store.pool().clone())
        .await
        .unwrap();
    f.classify("M1", at("10:05"), "setup.changeover").await;
    before
}

fn close(a: Option<f64>, b: f64) {
    assert!(a.is_some_and(|a| (a - b).abs() < 1e-9), "{a:?} != {b}");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_changeover_and_the_catalogue_by_hand(pool: PgPool) {
    let f = Floor::new(&pool);
    let before = history(&f).await;
    project_all(&pool).await;

    let cq = ChangeoverQuery {
        machine_id: Some("M1".into()),
        line: None,
        from: at("08:00"),
        to: at("12:00"),
        as_of: None,
        scope: Default::default(),
    };
    let report = changeover_report(&pool, &cq).await.unwrap();
    assert_eq!(report.changeovers.len(), 1, "{report:?}");
    let c = &report.changeovers[0];
    assert_eq!((c.start, c.end), (at("10:05"), Some(at("10:45"))));
    assert_eq!(c.duration_s, 40.0 * 60.0);
    assert_eq!(
        (c.from_product.as_deref(), c.to_product.as_deref()),
        (Some("A"), Some("B"))
    );
    assert_eq!(c.to_order.as_deref(), Some("o2"));
    assert_eq!(c.trigger, Trigger::ProductChange);
    assert_eq!(report.by_pair.len(), 1);
    assert_eq!(report.by_pair[0].mean_s, Some(2400.0));
    assert_eq!(report.by_machine[0].machine_id.as_deref(), Some("M1"));

    let q = CatalogueQuery {
        machine_id: Some("M1".into()),
        line: None,
        from: at("08:00"),
        to: at("12:00"),
        as_of: None,
        rollup: false,
        scope: Default::default(),
    };
    let k = iso_kpis(&pool, &q).await.unwrap().remove(0);
    // Running 120 + 30 + 40 min; setup (stopped in the changeover) 10:05–10:30;
    // other stops: idle 5 min and the 20-min failure.
    assert_eq!(k.calendar_time_s, 14_400.0);
    assert_eq!(k.planned_busy_time_s, 14_400.0);
    assert_eq!(k.actual_production_time_s, 11_400.0);
    assert_eq!(k.actual_setup_time_s, 1_500.0);
    assert_eq!(k.actual_busy_time_s, 12_900.0);
    assert_eq!(k.actual_downtime_s, 1_500.0);
    // o1 08:00–10:00, o2 10:10–12:00 (still running).
    assert_eq!(k.order_execution_time_s, 13_800.0);
    assert_eq!(
        (k.good_quantity, k.scrap_quantity, k.produced_quantity),
        (120, 4, 124)
    );
    assert_eq!((k.inspected_quantity, k.defective_quantity), (10, 1));
    assert_eq!(
        (k.failures, k.time_to_repair_s),
        (1, 1_200.0),
        "a setup is no failure"
    );
    close(k.availability, 11_400.0 / 14_400.0);
    close(k.effectiveness, 124.0 * 30.0 / 11_400.0);
    close(k.quality_ratio, 120.0 / 124.0);
    close(k.loading, 1.0);
    close(
        k.teep,
        (11_400.0 / 14_400.0) * (3_720.0 / 11_400.0) * (120.0 / 124.0),
    );
    close(k.utilisation_efficiency, 11_400.0 / 12_900.0);
    close(
        k.nee,
        (11_400.0 / 12_900.0) * (3_720.0 / 11_400.0) * (120.0 / 124.0),
    );
    close(k.allocation_efficiency, 12_900.0 / 14_400.0);
    // Busy inside the orders: o1 running 120 min; o2 running 70 min and its setup
    // 10:10–10:30.
    close(k.allocation_ratio, 12_600.0 / 13_800.0);
    close(k.setup_ratio, 1_500.0 / 12_900.0);
    close(k.throughput_rate_per_h, 124.0 / (13_800.0 / 3_600.0));
    close(k.scrap_ratio, 4.0 / 124.0);
    close(k.first_pass_yield, 0.9);
    close(k.mttf_s, 11_400.0);
    close(k.mttr_s, 1_200.0);
    close(k.mtbf_s, 12_600.0);
    assert_eq!(k.labour_time_s, Some(0.0));
    assert_eq!(k.worker_efficiency, None, "nobody clocked on");

    // As known before the stop was classified a setup: the changeover opens at
    // the product change (10:10), its setup time is 10:10–10:30, and the
    // unclassified down stop at 10:05 counts as a failure (25 min to repair).
    let mut past = cq.clone();
    past.as_of = Some(before);
    let report = changeover_report(&pool, &past).await.unwrap();
    assert_eq!(report.changeovers.len(), 1);
    assert_eq!(report.changeovers[0].start, at("10:10"));
    assert_eq!(report.changeovers[0].duration_s, 35.0 * 60.0);
    let mut q_past = q.clone();
    q_past.as_of = Some(before);
    let k = iso_kpis(&pool, &q_past).await.unwrap().remove(0);
    assert_eq!(k.actual_setup_time_s, 1_200.0);
    assert_eq!((k.failures, k.time_to_repair_s), (2, 1_500.0 + 1_200.0));
    assert_eq!(k.labour_time_s, None, "clock-ons carry no recorded time");

    // The downtime report counts failures the same way.
    let d = downtime_report(
        &pool,
        &DowntimeQuery {
            machine_id: Some("M1".into()),
            line: None,
            from: at("08:00"),
            to: at("12:00"),
            as_of: None,
            micro_stop_threshold_s: None,
            scope: Default::default(),
        },
    )
    .await
    .unwrap();
    assert_eq!(d[0].failures, 1);

    // A roll-up of one machine equals it; a window without changeovers has none.
    let mut all = q.clone();
    all.machine_id = None;
    all.rollup = true;
    let r = iso_kpis(&pool, &all).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].machine_id.as_str(), r[0].machine_count), ("*", 1));
    assert_eq!(r[0].actual_setup_time_s, 1_500.0);
    let mut early = cq.clone();
    early.to = at("10:00");
    assert!(changeover_report(&pool, &early)
        .await
        .unwrap()
        .changeovers
        .is_empty());
}
