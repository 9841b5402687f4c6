//! The demo plant tells the truth (issue 14): the simulator with its director, through the
//! shared Mosquitto (own topic root) into a fresh database, then the KPIs of every machine
//! from the read models. Performance never exceeds 100 % and OEE is plausible; orders run
//! and complete with an operator clocked on; stops reported without a reason get one later.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shopfloor_commands::{CommandContext, CommandService};
use shopfloor_domain::machine::{MachineCommand, RegisterMachine};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{CycleTime, LineId, MachineId, MachineType};
use shopfloor_eventstore::{EventStore, Source};
use shopfloor_ingest::demo::{direct, Pace};
use shopfloor_ingest::{
    run_ingest, simulate, simulated_machines, DemoFloor, IngestConfig, SimulatorConfig,
};
use shopfloor_projections::query::{kpi_metrics, KpiQuery};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::support::namespace;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn the_demo_plant_runs_below_its_ideal_rate_with_orders_and_people(pool: PgPool) {
    let ns = namespace("demo");
    let url: url::Url = "mqtt://127.0.0.1:1883".parse().expect("url");
    let mut config = SimulatorConfig::new(url.clone(), ns.clone(), 4, 20.0);
    config.ticks = Some(400);
    // Machines of 0.1-0.4 s cycles: enough parts in 20 s that the rollover machine's first
    // count (a counter baseline, not counted) weighs little.
    config.cycle_scale = 0.1;
    let service = CommandService::new(EventStore::new(pool.clone()));
    let ctx = CommandContext::new("test", Source::System);
    for m in simulated_machines(&config) {
        let machine_id = MachineId::new(&m.machine_id).unwrap();
        let command = MachineCommand::RegisterMachine(RegisterMachine {
            machine_id: machine_id.clone(),
            machine_type: MachineType::new(&m.machine_type).unwrap(),
            line: LineId::new(&m.line).unwrap(),
            ideal_cycle_time_s: CycleTime::new(m.ideal_cycle_time_s).unwrap(),
            at: Utc::now(),
        });
        service
            .execute(
                Target::Machine {
                    machine_id,
                    command,
                },
                &ctx,
            )
            .await
            .expect("register");
    }
    let (tx, mut ready) = watch::channel(false);
    let cancel = CancellationToken::new();
    let ingest = tokio::spawn(run_ingest(
        service.clone(),
        IngestConfig::new(url, &ns),
        tx,
        cancel.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .expect("ingest ready in time")
        .expect("ready");

    let floor = Arc::new(DemoFloor::new(4));
    config.floor = Some(floor.clone());
    let pace = Pace {
        every: Duration::from_millis(250),
        classify_after: Duration::from_secs(2),
        order_s: 3.0,
    };
    let director = tokio::spawn(direct(
        service.clone(),
        simulated_machines(&config),
        floor,
        pace,
        cancel.clone(),
    ));
    let start = Utc::now();
    let report = simulate(config.clone(), CancellationToken::new())
        .await
        .expect("simulate");
    assert_eq!(report.acknowledged, report.published);
    let end = Utc::now();
    // Every published count is stored before the figures are read.
    let counts = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE event_type = 'MachinePartsProduced'",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(0)
    };
    let mut last = -1;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = counts(pool.clone()).await;
        if n == last {
            break;
        }
        last = n;
    }
    cancel.cancel();
    let _ = director.await;
    let _ = ingest.await;
    shopfloor_projections::replay(&pool, None, |_, _| {})
        .await
        .expect("replay");

    // The first tick announces every machine's state: start the window just after it.
    let from = start + chrono::Duration::milliseconds(200);
    let rows = kpi_metrics(
        &pool,
        &KpiQuery {
            machine_id: None,
            line: None,
            from,
            to: end,
            as_of: None,
            granularity: None,
            rollup: false,
            scope: Default::default(),
        },
    )
    .await
    .expect("kpi");
    assert_eq!(rows.len(), 4);
    for row in &rows {
        let r = serde_json::to_value(row).unwrap();
        let performance = r["performance"].as_f64().expect("performance");
        let oee = r["oee"].as_f64().expect("oee");
        assert!(
            (0.5..=1.0).contains(&performance),
            "performance of {}: {r}",
            r["machine_id"]
        );
        assert!(
            (0.3..=0.95).contains(&oee),
            "OEE of {}: {r}",
            r["machine_id"]
        );
    }
    let completed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm_orders WHERE status = 'completed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(completed >= 2, "orders complete: {completed}");
    // Counts name the order (the order's own totals follow through the process manager,
    // which this test does not run).
    let with_parts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rm_orders o WHERE o.assigned_operators <> '[]' \
         AND EXISTS (SELECT 1 FROM rm_parts_facts f WHERE f.order_id = o.order_id AND f.good > 0)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        with_parts >= 2,
        "orders with parts and operators: {with_parts}"
    );
    let closed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm_labour_sessions WHERE off_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(closed >= 2, "labour sessions closed: {closed}");
    let classified: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_stop_classifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    let unreasoned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rm_state_facts WHERE state = 'down' AND reason_code = 'unclassified'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        unreasoned == 0 || classified > 0,
        "{unreasoned} stops without a reason, {classified} classified later"
    );
    assert!(shopfloor_projections::verify(&pool)
        .await
        .unwrap()
        .is_empty());
}
