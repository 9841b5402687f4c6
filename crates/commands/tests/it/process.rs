use std::time::Duration;

use rust_decimal::Decimal;
use shopfloor_commands::process::ProcessManager;
use shopfloor_commands::{CommandService, Target};
use shopfloor_domain::machine::MachineUsage;
use shopfloor_domain::maintenance::{CompleteTask, ScheduleTask, StartTask, TaskCommand, TaskKind};
use shopfloor_domain::order::{CancelOrder, OrderCommand};
use shopfloor_domain::policy::{DefinePolicy, PolicyCommand, PolicyTrigger};
use shopfloor_domain::values::*;
use shopfloor_domain::{InventoryItem, Machine, MaintenanceTask, ProductionOrder};
use shopfloor_eventstore::EventStore;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Handles every event in the log, including those the handling appends, once.
async fn drain(pm: &ProcessManager, store: &EventStore) -> i64 {
    let mut position = 0;
    loop {
        let batch = store.read_all(position, 100).await.unwrap();
        if batch.is_empty() {
            return position;
        }
        for e in &batch {
            pm.handle(e).await.unwrap();
            position = e.position;
        }
    }
}

async fn level(service: &CommandService, item: &str, location: &str) -> Decimal {
    let (i, _) = service.load::<InventoryItem>(item).await.unwrap();
    i.item().map(|i| i.level(location)).unwrap_or_default()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn parts_for_an_order_report_progress_and_backflush_idempotently(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let service = CommandService::new(store.clone());
    let pm = ProcessManager::new(service.clone());
    run(&service, register("M-1")).await;
    run(&service, receive("steel", "A", 100)).await;
    run(&service, receive("steel", "B", 30)).await;
    run(&service, receive("bolt", "A", 10)).await;
    run(
        &service,
        create_order("PO-1", "bracket", 50, &[("steel", 2), ("bolt", 1)]),
    )
    .await;
    run(&service, assign("PO-1", "M-1")).await;
    run(&service, start("PO-1")).await;
    run(&service, parts("M-1", 8, 2, Some("PO-1"), t(7, 0))).await;

    let head = drain(&pm, &store).await;
    let (order, _) = service.load::<ProductionOrder>("PO-1").await.unwrap();
    let order = order.order().unwrap();
    assert_eq!((order.good_count, order.scrap_count), (8, 2));
    // 8 good brackets into FG; 2 × 10 = 20 steel from the largest stock (A); 10 bolts.
    assert_eq!(level(&service, "bracket", "FG").await, Decimal::from(8));
    assert_eq!(level(&service, "steel", "A").await, Decimal::from(80));
    assert_eq!(level(&service, "steel", "B").await, Decimal::from(30));
    assert_eq!(level(&service, "bolt", "A").await, Decimal::ZERO);

    // Handling everything again (a crash before the checkpoint) changes nothing.
    assert_eq!(drain(&pm, &store).await, head);
    assert_eq!(store.head_position().await.unwrap(), head);
    let (order, _) = service.load::<ProductionOrder>("PO-1").await.unwrap();
    assert_eq!(order.order().unwrap().good_count, 8);

    // Short stock is consumed and the shortage recorded, never refused.
    run(&service, parts("M-1", 5, 0, Some("PO-1"), t(7, 5))).await;
    drain(&pm, &store).await;
    let (bolt, _) = service.load::<InventoryItem>("bolt").await.unwrap();
    assert_eq!(bolt.item().unwrap().shortage_total, Decimal::from(5));
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_refused_follow_up_is_recorded_and_does_not_stop_the_driver(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let service = CommandService::new(store.clone());
    let pm = ProcessManager::new(service.clone());
    run(&service, register("M-1")).await;
    run(&service, create_order("PO-1", "bracket", 50, &[])).await;
    run(
        &service,
        order_target(
            "PO-1",
            OrderCommand::CancelOrder(CancelOrder {
                reason: None,
                at: t(6, 30),
            }),
        ),
    )
    .await;
    // Parts for a cancelled order, and for an order that does not exist.
    run(&service, parts("M-1", 3, 0, Some("PO-1"), t(7, 0))).await;
    run(&service, parts("M-1", 3, 0, Some("PO-404"), t(7, 1))).await;
    drain(&pm, &store).await;
    let reasons: Vec<(String, String)> =
        sqlx::query_as("SELECT target, reason FROM process_rejections ORDER BY position")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, "production_order/PO-1");
    assert!(reasons[0].1.contains("cancelled"), "{reasons:?}");
    assert!(reasons[1].1.contains("PO-404"), "{reasons:?}");
    // The finished goods from the cancelled order's parts still count: they exist.
    assert_eq!(level(&service, "bracket", "FG").await, Decimal::from(3));
}

fn task(id: &str, command: TaskCommand) -> Target {
    Target::MaintenanceTask {
        task_id: TaskId::new(id).unwrap(),
        command,
    }
}

/// A cycles policy comes due once, schedules one preventive task; completing it
/// records the maintenance on the machine. The driver runs as a task here.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn policies_schedule_tasks_and_completion_records_maintenance(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let service = CommandService::new(store.clone());
    let pm = ProcessManager::new(service.clone()).with_tick(Duration::from_secs(3600));
    let cancel = CancellationToken::new();
    let runner = tokio::spawn({
        let (pm, cancel) = (pm.clone(), cancel.clone());
        async move { pm.run(cancel).await }
    });
    run(&service, register("M-1")).await;
    run(
        &service,
        Target::MaintenancePolicy {
            policy_id: PolicyId::new("PM-1").unwrap(),
            command: PolicyCommand::DefinePolicy(DefinePolicy {
                policy_id: PolicyId::new("PM-1").unwrap(),
                machine_id: MachineId::new("M-1").unwrap(),
                trigger: PolicyTrigger::EveryCycles(std::num::NonZeroU64::new(100).unwrap()),
                description: Text::new("lubricate").unwrap(),
                usage: MachineUsage {
                    run_seconds: 0,
                    cycles: 0,
                },
                at: t(6, 0),
            }),
        },
    )
    .await;
    // Wait until the driver has indexed the policy before producing.
    let wait = |what: &'static str, sql: &'static str| {
        let pool = pool.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                if n > 0 {
                    return;
                }
                assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait(
        "policy indexed",
        "SELECT count(*) FROM process_machine_policies",
    )
    .await;
    run(&service, parts("M-1", 60, 0, None, t(7, 0))).await;
    run(&service, parts("M-1", 50, 0, None, t(7, 10))).await;
    wait(
        "task scheduled",
        "SELECT count(*) FROM events WHERE event_type = 'MaintenanceTaskScheduled'",
    )
    .await;
    run(&service, parts("M-1", 5, 0, None, t(7, 20))).await;

    let task_id = "PM-1-1";
    let (t1, _) = service.load::<MaintenanceTask>(task_id).await.unwrap();
    let scheduled = t1.task().expect("the policy's first task");
    assert_eq!(scheduled.kind, TaskKind::Preventive);
    run(
        &service,
        task(task_id, TaskCommand::StartTask(StartTask { at: t(8, 0) })),
    )
    .await;
    run(
        &service,
        task(
            task_id,
            TaskCommand::CompleteTask(CompleteTask {
                notes: None,
                parts_used: vec![],
                at: t(9, 0),
            }),
        ),
    )
    .await;
    wait(
        "maintenance recorded",
        "SELECT count(*) FROM events WHERE event_type = 'MachineMaintenancePerformed'",
    )
    .await;
    let (m, _) = service.load::<Machine>("M-1").await.unwrap();
    assert_eq!(
        m.machine().unwrap().last_maintenance.as_ref().unwrap().at,
        t(9, 0)
    );
    // Exactly one task was scheduled for the one due occurrence.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'MaintenanceTaskScheduled'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 1);
    cancel.cancel();
    runner.await.unwrap();
    let _unused = ScheduleTask::clone;
}
