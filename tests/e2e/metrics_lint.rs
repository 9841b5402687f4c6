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

/// The value of `name`'s series for machine LINT-1 (and `state`, when not empty).
fn plant_series(text: &str, name: &str, state: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains("machine=\"LINT-1\""))
        .find(|l| state.is_empty() || l.contains(&format!("state=\"{state}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
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
    let server = Server::start(
        &[],
        &[
            ("SHOPFLOOR_ADMIN_TOKEN", ADMIN),
            ("SHOPFLOOR_PLANT_METRICS_MS", "200"),
        ],
    )
    .await;
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
            && plant_series(&text, "shopfloor_machine_parts_good_total", "") == Some(5.0)
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the relay and projections never showed in /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The plant's families (ADR 0059): the machine's state, its counters, and the
    // KPIs of its day so far (no shifts): running all of it, no parts today.
    let series = |name, state| plant_series(&text, name, state);
    assert_eq!(series("shopfloor_machine_parts_scrap_total", ""), Some(1.0));
    assert_eq!(series("shopfloor_machine_state", "running"), Some(1.0));
    assert_eq!(series("shopfloor_machine_state", "down"), Some(0.0));
    assert_eq!(
        series("shopfloor_machine_shift_availability", ""),
        Some(1.0)
    );
    assert!(series("shopfloor_machine_shift_quality", "").is_some_and(f64::is_nan));
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
