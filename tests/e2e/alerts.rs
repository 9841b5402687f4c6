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
