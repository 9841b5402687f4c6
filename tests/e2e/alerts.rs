//! Alerts across a restart of the real binary: an alert raised and delivered before the
//! restart is not raised or delivered again, and a stop that passes its threshold while
//! Shopfloor is down is raised by the next process (nothing lost, nothing repeated).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{shopfloor, Server};

const ADMIN: &str = "e2e-alerts-admin-token-0123";

type Receipts = Arc<Mutex<HashMap<String, usize>>>;

async fn receive(State(r): State<Receipts>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    if v["stage"] == "raised" {
        let machine = v["machine_id"].as_str().unwrap_or("").to_string();
        *r.lock().unwrap().entry(machine).or_default() += 1;
    }
    StatusCode::OK
}

const ENV: [(&str, &str); 3] = [
    ("SHOPFLOOR_ADMIN_TOKEN", ADMIN),
    ("SHOPFLOOR_ALERT_TICK_MS", "100"),
    ("SHOPFLOOR_ALERT_POLL_MS", "50"),
];

/// Starts another `shopfloor serve` on the same database and namespace.
async fn restart(server: &Server) -> (tokio::process::Child, String) {
    let mut child = shopfloor()
        .args(["serve", "--role", "api", "--role", "projector"])
        .env("DATABASE_URL", &server.db.url)
        .env("SHOPFLOOR_HTTP_ADDR", "127.0.0.1:0")
        .env("SHOPFLOOR_NAMESPACE", &server.namespace)
        .env("MQTT_URL", "off")
        .env("RUST_LOG", "info")
        .envs(ENV)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.find("listening on http://") {
                return line[i + "listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string();
            }
        }
        panic!("shopfloor exited before listening");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let r = client
        .post(url)
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "{status}: {body}");
    body
}

#[tokio::test]
async fn a_restart_of_the_binary_mid_alert_neither_loses_nor_repeats_it() {
    let receipts: Receipts = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receipts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut server = Server::start(&["--role", "api", "--role", "projector"], &ENV).await;
    let client = reqwest::Client::new();
    for (machine, after) in [("M-1", 1.0), ("M-2", 0.05)] {
        post(&client, server.url("/api/v1/machines"), json!({ "machine_id": machine, "type": "press", "line": "L1", "ideal_cycle_time_s": 2.0 })).await;
        post(
            &client,
            server.url("/api/v1/alert-rules"),
            json!({ "kind": "machine_down", "machine_id": machine, "after_minutes": after,
            "channels": [{ "type": "webhook", "url": hook, "secret": "e2e-secret" }] }),
        )
        .await;
    }
    // M-1: down for 10 minutes already: raised and delivered before the restart.
    let ten_ago = (chrono::Utc::now() - chrono::TimeDelta::minutes(10)).to_rfc3339();
    post(&client, server.url("/api/v1/machines/events"), json!({ "event_type": "state_changed", "machine_id": "M-1", "timestamp": ten_ago, "state": "down" })).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while receipts.lock().unwrap().get("M-1").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "M-1's alert never came"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // M-2 stops now, its rule waits 3 s: Shopfloor goes down before that.
    let now = chrono::Utc::now().to_rfc3339();
    post(&client, server.url("/api/v1/machines/events"), json!({ "event_type": "state_changed", "machine_id": "M-2", "timestamp": now, "state": "down" })).await;
    assert!(server.terminate().await.success());
    assert!(
        receipts.lock().unwrap().get("M-2").is_none(),
        "raised too early"
    );

    let (mut child, base) = restart(&server).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while receipts.lock().unwrap().get("M-2").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "M-2's alert was lost"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Many ticks later: each alert was raised and delivered exactly once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = receipts.lock().unwrap().clone();
    assert_eq!(got.get("M-1"), Some(&1), "{got:?}");
    assert_eq!(got.get("M-2"), Some(&1), "{got:?}");
    let alerts: Value = client
        .get(format!("{base}/api/v1/alerts?state=open"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alerts.as_array().map(Vec::len), Some(2), "{alerts}");
    child.kill().await.unwrap();
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    client
        .get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The alerts of a rule, as `(state, subject)`, once `done` says they are as expected.
async fn alerts_of(
    client: &reqwest::Client,
    server: &Server,
    rule: &str,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = get(client, server.url("/api/v1/alerts")).await;
        let mine: Vec<(String, String)> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule_id"] == rule)
            .map(|a| {
                let subject = a["subject"].as_str().unwrap_or("").to_string();
                (a["state"].as_str().unwrap().to_string(), subject)
            })
            .collect();
        if done(&mine) {
            return mine;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rule {rule}: alerts stayed {mine:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Condition rules through the real binary and the MQTT broker: an overdue maintenance task,
/// an item below its reorder point, a machine whose ingest went silent, rejected messages and
/// a line's availability below target each raise one alert while they hold, and those that
/// stop holding are resolved.
#[tokio::test]
async fn condition_rules_raise_while_they_hold_and_resolve_when_they_stop() {
    let env = [
        ("SHOPFLOOR_ADMIN_TOKEN", ADMIN),
        ("SHOPFLOOR_ALERT_TICK_MS", "100"),
        ("SHOPFLOOR_ALERT_CONDITIONS_MS", "100"),
        ("MQTT_URL", "mqtt://127.0.0.1:1883"),
    ];
    let server = Server::start(&[], &env).await;
    let client = reqwest::Client::new();
    let ns = server.namespace.clone();
    post(
        &client,
        server.url("/api/v1/machines"),
        json!({ "machine_id": "C-1", "type": "press", "line": "CL", "ideal_cycle_time_s": 2.0 }),
    )
    .await;
    let hook = json!([{ "type": "email", "to": ["nobody@example.com"] }]);
    let rule = |body: Value| {
        let (client, url, hook) = (
            client.clone(),
            server.url("/api/v1/alert-rules"),
            hook.clone(),
        );
        async move {
            let mut body = body;
            body["channels"] = hook;
            post(&client, url, body).await["rule_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let overdue =
        rule(json!({ "kind": "maintenance_overdue", "machine_id": "C-1", "after_minutes": 0 }))
            .await;
    let reorder =
        rule(json!({ "kind": "below_reorder_point", "item_id": "steel", "target": 100 })).await;
    let silent =
        rule(json!({ "kind": "ingest_silent", "machine_id": "C-1", "after_minutes": 0.03 })).await;
    let rejected =
        rule(json!({ "kind": "rejected_messages", "target": 2, "after_minutes": 10 })).await;
    let kpi = rule(json!({ "kind": "kpi_below_target", "line": "CL", "metric": "availability", "target": 0.9 })).await;

    // A task due an hour ago: overdue. Completing it resolves the alert.
    let due = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let task = post(
        &client,
        server.url("/api/v1/maintenance/schedule"),
        json!({ "machine_id": "C-1", "scheduled_date": due, "kind": "preventive" }),
    )
    .await;
    let task = task["task_id"].as_str().unwrap().to_string();
    let open = alerts_of(&client, &server, &overdue, |a| !a.is_empty()).await;
    assert_eq!(open, vec![("open".to_string(), task.clone())]);
    post(
        &client,
        server.url(&format!("/api/v1/maintenance/tasks/{task}/start")),
        json!({}),
    )
    .await;
    post(
        &client,
        server.url(&format!("/api/v1/maintenance/tasks/{task}/complete")),
        json!({}),
    )
    .await;
    alerts_of(&client, &server, &overdue, |a| {
        a.iter().all(|(s, _)| s == "resolved")
    })
    .await;

    // 50 of steel against a reorder point of 100; 100 more clears it.
    let stock = |delta: f64| json!({ "item_id": "steel", "item_type": "raw", "location": "store", "delta": delta, "reason": "receipt" });
    client
        .patch(server.url("/api/v1/inventory/update"))
        .bearer_auth(ADMIN)
        .json(&stock(50.0))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let open = alerts_of(&client, &server, &reorder, |a| !a.is_empty()).await;
    assert_eq!(open, vec![("open".to_string(), "steel".to_string())]);
    client
        .patch(server.url("/api/v1/inventory/update"))
        .bearer_auth(ADMIN)
        .json(&stock(100.0))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    alerts_of(&client, &server, &reorder, |a| {
        a.iter().all(|(s, _)| s == "resolved")
    })
    .await;

    // The machine reports over MQTT, then falls silent (1.8 s): one alert; a new message
    // resolves it. Two malformed messages: the rejected-messages rule fires.
    let mut options = rumqttc::MqttOptions::new(format!("{ns}-cond"), "127.0.0.1", 1883);
    options.set_keep_alive(Duration::from_secs(5));
    let (mqtt, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let state_topic = format!("{ns}/machines/C-1/state");
    let report = |state: &str| {
        json!({ "state": state, "timestamp": chrono::Utc::now().to_rfc3339() }).to_string()
    };
    mqtt.publish(
        &state_topic,
        rumqttc::QoS::AtLeastOnce,
        false,
        report("down"),
    )
    .await
    .unwrap();
    let open = alerts_of(&client, &server, &silent, |a| !a.is_empty()).await;
    assert_eq!(open, vec![("open".to_string(), "C-1".to_string())]);
    mqtt.publish(
        &state_topic,
        rumqttc::QoS::AtLeastOnce,
        false,
        report("down"),
    )
    .await
    .unwrap();
    alerts_of(&client, &server, &silent, |a| {
        a.iter().any(|(s, _)| s == "resolved")
    })
    .await;
    for _ in 0..2 {
        mqtt.publish(&state_topic, rumqttc::QoS::AtLeastOnce, false, "not json")
            .await
            .unwrap();
    }
    let open = alerts_of(&client, &server, &rejected, |a| !a.is_empty()).await;
    assert_eq!(open, vec![("open".to_string(), "ingest".to_string())]);

    // C-1 has been down since the MQTT report: the line's availability is 0 over the day.
    let open = alerts_of(&client, &server, &kpi, |a| !a.is_empty()).await;
    assert_eq!(
        open,
        vec![("open".to_string(), "availability line:CL".to_string())]
    );

    // Many condition checks later, still one alert per condition.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for r in [&overdue, &reorder, &rejected, &kpi] {
        let all = alerts_of(&client, &server, r, |_| true).await;
        assert_eq!(all.len(), 1, "rule {r}: {all:?}");
    }
}
