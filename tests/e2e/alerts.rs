//! Alerts with the real binary:
//! - across a restart: an alert raised and delivered before the restart is not raised or
//!   delivered again, and a stop that passes its threshold while Shopfloor is down is raised
//!   by the next process (nothing lost, nothing repeated);
//! - the andon (ADR 0048) in a real headless Chromium, on the dashboard and in the floor
//!   app: raised, acknowledged and resolved alerts reach the banner on the live feed.
//!   Needs Chromium and chromedriver (`scripts/browser.sh`) and axe-core (`scripts/axe.sh`).

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
use crate::webdriver::Browser;

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

// ---- the andon, live in a browser (ADR 0048) ----------------------------------------------

/// `until` in both pages; how long it took.
async fn in_both(pages: [&Browser; 2], what: &str, expression: &str) -> Duration {
    let started = tokio::time::Instant::now();
    for page in pages {
        page.until(what, expression).await;
    }
    started.elapsed()
}

/// An expression: the andon's row of `alert_id` (or of any alert) has `state`.
fn row_in(alert_id: Option<&str>, state: &str) -> String {
    let which = alert_id.map_or(String::new(), |id| format!("[data-alert-id={}]", json!(id)));
    format!("document.querySelector('#andon .andon-row{which}[data-state={state}]')")
}

/// Signs the page in with the token on its sign-in form (the dashboard's and the floor
/// app's have the same ids).
async fn sign_in(page: &Browser, token: &str) {
    page.until(
        "the sign-in form",
        "!document.getElementById('signin').hidden",
    )
    .await;
    page.js(&format!(
        "document.getElementById('token').value = {}; \
         document.getElementById('signin-form').requestSubmit(); return true;",
        json!(token)
    ))
    .await;
}

/// The andon follows the live feed: an alert raised by a rule shows at once on the dashboard
/// and in the floor app (from the feed, not from a list read: the safety read is 60 s away),
/// the button refuses an auditor and acknowledges for an operator (both pages show it), and
/// the alert leaves both banners when the machine runs again.
#[tokio::test]
async fn the_andon_shows_an_alert_live_on_the_dashboard_and_the_floor_app() {
    let server = Server::start(&["--role", "api", "--role", "projector"], &ENV).await;
    let client = reqwest::Client::new();
    post(&client, server.url("/api/v1/machines"), json!({ "machine_id": "press-7", "type": "press", "line": "L1", "ideal_cycle_time_s": 2.0 })).await;
    post(
        &client,
        server.url("/api/v1/alert-rules"),
        json!({ "kind": "machine_down", "machine_id": "press-7", "after_minutes": 5,
                "channels": [{ "type": "email", "to": ["andon@plant.example"] }] }),
    )
    .await;
    let mut tokens = Vec::new();
    for (name, role) in [("wall-screen", "auditor"), ("op-anna", "operator")] {
        let v = post(
            &client,
            server.url("/api/v1/auth/tokens"),
            json!({ "name": name, "role": role }),
        )
        .await;
        tokens.push(v["token"].as_str().unwrap().to_string());
    }

    // The dashboard on a wall screen (read only), the floor app on an operator's phone.
    let desk = Browser::start(1280, 900).await;
    desk.goto(&server.url("/")).await;
    sign_in(&desk, &tokens[0]).await;
    let phone = Browser::start(600, 844).await;
    phone
        .cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
        )
        .await;
    phone.goto(&server.url("/floor#operator/press-7")).await;
    phone
        .until("the app to start", "document.body.dataset.ready === '1'")
        .await;
    sign_in(&phone, &tokens[1]).await;
    let pages = [&desk, &phone];
    in_both(
        pages,
        "the andon on the live feed, with the list read",
        "document.getElementById('andon').dataset.live === 'open' && \
         Number(document.getElementById('andon').dataset.loaded) >= 1 && \
         document.getElementById('andon').hidden",
    )
    .await;

    // press-7 has been down for 10 minutes: the rule raises its alert.
    let stop = (chrono::Utc::now() - chrono::TimeDelta::minutes(10)).to_rfc3339();
    post(&client, server.url("/api/v1/machines/events"), json!({ "event_type": "state_changed", "machine_id": "press-7", "timestamp": stop, "state": "down" })).await;
    let took = in_both(
        pages,
        "the raised alert in the banner",
        &row_in(None, "open"),
    )
    .await;
    eprintln!("the raised alert showed on both pages {took:?} after the event");
    let alerts: Value = client
        .get(server.url("/api/v1/alerts?state=open"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alert_id = alerts[0]["alert_id"].as_str().unwrap().to_string();
    for page in pages {
        let row = page
            .js(&format!(
                "const row = {}; return {{ via: row.dataset.via, text: row.innerText, \
                 alert: row.querySelector('[role=alert]') !== null, \
                 shown: !document.getElementById('andon').hidden, \
                 count: document.querySelectorAll('#andon .andon-row').length }};",
                row_in(Some(&alert_id), "open")
            ))
            .await;
        // It came on the live feed: no list read brought it.
        assert_eq!(row["via"], "live", "{row}");
        assert!(
            row["text"].as_str().unwrap().contains("press-7 is down"),
            "{row}"
        );
        assert_eq!(
            row["alert"], true,
            "the message is a role=alert live region"
        );
        assert_eq!(
            (row["shown"].clone(), row["count"].clone()),
            (json!(true), json!(1))
        );
    }
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let width = phone
        .js("return document.documentElement.scrollWidth")
        .await;
    assert!(
        width.as_u64().unwrap() <= 390,
        "the phone scrolls sideways: {width}"
    );
    crate::floor_app::axe_on(&phone, "document", "the floor app with an alert").await;
    crate::floor_app::axe_on(&desk, "'#andon'", "the dashboard's andon").await;
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap();
    desk.screenshot(&target.join("andon-dashboard.png")).await;
    phone
        .screenshot(&target.join("andon-floor-phone.png"))
        .await;

    // The auditor may not acknowledge: the button says so.
    desk.js("document.querySelector('#andon .andon-ack').click(); return true;")
        .await;
    desk.until(
        "the refusal on the button",
        "document.querySelector('#andon .andon-ack').dataset.refused === '403' && \
         document.querySelector('#andon .andon-ack').textContent.includes('Not allowed')",
    )
    .await;
    // The operator acknowledges in the floor app; the dashboard hears it on the feed.
    phone
        .js("document.querySelector('#andon .andon-ack').click(); return true;")
        .await;
    let acked = format!(
        "{0} && {0}.innerText.includes('acknowledged by op-anna') && \
         !document.querySelector('#andon .andon-ack')",
        row_in(Some(&alert_id), "acknowledged")
    );
    let took = in_both(pages, "the acknowledgement in the banner", &acked).await;
    eprintln!("the acknowledgement showed on both pages {took:?} after the click");
    let last = desk
        .js("return document.getElementById('andon').dataset.last")
        .await;
    assert_eq!(last, json!(format!("{alert_id} acknowledged live")));

    // press-7 runs again: the rule resolves the alert, and it leaves both banners.
    let now = chrono::Utc::now().to_rfc3339();
    post(&client, server.url("/api/v1/machines/events"), json!({ "event_type": "state_changed", "machine_id": "press-7", "timestamp": now, "state": "running" })).await;
    let gone = format!(
        "document.getElementById('andon').hidden && \
         !document.querySelector('#andon .andon-row') && \
         document.getElementById('andon').dataset.last === {}",
        json!(format!("{alert_id} resolved live"))
    );
    let took = in_both(pages, "the resolved alert gone from the banner", &gone).await;
    eprintln!("the resolution showed on both pages {took:?} after the event");
    assert!(took < Duration::from_secs(15), "took {took:?}");
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
