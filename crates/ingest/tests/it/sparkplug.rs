//! Sparkplug B: births, aliases, data, seq gaps, bdSeq and deaths, historical data.

use chrono::{DateTime, Duration, Utc};
use prost::Message;
use shopfloor_ingest::list_rejected;
use shopfloor_ingest::sparkplug::proto::{self, datatype as dt, Metric, Payload, Value};
use shopfloor_ingest::store::telemetry_samples;
use sqlx::PgPool;

use crate::support::*;

fn named(name: &str, alias: u64, datatype: u32, value: Value) -> Metric {
    Metric {
        name: Some(name.into()),
        alias: Some(alias),
        datatype: Some(datatype),
        value: Some(value),
        ..Default::default()
    }
}

fn aliased(alias: u64, value: Value) -> Metric {
    Metric {
        alias: Some(alias),
        value: Some(value),
        ..Default::default()
    }
}

fn payload(at: DateTime<Utc>, seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: u64::try_from(at.timestamp_millis()).ok(),
        metrics,
        seq,
        uuid: None,
        body: None,
    }
    .encode_to_vec()
}

fn bd_seq(v: u64) -> Metric {
    named("bdSeq", 0, dt::UINT64, Value::LongValue(v))
}

fn births(at: DateTime<Utc>) -> Vec<shopfloor_ingest::Incoming> {
    vec![
        msg(
            "spBv1.0/ns/NBIRTH/edge1",
            payload(at, Some(0), vec![bd_seq(3)]),
            at,
        ),
        msg(
            "spBv1.0/ns/DBIRTH/edge1/press",
            payload(
                at,
                Some(1),
                vec![
                    named(
                        "Status/State",
                        1,
                        dt::STRING,
                        Value::StringValue("running".into()),
                    ),
                    named("Counters/Good", 2, dt::UINT32, Value::IntValue(100)),
                    named("Counters/Scrap", 3, dt::UINT32, Value::IntValue(4)),
                    named("Temp", 4, dt::DOUBLE, Value::DoubleValue(60.0)),
                ],
            ),
            at,
        ),
    ]
}

fn sp_mapping() -> std::sync::Arc<shopfloor_ingest::Mapping> {
    mapping(
        r#"{"defaults": {"min_dwell_ms": 0, "no_signal_timeout_s": 0},
            "sparkplug": {
              "devices": [{"edge": "edge1", "device": "press", "machine_id": "m1"}],
              "metrics": {"Status/State": "state", "Counters/Good": "good_count",
                          "Counters/Scrap": "scrap_count", "Temp": {"sensor": "temperature_c"}}}}"#,
    )
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn births_map_aliases_and_data_become_events_and_samples(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    e.process(&births(now), now, false).await.expect("births");
    let t = now + Duration::seconds(1);
    let data = msg(
        "spBv1.0/ns/DDATA/edge1/press",
        payload(
            t,
            Some(2),
            vec![
                aliased(2, Value::IntValue(110)),
                aliased(3, Value::IntValue(5)),
                aliased(4, Value::DoubleValue(61.5)),
            ],
        ),
        t,
    );
    let report = e.process(&[data], t, false).await.expect("data");
    assert_eq!(report.events, 1);
    let events = machine_events(&pool, "m1").await;
    assert_eq!(events[0].1["state"], "running");
    assert_eq!(events[1].0, "MachinePartsProduced");
    assert_eq!(
        (events[1].1["good"].as_u64(), events[1].1["scrap"].as_u64()),
        (Some(10), Some(1))
    );
    let samples = telemetry_samples(
        &pool,
        "m1",
        "temperature_c",
        now - Duration::hours(1),
        now + Duration::hours(1),
    )
    .await
    .expect("samples");
    assert_eq!(
        samples.iter().map(|s| s.1).collect::<Vec<_>>(),
        [60.0, 61.5]
    );
    assert!(list_rejected(&pool, 10).await.expect("list").is_empty());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn seq_gaps_are_reported_and_unknown_aliases_ask_for_a_rebirth(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    e.process(&births(now), now, false).await.expect("births");
    let t = now + Duration::seconds(1);
    let gap = msg(
        "spBv1.0/ns/DDATA/edge1/press",
        payload(t, Some(7), vec![aliased(4, Value::DoubleValue(62.0))]),
        t,
    );
    let report = e.process(&[gap], t, false).await.expect("gap");
    assert_eq!(report.samples, 1, "the data after a gap is still used");
    let listed = list_rejected(&pool, 10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].disposition, "notice");
    assert!(
        listed[0].reason.contains("expected 2, got 7"),
        "{}",
        listed[0].reason
    );
    assert!(listed[0].payload.starts_with("hex:"));

    // Data from a node whose birth we never saw.
    let orphan = msg(
        "spBv1.0/ns/DDATA/edge9/press",
        payload(now, Some(4), vec![aliased(4, Value::DoubleValue(1.0))]),
        now,
    );
    let report = e.process(&[orphan], now, false).await.expect("orphan");
    assert_eq!(
        report.rebirths,
        vec![("ns".to_string(), "edge9".to_string())]
    );
    assert_eq!(report.rejected, 1);
    // Garbage protobuf is rejected, never fatal.
    let report = e
        .process(
            &[msg(
                "spBv1.0/ns/DDATA/edge1/press",
                vec![0xff, 0xff, 0xff, 0x01],
                now,
            )],
            now,
            false,
        )
        .await
        .expect("garbage");
    assert_eq!(report.rejected, 1);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn deaths_mark_signal_lost_and_a_stale_death_is_refused(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    e.process(&births(now), now, false).await.expect("births");
    let t = now + Duration::seconds(5);
    // An old session's will (bdSeq 2) arrives late: refused.
    let stale = msg(
        "spBv1.0/ns/NDEATH/edge1",
        payload(t, None, vec![bd_seq(2)]),
        t,
    );
    let report = e.process(&[stale], t, false).await.expect("stale");
    assert_eq!(report.rejected, 1);
    assert_eq!(machine_events(&pool, "m1").await.len(), 1);
    assert!(list_rejected(&pool, 5).await.expect("list")[0]
        .reason
        .contains("stale NDEATH"));
    // The current session's death: the device's machine loses its signal.
    let death = msg(
        "spBv1.0/ns/NDEATH/edge1",
        payload(t, None, vec![bd_seq(3)]),
        t,
    );
    e.process(&[death], t, false).await.expect("death");
    let events = machine_events(&pool, "m1").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].1["state"], "down");
    assert_eq!(events[1].1["reason_code"], "small_stop.no_signal");
    // Reborn: running again.
    let later = t + Duration::seconds(5);
    let mut reborn = births(later);
    reborn[0] = msg(
        "spBv1.0/ns/NBIRTH/edge1",
        payload(later, Some(0), vec![bd_seq(4)]),
        later,
    );
    e.process(&reborn, later, false).await.expect("rebirth");
    let events = machine_events(&pool, "m1").await;
    assert_eq!(
        events.last().map(|e| e.1["state"].clone()),
        Some(serde_json::json!("running"))
    );
    // A device death.
    let dd = msg(
        "spBv1.0/ns/DDEATH/edge1/press",
        payload(later, Some(2), vec![]),
        later,
    );
    e.process(&[dd], later + Duration::seconds(1), false)
        .await
        .expect("ddeath");
    let events = machine_events(&pool, "m1").await;
    assert_eq!(
        events.last().map(|e| e.1["reason_code"].clone()),
        Some(serde_json::json!("small_stop.no_signal"))
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn historical_metrics_take_the_late_data_path(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    e.process(&births(now), now, false).await.expect("births");
    let old = now - Duration::hours(2);
    let mut m = aliased(4, Value::DoubleValue(55.0));
    m.is_historical = Some(true);
    m.timestamp = u64::try_from(old.timestamp_millis()).ok();
    let mut s = aliased(1, Value::StringValue("down".into()));
    s.is_historical = Some(true);
    s.timestamp = m.timestamp;
    let before = e
        .machine_state("m1")
        .and_then(|s| s.baselines.get("temperature_c").map(|b| b.n));
    let report = e
        .process(
            &[msg(
                "spBv1.0/ns/DDATA/edge1/press",
                payload(now, Some(2), vec![m, s]),
                now,
            )],
            now,
            false,
        )
        .await
        .expect("historical");
    assert_eq!(report.samples, 1);
    let after = e
        .machine_state("m1")
        .and_then(|s| s.baselines.get("temperature_c").map(|b| b.n));
    assert_eq!(
        before, after,
        "historical samples are not fed to the live baseline"
    );
    let events = machine_events(&pool, "m1").await;
    assert_eq!(
        events.len(),
        2,
        "the historical state is recorded at its own time"
    );
    assert_eq!(events[1].1["state"], "down");
    let at: DateTime<Utc> = serde_json::from_value(events[1].1["at"].clone()).expect("at");
    assert_eq!(at.timestamp_millis(), old.timestamp_millis());
    let _ = proto::datatype::FLOAT;
}

/// Issue 16, item 14: the defects found with an independent edge node.
fn stamped(mut m: Metric, at: DateTime<Utc>) -> Metric {
    m.timestamp = u64::try_from(at.timestamp_millis()).ok();
    m
}

fn historical(m: Metric) -> Metric {
    Metric {
        is_historical: Some(true),
        ..m
    }
}

/// The machine's state events as (state, reason, at), in floor-time order.
async fn states_by_floor_time(pool: &PgPool) -> Vec<(String, String, DateTime<Utc>)> {
    let mut v: Vec<(String, String, DateTime<Utc>)> = machine_events(pool, "m1")
        .await
        .into_iter()
        .filter(|e| e.0 == "MachineStateChanged")
        .map(|e| {
            (
                e.1["state"].as_str().unwrap_or("").to_string(),
                e.1["reason_code"].as_str().unwrap_or("").to_string(),
                serde_json::from_value(e.1["at"].clone()).expect("at"),
            )
        })
        .collect();
    v.sort_by_key(|s| s.2);
    v
}

/// The parts events as (good, scrap, at), in append order.
async fn parts_events(pool: &PgPool) -> Vec<(u64, u64, DateTime<Utc>)> {
    machine_events(pool, "m1")
        .await
        .into_iter()
        .filter(|e| e.0 == "MachinePartsProduced")
        .map(|e| {
            (
                e.1["good"].as_u64().unwrap_or(0),
                e.1["scrap"].as_u64().unwrap_or(0),
                serde_json::from_value(e.1["at"].clone()).expect("at"),
            )
        })
        .collect()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_rebirth_after_a_death_restores_the_state_it_reports(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let t0 = now - Duration::minutes(10);
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    let birth = |bd: u64, at: DateTime<Utc>| {
        vec![
            msg(
                "spBv1.0/ns/NBIRTH/edge1",
                payload(at, Some(0), vec![bd_seq(bd)]),
                at,
            ),
            msg(
                "spBv1.0/ns/DBIRTH/edge1/press",
                payload(
                    at,
                    Some(1),
                    vec![stamped(
                        named(
                            "Status/State",
                            1,
                            dt::STRING,
                            Value::StringValue("running".into()),
                        ),
                        t0,
                    )],
                ),
                at,
            ),
        ]
    };
    e.process(&birth(0, now), now, false).await.expect("birth");
    let died = now + Duration::seconds(5);
    let death = msg(
        "spBv1.0/ns/NDEATH/edge1",
        payload(died, None, vec![bd_seq(0)]),
        died,
    );
    e.process(&[death], died, false).await.expect("death");
    let reborn = now + Duration::seconds(10);
    e.process(&birth(1, reborn), reborn, false)
        .await
        .expect("rebirth");
    let states = states_by_floor_time(&pool).await;
    let last = states.last().expect("states");
    assert_eq!(
        last.0, "running",
        "the birth restores its state: {states:?}"
    );
    assert!(
        last.2 >= died,
        "from the birth on, after the loss: {states:?}"
    );
    assert_eq!(states.len(), 3);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn good_and_scrap_counters_have_their_own_width(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    let b = vec![
        msg(
            "spBv1.0/ns/NBIRTH/edge1",
            payload(now, Some(0), vec![bd_seq(1)]),
            now,
        ),
        msg(
            "spBv1.0/ns/DBIRTH/edge1/press",
            payload(
                now,
                Some(1),
                vec![
                    named("Counters/Good", 2, dt::INT64, Value::LongValue(1_000_000)),
                    named(
                        "Counters/Scrap",
                        3,
                        dt::UINT32,
                        Value::IntValue(4_294_967_290),
                    ),
                ],
            ),
            now,
        ),
    ];
    e.process(&b, now, false).await.expect("births");
    let t = now + Duration::seconds(1);
    let data = msg(
        "spBv1.0/ns/DDATA/edge1/press",
        payload(
            t,
            Some(2),
            vec![
                aliased(2, Value::LongValue(1_000_050)),
                aliased(3, Value::IntValue(3)),
            ],
        ),
        t,
    );
    e.process(&[data], t, false).await.expect("data");
    let parts: Vec<(u64, u64)> = parts_events(&pool)
        .await
        .iter()
        .map(|p| (p.0, p.1))
        .collect();
    assert_eq!(parts, [(50, 9)], "scrap rolls over at 32 bits: +9");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn historical_totals_count_at_their_own_time(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    e.process(&births(now), now, false).await.expect("births");
    let (t1, ta, tb, tc) = (
        now + Duration::seconds(1),
        now + Duration::seconds(2),
        now + Duration::seconds(3),
        now + Duration::seconds(4),
    );
    let good = |v: u32, at| stamped(aliased(2, Value::IntValue(v)), at);
    let batch = vec![
        msg(
            "spBv1.0/ns/DDATA/edge1/press",
            payload(t1, Some(2), vec![good(105, t1)]),
            t1,
        ),
        // Store and forward: two historical totals in one message.
        msg(
            "spBv1.0/ns/DDATA/edge1/press",
            payload(
                tc,
                Some(3),
                vec![historical(good(115, ta)), historical(good(125, tb))],
            ),
            tc,
        ),
        msg(
            "spBv1.0/ns/DDATA/edge1/press",
            payload(tc, Some(4), vec![good(130, tc)]),
            tc,
        ),
    ];
    for m in batch {
        e.process(&[m], tc, false).await.expect("data");
    }
    let parts: Vec<(u64, i64)> = parts_events(&pool)
        .await
        .iter()
        .map(|p| (p.0, ms(p.2)))
        .collect();
    assert_eq!(
        parts,
        [(5, ms(t1)), (10, ms(ta)), (10, ms(tb)), (5, ms(tc))],
        "each total counts at its own time"
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn each_count_metric_keeps_its_own_timestamp(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    e.process(&births(now), now, false).await.expect("births");
    let (t1, t2) = (now + Duration::seconds(1), now + Duration::seconds(2));
    let data = msg(
        "spBv1.0/ns/DDATA/edge1/press",
        payload(
            t2,
            Some(2),
            vec![
                stamped(aliased(2, Value::IntValue(110)), t1),
                stamped(aliased(3, Value::IntValue(6)), t2),
            ],
        ),
        t2,
    );
    e.process(std::slice::from_ref(&data), t2, false)
        .await
        .expect("data");
    let parts: Vec<(u64, u64, i64)> = parts_events(&pool)
        .await
        .iter()
        .map(|p| (p.0, p.1, ms(p.2)))
        .collect();
    assert_eq!(parts, [(10, 0, ms(t1)), (0, 2, ms(t2))]);
    // Its redelivery appends nothing (both counts have their own command id).
    let report = e.process(&[data], t2, false).await.expect("again");
    assert_eq!(report.events, 0);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_missing_seq_leads_to_a_rebirth_request_and_a_repeated_seq_is_dropped(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    e.process(&births(now), now, false).await.expect("births");
    let t = now + Duration::seconds(1);
    let temp = |seq, v: f64| {
        msg(
            "spBv1.0/ns/DDATA/edge1/press",
            payload(t, Some(seq), vec![aliased(4, Value::DoubleValue(v))]),
            t,
        )
    };
    // The same message published twice (the edge node retried): dropped once.
    e.process(&[temp(2, 61.0)], t, false).await.expect("first");
    e.process(&[temp(2, 61.0)], t, false).await.expect("repeat");
    let listed = list_rejected(&pool, 10).await.expect("list");
    assert!(
        listed
            .iter()
            .any(|r| r.disposition == "notice" && r.reason.contains("repeats the last message")),
        "{listed:?}"
    );
    // A gap: seq 3 and 4 are missing; no rebirth while they may still come.
    let report = e.process(&[temp(5, 62.0)], t, false).await.expect("gap");
    assert!(report.rebirths.is_empty());
    let report = e
        .process(&[], t + Duration::milliseconds(500), true)
        .await
        .expect("tick");
    assert!(report.rebirths.is_empty(), "within the reorder timeout");
    // Seq 3 comes late (reordered); seq 4 never does.
    e.process(&[temp(3, 61.5)], t, false).await.expect("late");
    let report = e
        .process(&[], t + Duration::seconds(3), true)
        .await
        .expect("tick");
    assert_eq!(
        report.rebirths,
        vec![("ns".to_string(), "edge1".to_string())],
        "a rebirth is requested once the missing message failed to arrive"
    );
    let report = e
        .process(&[], t + Duration::seconds(6), true)
        .await
        .expect("tick");
    assert!(report.rebirths.is_empty(), "asked once");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn unmapped_text_and_datetime_metrics_are_ignored(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", sp_mapping(), now).await;
    let mut b = births(now);
    let extra = vec![
        named(
            "Info/Operator",
            10,
            dt::STRING,
            Value::StringValue("Ana".into()),
        ),
        named(
            "Info/LastService",
            11,
            dt::DATETIME,
            Value::LongValue(u64::try_from(now.timestamp_millis()).unwrap_or(0)),
        ),
        named(
            "Info/Notes",
            12,
            dt::TEXT,
            Value::StringValue("x".repeat(500)),
        ),
    ];
    let mut p = Payload::decode(b[1].payload.clone()).expect("dbirth");
    p.metrics.extend(extra);
    b[1] = msg("spBv1.0/ns/DBIRTH/edge1/press", p.encode_to_vec(), now);
    e.process(&b, now, false).await.expect("births");
    let later = now + Duration::seconds(1);
    let mut again = b.clone();
    again[0] = msg(
        "spBv1.0/ns/NBIRTH/edge1",
        payload(later, Some(0), vec![bd_seq(4)]),
        later,
    );
    again[1] = msg("spBv1.0/ns/DBIRTH/edge1/press", b[1].payload.clone(), later);
    e.process(&again, later, false).await.expect("rebirth");
    let listed = list_rejected(&pool, 10).await.expect("list");
    assert!(listed.is_empty(), "nothing set aside: {listed:?}");
    let samples: i64 =
        sqlx::query_scalar("SELECT count(*) FROM telemetry WHERE sensor LIKE 'Info/%'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(samples, 0);
}
