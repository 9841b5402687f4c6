use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use shopfloor_eventstore::{EventStore, RecordedEvent};
use shopfloor_projections::names;
use shopfloor_projections::Relay;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::{append_events, eventually, namespace, OwnNats, SHARED_NATS};

/// Every message in the namespace's stream, in stream order.
async fn stream_messages(js: &jetstream::Context, ns: &str) -> Vec<(u64, RecordedEvent, String)> {
    let Ok(mut stream) = js.get_stream(names::events_stream(ns)).await else {
        return Vec::new();
    };
    let last = match stream.info().await {
        Ok(i) => i.state.last_sequence,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        let e: RecordedEvent = serde_json::from_slice(&m.payload).unwrap();
        let msg_id = match m.headers.get(async_nats::header::NATS_MESSAGE_ID) {
            Some(v) => v.as_str().to_string(),
            None => panic!("headers: {:?}", m.headers),
        };
        assert_eq!(
            m.headers.get(names::POSITION_HEADER).unwrap().as_str(),
            e.position.to_string()
        );
        assert_eq!(
            m.headers.get(names::EVENT_TYPE_HEADER).unwrap().as_str(),
            e.event_type
        );
        assert_eq!(
            m.subject.as_str(),
            names::event_subject(ns, &e.stream_type, &e.stream_id)
        );
        out.push((seq, e, msg_id));
    }
    out
}

/// The positions in the stream, each once, must be 1..=n.
fn assert_complete(messages: &[(u64, RecordedEvent, String)], n: i64) {
    let positions: Vec<i64> = messages.iter().map(|m| m.1.position).collect();
    let unique: HashSet<i64> = positions.iter().copied().collect();
    assert_eq!(unique, (1..=n).collect(), "missing events");
    assert_eq!(
        unique.len(),
        positions.len(),
        "an event was published twice"
    );
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "out of order: {positions:?}"
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn publishes_the_log_in_order_and_resumes_from_its_checkpoint(pool: PgPool) {
    let ns = namespace();
    let store = EventStore::new(pool);
    let nats = async_nats::connect(SHARED_NATS).await.unwrap();
    let js = jetstream::new(nats.clone());
    append_events(&store, 120, "before").await;

    let relay = Relay::new(store.clone(), nats.clone(), &ns).with_batch(50);
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let relay = relay.clone();
        let cancel = cancel.clone();
        async move { relay.run(cancel).await }
    });
    // Live events while it catches up.
    append_events(&store, 80, "live").await;
    eventually(30, "200 events published", || async {
        (relay.checkpoint().await.unwrap().position() == 200).then_some(())
    })
    .await;
    let messages = stream_messages(&js, &ns).await;
    assert_complete(&messages, 200);
    // Nats-Msg-Id is the event id.
    assert!(messages
        .iter()
        .all(|(_, e, id)| *id == e.event_id.to_string()));
    assert_eq!(relay.checkpoint().await.unwrap().js_sequence, 200);

    // Stop, append more, start again: it goes on from its checkpoint.
    cancel.cancel();
    task.await.unwrap();
    append_events(&store, 30, "after").await;
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let relay = relay.clone();
        let cancel = cancel.clone();
        async move { relay.run(cancel).await }
    });
    eventually(30, "230 events published", || async {
        (relay.checkpoint().await.unwrap().position() == 230).then_some(())
    })
    .await;
    assert_complete(&stream_messages(&js, &ns).await, 230);
    cancel.cancel();
    task.await.unwrap();
    let _ = js.delete_stream(names::events_stream(&ns)).await;
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_second_relay_stands_by_until_the_first_stops(pool: PgPool) {
    let ns = namespace();
    let store = EventStore::new(pool.clone());
    let nats = async_nats::connect(SHARED_NATS).await.unwrap();
    let js = jetstream::new(nats.clone());
    let first = Relay::new(store.clone(), nats.clone(), &ns).with_retry(Duration::from_millis(50));
    let second = Relay::new(store.clone(), nats.clone(), &ns).with_retry(Duration::from_millis(50));
    let (c1, c2) = (CancellationToken::new(), CancellationToken::new());
    let t1 = tokio::spawn({
        let (r, c) = (first.clone(), c1.clone());
        async move { r.run(c).await }
    });
    append_events(&store, 10, "one").await;
    eventually(30, "first relay active", || async {
        (first.checkpoint().await.unwrap().position() == 10).then_some(())
    })
    .await;
    let t2 = tokio::spawn({
        let (r, c) = (second.clone(), c2.clone());
        async move { r.run(c).await }
    });

    // Exactly one session holds the namespace's relay lock.
    let holders = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(holders().await, 1);

    c1.cancel();
    t1.await.unwrap();
    append_events(&store, 10, "two").await;
    eventually(30, "the second relay took over", || async {
        (second.checkpoint().await.unwrap().position() == 20).then_some(())
    })
    .await;
    assert_complete(&stream_messages(&js, &ns).await, 20);
    c2.cancel();
    t2.await.unwrap();
    let _ = js.delete_stream(names::events_stream(&ns)).await;
}

/// NATS goes down (events keep coming), then comes back having lost everything:
/// the relay waits, resumes, notices the lost tail and republishes from the store.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn survives_a_nats_restart_that_lost_its_tail(pool: PgPool) {
    let mut server = OwnNats::start();
    let ns = namespace();
    let store = EventStore::new(pool);
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .unwrap();
    let relay = Relay::new(store.clone(), nats.clone(), &ns).with_retry(Duration::from_millis(100));
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (r, c) = (relay.clone(), cancel.clone());
        async move { r.run(c).await }
    });
    append_events(&store, 50, "first").await;
    eventually(30, "50 published", || async {
        (relay.checkpoint().await.unwrap().position() == 50).then_some(())
    })
    .await;

    // Down: the relay cannot publish, the log keeps growing.
    server.kill();
    append_events(&store, 25, "while down").await;
    // Back, with its storage gone (the unsynced tail, and more, lost).
    server.restart(true);
    append_events(&store, 25, "after").await;
    eventually(60, "all 100 republished", || async {
        let js = jetstream::new(nats.clone());
        let m = stream_messages(&js, &ns).await;
        (m.len() == 100).then_some(())
    })
    .await;
    let js = jetstream::new(nats.clone());
    assert_complete(&stream_messages(&js, &ns).await, 100);
    cancel.cancel();
    task.await.unwrap();
}
