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

// ---------------------------------------------------------------------------
// Issue 16, item 1: numbers that jsonb gives back in another spelling.

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn numbers_jsonb_respells_keep_the_chain(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let s = StreamRef::new("machine", "H2");
    // `1e16` comes back from jsonb as `10000000000000000`, `1e-7` as `0.0000001`,
    // `-0.0` as `0.0`.
    let payload = json!({ "ideal_cycle_time_s": 1e16, "tiny": 1e-7, "nz": -0.0, "max": f64::MAX });
    store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![event("MachineRegistered", payload)],
        )
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT payload->>'ideal_cycle_time_s' FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, "10000000000000000");
    let report = chain::verify(&pool).await.unwrap();
    assert_eq!(report.broken, None, "{report:?}");
}

// ---------------------------------------------------------------------------
// Issue 16, item 2: only a prefix recorded before the chain may be unchained.

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn nulled_hashes_and_an_edited_payload_break_the_chain(pool: PgPool) {
    history(&EventStore::new(pool.clone())).await;
    sqlx::query("UPDATE events SET hash = NULL")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{i}', '99') WHERE position = 7")
        .execute(&pool)
        .await
        .unwrap();
    let report = chain::verify(&pool).await.unwrap();
    let broken = report
        .broken
        .clone()
        .expect("a log without hashes is broken");
    assert_eq!(broken.position, 1, "{report:?}");
    assert!(broken.reason.contains("no hash"), "{broken:?}");
    assert_eq!((report.unchained, report.chain_starts_after), (0, 0));
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_widened_unchained_prefix_is_caught_by_the_head_hash(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    history(&store).await;
    // Null every hash and move the prefix to the head: no event is checked, but
    // the head still holds the hash of the last event.
    sqlx::query("UPDATE events SET hash = NULL")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE event_log_head SET unchained_until = position")
        .execute(&pool)
        .await
        .unwrap();
    let report = chain::verify(&pool).await.unwrap();
    let broken = report.broken.expect("broken");
    assert!(broken.reason.contains("no event is chained"), "{broken:?}");

    // A prefix that claims more events than the log holds is refused too.
    sqlx::query("UPDATE event_log_head SET unchained_until = position + 5, last_hash = $1")
        .bind(chain::GENESIS.to_vec())
        .execute(&pool)
        .await
        .unwrap();
    let broken = chain::verify(&pool).await.unwrap().broken.expect("broken");
    assert!(broken.reason.contains("beyond"), "{broken:?}");
}
