//! Issue 16, items 4 and 9 on the engine: content is not identity (two identical
//! publishes are two reports, a redelivery is one), and one bad telemetry field
//! never costs a message its good samples.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use shopfloor_ingest::list_rejected;
use shopfloor_ingest::message::{plan_identities, Delivery, KnownId, MAX_REASON};
use shopfloor_ingest::store::telemetry_samples;
use sqlx::PgPool;

use crate::support::*;

async fn good_total(pool: &PgPool, machine: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(sum((payload->>'good')::bigint), 0)::bigint FROM events \
         WHERE stream_id = $1 AND event_type = 'MachinePartsProduced'",
    )
    .bind(machine)
    .fetch_one(pool)
    .await
    .expect("parts")
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn identical_publishes_are_separate_reports_and_a_redelivery_counts_once(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", plain_mapping(), now).await;
    // Three publishes of {"good":1,"scrap":0}: three parts.
    let one: Vec<_> = (0..3)
        .map(|_| msg("ns/machines/m1/count", r#"{"good":1,"scrap":0}"#, now))
        .collect();
    e.process(&one, now, false).await.expect("three publishes");
    assert_eq!(good_total(&pool, "m1").await, 3);
    // Two {"good":10} with the same timestamp: twenty parts.
    let t = now.to_rfc3339();
    let ten = format!(r#"{{"good":10,"scrap":0,"timestamp":"{t}"}}"#);
    let twice = vec![
        msg("ns/machines/m1/count", ten.clone(), now),
        msg("ns/machines/m1/count", ten, now),
    ];
    e.process(&twice, now, false).await.expect("two tens");
    assert_eq!(good_total(&pool, "m1").await, 23);
    // A redelivery (the same message, its identity kept) counts nothing, also on a
    // fresh engine (a restart before the ack).
    let report = e
        .process(&twice[..1], now, false)
        .await
        .expect("redelivery");
    assert_eq!(report.events, 0);
    let mut fresh = engine(&pool, "ns", plain_mapping(), now).await;
    fresh
        .process(&one, now, false)
        .await
        .expect("after restart");
    assert_eq!(good_total(&pool, "m1").await, 23);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_repeated_msg_id_is_one_report_and_msg_id_is_not_a_sensor(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", plain_mapping(), now).await;
    let a = msg(
        "ns/machines/m1/count",
        r#"{"good":5,"scrap":0,"msg_id":"plc-17-000042"}"#,
        now,
    );
    // The publisher retried after a reconnect: same msg_id, a new publish.
    let retry = msg(
        "ns/machines/m1/count",
        r#"{"msg_id":"plc-17-000042","good":5,"scrap":0}"#,
        now,
    );
    let other = msg(
        "ns/machines/m1/count",
        r#"{"good":5,"scrap":0,"msg_id":"plc-17-000043"}"#,
        now,
    );
    e.process(&[a], now, false).await.expect("first");
    e.process(&[retry], now, false).await.expect("retry");
    e.process(&[other], now, false).await.expect("other");
    assert_eq!(good_total(&pool, "m1").await, 10);
    let t = msg(
        "ns/machines/m1/telemetry",
        r#"{"msg_id":7,"temperature_c":50}"#,
        now,
    );
    let report = e.process(&[t], now, false).await.expect("telemetry");
    assert_eq!((report.samples, report.rejected), (1, 0));
}

fn delivery(pkid: u16, dup: bool, payload: &str) -> Delivery {
    Delivery {
        topic: "ns/machines/m1/count".into(),
        payload: bytes::Bytes::from(payload.to_string()),
        acknowledged: true,
        pkid,
        dup,
        keyed: true,
    }
}

#[test]
fn a_dup_packet_gets_its_first_delivery_id_and_a_new_packet_a_new_one() {
    let now = Utc::now();
    let mut n = 0;
    let mut fresh = || {
        n += 1;
        format!("fresh-{n}")
    };
    let body = r#"{"good":1,"scrap":0}"#;
    // First deliveries of packets 1 and 2 (identical content): two ids.
    let first = plan_identities(
        &[delivery(1, false, body), delivery(2, false, body)],
        &HashMap::new(),
        now,
        &mut fresh,
    );
    let ids: Vec<_> = first
        .identities
        .iter()
        .map(|i| i.message_id.clone())
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert!(first.identities.iter().all(|i| i.repeat.is_none()));
    let known: HashMap<String, KnownId> = first.remember.into_iter().collect();
    // After a reconnect: packet 1 redelivered (DUP); packet 2 reused for another
    // message whose first delivery we never got (DUP, other content); packet 3 new.
    let second = plan_identities(
        &[
            delivery(1, true, body),
            delivery(2, true, r#"{"good":2,"scrap":0}"#),
            delivery(3, false, body),
            delivery(1, false, body),
        ],
        &known,
        now,
        &mut fresh,
    );
    let got: Vec<_> = second
        .identities
        .iter()
        .map(|i| i.message_id.clone())
        .collect();
    assert_eq!(got[0], ids[0], "the redelivery keeps its id");
    assert!(second.identities[0]
        .repeat
        .as_deref()
        .is_some_and(|r| r.contains("DUP")));
    assert!(!got[1..].contains(&ids[0]) && !got[1..].contains(&ids[1]));
    assert!(second.identities[1..].iter().all(|i| i.repeat.is_none()));
    // A packet id reused without DUP is a new message, remembered in its place.
    let remembered: HashMap<String, KnownId> = second.remember.into_iter().collect();
    assert_eq!(remembered["pkid:1"].message_id, got[3]);
    // Telemetry (its samples are keyed by time) is not remembered.
    let tele = Delivery {
        keyed: false,
        ..delivery(9, false, r#"{"temperature_c":1}"#)
    };
    let plan = plan_identities(&[tele], &HashMap::new(), now, &mut fresh);
    assert!(plan.remember.is_empty());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn one_bad_telemetry_field_keeps_the_good_samples_and_a_short_reason(pool: PgPool) {
    register(&pool, "m1").await;
    let now = Utc::now();
    let mut e = engine(&pool, "ns", plain_mapping(), now).await;
    let t = now.to_rfc3339();
    let note = "x".repeat(20_000);
    let m = msg(
        "ns/machines/m1/telemetry",
        format!(r#"{{"timestamp":"{t}","temperature_c":77.7,"note":"{note}"}}"#),
        now,
    );
    let report = e
        .process(std::slice::from_ref(&m), now, false)
        .await
        .expect("the message is processed, not failed");
    assert_eq!(report.samples, 1);
    let samples = telemetry_samples(
        &pool,
        "m1",
        "temperature_c",
        now - Duration::hours(1),
        now + Duration::hours(1),
    )
    .await
    .expect("samples");
    assert_eq!(samples.iter().map(|s| s.1).collect::<Vec<_>>(), [77.7]);
    let rejected = list_rejected(&pool, 10).await.expect("list");
    assert_eq!(rejected.len(), 1);
    let reason = &rejected[0].reason;
    assert!(reason.contains("note"), "{reason}");
    assert!(
        reason.len() <= MAX_REASON + 3,
        "a short reason: {} bytes",
        reason.len()
    );
    assert!(!reason.contains("index row"), "{reason}");
    // Any reason is bounded, whatever a decoder writes.
    let state = msg(
        "ns/machines/m1/state",
        format!(r#"{{"state":"{}"}}"#, "y".repeat(30_000)),
        now,
    );
    e.process(&[state], now, false).await.expect("a long state");
    let rejected = list_rejected(&pool, 10).await.expect("list");
    assert!(rejected.iter().all(|r| r.reason.len() <= MAX_REASON + 3));
}
