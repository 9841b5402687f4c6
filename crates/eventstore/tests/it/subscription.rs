use std::time::Duration;

use serde_json::json;
use shopfloor_eventstore::{EventStore, ExpectedVersion, StreamRef};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::event;

/// History, then live events appended while the subscriber is catching up and
/// after: every position once, in order, with no gap at the switch.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn catches_up_then_goes_live_without_gap_or_duplicate(pool: PgPool) {
    let store = EventStore::new(pool);
    let s = StreamRef::new("machine", "M-1");
    for i in 0..120 {
        store
            .append(
                &s,
                ExpectedVersion::Any,
                vec![event("Hist", json!({ "i": i }))],
            )
            .await
            .unwrap();
    }
    let cancel = CancellationToken::new();
    // A small page size forces many history reads; a long poll interval proves
    // the live part is woken by NOTIFY, not by polling.
    let mut sub = store
        .subscribe_all(0, cancel.clone())
        .page_size(7)
        .poll_interval(Duration::from_secs(3600));

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..180 {
                let stream = StreamRef::new("machine", format!("M-{}", i % 5));
                store
                    .append(
                        &stream,
                        ExpectedVersion::Any,
                        vec![event("Live", json!({ "i": i }))],
                    )
                    .await
                    .unwrap();
                if i % 20 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut positions = Vec::new();
    while positions.len() < 300 {
        let e = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("the subscription stalled")
            .unwrap()
            .unwrap();
        positions.push(e.position);
    }
    writer.await.unwrap();
    assert_eq!(positions, (1..=300).collect::<Vec<i64>>());
    assert_eq!(sub.position(), 300);

    // Live after everything is delivered: one more append wakes it.
    store
        .append(&s, ExpectedVersion::Any, vec![event("Late", json!({}))])
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((e.position, e.event_type.as_str()), (301, "Late"));

    // Cancelling ends it.
    cancel.cancel();
    assert!(sub.next().await.is_none());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn subscribes_from_a_position(pool: PgPool) {
    let store = EventStore::new(pool);
    let s = StreamRef::new("machine", "M-1");
    let events: Vec<_> = (0..10).map(|i| event("E", json!({ "i": i }))).collect();
    store
        .append(&s, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    let mut sub = store.subscribe_all(6, CancellationToken::new());
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(
            sub.next().await.unwrap().unwrap().payload["i"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(got, vec![6, 7, 8, 9]);
}
