//! Every read model from event sequences, applied from the store (no NATS):
//! the status board, orders, maintenance, inventory; redelivery; poison parking.

use serde_json::json;
use shopfloor_domain::machine::MachineEvent;
use shopfloor_domain::maintenance::TaskEvent;
use shopfloor_domain::order::OrderEvent;
use shopfloor_domain::values::*;
use shopfloor_projections::projection::{self, apply_from_store};
use shopfloor_projections::query::{self, *};
use shopfloor_projections::Projection;
use sqlx::PgPool;

use crate::floor::*;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn machine_board_follows_the_latest_floor_time(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("M1", "L1", 30.0).await;
    f.register("M2", "L2", 10.0).await;
    f.state("M1", "running", None, None, at("08:00")).await;
    f.state(
        "M1",
        "down",
        Some("breakdown.mechanical"),
        None,
        at("09:00"),
    )
    .await;
    // Late: older than the current state, must not move the board back.
    f.state("M1", "running", None, None, at("08:30")).await;
    f.parts("M1", 10, 1, 30.0, at("08:10")).await;
    f.machine(MachineEvent::MachineMaintenancePerformed {
        machine_id: MachineId::new("M1").unwrap(),
        task_id: TaskId::new("T1").unwrap(),
        notes: None,
        at: at("07:00"),
    })
    .await;
    f.append(
        "production_order",
        "O1",
        order_created("O1", "P", 100, at("07:00")),
    )
    .await;
    f.append(
        "production_order",
        "O1",
        OrderEvent::OrderStarted {
            order_id: OrderId::new("O1").unwrap(),
            machine_id: MachineId::new("M1").unwrap(),
            at: at("07:30"),
        },
    )
    .await;
    project_all(&pool).await;

    let machines = list_machines(&pool, &MachineFilter::default())
        .await
        .unwrap();
    assert_eq!(machines.len(), 2);
    let m1 = &machines[0];
    assert_eq!(m1.machine_id, "M1");
    assert_eq!(m1.current_status, "down");
    assert_eq!(m1.status_since, Some(at("09:00")));
    assert_eq!(m1.reason.as_deref(), Some("breakdown.mechanical"));
    assert_eq!(m1.reason_code.as_deref(), Some("breakdown.mechanical"));
    assert_eq!(m1.loss.as_deref(), Some("breakdown"));
    assert_eq!(m1.current_order.as_deref(), Some("O1"));
    assert_eq!(m1.last_maintenance, Some(at("07:00")));
    assert_eq!((m1.good_count, m1.scrap_count), (10, 1));
    assert_eq!(machines[1].current_status, "unknown");
    let v = serde_json::to_value(m1).unwrap();
    for field in [
        "machine_id",
        "type",
        "line",
        "current_status",
        "last_maintenance",
    ] {
        assert!(v.get(field).is_some(), "{field} missing in {v}");
    }
    let filtered = list_machines(
        &pool,
        &MachineFilter {
            line: Some("L2".into()),
            status: None,
            scope: Default::default(),
        },
    )
    .await
    .unwrap();
    assert_eq!(filtered.len(), 1);
    assert!(get_machine(&pool, "nope").await.unwrap().is_none());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn orders_show_progress_yield_and_scrap_rate(pool: PgPool) {
    let f = Floor::new(&pool);
    let o = || OrderId::new("O7").unwrap();
    let m = || MachineId::new("M1").unwrap();
    f.append(
        "production_order",
        "O7",
        order_created("O7", "widget", 50, at("07:00")),
    )
    .await;
    f.append(
        "production_order",
        "O7",
        OrderEvent::OrderAssigned {
            operator_ids: None,
            order_id: o(),
            machine_id: m(),
            previous_machine_id: None,
            at: at("07:05"),
        },
    )
    .await;
    f.append(
        "production_order",
        "O7",
        OrderEvent::OrderStarted {
            order_id: o(),
            machine_id: m(),
            at: at("07:10"),
        },
    )
    .await;
    f.append(
        "production_order",
        "O7",
        OrderEvent::OrderPartsReported {
            order_id: o(),
            product_id: ProductId::new("widget").unwrap(),
            machine_id: m(),
            good: 19,
            scrap: 1,
            good_count: 19,
            scrap_count: 1,
            at: at("08:00"),
        },
    )
    .await;
    apply_from_store(&pool, Projection::Orders).await.unwrap();
    let view = get_order(&pool, "O7").await.unwrap().unwrap();
    assert_eq!(view.status, "in_progress");
    assert_eq!(view.assigned_machine.as_deref(), Some("M1"));
    assert_eq!(
        (view.good_count, view.scrap_count, view.total_count),
        (19, 1, 20)
    );
    assert_eq!(view.production_yield, Some(0.95));
    assert_eq!(view.scrap_rate, Some(0.05));
    assert_eq!(view.progress, 19.0 / 50.0);
    f.append(
        "production_order",
        "O7",
        OrderEvent::OrderCompleted {
            order_id: o(),
            good_count: 19,
            scrap_count: 1,
            at: at("09:00"),
        },
    )
    .await;
    apply_from_store(&pool, Projection::Orders).await.unwrap();
    let all = list_orders(
        &pool,
        &OrderFilter {
            status: Some("completed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].completed_at, Some(at("09:00")));
    assert!(get_order(&pool, "nope").await.unwrap().is_none());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn maintenance_tasks_and_overdue(pool: PgPool) {
    let f = Floor::new(&pool);
    f.append(
        "maintenance_task",
        "T1",
        task_scheduled("T1", "M1", t("2020-01-01T00:00:00Z")),
    )
    .await;
    f.append(
        "maintenance_task",
        "T2",
        task_scheduled("T2", "M1", t("2999-01-01T00:00:00Z")),
    )
    .await;
    f.append(
        "maintenance_task",
        "T3",
        task_scheduled("T3", "M2", t("2020-01-01T00:00:00Z")),
    )
    .await;
    f.append(
        "maintenance_task",
        "T3",
        TaskEvent::MaintenanceTaskStarted {
            task_id: TaskId::new("T3").unwrap(),
            machine_id: MachineId::new("M2").unwrap(),
            at: at("08:00"),
        },
    )
    .await;
    f.append(
        "maintenance_task",
        "T3",
        TaskEvent::MaintenanceTaskCompleted {
            task_id: TaskId::new("T3").unwrap(),
            machine_id: MachineId::new("M2").unwrap(),
            kind: shopfloor_domain::maintenance::TaskKind::Preventive,
            policy_id: None,
            notes: Some(Text::new("done").unwrap()),
            parts_used: vec![],
            at: at("09:00"),
        },
    )
    .await;
    apply_from_store(&pool, Projection::Maintenance)
        .await
        .unwrap();
    let m1 = list_tasks(
        &pool,
        &TaskFilter {
            machine_id: Some("M1".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(m1.len(), 2);
    assert_eq!((m1[0].task_id.as_str(), m1[0].overdue), ("T1", true));
    assert_eq!((m1[1].task_id.as_str(), m1[1].overdue), ("T2", false));
    assert_eq!(m1[0].status, "scheduled");
    assert_eq!(m1[0].kind, "preventive");
    let overdue = list_tasks(
        &pool,
        &TaskFilter {
            overdue: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        overdue
            .iter()
            .map(|t| t.task_id.as_str())
            .collect::<Vec<_>>(),
        vec!["T1"]
    );
    let t3 = get_task(&pool, "T3").await.unwrap().unwrap();
    assert_eq!((t3.status.as_str(), t3.overdue), ("completed", false));
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn inventory_levels_and_ledger(pool: PgPool) {
    let f = Floor::new(&pool);
    f.append("inventory_item", "steel", received("steel", "A", 10, 10))
        .await;
    f.append("inventory_item", "steel", received("steel", "B", 3, 3))
        .await;
    // Backflush of 15: 10 from A, 3 from B, 2 short.
    f.append(
        "inventory_item",
        "steel",
        consumed("steel", "O1", &[("A", 10, 0), ("B", 3, 0)], 2),
    )
    .await;
    f.append("inventory_item", "steel", received("steel", "A", 1, 1))
        .await;
    apply_from_store(&pool, Projection::Inventory)
        .await
        .unwrap();
    let levels = inventory_levels(&pool, &InventoryFilter::default())
        .await
        .unwrap();
    let got: Vec<(String, String, f64)> = levels
        .iter()
        .map(|l| {
            (
                l.item_id.clone(),
                l.location.clone(),
                serde_json::to_value(l).unwrap()["quantity"]
                    .as_f64()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("steel".into(), "A".into(), 1.0),
            ("steel".into(), "B".into(), 0.0)
        ]
    );
    // Quantities are JSON numbers.
    assert_eq!(
        serde_json::to_value(&levels[0]).unwrap()["quantity"],
        json!(1.0)
    );
    let only_a = inventory_levels(
        &pool,
        &InventoryFilter {
            item_id: Some("steel".into()),
            location: Some("A".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(only_a.len(), 1);
    let ledger = inventory_movements(
        &pool,
        &MovementFilter {
            order_id: Some("O1".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let kinds: Vec<(&str, Option<&str>)> = ledger
        .iter()
        .map(|m| (m.kind.as_str(), m.location.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("shortage", None),
            ("consumed", Some("B")),
            ("consumed", Some("A"))
        ]
    );
    assert_eq!(
        serde_json::to_value(&ledger[0]).unwrap()["shortage"],
        json!(2.0)
    );
    assert_eq!(
        serde_json::to_value(&ledger[2]).unwrap()["delta"],
        json!(-10.0)
    );
    assert_eq!(ledger[2].actor.as_deref(), Some("tester"));
    let all = inventory_movements(&pool, &MovementFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
}

/// The same batch handed in twice (JetStream redelivery) changes nothing.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn redelivered_events_change_nothing(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("M1", "L1", 30.0).await;
    for i in 0..10 {
        f.parts("M1", 5, 1, 30.0, at("08:00") + chrono::Duration::minutes(i))
            .await;
    }
    let events = f.store.read_all(0, 100).await.unwrap();
    for p in Projection::ALL {
        let first = projection::process(&pool, &f.store, p, events.clone(), None)
            .await
            .unwrap();
        assert_eq!(first.position, 11);
        let again = projection::process(&pool, &f.store, p, events.clone(), None)
            .await
            .unwrap();
        assert_eq!((again.applied, again.position), (0, 11));
        // A batch that starts past the checkpoint fills the gap from the store.
        let tail = projection::process(&pool, &f.store, p, events[5..].to_vec(), None)
            .await
            .unwrap();
        assert_eq!(tail.applied, 0);
    }
    let m = get_machine(&pool, "M1").await.unwrap().unwrap();
    assert_eq!((m.good_count, m.scrap_count), (50, 10));
    let facts: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_parts_facts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(facts, 10);

    // Events handed in with a gap before them: the gap is read from the store.
    f.parts("M1", 1, 0, 30.0, at("09:00")).await;
    f.parts("M1", 1, 0, 30.0, at("09:01")).await;
    let newest = f.store.read_all(12, 10).await.unwrap();
    let done = projection::process(&pool, &f.store, Projection::Machines, newest, None)
        .await
        .unwrap();
    assert_eq!((done.applied, done.position), (2, 13));
    let m = get_machine(&pool, "M1").await.unwrap().unwrap();
    assert_eq!(m.good_count, 52);
}

/// An event that cannot be applied is parked with its error; the others go on.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn poison_events_are_parked_and_the_rest_applied(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("M1", "L1", 30.0).await;
    let bad = f
        .raw("machine", "M1", "MachineExploded", 1, json!({"boom": true}))
        .await;
    // Decodes, but its count does not fit a bigint.
    let huge = f
        .raw(
            "machine",
            "M1",
            "MachinePartsProduced",
            1,
            json!({"machine_id": "M1", "good": u64::MAX, "scrap": 0, "order_id": null,
                   "ideal_cycle_time_s": 30.0, "at": "2024-01-01T08:00:00Z"}),
        )
        .await;
    f.parts("M1", 3, 0, 30.0, at("08:05")).await;
    project_all(&pool).await;
    let m = get_machine(&pool, "M1").await.unwrap().unwrap();
    assert_eq!(m.good_count, 3);
    let parked = parked_events(
        &pool,
        &ParkedFilter {
            projection: Some("machines".into()),
            limit: None,
        },
    )
    .await
    .unwrap();
    let positions: Vec<i64> = parked.iter().map(|p| p.position).collect();
    assert_eq!(positions, vec![huge, bad]);
    assert!(parked[1].error.contains("MachineExploded") || !parked[1].error.is_empty());
    let all = parked_events(&pool, &ParkedFilter::default())
        .await
        .unwrap();
    // machines and machine_history both park both events.
    assert_eq!(all.len(), 4);
    let status = query::projection_status(&pool).await.unwrap();
    assert!(status.iter().all(|s| s.position == s.head), "{status:?}");
    // A rebuild parks the same events and gives the same rows.
    assert!(shopfloor_projections::verify(&pool)
        .await
        .unwrap()
        .is_empty());
}
