//! Property test of the hash chain (issue 16, ADR 0031): arbitrary payloads and
//! metadata → append (both write paths) → verify → backup → restore into a fresh
//! database → verify, and the restored log equals the original.
//!
//! Numbers of every kind (huge, tiny, subnormal, negative zero, many digits, every
//! spelling serde_json reads), strings from every Unicode class with the escapes
//! JSON has, nested objects and arrays, occurrence times with nanoseconds across
//! the years PostgreSQL holds. What cannot be stored as it is (a NUL character)
//! must be refused as invalid, never stored with a hash that will not verify.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Number, Value};
use shopfloor_eventstore::{
    archive, chain, EventMetadata, EventStore, ExpectedVersion, GroupCommitter, NewEvent, Source,
    StoreError, StreamRef,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

fn number() -> impl Strategy<Value = Value> {
    let special = prop::sample::select(vec![
        1e16,
        -1e16,
        1e-7,
        -0.0,
        0.0,
        5e-324,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        0.1,
        100.0,
        1.5e300,
        9_007_199_254_740_992.0,
        123_456_789.123_456_79,
    ]);
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        special.prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        // Spellings: mantissa digits, a fraction, an exponent, as a client sends them.
        (
            "-?[0-9]{1,25}",
            "(\\.[0-9]{1,20})?",
            "([eE][+-]?[0-9]{1,3})?"
        )
            .prop_filter_map("a number serde_json reads", |(m, f, e)| {
                serde_json::from_str::<Number>(&format!("{m}{f}{e}"))
                    .ok()
                    .map(Value::Number)
            },),
    ]
}

fn text() -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(vec![
        "",
        "\"",
        "\\",
        "\\u0000",
        "\u{1f}",
        "\u{7f}",
        "\u{2028}\u{2029}",
        "\u{feff}",
        "é",
        "e\u{301}",
        "🏭",
        "\u{10ffff}",
        "'; DROP TABLE events; --",
        "\t\n\r\u{8}\u{c}",
    ]);
    prop_oneof![
        4 => prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        2 => tricky.prop_map(String::from),
        1 => Just("\u{0}".to_string()),
    ]
}

fn payload() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn occurred_at() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    // Years 1 to 9999, any nanosecond.
    let secs = -62_135_596_800_i64..253_402_300_799;
    prop::option::of((secs, 0..1_000_000_000_u32))
        .prop_map(|t| t.and_then(|(s, n)| DateTime::from_timestamp(s, n)))
}

fn new_event() -> impl Strategy<Value = NewEvent> {
    (payload(), prop::option::of(text()), occurred_at(), text()).prop_map(
        |(payload, actor, occurred_at, extra)| NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "Arbitrary".into(),
            schema_version: 1,
            payload,
            metadata: EventMetadata {
                actor,
                source: Source::Api,
                occurred_at,
                extra: [("note".to_string(), extra)].into_iter().collect(),
                ..Default::default()
            },
        },
    )
}

/// Whether the store must refuse the event (a NUL character, which PostgreSQL
/// cannot store).
fn must_refuse(e: &NewEvent) -> bool {
    let m = &e.metadata;
    chain::check_payload(&e.payload).is_err()
        || m.actor.as_deref().is_some_and(|a| a.contains('\0'))
        || m.extra.values().any(|v| v.contains('\0'))
}

fn server() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/shopfloor".into());
    url.parse::<PgConnectOptions>()
        .expect("DATABASE_URL")
        .database("postgres")
        .disable_statement_logging()
}

/// A fresh, migrated database of its own, and its name.
async fn fresh_database(admin: &PgPool) -> (PgPool, String) {
    let name = format!("chainprop_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(admin)
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(server().database(&name))
        .await
        .unwrap();
    shopfloor_eventstore::MIGRATOR.run(&pool).await.unwrap();
    (pool, name)
}

/// Empties the event store of `pool` (each case starts from an empty log; creating
/// and dropping a database per case costs a checkpoint each).
async fn empty(pool: &PgPool) {
    sqlx::query("TRUNCATE events").execute(pool).await.unwrap();
    sqlx::query(
        "UPDATE event_log_head SET position = 0, recorded_at = '-infinity', \
         last_hash = $1, unchained_until = 0 WHERE id",
    )
    .bind(chain::GENESIS.to_vec())
    .execute(pool)
    .await
    .unwrap();
}

async fn drop_database(admin: &PgPool, pool: PgPool, name: &str) {
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(admin)
        .await
        .unwrap();
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

/// Appends `events` (half through the store's transaction, half through the group
/// committer's one-statement path), then checks the chain, backs up, restores and
/// checks again.
async fn round_trip(
    source: &PgPool,
    target: &PgPool,
    events: Vec<NewEvent>,
) -> Result<(), TestCaseError> {
    let store = EventStore::new(source.clone());
    let group = GroupCommitter::start(store.clone(), 8);
    let mut appended = 0_i64;
    for (i, e) in events.into_iter().enumerate() {
        let refuse = must_refuse(&e);
        let shown = format!("{:?}", e.payload);
        let result = if i % 2 == 0 {
            store
                .append(
                    &StreamRef::new("prop", "even"),
                    ExpectedVersion::Any,
                    vec![e],
                )
                .await
        } else {
            let request = shopfloor_eventstore::AppendRequest {
                stream: StreamRef::new("prop", format!("odd-{i}")),
                expected: ExpectedVersion::NoStream,
                events: vec![e],
            };
            group.append(request).await
        };
        match (refuse, result) {
            (false, Ok(_)) => appended += 1,
            (true, Err(StoreError::Invalid(_))) => {}
            (refuse, other) => {
                return Err(TestCaseError::fail(format!(
                    "refuse = {refuse}, got {other:?} for {shown}"
                )))
            }
        }
    }
    let report = chain::verify(source)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    check(report.broken.is_none(), || format!("source: {report:?}"))?;
    check(report.events as i64 == appended, || format!("{report:?}"))?;

    let mut file = Vec::new();
    archive::export(source, &mut file)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    archive::import(target, file.as_slice())
        .await
        .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
    let restored = chain::verify(target)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    check(restored.broken.is_none(), || {
        format!("target: {restored:?}")
    })?;
    check(restored.head_hash == report.head_hash, || {
        "head hashes differ".into()
    })?;
    let (a, b) = (
        store
            .read_all(0, 10_000)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
        EventStore::new(target.clone())
            .read_all(0, 10_000)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
    );
    check(a == b, || {
        "the restored log differs from the original".into()
    })
}

#[test]
fn any_payload_survives_append_verify_backup_restore_verify() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let admin = rt.block_on(async {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(server())
            .await
            .expect("PostgreSQL")
    });
    let cases = std::env::var("CHAIN_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let (source, source_name) = rt.block_on(fresh_database(&admin));
    let (target, target_name) = rt.block_on(fresh_database(&admin));
    let result = runner.run(&prop::collection::vec(new_event(), 1..40), |events| {
        rt.block_on(async {
            empty(&source).await;
            empty(&target).await;
            round_trip(&source, &target, events).await
        })
    });
    rt.block_on(async {
        drop_database(&admin, source, &source_name).await;
        drop_database(&admin, target, &target_name).await;
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
