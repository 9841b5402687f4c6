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

/// A filtered subscription delivers only what its filter lets through, in order, from
/// history and live, and reads past long runs of other events without delivering or
/// re-reading them.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_filtered_subscription_delivers_only_its_events_history_and_live(pool: PgPool) {
    let store = EventStore::new(pool);
    let machine = StreamRef::new("machine", "M-1");
    let alert = StreamRef::new("alert", "A-1");
    let append = |stream: StreamRef, kind: &'static str, i: usize| {
        let store = store.clone();
        async move {
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![event(kind, json!({ "i": i }))],
                )
                .await
                .unwrap()
                .last_position
        }
    };
    let mut wanted = Vec::new();
    for i in 0..200 {
        let p = match i % 50 {
            0 => append(machine.clone(), "Wanted", i).await,
            7 => append(alert.clone(), "AnyAlertEvent", i).await,
            _ => append(machine.clone(), "Skipped", i).await,
        };
        if matches!(i % 50, 0 | 7) {
            wanted.push(p);
        }
    }
    let filter = shopfloor_eventstore::EventFilter::new(&["alert"], &["Wanted"]);
    let cancel = CancellationToken::new();
    let mut sub = store
        .subscribe_all(0, cancel.clone())
        .filter(filter)
        .page_size(3)
        .poll_interval(Duration::from_secs(3600));
    let mut got = Vec::new();
    while got.len() < wanted.len() {
        let e = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("the subscription stalled")
            .unwrap()
            .unwrap();
        assert!(
            e.event_type == "Wanted" || e.stream_type == "alert",
            "{e:?}"
        );
        got.push(e.position);
    }
    assert_eq!(got, wanted);
    // Live: a skipped run, then one wanted event; woken by NOTIFY, it is the next delivered.
    for i in 0..40 {
        append(machine.clone(), "Skipped", 1000 + i).await;
    }
    let live = append(machine.clone(), "Wanted", 2000).await;
    let e = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("the live event did not arrive")
        .unwrap()
        .unwrap();
    assert_eq!(e.position, live);
    cancel.cancel();
}
