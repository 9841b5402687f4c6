use chrono::{TimeZone, Utc};
use serde_json::json;
use shopfloor_eventstore::{
    AppendRequest, Direction, EventMetadata, EventStore, ExpectedVersion, Source, StoreError,
    StreamRef,
};
use sqlx::PgPool;

use crate::support::event;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn appends_and_reads_a_stream_both_ways(pool: PgPool) {
    let store = EventStore::new(pool);
    let s = StreamRef::new("machine", "M-1");
    let events: Vec<_> = (1..=5)
        .map(|i| event("Counted", json!({ "n": i })))
        .collect();
    let r = store
        .append(&s, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    assert_eq!(
        (
            r.stream_version,
            r.first_position,
            r.last_position,
            r.duplicate
        ),
        (5, 1, 5, false)
    );
    assert_eq!(store.stream_version(&s).await.unwrap(), 5);

    let fwd = store
        .read_stream(&s, Direction::Forward, 2, 2)
        .await
        .unwrap();
    assert_eq!(
        fwd.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(fwd[0].payload, json!({ "n": 2 }));
    assert_eq!(fwd[0].event_id, events[1].event_id);

    let back = store
        .read_stream(&s, Direction::Backward, u64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(
        back.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![5, 4, 3, 2, 1]
    );
    let back_from_3 = store
        .read_stream(&s, Direction::Backward, 3, 2)
        .await
        .unwrap();
    assert_eq!(
        back_from_3.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![3, 2]
    );
    assert!(store
        .read_stream(
            &StreamRef::new("machine", "nope"),
            Direction::Backward,
            u64::MAX,
            10
        )
        .await
        .unwrap()
        .is_empty());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn metadata_round_trips(pool: PgPool) {
    let store = EventStore::new(pool);
    let s = StreamRef::new("production_order", "PO-1");
    let mut e = event("OrderCreated", json!({ "quantity": 10 }));
    let occurred = Utc.with_ymd_and_hms(2026, 11, 23, 22, 15, 0).unwrap();
    e.metadata = EventMetadata {
        actor: Some("alice".into()),
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cmd-1".into()),
        source: Source::Mqtt,
        occurred_at: Some(occurred),
        extra: [("request_id".to_string(), "req-9".to_string())].into(),
    };
    e.schema_version = 3;
    store
        .append(&s, ExpectedVersion::Any, vec![e.clone()])
        .await
        .unwrap();
    let got = store.read_all(0, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].metadata, e.metadata);
    assert_eq!(got[0].schema_version, 3);
    assert_eq!(got[0].event_type, "OrderCreated");
    assert_eq!(
        (got[0].stream_type.as_str(), got[0].stream_id.as_str()),
        ("production_order", "PO-1")
    );
    assert!(got[0].recorded_at > occurred);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn expected_version_conflicts_carry_the_actual_version(pool: PgPool) {
    let store = EventStore::new(pool);
    let s = StreamRef::new("machine", "M-1");
    store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![event("A", json!({})), event("B", json!({}))],
        )
        .await
        .unwrap();

    let err = store
        .append(&s, ExpectedVersion::NoStream, vec![event("C", json!({}))])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 2, .. }),
        "{err:?}"
    );

    let err = store
        .append(&s, ExpectedVersion::Exact(1), vec![event("C", json!({}))])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 2, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "stream machine/M-1 is at version 2, expected 1"
    );

    let err = store
        .append(
            &StreamRef::new("machine", "new"),
            ExpectedVersion::Exact(3),
            vec![event("C", json!({}))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 0, .. }),
        "{err:?}"
    );

    // Nothing was written by the refused appends.
    assert_eq!(store.head_position().await.unwrap(), 2);
    let ok = store
        .append(&s, ExpectedVersion::Exact(2), vec![event("C", json!({}))])
        .await
        .unwrap();
    assert_eq!(ok.stream_version, 3);
    let any = store
        .append(&s, ExpectedVersion::Any, vec![event("D", json!({}))])
        .await
        .unwrap();
    assert_eq!(any.stream_version, 4);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn re_appending_the_same_event_ids_writes_nothing(pool: PgPool) {
    let store = EventStore::new(pool);
    let s = StreamRef::new("machine", "M-1");
    let batch = vec![event("A", json!({})), event("B", json!({}))];
    let first = store
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    store
        .append(&s, ExpectedVersion::Any, vec![event("C", json!({}))])
        .await
        .unwrap();

    // A retry with the original expected version: the original result, nothing new.
    let again = store
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (
            again.stream_version,
            again.first_position,
            again.last_position
        ),
        (
            first.stream_version,
            first.first_position,
            first.last_position
        )
    );
    assert_eq!(store.head_position().await.unwrap(), 3);
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 3);

    // The same id on another stream is refused, not silently accepted.
    let err = store
        .append(
            &StreamRef::new("machine", "M-2"),
            ExpectedVersion::Any,
            vec![batch[0].clone()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyMismatch { .. }),
        "{err:?}"
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_batch_decides_each_request_on_its_own(pool: PgPool) {
    let store = EventStore::new(pool);
    let a = StreamRef::new("machine", "A");
    let b = StreamRef::new("machine", "B");
    store
        .append(&b, ExpectedVersion::NoStream, vec![event("X", json!({}))])
        .await
        .unwrap();

    let dup = event("A2", json!({}));
    let results = store
        .append_batch(vec![
            AppendRequest {
                stream: a.clone(),
                expected: ExpectedVersion::NoStream,
                events: vec![event("A1", json!({}))],
            },
            // Sees the request before it, in the same transaction.
            AppendRequest {
                stream: a.clone(),
                expected: ExpectedVersion::Exact(1),
                events: vec![dup.clone()],
            },
            // Conflicts: B is at 1.
            AppendRequest {
                stream: b.clone(),
                expected: ExpectedVersion::NoStream,
                events: vec![event("B2", json!({}))],
            },
            // A retry of the second request inside the same batch.
            AppendRequest {
                stream: a.clone(),
                expected: ExpectedVersion::Exact(1),
                events: vec![dup.clone()],
            },
            // Invalid: no events.
            AppendRequest {
                stream: b.clone(),
                expected: ExpectedVersion::Any,
                events: vec![],
            },
            AppendRequest {
                stream: b.clone(),
                expected: ExpectedVersion::Exact(1),
                events: vec![event("B3", json!({}))],
            },
        ])
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap().stream_version, 1);
    assert_eq!(results[1].as_ref().unwrap().stream_version, 2);
    assert!(matches!(
        results[2],
        Err(StoreError::Conflict { actual: 1, .. })
    ));
    let retry = results[3].as_ref().unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        retry.first_position,
        results[1].as_ref().unwrap().first_position
    );
    assert!(matches!(results[4], Err(StoreError::Invalid(_))));
    assert_eq!(results[5].as_ref().unwrap().stream_version, 2);

    let log = store.read_all(0, 100).await.unwrap();
    let types: Vec<_> = log.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, vec!["X", "A1", "A2", "B3"]);
    assert_eq!(
        log.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn refuses_bad_names_and_duplicate_ids_in_one_append(pool: PgPool) {
    let store = EventStore::new(pool);
    let e = event("A", json!({}));
    let err = store
        .append(
            &StreamRef::new("machine", ""),
            ExpectedVersion::Any,
            vec![e.clone()],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    let err = store
        .append(
            &StreamRef::new("machine", "M\n1"),
            ExpectedVersion::Any,
            vec![e.clone()],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    let err = store
        .append(
            &StreamRef::new("machine", "M"),
            ExpectedVersion::Any,
            vec![e.clone(), e],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    assert_eq!(store.head_position().await.unwrap(), 0);
}
