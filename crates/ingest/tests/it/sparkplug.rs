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
