use shopfloor_commands::{CommandContext, CommandError, CommandService, RejectionKind};
use shopfloor_domain::machine::MachineStatus;
use shopfloor_domain::Machine;
use shopfloor_eventstore::{EventStore, Source};
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn executes_commands_and_records_metadata(pool: PgPool) {
    let service = CommandService::new(EventStore::new(pool));
    let out = run(&service, register("M-1")).await;
    assert_eq!(
        (out.stream_type, out.stream_id.as_str(), out.stream_version),
        (shopfloor_domain::StreamType::Machine, "M-1", 1)
    );
    assert_eq!(out.events[0].event_type, "MachineRegistered");

    let ctx = CommandContext {
        actor: "alice".into(),
        source: Source::Api,
        correlation_id: Some("corr".into()),
        request_id: Some("req-1".into()),
        occurred_at: Some(t(7, 0)),
        ..Default::default()
    };
    let out = service
        .execute(state("M-1", MachineStatus::Running, t(7, 0)), &ctx)
        .await
        .unwrap();
    assert_eq!(out.stream_version, 2);
    let log = service.store().read_all(0, 10).await.unwrap();
    let m = &log[1].metadata;
    assert_eq!(m.actor.as_deref(), Some("alice"));
    assert_eq!(m.correlation_id.as_deref(), Some("corr"));
    assert_eq!(m.occurred_at, Some(t(7, 0)));
    assert_eq!(m.extra.get("request_id").map(String::as_str), Some("req-1"));
    let (machine, version) = service.load::<Machine>("M-1").await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        machine.machine().unwrap().current.as_ref().unwrap().state,
        MachineStatus::Running
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn refusals_are_classified_and_write_nothing(pool: PgPool) {
    let service = CommandService::new(EventStore::new(pool));
    let err = service
        .execute(state("nope", MachineStatus::Running, t(7, 0)), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::Rejected {
                kind: RejectionKind::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
    run(&service, register("M-1")).await;
    let err = service.execute(register("M-1"), &ctx()).await.unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::Rejected {
                kind: RejectionKind::Conflict,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "machine M-1 is already registered");
    // A heartbeat (no parts) is accepted and writes nothing.
    let heartbeat = run(&service, parts("M-1", 0, 0, None, t(7, 0))).await;
    assert!(heartbeat.events.is_empty(), "{heartbeat:?}");
    let err = service
        .execute(
            parts(
                "M-1",
                shopfloor_domain::MAX_PARTS_PER_REPORT + 1,
                0,
                None,
                t(7, 0),
            ),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::Rejected {
                kind: RejectionKind::Invalid,
                ..
            }
        ),
        "{err:?}"
    );
    run(&service, create_order("PO-1", "widget", 10, &[])).await;
    let err = service.execute(start("PO-1"), &ctx()).await.unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::Rejected {
                kind: RejectionKind::Conflict,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(service.store().head_position().await.unwrap(), 2);
}

/// A command with the same command id is done once; the retry gets the first outcome,
/// even when the aggregate has moved on and would now refuse it.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_command_id_makes_a_command_idempotent(pool: PgPool) {
    let service = CommandService::new(EventStore::new(pool));
    run(&service, register("M-1")).await;
    run(&service, create_order("PO-1", "widget", 10, &[])).await;
    run(&service, assign("PO-1", "M-1")).await;
    let mut keyed = ctx();
    keyed.command_id = Some("key-1".into());
    let first = service.execute(start("PO-1"), &keyed).await.unwrap();
    assert!(!first.duplicate);
    let again = service.execute(start("PO-1"), &keyed).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);
    assert_eq!(again.stream_version, first.stream_version);
    // Without the key the same command is refused now: the order is in progress.
    assert!(service.execute(start("PO-1"), &ctx()).await.is_err());
    // The key cannot be reused for another stream.
    let err = service
        .execute(state("M-1", MachineStatus::Idle, t(8, 0)), &keyed)
        .await;
    assert!(err.is_ok(), "another stream derives other ids: {err:?}");
    assert_eq!(service.store().head_position().await.unwrap(), 5);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_expected_version_is_checked(pool: PgPool) {
    let service = CommandService::new(EventStore::new(pool));
    run(&service, register("M-1")).await;
    let mut pinned = ctx();
    pinned.expected_version = Some(3);
    let err = service
        .execute(state("M-1", MachineStatus::Running, t(7, 0)), &pinned)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::VersionMismatch {
                expected: 3,
                actual: 1,
                ..
            }
        ),
        "{err:?}"
    );
    pinned.expected_version = Some(1);
    let out = service
        .execute(state("M-1", MachineStatus::Running, t(7, 0)), &pinned)
        .await
        .unwrap();
    assert_eq!(out.stream_version, 2);
}

/// Many writers on one machine: every command lands, none is lost to a conflict.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn concurrent_commands_on_one_stream_all_land(pool: PgPool) {
    let service = CommandService::new(EventStore::new(pool)).with_snapshot_every(7);
    run(&service, register("M-1")).await;
    let mut tasks = Vec::new();
    for i in 0..24u32 {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            service
                .execute(parts("M-1", 1, 0, None, t(7, i)), &ctx())
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let (machine, version) = service.load::<Machine>("M-1").await.unwrap();
    assert_eq!(version, 25);
    assert_eq!(machine.machine().unwrap().good_count, 24);
    // Snapshots taken along the way agree with a replay from zero.
    let replayed =
        shopfloor_eventstore::AggregateRepository::<Machine>::new(service.store().clone())
            .load_replayed("M-1")
            .await
            .unwrap();
    assert_eq!((machine, version), replayed);
}

/// Two processes (two services, each with its own in-process turn-taking) racing on
/// one stream: conflicts are retried with back-off, and every command lands.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn commands_from_two_processes_on_one_stream_all_land(pool: PgPool) {
    let a = CommandService::new(EventStore::new(pool.clone()));
    let b = CommandService::new(EventStore::new(pool));
    run(&a, register("M-1")).await;
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let service = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            service
                .execute(parts("M-1", 1, 0, None, t(7, i)), &ctx())
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let (machine, version) = a.load::<Machine>("M-1").await.unwrap();
    assert_eq!((version, machine.machine().unwrap().good_count), (17, 16));
}

/// Group commit: many concurrent commands over several machines share transactions;
/// each keeps its own version check and result, and the log stays gapless.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn group_commit_keeps_every_command_and_the_order(pool: PgPool) {
    let service = CommandService::new(EventStore::new(pool)).with_group_commit(64);
    for m in 0..8 {
        run(&service, register(&format!("M-{m}"))).await;
    }
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let machine = format!("M-{}", i % 8);
            service
                .execute(parts(&machine, 1, i as u64 % 2, None, t(7, i % 60)), &ctx())
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for m in 0..8 {
        let (machine, version) = service.load::<Machine>(&format!("M-{m}")).await.unwrap();
        assert_eq!((version, machine.machine().unwrap().good_count), (26, 25));
    }
    let log = service.store().read_all(0, 1000).await.unwrap();
    assert_eq!(log.len(), 208);
    assert!(log
        .iter()
        .enumerate()
        .all(|(i, e)| e.position == i as i64 + 1));
    // A stale cache (another process wrote meanwhile) is noticed and reloaded.
    let other = CommandService::new(service.store().clone());
    run(&other, parts("M-0", 1, 0, None, t(8, 0))).await;
    run(&service, parts("M-0", 1, 0, None, t(8, 1))).await;
    let (machine, version) = service.load::<Machine>("M-0").await.unwrap();
    assert_eq!((version, machine.machine().unwrap().good_count), (28, 27));
}

/// An If-Match naming the true current version is accepted even when this
/// process's cached aggregate is behind (another writer appended meanwhile).
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_expected_version_is_checked_against_the_store_not_a_stale_cache(pool: PgPool) {
    let service = CommandService::new(EventStore::new(pool.clone()));
    run(&service, register("M-1")).await;
    run(&service, state("M-1", MachineStatus::Running, t(7, 0))).await; // cached at 2
    let other = CommandService::new(EventStore::new(pool));
    run(&other, state("M-1", MachineStatus::Idle, t(7, 5))).await; // now at 3
    let mut pinned = ctx();
    pinned.expected_version = Some(3);
    let out = service
        .execute(state("M-1", MachineStatus::Down, t(7, 9)), &pinned)
        .await
        .unwrap();
    assert_eq!(out.stream_version, 4);
}

/// A creation is decided without reading its stream (it expects none): a second
/// creation of the same stream, from a process that never saw the first, is still
/// refused as the domain refuses it, and a retried one with the same command id
/// answers with the original outcome. Nothing is written twice.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_creation_decided_without_a_read_is_still_refused_when_the_stream_exists(pool: PgPool) {
    let a = CommandService::new(EventStore::new(pool.clone()));
    let b = CommandService::new(EventStore::new(pool));
    let mut keyed = ctx();
    keyed.command_id = Some("create-po-1".into());
    let first = a
        .execute(create_order("PO-1", "widget", 10, &[]), &keyed)
        .await
        .unwrap();
    let refused = b
        .execute(create_order("PO-1", "gadget", 5, &[]), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            CommandError::Rejected {
                kind: RejectionKind::Conflict,
                ..
            }
        ),
        "{refused:?}"
    );
    let again = b
        .execute(create_order("PO-1", "widget", 10, &[]), &keyed)
        .await
        .unwrap();
    assert_eq!(again.events, first.events);
    assert_eq!(again.stream_version, 1);
    let registered = b.execute(register("M-9"), &ctx()).await.unwrap();
    assert_eq!(registered.stream_version, 1);
    let twice = a.execute(register("M-9"), &ctx()).await.unwrap_err();
    assert!(matches!(twice, CommandError::Rejected { .. }), "{twice:?}");
    assert_eq!(a.store().head_position().await.unwrap(), 2);
}

/// A refusal decided on this process's cached aggregate is checked against the
/// store before it is answered: when another process moved the stream on, the
/// command is decided again on what the store holds (here the order was assigned
/// elsewhere, so starting it is no longer refused).
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_refusal_on_a_stale_cache_is_decided_again_on_the_store(pool: PgPool) {
    let a = CommandService::new(EventStore::new(pool.clone()));
    let b = CommandService::new(EventStore::new(pool));
    run(&a, create_order("PO-1", "widget", 10, &[])).await; // cached by `a` at 1
    let refused = a.execute(start("PO-1"), &ctx()).await.unwrap_err();
    assert!(
        matches!(
            refused,
            CommandError::Rejected {
                kind: RejectionKind::Conflict,
                ..
            }
        ),
        "{refused:?}"
    );
    run(&b, assign("PO-1", "M-1")).await; // the store is at 2; `a` still caches 1
    let started = a.execute(start("PO-1"), &ctx()).await.unwrap();
    assert_eq!((started.stream_version, started.events.len()), (3, 1));
    // And a refusal that stands on a fresh aggregate stays a refusal.
    let again = a.execute(start("PO-1"), &ctx()).await.unwrap_err();
    assert!(
        matches!(
            again,
            CommandError::Rejected {
                kind: RejectionKind::Conflict,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(a.store().head_position().await.unwrap(), 3);
}
