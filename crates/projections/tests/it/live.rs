//! The live hub coalesces per topic: at most N updates a second, the newest data.

use std::time::Duration;

use serde_json::json;
use shopfloor_projections::LiveHub;
use tokio::sync::broadcast::error::TryRecvError;

#[tokio::test(start_paused = true)]
async fn updates_are_coalesced_per_topic() {
    let hub = LiveHub::new(4); // at most one per 250 ms per topic
    let mut rx = hub.subscribe();
    let mut rx2 = hub.subscribe();
    for i in 0..1000 {
        hub.notify("machine:M1", json!({ "i": i }));
        hub.notify("machine:M2", json!({ "i": i }));
    }
    // The first of each topic goes out at once.
    let a = rx.try_recv().unwrap();
    let b = rx.try_recv().unwrap();
    assert_eq!(
        (a.topic.as_str(), &a.data),
        ("machine:M1", &json!({"i": 0}))
    );
    assert_eq!(
        (b.topic.as_str(), &b.data),
        ("machine:M2", &json!({"i": 0}))
    );
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // Nothing more until the interval has passed, then only the newest.
    tokio::time::advance(Duration::from_millis(200)).await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    tokio::time::advance(Duration::from_millis(60)).await;
    tokio::task::yield_now().await;
    let mut got = [rx.try_recv().unwrap(), rx.try_recv().unwrap()];
    got.sort_by(|x, y| x.topic.cmp(&y.topic));
    assert_eq!(got[0].data, json!({"i": 999}));
    assert_eq!(got[1].data, json!({"i": 999}));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // A steady flood for 10 s: about 4 per second per topic, never more.
    let mut count = 0;
    for step in 0..1000 {
        hub.notify("machine:M1", json!({ "step": step }));
        tokio::time::advance(Duration::from_millis(10)).await;
        tokio::task::yield_now().await;
        while let Ok(u) = rx.try_recv() {
            assert_eq!(u.topic, "machine:M1");
            count += 1;
        }
    }
    assert!((38..=41).contains(&count), "{count} updates in 10 s");
    // Every subscriber sees the same coalesced stream.
    let mut n2 = 0;
    while rx2.try_recv().is_ok() {
        n2 += 1;
    }
    assert_eq!(n2, 2 + 2 + count);

    // A quiet topic sends at once again.
    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    while rx.try_recv().is_ok() {}
    hub.notify("machine:M1", json!({"again": true}));
    assert_eq!(rx.try_recv().unwrap().data, json!({"again": true}));
}
