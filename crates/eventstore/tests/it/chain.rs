//! The hash chain: intact after all kinds of appends, broken by any edit.

use chrono::{TimeZone, Utc};
use serde_json::json;
use shopfloor_eventstore::chain;
use shopfloor_eventstore::{EventStore, ExpectedVersion, StreamRef};
use sqlx::PgPool;

use crate::support::event;

async fn history(store: &EventStore) {
    let s = StreamRef::new("machine", "M-1");
    let mut e = event(
        "Measured",
        json!({ "z": 1.5, "a": [1, {"y": "ü ✓ \"q\"", "b": null}], "big": 9007199254740993_u64 }),
    );
    e.metadata.occurred_at = Some(Utc.timestamp_opt(1_790_000_000, 123_456_789).unwrap());
    e.metadata
        .extra
        .insert("request_id".into(), "r'1; DROP TABLE events;--".into());
    store
        .append(&s, ExpectedVersion::NoStream, vec![e])
        .await
        .unwrap();
    for i in 0..20 {
        let stream = StreamRef::new("machine", format!("M-{}", i % 3));
        let batch = (0..1 + i % 3)
            .map(|j| event("Counted", json!({ "i": i, "j": j, "f": 0.1 + i as f64 })))
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_untouched_log_verifies(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let empty = chain::verify(&pool).await.unwrap();
    assert_eq!((empty.events, empty.broken.clone()), (0, None));
    history(&store).await;
    let report = chain::verify(&pool).await.unwrap();
    assert_eq!(report.broken, None, "{report:?}");
    assert_eq!(report.events as i64, store.head_position().await.unwrap());
    assert_eq!(report.head_hash.len(), 64);
    assert_ne!(report.head_hash, hex_zero());
}

fn hex_zero() -> String {
    "0".repeat(64)
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_edited_payload_breaks_the_chain_there(pool: PgPool) {
    history(&EventStore::new(pool.clone())).await;
    sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{i}', '99') WHERE position = 7")
        .execute(&pool)
        .await
        .unwrap();
    let report = chain::verify(&pool).await.unwrap();
    assert_eq!(report.broken.unwrap().position, 7);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn edited_metadata_breaks_the_chain(pool: PgPool) {
    history(&EventStore::new(pool.clone())).await;
    sqlx::query("UPDATE events SET actor = 'mallory' WHERE position = 12")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        chain::verify(&pool).await.unwrap().broken.unwrap().position,
        12
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_deleted_event_is_a_gap(pool: PgPool) {
    history(&EventStore::new(pool.clone())).await;
    sqlx::query("DELETE FROM events WHERE position = 5")
        .execute(&pool)
        .await
        .unwrap();
    let broken = chain::verify(&pool).await.unwrap().broken.unwrap();
    assert_eq!(broken.position, 5);
    assert!(broken.reason.contains("missing"), "{broken:?}");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_removed_tail_disagrees_with_the_head(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    history(&store).await;
    let head = store.head_position().await.unwrap();
    sqlx::query("DELETE FROM events WHERE position = $1")
        .bind(head)
        .execute(&pool)
        .await
        .unwrap();
    let broken = chain::verify(&pool).await.unwrap().broken.unwrap();
    assert_eq!(broken.position, head);
}
