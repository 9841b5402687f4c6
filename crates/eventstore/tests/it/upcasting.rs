//! Old schema versions are upcast on load, through a chain of upcasters.

use serde::Deserialize;
use serde_json::{json, Value};
use shopfloor_eventstore::upcast::FnUpcaster;
use shopfloor_eventstore::{
    Direction, EventStore, ExpectedVersion, StoreError, StreamRef, Upcasters,
};
use sqlx::PgPool;

use crate::support::event;

/// The current shape (v3) of a test event whose schema changed twice.
#[derive(Debug, Deserialize, PartialEq)]
struct TemperatureRecorded {
    celsius: f64,
    sensor: String,
}

fn upcasters() -> Upcasters {
    Upcasters::new()
        // v1 stored tenths of a degree as an integer.
        .with(FnUpcaster::new("TemperatureRecorded", 1, |mut p: Value| {
            let tenths = p["tenths"].as_i64().ok_or("v1 without tenths")?;
            let map = p.as_object_mut().ok_or("not an object")?;
            map.remove("tenths");
            map.insert("celsius".into(), json!(tenths as f64 / 10.0));
            Ok(p)
        }))
        // v2 had no sensor name: there was only one.
        .with(FnUpcaster::new("TemperatureRecorded", 2, |mut p: Value| {
            p.as_object_mut()
                .ok_or("not an object")?
                .insert("sensor".into(), json!("main"));
            Ok(p)
        }))
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn old_versions_are_upcast_on_every_read(pool: PgPool) {
    let raw = EventStore::new(pool.clone());
    let s = StreamRef::new("machine", "M-1");
    let mut v1 = event("TemperatureRecorded", json!({ "tenths": 215 }));
    v1.schema_version = 1;
    let mut v2 = event("TemperatureRecorded", json!({ "celsius": 22.0 }));
    v2.schema_version = 2;
    let mut v3 = event(
        "TemperatureRecorded",
        json!({ "celsius": 23.5, "sensor": "spindle" }),
    );
    v3.schema_version = 3;
    let other = event("Unrelated", json!({ "tenths": 1 }));
    raw.append(&s, ExpectedVersion::NoStream, vec![v1, v2, v3, other])
        .await
        .unwrap();

    let store = EventStore::new(pool).with_upcasters(upcasters());
    let read = store
        .read_stream(&s, Direction::Forward, 1, 10)
        .await
        .unwrap();
    let current: Vec<TemperatureRecorded> = read[..3]
        .iter()
        .map(|e| serde_json::from_value(e.payload.clone()).unwrap())
        .collect();
    assert_eq!(
        current,
        vec![
            TemperatureRecorded {
                celsius: 21.5,
                sensor: "main".into()
            },
            TemperatureRecorded {
                celsius: 22.0,
                sensor: "main".into()
            },
            TemperatureRecorded {
                celsius: 23.5,
                sensor: "spindle".into()
            },
        ]
    );
    assert!(read[..3].iter().all(|e| e.schema_version == 3));
    // Other types are untouched, and the global log is upcast too.
    assert_eq!(read[3].payload, json!({ "tenths": 1 }));
    assert_eq!(
        store.read_all(0, 10).await.unwrap()[0].payload,
        json!({ "celsius": 21.5, "sensor": "main" })
    );
    // The stored rows themselves never change.
    assert_eq!(
        raw.read_all(0, 1).await.unwrap()[0].payload,
        json!({ "tenths": 215 })
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_upcaster_failure_is_a_decode_error(pool: PgPool) {
    let store = EventStore::new(pool).with_upcasters(upcasters());
    let mut bad = event("TemperatureRecorded", json!({ "degrees": 3 }));
    bad.schema_version = 1;
    store
        .append(
            &StreamRef::new("machine", "M-1"),
            ExpectedVersion::Any,
            vec![bad],
        )
        .await
        .unwrap();
    let err = store.read_all(0, 10).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Decode { position: 1, .. }),
        "{err:?}"
    );
}
