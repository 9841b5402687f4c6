//! ADR 0031's upgrade path: a log written before it (unchained prefix, events
//! hashed in canonical form 1) still verifies after migration 0007, and new events
//! are hashed in form 2 after it.

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use shopfloor_eventstore::chain::{self, ChainForm, Hashed};
use shopfloor_eventstore::{EventMetadata, EventStore, ExpectedVersion, Source, StreamRef};
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::event;

async fn migrate_until(pool: &PgPool, version: i64) {
    let migrator = Migrator {
        migrations: Cow::Owned(
            shopfloor_eventstore::MIGRATOR
                .iter()
                .filter(|m| m.version <= version)
                .cloned()
                .collect(),
        ),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    migrator.run(pool).await.unwrap();
}

/// Two events from before the chain (recorded in 2020, no hash), then three
/// hashed in form 1, as a binary from before ADR 0031 wrote them.
async fn legacy_log(pool: &PgPool) {
    let metadata = EventMetadata {
        actor: Some("legacy".into()),
        source: Source::System,
        ..Default::default()
    };
    let mut previous = chain::GENESIS.to_vec();
    for position in 1..=5_i64 {
        let payload = json!({ "i": position, "f": 0.1, "whole": 100.0 });
        let event_id = Uuid::new_v4();
        let chained = position > 2;
        let recorded_at: DateTime<Utc> = if chained {
            chain::micros(Utc::now())
        } else {
            Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, position as u32)
                .unwrap()
        };
        let hash = chained.then(|| {
            Hashed {
                position,
                stream_type: "machine",
                stream_id: "OLD",
                version: position,
                event_id,
                event_type: "Counted",
                schema_version: 1,
                payload: &payload,
                metadata: &metadata,
                recorded_at,
                form: ChainForm::V1,
            }
            .hash(&previous)
            .to_vec()
        });
        if let Some(h) = &hash {
            previous = h.clone();
        }
        sqlx::query(
            "INSERT INTO events (position, stream_type, stream_id, version, event_id, event_type, \
             schema_version, payload, actor, source, recorded_at, extra, hash) \
             VALUES ($1, 'machine', 'OLD', $1, $2, 'Counted', 1, $3, 'legacy', 'system', $4, '{}', $5)",
        )
        .bind(position)
        .bind(event_id)
        .bind(&payload)
        .bind(recorded_at)
        .bind(&hash)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "UPDATE event_log_head SET position = 5, recorded_at = now(), last_hash = $1 WHERE id",
    )
    .bind(&previous)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrations = false)]
async fn a_log_from_before_adr_31_verifies_after_the_upgrade(pool: PgPool) {
    migrate_until(&pool, 6).await;
    legacy_log(&pool).await;
    shopfloor_eventstore::MIGRATOR.run(&pool).await.unwrap();

    let report = chain::verify(&pool).await.unwrap();
    assert_eq!(report.broken, None, "{report:?}");
    assert_eq!((report.unchained, report.chain_starts_after), (2, 2));

    let store = EventStore::new(pool.clone());
    store
        .append(
            &StreamRef::new("machine", "NEW"),
            ExpectedVersion::Any,
            vec![event("Registered", json!({ "ideal_cycle_time_s": 1e16 }))],
        )
        .await
        .unwrap();
    let report = chain::verify(&pool).await.unwrap();
    assert_eq!(report.broken, None, "{report:?}");
    let forms: Vec<i16> = sqlx::query_scalar("SELECT chain_form FROM events ORDER BY position")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(forms, [1, 1, 1, 1, 1, 2]);
}

#[sqlx::test(migrations = false)]
async fn hashes_nulled_before_the_upgrade_do_not_widen_the_prefix(pool: PgPool) {
    migrate_until(&pool, 6).await;
    legacy_log(&pool).await;
    sqlx::query("UPDATE events SET hash = NULL")
        .execute(&pool)
        .await
        .unwrap();
    shopfloor_eventstore::MIGRATOR.run(&pool).await.unwrap();
    let report = chain::verify(&pool).await.unwrap();
    assert_eq!(report.chain_starts_after, 2);
    assert_eq!(report.broken.expect("broken").position, 3);
}
