//! `execute_batch`: all-or-nothing and each-on-its-own batches, across streams,
//! concurrent with other batches and with another process writing.

use shopfloor_commands::{Atomicity, BatchItem, CommandError, CommandService, RejectionKind};
use shopfloor_domain::machine::MachineStatus;
use shopfloor_domain::Machine;
use shopfloor_eventstore::EventStore;
use sqlx::PgPool;

use crate::support::*;

fn item(target: shopfloor_commands::Target) -> BatchItem {
    BatchItem::new(target, ctx())
}

async fn good_count(service: &CommandService, id: &str) -> (u64, u64) {
    let (m, version) = service.load::<Machine>(id).await.unwrap();
    (version, m.machine().map_or(0, |m| m.good_count))
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_all_or_nothing_batch_with_a_refusal_records_nothing(pool: PgPool) {
    let service = CommandService::new(EventStore::new(pool)).with_group_commit(64);
    run(&service, register("M-1")).await;
    run(&service, register("M-2")).await;
    let batch = vec![
        item(parts("M-1", 3, 0, None, t(7, 0))),
        item(state("M-2", MachineStatus::Running, t(7, 0))),
        item(parts("M-3", 1, 0, None, t(7, 1))), // not registered
        item(parts("M-1", 4, 0, None, t(7, 2))),
    ];
    let results = service
        .execute_batch(batch.clone(), Atomicity::AllOrNothing)
        .await;
    assert!(
        matches!(
            &results[2],
            Err(CommandError::Rejected {
                kind: RejectionKind::NotFound,
                ..
            })
        ),
        "{results:?}"
    );
    for i in [0, 1, 3] {
        assert!(
            matches!(&results[i], Err(CommandError::Aborted { index: Some(2) })),
            "{results:?}"
        );
    }
    assert_eq!(good_count(&service, "M-1").await, (1, 0));
    assert_eq!(service.load::<Machine>("M-2").await.unwrap().1, 1);

    // The cache did not keep what the refused batch decided: the same batch
    // without the bad item lands, each machine's commands in order.
    let mut fixed = batch;
    fixed.remove(2);
    let results = service.execute_batch(fixed, Atomicity::AllOrNothing).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let versions: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap().stream_version)
        .collect();
    assert_eq!(versions, vec![2, 2, 3]);
    assert_eq!(good_count(&service, "M-1").await, (3, 7));
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn each_on_its_own_keeps_the_good_commands_of_a_batch(pool: PgPool) {
    let service = CommandService::new(EventStore::new(pool)).with_group_commit(64);
    run(&service, register("M-1")).await;
    let batch = vec![
        item(parts("M-1", 3, 0, None, t(7, 0))),
        item(parts("M-3", 1, 0, None, t(7, 1))),
        item(parts("M-1", 4, 0, None, t(7, 2))),
        item(parts("M-1", 0, 0, None, t(7, 3))), // a heartbeat: no event
    ];
    let results = service.execute_batch(batch, Atomicity::EachOnItsOwn).await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(matches!(&results[1], Err(CommandError::Rejected { .. })));
    assert!(results[3].as_ref().unwrap().events.is_empty());
    assert_eq!(good_count(&service, "M-1").await, (3, 7));
}

/// Many tasks post multi-machine all-or-nothing batches and single commands on
/// one hot machine, through two services on one database (two processes): every
/// command lands exactly once, none is refused for contention.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn concurrent_batches_and_a_hot_machine_all_land_once(pool: PgPool) {
    let a = CommandService::new(EventStore::new(pool.clone())).with_group_commit(64);
    let b = CommandService::new(EventStore::new(pool)).with_group_commit(64);
    for m in 0..6 {
        run(&a, register(&format!("M-{m}"))).await;
    }
    let mut tasks = Vec::new();
    for task in 0..24u32 {
        let service = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for round in 0..10u32 {
                let batch: Vec<BatchItem> = if task % 3 == 0 {
                    // The hot machine, one command at a time.
                    vec![item(parts("M-0", 1, 0, None, t(8, round)))]
                } else {
                    (0..4)
                        .map(|k| {
                            let m = format!("M-{}", (task + round + k) % 6);
                            item(parts(&m, 1, 0, None, t(8, round)))
                        })
                        .collect()
                };
                let n = batch.len();
                let results = service.execute_batch(batch, Atomicity::AllOrNothing).await;
                assert_eq!(results.len(), n);
                outcomes.extend(results);
            }
            outcomes
        }));
    }
    let mut accepted = 0u64;
    for task in tasks {
        for r in task.await.unwrap() {
            r.expect("every command is accepted");
            accepted += 1;
        }
    }
    let mut total = 0;
    for m in 0..6 {
        let (version, good) = good_count(&a, &format!("M-{m}")).await;
        assert_eq!(version, good + 1, "one event per command on M-{m}");
        total += good;
    }
    assert_eq!(total, accepted);
}
