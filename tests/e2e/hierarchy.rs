//! The dashboard navigates by the equipment hierarchy (ADR 0062), in a real headless
//! Chromium: the plant selector lists the sites, areas and lines (lines no area holds
//! under the implicit `default` site and area), and choosing a node narrows the tiles and
//! the summary to its machines.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/browser.sh`).

use serde_json::{json, Value};

use crate::support::Server;
use crate::webdriver::Browser;

const ADMIN: &str = "e2e-hierarchy-admin-token-0123456789";

async fn post(http: &reqwest::Client, server: &Server, path: &str, body: Value) {
    let res = http
        .post(server.url(path))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert!(
        status.is_success(),
        "{path}: {status} {}",
        res.text().await.unwrap_or_default()
    );
}

#[tokio::test]
async fn the_plant_selector_narrows_the_dashboard_to_a_node() {
    let server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let http = reqwest::Client::new();
    for (m, line) in [("press-1", "L1"), ("press-2", "L2"), ("lathe-1", "L3")] {
        post(
            &http,
            &server,
            "/api/v1/machines",
            json!({ "machine_id": m, "type": "press", "line": line, "ideal_cycle_time_s": 2.0 }),
        )
        .await;
    }
    for (id, level, name, parent) in [
        ("S1", "site", "Plant one", None),
        ("A1", "area", "Press shop", Some("S1")),
        ("A2", "area", "Assembly", Some("S1")),
        ("L1", "line", "Press line 1", Some("A1")),
        ("L2", "line", "Assembly line", Some("A2")),
    ] {
        post(
            &http,
            &server,
            "/api/v1/hierarchy/nodes",
            json!({ "node_id": id, "level": level, "name": name, "parent": parent }),
        )
        .await;
    }

    let browser = Browser::start(1400, 900).await;
    browser.goto(&server.url("/")).await;
    browser
        .until(
            "the sign-in form",
            "!document.getElementById('signin').hidden",
        )
        .await;
    browser
        .js(&format!(
            "document.getElementById('token').value = {}; \
             document.getElementById('signin-form').requestSubmit(); return true;",
            json!(ADMIN)
        ))
        .await;
    browser
        .until(
            "a tile per machine",
            "document.querySelectorAll('.tile').length === 3",
        )
        .await;
    // The projector may be a moment behind the API: the tree arrives with a later refetch.
    let has_option = |v: &str| {
        format!("[...document.getElementById('node').options].some((o) => o.value === '{v}')")
    };
    let choose = |v: &str| {
        format!(
            "const s = document.getElementById('node'); s.value = '{v}'; \
             s.dispatchEvent(new Event('change')); return true;"
        )
    };
    let tiles =
        "[...document.querySelectorAll('.tile')].map((t) => t.dataset.machine).sort().join(',')";
    browser
        .until(
            "the areas in the selector",
            &format!(
                "{} && {}",
                has_option("area:A1"),
                has_option("area:default")
            ),
        )
        .await;

    browser.js(&choose("area:A1")).await;
    browser
        .until("only the press shop", &format!("{tiles} === 'press-1'"))
        .await;
    browser
        .until(
            "the summary names the area",
            "document.getElementById('plant-summary').innerText.includes('Press shop OEE')",
        )
        .await;

    browser.js(&choose("site:S1")).await;
    browser
        .until(
            "the site's two lines",
            &format!("{tiles} === 'press-1,press-2'"),
        )
        .await;

    browser.js(&choose("area:default")).await;
    browser
        .until("the line no area holds", &format!("{tiles} === 'lathe-1'"))
        .await;

    browser.js(&choose("")).await;
    browser
        .until(
            "the whole plant again",
            "document.querySelectorAll('.tile').length === 3",
        )
        .await;

    // The floor app groups the machines by where they stand (ADR 0062).
    browser.goto(&server.url("/floor#operator/press-1")).await;
    browser
        .until(
            "the floor app to start",
            "document.body.dataset.ready === '1'",
        )
        .await;
    // (Signed in already: the dashboard and the floor app share the session's token.)
    let group = |label: &str, machine: &str| {
        format!(
            "[...document.querySelectorAll('#op-machine optgroup')].some((g) => \
               g.label === '{label}' && g.querySelector('option[value=\"{machine}\"]'))"
        )
    };
    browser
        .until(
            "the machines grouped by site, area and line",
            &format!(
                "{} && {} && {}",
                group("S1 › A1 › L1", "press-1"),
                group("S1 › A2 › L2", "press-2"),
                group("default › default › L3", "lathe-1")
            ),
        )
        .await;
    browser.quit().await;
}
