//! Fuzzing the decoders with proptest (cargo-fuzz needs a nightly toolchain, which is not
//! available here): the JSON topics' decoder and the Sparkplug B decoder, on arbitrary
//! bytes, on arbitrary JSON, and on mutated valid payloads. The property: no panic, and
//! every message is either understood or rejected with a reason.
//!
//! The short pass runs in the normal test run (a few thousand cases per target). The long
//! pass (one million cases per target, release build) is ignored by default:
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test --release -p shopfloor-ingest --test it fuzz -- --ignored
//! ```

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use shopfloor_ingest::json::{decode, parse_topic, JsonKind};
use shopfloor_ingest::sparkplug::proto::{self, Metric, Payload};
use shopfloor_ingest::sparkplug::{self, Sessions};
use shopfloor_ingest::Mapping;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// A JSON value near what the topics expect: the right keys with any values.
fn near_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,16}".prop_map(Value::String),
        prop::sample::select(
            &[
                "running",
                "idle",
                "down",
                "2026-11-24T10:00:00Z",
                "1e400",
                "-0",
                "9999-12-31T23:59:59Z",
                "0000-01-01T00:00:00+25:00",
            ][..]
        )
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 32, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(
                    &[
                        "state",
                        "reason",
                        "planned",
                        "timestamp",
                        "good",
                        "scrap",
                        "good_total",
                        "scrap_total",
                        "bits",
                        "temperature_c",
                        "vibration_mm_s",
                    ][..]
                ),
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn kind() -> impl Strategy<Value = JsonKind> {
    prop_oneof![
        Just(JsonKind::State),
        Just(JsonKind::Count),
        Just(JsonKind::Telemetry)
    ]
}

fn fuzz_json(cases: u32) {
    let mapping = Mapping::default();
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let mut r = runner(cases);
    r.run(
        &(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256),
                near_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            ],
            kind(),
            ".{0,24}",
        ),
        |(payload, kind, id)| {
            let d = decode(&mapping, &id, kind, &payload, now);
            let _ = (d.machines.len(), d.rejections.len());
            let _ = parse_topic("ns", &format!("ns/machines/{id}/state"));
            Ok(())
        },
    )
    .unwrap();
}

/// A Sparkplug payload with arbitrary metrics.
fn any_payload() -> impl Strategy<Value = Payload> {
    let value = prop_oneof![
        any::<u32>().prop_map(proto::Value::IntValue),
        any::<u64>().prop_map(proto::Value::LongValue),
        any::<f32>().prop_map(proto::Value::FloatValue),
        any::<f64>().prop_map(proto::Value::DoubleValue),
        any::<bool>().prop_map(proto::Value::BooleanValue),
        ".{0,12}".prop_map(proto::Value::StringValue),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(proto::Value::BytesValue),
    ];
    let metric = (
        prop::option::of(prop::sample::select(
            &[
                "bdSeq",
                "state",
                "reason",
                "planned",
                "good",
                "scrap",
                "good_count",
                "Node Control/Rebirth",
                "temperature_c",
                "x/y/good",
            ][..],
        )),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        prop::option::of(0u32..20),
        prop::option::of(value),
    )
        .prop_map(|(name, alias, timestamp, datatype, value)| Metric {
            name: name.map(str::to_string),
            alias,
            timestamp,
            datatype,
            value,
            ..Default::default()
        });
    (
        prop::option::of(any::<u64>()),
        prop::collection::vec(metric, 0..8),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(timestamp, metrics, seq)| Payload {
            timestamp,
            metrics,
            seq,
            uuid: None,
            body: None,
        })
}

fn fuzz_sparkplug(cases: u32) {
    let mut mapping = Mapping::default();
    mapping.sparkplug.enabled = true;
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let topics = [
        "spBv1.0/g/NBIRTH/e",
        "spBv1.0/g/NDATA/e",
        "spBv1.0/g/DBIRTH/e/d",
        "spBv1.0/g/DDATA/e/d",
        "spBv1.0/g/DDEATH/e/d",
        "spBv1.0/g/NDEATH/e",
        "spBv1.0/g/NCMD/e",
    ];
    let mut r = runner(cases);
    // Sessions carry state across messages: a sequence per case.
    r.run(
        &prop::collection::vec(
            (
                0..topics.len(),
                prop_oneof![
                    any_payload().prop_map(|p| p.encode_to_vec()),
                    prop::collection::vec(any::<u8>(), 0..128),
                    // A valid payload with bytes flipped.
                    (any_payload(), any::<usize>(), any::<u8>()).prop_map(|(p, i, b)| {
                        let mut v = p.encode_to_vec();
                        if !v.is_empty() {
                            let n = v.len();
                            v[i % n] ^= b;
                        }
                        v
                    }),
                ],
            ),
            1..6,
        ),
        |messages| {
            let mut sessions = Sessions::default();
            for (t, payload) in messages {
                let topic = sparkplug::parse_topic(topics[t]).unwrap();
                let d = sessions.decode(&mapping.sparkplug, &topic, &payload, now);
                let _ = d.rejections.len();
            }
            Ok(())
        },
    )
    .unwrap();
    // Arbitrary topics.
    let mut r = runner(cases);
    r.run(&"[a-zA-Z0-9/.+#]{0,40}", |t| {
        let _ = sparkplug::parse_topic(&t);
        let _ = parse_topic("ns", &t);
        Ok(())
    })
    .unwrap();
}

#[test]
fn fuzz_json_decoder_short() {
    fuzz_json(3000);
}

#[test]
fn fuzz_sparkplug_decoder_short() {
    fuzz_sparkplug(3000);
}

#[test]
#[ignore = "long: PROPTEST_CASES=1000000 cargo test --release -p shopfloor-ingest --test it fuzz -- --ignored"]
fn fuzz_json_decoder_long() {
    fuzz_json(cases(1_000_000));
}

#[test]
#[ignore = "long: PROPTEST_CASES=1000000 cargo test --release -p shopfloor-ingest --test it fuzz -- --ignored"]
fn fuzz_sparkplug_decoder_long() {
    fuzz_sparkplug(cases(1_000_000));
}
