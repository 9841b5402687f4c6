//! End to end over JetStream: the relay publishes, the projectors consume.
//! Killing the projectors mid-batch (aborting their tasks drops the open
//! transaction) double-counts nothing, and `verify` finds the live read models
//! equal to a rebuild from the event store after a busy history.

use std::time::Duration;

use async_nats::jetstream;
use chrono::Duration as Span;
use rand::Rng;
use shopfloor_eventstore::EventStore;
use shopfloor_projections::query::*;
use shopfloor_projections::{
    names, projector::run_projectors_with, replay, verify, LiveHub, Projection, ProjectorOptions,
    Relay,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::floor::*;
use crate::support::{eventually, namespace, SHARED_NATS};

async fn all_caught_up(pool: &PgPool) -> Option<()> {
    let status = projection_status(pool).await.ok()?;
    status
        .iter()
        .all(|s| s.position == s.head && s.head > 0)
        .then_some(())
}

fn spawn_projectors(
    pool: &PgPool,
    nats: &async_nats::Client,
    ns: &str,
    hub: &LiveHub,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (pool, nats, ns, hub, cancel) = (
            pool.clone(),
            nats.clone(),
            ns.to_owned(),
            hub.clone(),
            cancel.clone(),
        );
        async move {
            let options = ProjectorOptions {
                batch: 50,
                retry: Duration::from_millis(100),
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            };
            run_projectors_with(pool, nats, &ns, hub, options, cancel).await
        }
    });
    (cancel, task)
}

async fn cleanup(nats: &async_nats::Client, ns: &str) {
    let js = jetstream::new(nats.clone());
    for p in Projection::ALL {
        let _ = js
            .delete_consumer_from_stream(
                names::projector_consumer(ns, p.name()),
                names::events_stream(ns),
            )
            .await;
    }
    let _ = js.delete_stream(names::events_stream(ns)).await;
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn killed_mid_batch_nothing_is_double_counted_and_verify_is_equal(pool: PgPool) {
    let ns = namespace();
    let nats = async_nats::connect(SHARED_NATS).await.unwrap();
    let f = Floor::new(&pool);
    let relay = Relay::new(EventStore::new(pool.clone()), nats.clone(), &ns).with_batch(100);
    let relay_cancel = CancellationToken::new();
    let relay_task = tokio::spawn({
        let (r, c) = (relay.clone(), relay_cancel.clone());
        async move { r.run(c).await }
    });
    let hub = LiveHub::default();
    let mut live = hub.subscribe();

    let machines = ["P1", "P2", "P3"];
    for m in machines {
        f.register(m, "L1", 12.0).await;
    }
    let (mut cancel, mut task) = spawn_projectors(&pool, &nats, &ns, &hub);
    let mut rng = rand::thread_rng();
    let (mut good, mut scrap) = (0u64, 0u64);
    let start = at("06:00");
    for round in 0..6 {
        // A busy stretch: states (some late), parts, a classification.
        for i in 0..80 {
            let m = machines[i % 3];
            let minute = round * 100 + i as i64;
            let when = start + Span::minutes(minute) - Span::minutes(rng.gen_range(0..5));
            match i % 4 {
                0 => {
                    f.state(m, "running", None, None, when).await;
                }
                1 => {
                    let (g, s) = (rng.gen_range(0..20), rng.gen_range(0..3));
                    if g + s > 0 {
                        f.parts(m, g, s, 12.0, when).await;
                        good += g;
                        scrap += s;
                    }
                }
                2 => {
                    f.state(m, "down", Some("breakdown.tooling"), None, when)
                        .await;
                }
                _ => {
                    f.state(m, "idle", Some("planned.break"), None, when).await;
                }
            }
        }
        // Kill the projectors at a random moment (mid-batch), start them again.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..60))).await;
        task.abort();
        let _ = task.await;
        cancel.cancel();
        (cancel, task) = spawn_projectors(&pool, &nats, &ns, &hub);
    }
    eventually(60, "projectors caught up", || all_caught_up(&pool)).await;
    eventually(30, "relay caught up", || async {
        let head = f.store.head_position().await.ok()?;
        (relay.checkpoint().await.ok()?.position() == head).then_some(())
    })
    .await;

    let board = list_machines(&pool, &MachineFilter::default())
        .await
        .unwrap();
    let counted: i64 = board.iter().map(|m| m.good_count).sum();
    let scrapped: i64 = board.iter().map(|m| m.scrap_count).sum();
    assert_eq!((counted, scrapped), (good as i64, scrap as i64));
    let facts: (i64, i64) =
        sqlx::query_as("SELECT sum(good)::bigint, sum(scrap)::bigint FROM rm_parts_facts")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(facts, (good as i64, scrap as i64));
    let kpi = kpi_metrics(
        &pool,
        &KpiQuery {
            machine_id: None,
            line: None,
            from: at("00:00"),
            to: at("23:00"),
            as_of: None,
            granularity: None,
            rollup: true,
            scope: Default::default(),
        },
    )
    .await
    .unwrap();
    assert_eq!(kpi[0].good_count, good as i64);

    // The live feed saw changes.
    assert!(live.try_recv().is_ok());

    // Replay from the event store alone equals what the projectors built.
    let differences = verify(&pool).await.unwrap();
    assert!(
        differences.is_empty(),
        "{:#?}",
        &differences[..differences.len().min(5)]
    );

    // Tamper with a live row: verify reports it, replay repairs it.
    sqlx::query("UPDATE rm_machines SET good_count = good_count + 1 WHERE machine_id = 'P1'")
        .execute(&pool)
        .await
        .unwrap();
    let differences = verify(&pool).await.unwrap();
    assert_eq!(differences.len(), 2, "{differences:#?}");
    assert!(differences.iter().all(|d| d.table == "rm_machines"));
    let progress = std::sync::Mutex::new(Vec::new());
    replay(&pool, Some("machines"), |done, head| {
        progress.lock().unwrap().push((done, head))
    })
    .await
    .unwrap();
    assert!(!progress.lock().unwrap().is_empty());
    assert!(verify(&pool).await.unwrap().is_empty());
    assert!(replay(&pool, Some("nope"), |_, _| {}).await.is_err());

    cancel.cancel();
    task.await.unwrap();
    relay_cancel.cancel();
    relay_task.await.unwrap();
    cleanup(&nats, &ns).await;
}

/// While projectors keep consuming, `verify` compares at the live checkpoints.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn verify_while_projectors_run(pool: PgPool) {
    let ns = namespace();
    let nats = async_nats::connect(SHARED_NATS).await.unwrap();
    let f = Floor::new(&pool);
    let relay = Relay::new(EventStore::new(pool.clone()), nats.clone(), &ns);
    let relay_cancel = CancellationToken::new();
    let relay_task = tokio::spawn({
        let (r, c) = (relay.clone(), relay_cancel.clone());
        async move { r.run(c).await }
    });
    let hub = LiveHub::default();
    let (cancel, task) = spawn_projectors(&pool, &nats, &ns, &hub);
    f.register("V1", "L1", 5.0).await;
    let writer = tokio::spawn({
        let pool = pool.clone();
        async move {
            let f = Floor::new(&pool);
            for i in 0..300 {
                f.parts("V1", 1, 0, 5.0, at("06:00") + Span::seconds(i))
                    .await;
            }
        }
    });
    for _ in 0..3 {
        let differences = verify(&pool).await.unwrap();
        assert!(differences.is_empty(), "{differences:#?}");
    }
    writer.await.unwrap();
    eventually(60, "projectors caught up", || all_caught_up(&pool)).await;
    assert!(verify(&pool).await.unwrap().is_empty());
    cancel.cancel();
    task.await.unwrap();
    relay_cancel.cancel();
    relay_task.await.unwrap();
    cleanup(&nats, &ns).await;
}
