//! The whole path through the real binary: HTTP or MQTT → command → event store →
//! relay → JetStream → projectors → read models → HTTP (and the live feed), then
//! `replay --verify` agreeing with what the projectors built.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::support::{shopfloor, Server};

const ADMIN: &str = "e2e-admin-token-0123456789";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get(server: &Server, path: &str) -> Value {
    let r = client()
        .get(server.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(server.url(path))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `path` until `check` accepts the body (bounded).
async fn until(server: &Server, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = get(server, path).await;
        if check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn machine<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|m| m["machine_id"] == id)
}

#[tokio::test]
async fn http_events_reach_the_read_models_the_kpis_and_the_live_feed() {
    let mut server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let (status, _) = post(
        &server,
        "/api/v1/machines",
        json!({
            "machine_id": "press-1", "type": "press", "line": "L1", "ideal_cycle_time_s": 30
        }),
    )
    .await;
    assert_eq!(status, 201);

    // The live feed, opened before the events.
    let live = client()
        .get(server.url("/api/v1/live"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let mut live = live.bytes_stream();

    // 08:00 running; 08:40 down (unplanned); 08:50 idle, planned break; 09:00 running.
    // 60 good + 4 scrap at 08:30.
    let events = json!({ "events": [
        { "event_type": "state_changed", "machine_id": "press-1", "timestamp": "2026-11-24T08:00:00Z", "state": "running" },
        { "event_type": "parts_produced", "machine_id": "press-1", "timestamp": "2026-11-24T08:30:00Z", "good": 60, "scrap": 4 },
        { "event_type": "state_changed", "machine_id": "press-1", "timestamp": "2026-11-24T08:40:00Z", "state": "down", "reason": "jam" },
        { "event_type": "state_changed", "machine_id": "press-1", "timestamp": "2026-11-24T08:50:00Z", "state": "idle", "planned": true, "reason": "break" },
        { "event_type": "state_changed", "machine_id": "press-1", "timestamp": "2026-11-24T09:00:00Z", "state": "running" }
    ]});
    let (status, body) = post(&server, "/api/v1/machines/events", events).await;
    assert_eq!((status, body), (202, json!({ "accepted": 5 })));

    until(&server, "/api/v1/machines", "the status board", |list| {
        machine(list, "press-1").is_some_and(|m| m["current_status"] == "running")
    })
    .await;

    // The window 08:00–09:00: planned 50 min (10 min break), run 40 min, down 10 min.
    let kpi_path =
        "/api/v1/kpi-metrics?machine_id=press-1&from=2026-11-24T08:00:00Z&to=2026-11-24T09:00:00Z";
    let kpis = until(&server, kpi_path, "the KPIs", |rows| {
        rows[0]["total_count"] == 64
    })
    .await;
    let row = &kpis[0];
    assert_eq!(row["planned_production_time_s"], 3000.0);
    assert_eq!(row["run_time_s"], 2400.0);
    assert_eq!(row["downtime_minutes"], 10.0);
    assert_eq!(row["good_count"], 60);
    assert_eq!(row["scrap_count"], 4);
    // availability 0.8; performance 30 s × 64 / 2400 s = 0.8; quality 60/64.
    let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-9;
    assert!(close(&row["availability"], 0.8), "{row}");
    assert!(close(&row["performance"], 0.8), "{row}");
    assert!(close(&row["quality"], 60.0 / 64.0), "{row}");
    assert!(close(&row["oee"], 0.8 * 0.8 * 60.0 / 64.0), "{row}");

    // The live feed told us about the machine.
    let saw_machine = tokio::time::timeout(Duration::from_secs(30), async {
        let mut text = String::new();
        while let Some(chunk) = live.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if text.contains("\"topic\":\"machine:press-1\"") {
                return true;
            }
        }
        false
    })
    .await
    .expect("no live update for the machine");
    assert!(saw_machine);

    // The audit log holds the events, with the actor.
    let log = get(&server, "/api/v1/events?after=0&limit=100").await;
    let first_state = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "MachineStateChanged")
        .unwrap();
    assert_eq!(first_state["metadata"]["actor"], "bootstrap-admin");

    assert!(server.terminate().await.success());
    let db = server.db.url.clone();

    // An auditor's check: the read models equal a replay of the event store.
    let out = shopfloor()
        .args(["replay", "--verify"])
        .env("DATABASE_URL", &db)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "replay --verify: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("equal"), "{stdout}");
}

#[tokio::test]
async fn mqtt_messages_reach_the_read_models_and_bad_ones_are_set_aside() {
    let mut server = Server::start(
        &[],
        &[
            ("SHOPFLOOR_ADMIN_TOKEN", ADMIN),
            ("MQTT_URL", "mqtt://127.0.0.1:1883"),
        ],
    )
    .await;
    let ready = until(&server, "/healthz", "health", |_| true).await;
    assert_eq!(ready["status"], "ok");
    let (status, _) = post(
        &server,
        "/api/v1/machines",
        json!({
            "machine_id": "lathe-7", "type": "lathe", "line": "L2", "ideal_cycle_time_s": 12.5
        }),
    )
    .await;
    assert_eq!(status, 201);
    // Ready means the MQTT subscription stands.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = client().get(server.url("/readyz")).send().await.unwrap();
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["checks"]["mqtt"], true);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut options =
        rumqttc::MqttOptions::new(format!("{}-e2e-pub", server.namespace), "127.0.0.1", 1883);
    options.set_keep_alive(Duration::from_secs(5));
    let (mqtt, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = |kind: &str| format!("{}/machines/lathe-7/{kind}", server.namespace);
    let qos = rumqttc::QoS::AtLeastOnce;
    mqtt.publish(topic("state"), qos, false, br#"{"not json"#.to_vec())
        .await
        .unwrap();
    mqtt.publish(
        topic("state"),
        qos,
        false,
        json!({"state": "down", "reason": "tool change", "timestamp": "2026-11-24T10:00:00Z"})
            .to_string(),
    )
    .await
    .unwrap();
    mqtt.publish(
        topic("count"),
        qos,
        false,
        json!({"good": 5, "scrap": 1, "timestamp": "2026-11-24T10:01:00Z"}).to_string(),
    )
    .await
    .unwrap();

    let list = until(&server, "/api/v1/machines", "the MQTT state", |list| {
        machine(list, "lathe-7")
            .is_some_and(|m| m["current_status"] == "down" && m["good_count"] == 5)
    })
    .await;
    assert_eq!(machine(&list, "lathe-7").unwrap()["reason"], "tool change");
    let rejected = get(&server, "/api/v1/ingest/rejected?limit=10").await;
    assert!(
        rejected
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["topic"] == topic("state")),
        "{rejected}"
    );
    pump.abort();
    assert!(server.terminate().await.success());
}
