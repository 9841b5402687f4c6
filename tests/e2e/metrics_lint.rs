//! `/metrics` of a running `shopfloor serve`, after some traffic, passes Prometheus'
//! own linter: `promtool check metrics` (Debian's `prometheus` package, installed by
//! `scripts/promtool.sh`) reports no problem, and every family has its HELP and TYPE.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::Server;

const ADMIN: &str = "metrics-admin-token-Vb3xR8qT";

/// The families in an exposition, and those of them with a HELP line.
fn families(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    let mut helped = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, help)) = rest.split_once(' ') {
                if !help.trim().is_empty() {
                    helped.insert(name.to_string());
                }
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, _)) = rest.split_once(' ') {
                seen.insert(name.to_string());
            }
        }
    }
    (seen, helped)
}

#[tokio::test]
async fn live_metrics_pass_promtool() {
    assert!(
        std::process::Command::new("promtool")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "promtool is missing: run scripts/promtool.sh"
    );
    let server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let http = reqwest::Client::new();
    // Traffic that records the HTTP, command, store, relay and projection families.
    let r = http
        .post(server.url("/api/v1/machines"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"machine_id": "LINT-1", "type": "press", "line": "L", "ideal_cycle_time_s": 2}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(server.url("/api/v1/machines/events"))
        .bearer_auth(ADMIN)
        .json(&json!({"events": [
            {"event_type": "state_changed", "machine_id": "LINT-1", "state": "running",
             "timestamp": "2026-01-05T08:00:00Z"},
            {"event_type": "parts_produced", "machine_id": "LINT-1", "good": 5, "scrap": 1,
             "timestamp": "2026-01-05T08:05:00Z"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for path in ["/api/v1/machines", "/api/v1/nope", "/healthz"] {
        let _ = http.get(server.url(path)).bearer_auth(ADMIN).send().await;
    }
    // Wait (bounded) until the events went through the relay and the projections.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = http
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("shopfloor_relay_published_total")
            && text.contains("shopfloor_projection_events_total")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the relay and projections never showed in /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (seen, helped) = families(&text);
    assert!(seen.len() >= 8, "too few families to judge: {seen:?}");
    let unhelped: Vec<_> = seen.difference(&helped).collect();
    assert!(unhelped.is_empty(), "families without HELP: {unhelped:?}");

    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    let mut stdin = promtool.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = promtool.wait_with_output().await.unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics reports problems:\n{report}\n--- exposition ---\n{text}"
    );
}
