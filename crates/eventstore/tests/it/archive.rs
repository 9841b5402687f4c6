//! Backup and restore: a restored log equals the original, hashes and all.

use std::io::{Read, Write};

use serde_json::json;
use shopfloor_eventstore::{archive, chain, EventStore, ExpectedVersion, StreamRef};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::event;

/// A second, empty, migrated database on the same server.
async fn other_database(pool: &PgPool) -> PgPool {
    let name = format!("restore_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(pool)
        .await
        .unwrap();
    let options = pool.connect_options().as_ref().clone().database(&name);
    let other = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    shopfloor_eventstore::MIGRATOR.run(&other).await.unwrap();
    other
}

async fn fill(store: &EventStore) {
    for i in 0..2_500 {
        let s = StreamRef::new("machine", format!("M-{}", i % 7));
        let mut e = event(
            "Counted",
            json!({ "i": i, "note": "ü'; --", "f": 0.1 * i as f64 }),
        );
        e.metadata.correlation_id = Some(format!("c-{i}"));
        store
            .append(&s, ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_restored_log_equals_the_original(pool: PgPool) {
    let original = EventStore::new(pool.clone());
    fill(&original).await;
    let mut file = Vec::new();
    let exported = archive::export(&pool, &mut file).await.unwrap();
    assert_eq!((exported.events, exported.head_position), (2_500, 2_500));

    let target = other_database(&pool).await;
    let imported = archive::import(&target, file.as_slice()).await.unwrap();
    assert_eq!(imported, exported);
    let restored = EventStore::new(target.clone());
    assert_eq!(
        restored.read_all(0, 5_000).await.unwrap(),
        original.read_all(0, 5_000).await.unwrap()
    );
    let (a, b) = (
        chain::verify(&pool).await.unwrap(),
        chain::verify(&target).await.unwrap(),
    );
    assert_eq!(b.broken, None);
    assert_eq!(a.head_hash, b.head_hash);

    // The restored store goes on from where the original stood.
    let r = restored
        .append(
            &StreamRef::new("machine", "M-1"),
            ExpectedVersion::Any,
            vec![event("After", json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(r.first_position, 2_501);
    assert_eq!(chain::verify(&target).await.unwrap().broken, None);

    // A second restore into a store with events is refused.
    let err = archive::import(&target, file.as_slice()).await.unwrap_err();
    assert!(err.to_string().contains("empty event store"), "{err}");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_tampered_backup_is_refused_and_leaves_nothing(pool: PgPool) {
    fill(&EventStore::new(pool.clone())).await;
    let mut file = Vec::new();
    archive::export(&pool, &mut file).await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(file.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    let tampered = text.replacen("\"i\":42,", "\"i\":4200,", 1);
    assert_ne!(tampered, text);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tampered.as_bytes()).unwrap();
    let tampered = gz.finish().unwrap();

    let target = other_database(&pool).await;
    let err = archive::import(&target, tampered.as_slice())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hash chain"), "{err}");
    assert_eq!(EventStore::new(target).head_position().await.unwrap(), 0);
}
