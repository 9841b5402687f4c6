use cqrs_es::{AggregateError, CqrsFramework, EventStore as _};
use shopfloor_eventstore::repository::{derived_event_id, meta};
use shopfloor_eventstore::{AggregateRepository, EventStore, Source, StreamRef};
use sqlx::PgPool;

use crate::support::{metadata, Tally, TallyCommand, TallyError};

type Repo = AggregateRepository<Tally>;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn cqrs_framework_commits_through_the_store(pool: PgPool) {
    let store = EventStore::new(pool);
    let cqrs = CqrsFramework::new(Repo::new(store.clone()), vec![], ());
    let md = metadata(&[
        (meta::ACTOR, "alice"),
        (meta::SOURCE, "api"),
        (meta::CORRELATION_ID, "c-1"),
        (meta::OCCURRED_AT, "2026-11-24T06:00:00+01:00"),
        ("request_id", "r-1"),
    ]);
    cqrs.execute_with_metadata("T-1", TallyCommand::Open { id: "T-1".into() }, md.clone())
        .await
        .unwrap();
    cqrs.execute_with_metadata("T-1", TallyCommand::Add { amount: 5 }, md)
        .await
        .unwrap();
    let err = cqrs
        .execute("T-1", TallyCommand::Open { id: "T-1".into() })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AggregateError::UserError(TallyError::AlreadyOpen)
    ));

    let log = store.read_all(0, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    // The payload holds the event's fields only; the tag is the event type.
    assert_eq!(log[1].event_type, "TallyAdded");
    assert_eq!(log[1].payload, serde_json::json!({ "amount": 5 }));
    let m = &log[1].metadata;
    assert_eq!(m.actor.as_deref(), Some("alice"));
    assert_eq!(m.source, Source::Api);
    assert_eq!(m.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(
        m.occurred_at.unwrap().to_rfc3339(),
        "2026-11-24T05:00:00+00:00"
    );
    assert_eq!(m.extra.get("request_id").map(String::as_str), Some("r-1"));

    let repo = Repo::new(store);
    let envelopes = repo.load_events("T-1").await.unwrap();
    assert_eq!(
        envelopes.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let (tally, version) = repo.load("T-1").await.unwrap();
    assert_eq!((tally.total, version), (5, 2));
}

/// A command retried with the same command id appends nothing the second time.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_retried_command_id_appends_nothing(pool: PgPool) {
    let store = EventStore::new(pool);
    let cqrs = CqrsFramework::new(Repo::new(store.clone()), vec![], ());
    cqrs.execute("T-1", TallyCommand::Open { id: "T-1".into() })
        .await
        .unwrap();
    let md = metadata(&[(meta::COMMAND_ID, "mqtt-msg-42")]);
    cqrs.execute_with_metadata("T-1", TallyCommand::Add { amount: 3 }, md.clone())
        .await
        .unwrap();
    cqrs.execute_with_metadata("T-1", TallyCommand::Add { amount: 3 }, md)
        .await
        .unwrap();
    let log = store.read_all(0, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].event_id,
        derived_event_id(&StreamRef::new("tally", "T-1"), "mqtt-msg-42", 0)
    );
    assert_eq!(Repo::new(store).load("T-1").await.unwrap().0.total, 3);
}

/// Two commands loaded at the same version: the second commit is a conflict.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_stale_aggregate_conflicts(pool: PgPool) {
    let store = EventStore::new(pool);
    let repo = Repo::new(store.clone());
    let cqrs = CqrsFramework::new(repo.clone(), vec![], ());
    cqrs.execute("T-1", TallyCommand::Open { id: "T-1".into() })
        .await
        .unwrap();
    let stale = repo.load_aggregate("T-1").await.unwrap();
    cqrs.execute("T-1", TallyCommand::Add { amount: 1 })
        .await
        .unwrap();
    let err = repo
        .commit(
            vec![crate::support::TallyEvent::TallyAdded { amount: 2 }],
            stale,
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AggregateError::AggregateConflict));
    assert_eq!(repo.load("T-1").await.unwrap().0.history, vec![1]);
}

/// Trap 8: our snapshots hold the state after exactly the events they cover.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_snapshot_loaded_aggregate_equals_the_replayed_one(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let repo = Repo::new(store.clone()).with_snapshots(5);
    let cqrs = CqrsFramework::new(repo.clone(), vec![], ());
    cqrs.execute("T-1", TallyCommand::Open { id: "T-1".into() })
        .await
        .unwrap();
    for amount in 1..=22 {
        cqrs.execute("T-1", TallyCommand::Add { amount })
            .await
            .unwrap();
        // After every command, both ways of loading agree.
        let from_snapshot = repo.load("T-1").await.unwrap();
        let replayed = repo.load_replayed("T-1").await.unwrap();
        assert_eq!(from_snapshot, replayed, "after adding {amount}");
    }
    let (version, state): (i64, serde_json::Value) =
        sqlx::query_as("SELECT version, state FROM snapshots WHERE stream_id = 'T-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(version, 20);
    let snap: Tally = serde_json::from_value(state).unwrap();
    assert_eq!(
        snap.history,
        (1..=19).collect::<Vec<i64>>(),
        "a snapshot event applied twice"
    );
    assert_eq!(
        repo.load("T-1").await.unwrap().0.history,
        (1..=22).collect::<Vec<i64>>()
    );

    // A snapshot that no longer deserializes is ignored, not trusted.
    sqlx::query("UPDATE snapshots SET state = '{\"broken\": true}'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        repo.load("T-1").await.unwrap().0.total,
        (1..=22).sum::<i64>()
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn loads_the_state_as_of_a_version_or_a_time(pool: PgPool) {
    let store = EventStore::new(pool);
    let repo = Repo::new(store.clone());
    let cqrs = CqrsFramework::new(repo.clone(), vec![], ());
    cqrs.execute("T-1", TallyCommand::Open { id: "T-1".into() })
        .await
        .unwrap();
    cqrs.execute("T-1", TallyCommand::Add { amount: 10 })
        .await
        .unwrap();
    let log = store.read_all(0, 10).await.unwrap();
    let cut = log[1].recorded_at;
    cqrs.execute("T-1", TallyCommand::Add { amount: 20 })
        .await
        .unwrap();

    assert_eq!(repo.load_until("T-1", 1, None).await.unwrap().0.total, 0);
    assert_eq!(
        repo.load_until("T-1", 2, None).await.unwrap(),
        (
            Tally {
                id: Some("T-1".into()),
                total: 10,
                history: vec![10]
            },
            2
        )
    );
    let (at_cut, v) = repo.load_until("T-1", u64::MAX, Some(cut)).await.unwrap();
    assert_eq!((at_cut.total, v), (10, 2));
    assert_eq!(
        repo.load_until("T-1", u64::MAX, None)
            .await
            .unwrap()
            .0
            .total,
        30
    );
}
