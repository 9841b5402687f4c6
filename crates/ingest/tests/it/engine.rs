//! The batch engine on the real database: JSON payloads, rejection, debounce,
//! counters, redelivery, late data, no signal, predictive maintenance.

use chrono::Duration;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopfloor_ingest::store::telemetry_samples;
use shopfloor_ingest::{list_rejected, telemetry_series, TelemetryQuery};
use sqlx::PgPool;

use crate::support::*;

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(1e-12);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn json_state_count_and_telemetry_land(pool: PgPool) {
    register(&pool, "m1").await;
    let now = chrono::Utc::now();
    let mut e = engine(&pool, "ns", plain_mapping(), now).await;
    let t = (now - Duration::minutes(5)).to_rfc3339();
    let batch = vec![
        msg(
            "ns/machines/m1/state",
            format!(r#"{{"state":"down","reason":"small_stop.jam","timestamp":"{t}"}}"#),
            now,
        ),
        msg(
            "ns/machines/m1/count",
            format!(r#"{{"good":5,"scrap":1,"timestamp":"{t}"}}"#),
            now,
        ),
        msg(
            "ns/machines/m1/telemetry",
            format!(r#"{{"timestamp":"{t}","temperature_c":60.5,"vibration_mm_s":2.25}}"#),
            now,
        ),
    ];
    let report = e.process(&batch, now, false).await.expect("batch");
    assert_eq!(report.events, 2);
    assert_eq!(report.samples, 2);
    let events = machine_events(&pool, "m1").await;
    assert_eq!(events[0].0, "MachineStateChanged");
    assert_eq!(events[0].1["state"], "down");
    assert_eq!(events[0].1["reason_code"], "small_stop.jam");
    assert_eq!(events[1].0, "MachinePartsProduced");
    assert_eq!(
        (events[1].1["good"].as_u64(), events[1].1["scrap"].as_u64()),
        (Some(5), Some(1))
    );
    let meta: (String, String) = sqlx::query_as(
        "SELECT actor, source FROM events WHERE stream_id = 'm1' ORDER BY position DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("meta");
    assert_eq!(meta, ("ingest".to_string(), "mqtt".to_string()));
    let series = telemetry_series(
        &pool,
        &TelemetryQuery {
            machine_id: "m1".into(),
            sensor: Some("temperature_c".into()),
            from: now - Duration::hours(1),
            to: now + Duration::hours(1),
            step: Duration::minutes(5),
        },
    )
    .await
    .expect("series");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].count, 1);
    assert!((series[0].avg - 60.5).abs() < 1e-9);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn garbage_is_rejected_and_recorded_while_the_next_good_one_lands(pool: PgPool) {
    register(&pool, "m1").await;
    let now = chrono::Utc::now();
    let mut e = engine(&pool, "ns", plain_mapping(), now).await;
    let future = (now + Duration::days(2)).to_rfc3339();
    let garbage = vec![
        msg("ns/machines/m1/state", "not json at all", now),
        msg("ns/machines/m1/state", vec![0xff, 0x00, 0x13], now),
        msg("ns/machines/m1/state", r#"{"state":"flying"}"#, now),
        msg("ns/machines/m1/count", r#"{"good":-3,"scrap":0}"#, now),
        msg("ns/machines/m1/count", r#"{"good":1.5}"#, now),
        msg("ns/machines/m1/count", r#"{"good":5000000,"scrap":0}"#, now),
        msg(
            "ns/machines/m1/telemetry",
            r#"{"temperature_c":"hot"}"#,
            now,
        ),
        msg(
            "ns/machines/m1/telemetry",
            r#"{"temperature_c":1e300}"#,
            now,
        ),
        msg(
            "ns/machines/m1/state",
            format!(r#"{{"state":"running","timestamp":"{future}"}}"#),
            now,
        ),
        msg("ns/machines/ghost/state", r#"{"state":"running"}"#, now),
        msg("ns/machines/m1/state", "x".repeat(100_000), now),
    ];
    let report = e
        .process(&garbage, now, false)
        .await
        .expect("garbage batch");
    assert_eq!(report.events, 0);
    assert_eq!(report.rejected, garbage.len());
    let good = vec![msg("ns/machines/m1/state", r#"{"state":"running"}"#, now)];
    let report = e.process(&good, now, false).await.expect("good batch");
    assert_eq!(report.events, 1);

    let rejected = list_rejected(&pool, 100).await.expect("list");
    assert_eq!(rejected.len(), garbage.len());
    let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
    for needle in [
        "malformed JSON",
        "unknown state",
        "negative",
        "whole number",
        "impossible count",
        "not a number",
        "out of range",
        "in the future",
        "unknown machine ghost",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no rejection mentions {needle}: {reasons:?}"
        );
    }
    assert!(rejected.iter().any(|r| r.payload.starts_with("hex:ff0013")));
    assert!(
        rejected.iter().all(|r| r.payload.len() <= 4100),
        "payloads are bounded"
    );
    assert!(rejected.iter().any(|r| r.payload_bytes == 100_000));
    // The same garbage again (a redelivery) is not recorded twice.
    e.process(&garbage, now, false).await.expect("again");
    assert_eq!(
        list_rejected(&pool, 100).await.expect("list").len(),
        garbage.len()
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn flapping_states_are_debounced_with_a_minimum_dwell(pool: PgPool) {
    register(&pool, "m1").await;
    let now = chrono::Utc::now();
    let m = mapping(r#"{"defaults": {"min_dwell_ms": 1000, "no_signal_timeout_s": 0}}"#);
    let mut e = engine(&pool, "ns", m, now).await;
    let t0 = now - Duration::minutes(10);
    let state = |s: &str, offset_ms: i64| {
        msg(
            "ns/machines/m1/state",
            format!(
                r#"{{"state":"{s}","timestamp":"{}"}}"#,
                (t0 + Duration::milliseconds(offset_ms)).to_rfc3339()
            ),
            now,
        )
    };
    // A flap within the dwell: running, down 100 ms, running again.
    e.process(
        &[
            state("running", 0),
            state("down", 100),
            state("running", 200),
        ],
        now,
        false,
    )
    .await
    .expect("flap");
    assert!(
        machine_events(&pool, "m1").await.is_empty(),
        "nothing before the dwell has passed"
    );
    // The dwell passes in wall time: the last state stands.
    e.process(&[], now + Duration::seconds(2), true)
        .await
        .expect("timer");
    // Down for 300 ms then back to running: dropped. Idle for 5 s: kept. Then down.
    e.process(
        &[
            state("down", 10_000),
            state("running", 10_300),
            state("idle", 20_000),
            state("down", 25_000),
        ],
        now + Duration::seconds(3),
        false,
    )
    .await
    .expect("second");
    e.process(&[], now + Duration::seconds(5), true)
        .await
        .expect("timer");
    let states: Vec<String> = machine_events(&pool, "m1")
        .await
        .into_iter()
        .map(|(_, p)| p["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(states, ["running", "idle", "down"]);
    // A repeated state is a duplicate, not a new event.
    e.process(&[state("down", 30_000)], now + Duration::seconds(6), true)
        .await
        .expect("dup");
    e.process(&[], now + Duration::seconds(9), true)
        .await
        .expect("timer");
    assert_eq!(machine_events(&pool, "m1").await.len(), 3);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn cumulative_counters_become_deltas_through_rollover_and_reset(pool: PgPool) {
    register(&pool, "m1").await;
    let now = chrono::Utc::now();
    let m = mapping(
        r#"{"defaults": {"min_dwell_ms": 0, "no_signal_timeout_s": 0},
            "machines": {"m1": {"counter_mode": "cumulative", "counter_bits": 16, "max_parts_per_message": 1000}}}"#,
    );
    let mut e = engine(&pool, "ns", m.clone(), now).await;
    let t0 = now - Duration::hours(1);
    let count = |good: u64, scrap: u64, s: i64| {
        msg(
            "ns/machines/m1/count",
            format!(
                r#"{{"good":{good},"scrap":{scrap},"timestamp":"{}"}}"#,
                (t0 + Duration::seconds(s)).to_rfc3339()
            ),
            now,
        )
    };
    e.process(&[count(65_500, 7, 0), count(65_530, 7, 1)], now, false)
        .await
        .expect("a");
    // Restart the engine: the counters' last totals were stored with the batch.
    let mut e = engine(&pool, "ns", m, now).await;
    e.process(
        &[count(4, 8, 2), count(500, 8, 3), count(2, 0, 4)],
        now,
        false,
    )
    .await
    .expect("b");
    let parts: Vec<(u64, u64)> = machine_events(&pool, "m1")
        .await
        .into_iter()
        .map(|(_, p)| {
            (
                p["good"].as_u64().unwrap_or(0),
                p["scrap"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // baseline; +30; rollover 65530 → 4 = 10 and scrap +1; +496; reset to 2 (and scrap reset to 0).
    assert_eq!(parts, [(30, 0), (10, 1), (496, 0), (2, 0)]);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_redelivered_message_appends_nothing(pool: PgPool) {
    register(&pool, "m1").await;
    let now = chrono::Utc::now();
    let mut e = engine(&pool, "ns", plain_mapping(), now).await;
    let t = now.to_rfc3339();
    let count = msg(
        "ns/machines/m1/count",
        format!(r#"{{"good":3,"scrap":0,"timestamp":"{t}"}}"#),
        now,
    );
    let tele = msg(
        "ns/machines/m1/telemetry",
        format!(r#"{{"timestamp":"{t}","temperature_c":50}}"#),
        now,
    );
    e.process(&[count.clone(), tele.clone(), count.clone()], now, false)
        .await
        .expect("first");
    let report = e
        .process(&[count.clone(), tele.clone()], now, false)
        .await
        .expect("again");
    assert_eq!(report.events, 0);
    assert!(report.duplicates >= 1);
    // A fresh engine (a restart before the ack) sees the same.
    let mut fresh = engine(&pool, "ns", plain_mapping(), now).await;
    let report = fresh
        .process(&[count, tele], now, false)
        .await
        .expect("restart");
    assert_eq!(report.events, 0);
    assert_eq!(machine_events(&pool, "m1").await.len(), 1);
    let rows = telemetry_samples(
        &pool,
        "m1",
        "temperature_c",
        now - Duration::hours(1),
        now + Duration::hours(1),
    )
    .await
    .expect("samples");
    assert_eq!(rows.len(), 1);
    let rollup: i64 = sqlx::query_scalar("SELECT sum(count)::bigint FROM telemetry_rollup_1m")
        .fetch_one(&pool)
        .await
        .expect("rollup");
    assert_eq!(
        rollup, 1,
        "a redelivered sample is not counted twice in the rollups"
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn old_timestamps_are_accepted_as_late_data(pool: PgPool) {
    register(&pool, "m1").await;
    let now = chrono::Utc::now();
    shopfloor_ingest::maintain_telemetry(&pool, &Default::default())
        .await
        .expect("partitions");
    let m = mapping(r#"{"defaults": {"min_dwell_ms": 1000, "no_signal_timeout_s": 0}}"#);
    let mut e = engine(&pool, "ns", m, now).await;
    let recent = (now - Duration::minutes(1)).to_rfc3339();
    let old = (now - Duration::days(3)).to_rfc3339();
    e.process(
        &[msg(
            "ns/machines/m1/state",
            format!(r#"{{"state":"running","timestamp":"{recent}"}}"#),
            now,
        )],
        now,
        false,
    )
    .await
    .expect("recent");
    e.process(&[], now + Duration::seconds(2), true)
        .await
        .expect("timer");
    // A late state goes straight to the domain (no debounce), which places it by floor time.
    e.process(
        &[
            msg(
                "ns/machines/m1/state",
                format!(
                    r#"{{"state":"down","reason":"breakdown.electrical","timestamp":"{old}"}}"#
                ),
                now,
            ),
            msg(
                "ns/machines/m1/telemetry",
                format!(r#"{{"timestamp":"{old}","temperature_c":40}}"#),
                now,
            ),
            msg(
                "ns/machines/m1/telemetry",
                r#"{"timestamp":"2001-01-01T00:00:00Z","temperature_c":41}"#,
                now,
            ),
        ],
        now + Duration::seconds(3),
        false,
    )
    .await
    .expect("late");
    let events = machine_events(&pool, "m1").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].1["state"], "down");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry WHERE machine_id = 'm1'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(stored, 2);
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_default")
        .fetch_one(&pool)
        .await
        .expect("default");
    assert!(
        in_default >= 1,
        "data older than every partition lands in the default partition"
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_silent_machine_goes_down_with_no_signal_and_comes_back(pool: PgPool) {
    register(&pool, "m1").await;
    let now = chrono::Utc::now();
    let m = mapping(r#"{"defaults": {"min_dwell_ms": 0, "no_signal_timeout_s": 60}}"#);
    let mut e = engine(&pool, "ns", m, now).await;
    e.process(
        &[msg(
            "ns/machines/m1/state",
            format!(
                r#"{{"state":"running","timestamp":"{}"}}"#,
                now.to_rfc3339()
            ),
            now,
        )],
        now,
        true,
    )
    .await
    .expect("running");
    e.process(&[], now + Duration::seconds(59), true)
        .await
        .expect("not yet");
    assert_eq!(machine_events(&pool, "m1").await.len(), 1);
    e.process(&[], now + Duration::seconds(61), true)
        .await
        .expect("timeout");
    e.process(&[], now + Duration::seconds(120), true)
        .await
        .expect("still silent");
    let events = machine_events(&pool, "m1").await;
    assert_eq!(events.len(), 2, "one no-signal event, not one per tick");
    assert_eq!(events[1].1["state"], "down");
    assert_eq!(events[1].1["reason_code"], "small_stop.no_signal");
    assert_eq!(events[1].1["planned"], false);
    // Its next message (telemetry) brings back the state it was in.
    let back = now + Duration::seconds(130);
    e.process(
        &[msg(
            "ns/machines/m1/telemetry",
            format!(
                r#"{{"timestamp":"{}","temperature_c":50}}"#,
                back.to_rfc3339()
            ),
            back,
        )],
        back,
        true,
    )
    .await
    .expect("back");
    let events = machine_events(&pool, "m1").await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].1["state"], "running");
}

async fn feed(pool: &PgPool, series: &[f64]) -> usize {
    let now = chrono::Utc::now();
    let mut e = engine(pool, "ns", plain_mapping(), now).await;
    let t0 = now - Duration::seconds(series.len() as i64 + 10);
    let messages: Vec<_> = series
        .iter()
        .enumerate()
        .map(|(i, v)| {
            msg(
                "ns/machines/m1/telemetry",
                format!(
                    r#"{{"timestamp":"{}","vibration_mm_s":{v}}}"#,
                    (t0 + Duration::seconds(i as i64)).to_rfc3339()
                ),
                now,
            )
        })
        .collect();
    let mut tasks = 0;
    for chunk in messages.chunks(500) {
        tasks += e.process(chunk, now, false).await.expect("batch").tasks;
    }
    tasks
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_drifting_sensor_schedules_one_predictive_task(pool: PgPool) {
    register(&pool, "m1").await;
    let mut rng = StdRng::seed_from_u64(11);
    let series: Vec<f64> = (0..3000)
        .map(|i| {
            let drift = if i > 1000 {
                (i - 1000) as f64 * 0.0005
            } else {
                0.0
            };
            2.5 + 0.1 * normal(&mut rng) + drift
        })
        .collect();
    let scheduled = feed(&pool, &series).await;
    assert_eq!(scheduled, 1, "one task, not one per sample (cooldown)");
    let tasks = predictive_tasks(&pool, "m1").await;
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task["kind"], "predictive");
    let evidence = &task["evidence"];
    assert_eq!(evidence["sensor"], "vibration_mm_s");
    assert!((evidence["baseline_mean"].as_f64().unwrap_or(0.0) - 2.5).abs() < 0.05);
    assert!(evidence["deviation_sigma"].as_f64().unwrap_or(0.0) > 0.5);
    assert_eq!(evidence["details"]["detector"], "cusum");
    assert!(
        evidence["samples"].as_u64().unwrap_or(0) > 1000,
        "not before the drift began"
    );
    let alert_at =
        chrono::DateTime::parse_from_rfc3339(evidence["window_end"].as_str().unwrap_or(""))
            .expect("window end");
    let drift_start = chrono::Utc::now() - Duration::seconds(3010 - 1000);
    assert!(
        alert_at > drift_start,
        "the alert comes after the drift starts"
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_noisy_stable_sensor_schedules_nothing(pool: PgPool) {
    register(&pool, "m1").await;
    let mut rng = StdRng::seed_from_u64(5);
    let series: Vec<f64> = (0..4000).map(|_| 2.5 + 0.3 * normal(&mut rng)).collect();
    assert_eq!(feed(&pool, &series).await, 0);
    assert!(predictive_tasks(&pool, "m1").await.is_empty());
}

/// Throughput of the engine alone (no broker): `cargo test -- --ignored throughput --nocapture`.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
#[ignore = "a measurement, not a check"]
async fn throughput(pool: PgPool) {
    for i in 0..100 {
        register(&pool, &format!("m{i}")).await;
    }
    let now = chrono::Utc::now();
    let mut e = engine(&pool, "ns", plain_mapping(), now).await;
    let t0 = now - Duration::hours(1);
    let make = |kind: &str, n: usize| -> Vec<shopfloor_ingest::Incoming> {
        (0..n)
            .map(|j| {
                let at = (t0 + Duration::milliseconds(j as i64)).to_rfc3339();
                let m = j % 100;
                let payload = match kind {
                    "count" => format!(r#"{{"good":1,"scrap":0,"timestamp":"{at}"}}"#),
                    _ => format!(
                        r#"{{"timestamp":"{at}","temperature_c":{},"vibration_mm_s":2.5}}"#,
                        50 + j % 7
                    ),
                };
                msg(&format!("ns/machines/m{m}/{kind}"), payload, now)
            })
            .collect()
    };
    for kind in ["count", "telemetry"] {
        let messages = make(kind, 20_000);
        let started = std::time::Instant::now();
        for chunk in messages.chunks(2000) {
            e.process(chunk, now, false).await.expect("batch");
        }
        let rate = messages.len() as f64 / started.elapsed().as_secs_f64();
        eprintln!("{kind}: {rate:.0} messages/s");
    }
}

/// The ingest's own rows are written outside the event log's head lock: with the
/// lock held by another connection, a telemetry-only batch still commits (and a
/// batch with a state change waits for the lock, then commits too).
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_telemetry_only_batch_commits_while_the_log_head_is_locked(pool: PgPool) {
    register(&pool, "m1").await;
    let now = chrono::Utc::now();
    let mut e = engine(&pool, "ns", plain_mapping(), now).await;
    let t = (now - Duration::seconds(30)).to_rfc3339();

    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT position FROM event_log_head WHERE id FOR UPDATE")
        .execute(&mut *holder)
        .await
        .expect("lock the log head");

    let telemetry = vec![msg(
        "ns/machines/m1/telemetry",
        format!(r#"{{"timestamp":"{t}","temperature_c":61.5}}"#),
        now,
    )];
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        e.process(&telemetry, now, false),
    )
    .await
    .expect("a telemetry-only batch must not wait for the log head lock")
    .expect("batch");
    assert_eq!((report.samples, report.events), (1, 0));

    // A state change needs the lock: it waits, and lands once the lock is gone.
    let state = vec![msg(
        "ns/machines/m1/state",
        format!(r#"{{"state":"running","timestamp":"{t}"}}"#),
        now,
    )];
    let pending = tokio::spawn(async move { e.process(&state, now, false).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "an event append must wait for the lock"
    );
    holder.rollback().await.expect("release");
    let report = pending.await.expect("task").expect("batch");
    assert_eq!(report.events, 1);
    let events = machine_events(&pool, "m1").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1["state"], "running");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_count_with_a_scrap_reason_records_it_and_an_unknown_one_is_set_aside(pool: PgPool) {
    register(&pool, "m1").await;
    let now = chrono::Utc::now();
    let mut e = engine(&pool, "ns", plain_mapping(), now).await;
    let t = (now - Duration::minutes(5)).to_rfc3339();
    let batch = vec![
        msg(
            "ns/machines/m1/count",
            format!(r#"{{"good":5,"scrap":2,"scrap_reason":"Scrap.Surface","timestamp":"{t}"}}"#),
            now,
        ),
        // No scrap: the reason is dropped, the parts are recorded.
        msg(
            "ns/machines/m1/count",
            format!(r#"{{"good":3,"scrap":0,"scrap_reason":"scrap.surface","timestamp":"{t}"}}"#),
            now,
        ),
        msg(
            "ns/machines/m1/count",
            r#"{"good":1,"scrap":1,"scrap_reason":"bent"}"#,
            now,
        ),
        msg(
            "ns/machines/m1/count",
            r#"{"good":1,"scrap":1,"scrap_reason":7}"#,
            now,
        ),
    ];
    let report = e.process(&batch, now, false).await.expect("batch");
    assert_eq!((report.events, report.rejected), (2, 2));
    let events = machine_events(&pool, "m1").await;
    assert_eq!(events[0].1["scrap_reason"], "scrap.surface");
    assert_eq!(events[0].1["scrap"], 2);
    assert_eq!(events[1].1["good"], 3);
    assert!(events[1].1.get("scrap_reason").is_none(), "{}", events[1].1);
    let rejected = list_rejected(&pool, 10).await.expect("list");
    assert!(rejected
        .iter()
        .any(|r| r.reason.contains("not a known scrap reason code")));
    assert!(rejected
        .iter()
        .any(|r| r.reason.contains("is not a string")));
}
