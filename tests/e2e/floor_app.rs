//! The floor app at `/floor` (issue 14, ADR 0038) in a real headless Chromium, driven over
//! WebDriver: an operator on a phone, a supervisor assigning work, offline capture that
//! merges by floor time, and a read-only auditor. Every view is checked with axe-core
//! (0 serious or critical violations); screenshots go to `<target>/floor-*.png`.
//!
//! Needs Chromium and chromedriver (`scripts/browser.sh`) and axe-core (`scripts/axe.sh`;
//! the test injects `axe.min.js` into the page, the app never ships it).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration as Span, SecondsFormat, Timelike, Utc};
use serde_json::{json, Value};

use crate::support::Server;
use crate::webdriver::Browser;

const ADMIN: &str = "e2e-floor-admin-token-0123456789";
const PHONE: (u32, u32) = (390, 844);
const DESK: (u32, u32) = (1280, 900);
const AXE_VERSION: &str = "4.11.0";

// ---- the API ---------------------------------------------------------------------------

struct Api<'a> {
    server: &'a Server,
    http: reqwest::Client,
}

impl<'a> Api<'a> {
    fn new(server: &'a Server) -> Self {
        Self {
            server,
            http: reqwest::Client::new(),
        }
    }

    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.server.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let (status, v) = self.raw(method.clone(), path, ADMIN, Some(body)).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, v) = self.raw(reqwest::Method::GET, path, ADMIN, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    async fn token(&self, name: &str, role: &str) -> String {
        let v = self
            .post("/api/v1/auth/tokens", json!({ "name": name, "role": role }))
            .await;
        v["token"].as_str().unwrap().to_string()
    }

    async fn machine(&self, id: &str) {
        self.post(
            "/api/v1/machines",
            json!({ "machine_id": id, "type": "press", "line": "L1", "ideal_cycle_time_s": 2.0 }),
        )
        .await;
    }

    async fn state(&self, machine: &str, at: DateTime<Utc>, state: &str) {
        self.post(
            "/api/v1/machines/events",
            json!({ "event_type": "state_changed", "machine_id": machine,
                    "timestamp": ts(at), "state": state }),
        )
        .await;
    }

    /// An order with a one-line BOM (and the stock for it), assigned to `machine`.
    async fn order(&self, id: &str, machine: &str, start: bool) {
        self.send(
            reqwest::Method::PATCH,
            "/api/v1/inventory/update",
            json!({ "item_id": "steel-coil", "item_type": "raw", "location": "RAW-A",
                    "delta": 10000, "reason": "goods receipt" }),
        )
        .await;
        self.post(
            "/api/v1/production-orders",
            json!({ "order_id": id, "product_id": "bracket", "quantity": 100,
                    "bom": [{ "item_id": "steel-coil", "qty_per_unit": 0.5 }],
                    "output_location": "FG" }),
        )
        .await;
        self.post(
            &format!("/api/v1/production-orders/{id}/assign"),
            json!({ "machine_id": machine }),
        )
        .await;
        if start {
            self.post(&format!("/api/v1/production-orders/{id}/start"), json!({}))
                .await;
        }
    }

    async fn kpis(&self, machine: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
        let v = self
            .get(&format!(
                "/api/v1/kpi-metrics?machine_id={machine}&from={}&to={}",
                ts(from),
                ts(to)
            ))
            .await;
        v.as_array()
            .and_then(|rows| rows.first())
            .cloned()
            .unwrap_or_else(|| panic!("no KPI row for {machine}: {v}"))
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Now, to the second (the floor times the app's `datetime-local` field can carry).
fn now_s() -> DateTime<Utc> {
    Utc::now().with_nanosecond(0).unwrap()
}

// ---- the browser -----------------------------------------------------------------------

fn artefact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join(name)
}

async fn open(server: &Server, (width, height): (u32, u32), hash: &str) -> Browser {
    let browser = Browser::start(width.max(600), height).await;
    // Headless Chromium's windows are at least 500 px wide: a phone is emulated.
    browser
        .cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1,
                    "mobile": width < 600 }),
        )
        .await;
    browser.goto(&server.url(&format!("/floor{hash}"))).await;
    browser
        .until("the app to start", "document.body.dataset.ready === '1'")
        .await;
    browser
}

async fn sign_in(browser: &Browser, token: &str, role: &str) {
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
            json!(token)
        ))
        .await;
    browser
        .until(
            "the role's views",
            &format!("document.body.dataset.role === '{role}'"),
        )
        .await;
}

async fn sign_out(browser: &Browser) {
    browser
        .js("document.getElementById('signout').click(); return true;")
        .await;
    browser
        .until("signed out", "!document.getElementById('signin').hidden")
        .await;
}

async fn view(browser: &Browser, hash: &str, section: &str) {
    browser
        .js(&format!("location.hash = {}; return true;", json!(hash)))
        .await;
    browser
        .until(
            section,
            &format!("!document.getElementById('{section}').hidden"),
        )
        .await;
}

/// Runs axe-core on the page; panics on any serious or critical violation.
async fn axe(browser: &Browser, what: &str) {
    axe_on(browser, "document", what).await;
}

/// Runs axe-core on `context` (a JavaScript expression: `document`, or a selector in
/// quotes); panics on any serious or critical violation.
pub(crate) async fn axe_on(browser: &Browser, context: &str, what: &str) {
    let file = std::env::var_os("AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tools = std::env::var_os("SHOPFLOOR_TOOLS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    Path::new(&std::env::var("HOME").unwrap()).join(".local/share/shopfloor")
                });
            tools.join(format!(
                "axe-core-{AXE_VERSION}/node_modules/axe-core/axe.min.js"
            ))
        });
    let source = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!("{}: {e}; run scripts/axe.sh", file.display());
    });
    browser
        .js(&format!("if (!window.axe) {{ {source}\n }} return true;"))
        .await;
    let violations = browser
        .js_async(&format!(
            "axe.run({context}, {{ resultTypes: ['violations'] }}).then(r => done(r.violations\
               .filter(v => v.impact === 'serious' || v.impact === 'critical')\
               .map(v => ({{ id: v.id, impact: v.impact, help: v.help,\
                            nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5) }}))))\
               .catch(e => done([{{ id: 'axe failed', help: String(e) }}]));"
        ))
        .await;
    assert_eq!(
        violations,
        json!([]),
        "axe-core: serious or critical violations on {what}"
    );
}

/// Sets the app's "when it happened" field to `at` (in the browser's time zone).
fn when(at: DateTime<Utc>) -> String {
    format!(
        "{{ const d = new Date('{}'); const p = n => String(n).padStart(2, '0'); \
         document.getElementById('op-when').value = `${{d.getFullYear()}}-${{p(d.getMonth() + 1)}}-${{p(d.getDate())}}T${{p(d.getHours())}}:${{p(d.getMinutes())}}:${{p(d.getSeconds())}}`; }}",
        ts(at)
    )
}

/// An expression: clicks `selector` if it is shown, and says whether it did.
fn click(selector: &str) -> String {
    format!(
        "(() => {{ const b = document.querySelector({}); \
         if (!b || !b.getClientRects().length) return false; b.click(); return true; }})()",
        json!(selector)
    )
}

/// A script that returns `expression`.
fn ret(selector: &str) -> String {
    format!("return {}", click(selector))
}

/// The write controls visible on the page.
const VISIBLE_WRITES: &str =
    "[...document.querySelectorAll('form.write, button[data-cmd], #op-when')]\
    .filter(e => e.getClientRects().length > 0).map(e => e.id || e.textContent.trim())";

/// Waits until `check` holds on the server's answer to `path`.
async fn until_api(api: &Api<'_>, what: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(45);
    loop {
        let v = api.get(path).await;
        if check(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
}

async fn stream_len(api: &Api<'_>, machine: &str) -> usize {
    let v = api
        .get(&format!("/api/v1/streams/machine/{machine}/events"))
        .await;
    v.as_array()
        .or_else(|| v["events"].as_array())
        .map(Vec::len)
        .unwrap_or_else(|| panic!("no events array: {v}"))
}

// ---- 1. the operator on a phone ----------------------------------------------------------

#[tokio::test]
async fn an_operator_on_a_phone_classifies_a_stop_reports_parts_and_completes_the_order() {
    let server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let api = Api::new(&server);
    let t0 = now_s();
    api.machine("press-7").await;
    api.order("PO-7001", "press-7", true).await;
    api.post(
        "/api/v1/maintenance/schedule",
        json!({ "machine_id": "press-7", "kind": "preventive", "description": "Die inspection",
                "scheduled_date": ts(t0 + Span::hours(2)) }),
    )
    .await;
    api.state("press-7", t0 - Span::minutes(40), "running")
        .await;
    api.state("press-7", t0 - Span::minutes(10), "idle").await;
    let token = api.token("op-anna", "operator").await;

    let browser = open(&server, PHONE, "#operator/press-7").await;
    sign_in(&browser, &token, "operator").await;
    browser
        .until(
            "the machine stopped, its order and the stop to classify",
            "document.getElementById('op-state').dataset.state === 'idle' && \
             document.getElementById('op-order-id').textContent === 'PO-7001' && \
             document.querySelector('#op-stops li[data-current=true] select') && \
             document.querySelector('#op-tasks li')",
        )
        .await;
    // Big targets: every visible control is at least 48 px high.
    let small = browser
        .js("return [...document.querySelectorAll('#view-operator button, #view-operator input, #view-operator select')]\
             .filter(e => e.getClientRects().length && e.getBoundingClientRect().height < 47.5)\
             .map(e => e.id || e.textContent)")
        .await;
    assert_eq!(small, json!([]), "controls smaller than 48 px");
    let width = browser
        .js("return document.documentElement.scrollWidth")
        .await;
    assert!(
        width.as_u64().unwrap() <= u64::from(PHONE.0),
        "the page scrolls sideways: {width}"
    );
    axe(&browser, "the operator view").await;
    browser
        .screenshot(&artefact("floor-operator-phone.png"))
        .await;
    browser
        .full_page_screenshot(&artefact("floor-operator-phone-full.png"))
        .await;

    // Classify the current stop.
    browser
        .js(
            "const s = document.querySelector('#op-stops li[data-current=true] select'); \
             s.value = 'small_stop.jam'; s.dispatchEvent(new Event('change')); return true;",
        )
        .await;
    assert_eq!(
        browser
            .js(&ret(
                "#op-stops li[data-current=true] button[data-cmd=classify]"
            ))
            .await,
        true
    );
    until_api(
        &api,
        "the stop classified",
        &format!(
            "/api/v1/machines/press-7/states?from={}&to={}",
            ts(t0 - Span::hours(1)),
            ts(t0 + Span::hours(1))
        ),
        |v| {
            v.as_array().is_some_and(|rows| {
                rows.iter()
                    .rev()
                    .find(|r| r["state"] == "idle")
                    .is_some_and(|r| r["final_reason_code"] == "small_stop.jam")
            })
        },
    )
    .await;
    browser
        .until(
            "no stop left to classify now",
            "!document.querySelector('#op-stops li[data-current=true]')",
        )
        .await;

    // 10 good and 2 scrap, with the keyboard: with scrap, a scrap reason is required
    // (Enter alone is held back by the browser), chosen by type-ahead; Enter submits.
    let before = stream_len(&api, "press-7").await;
    browser.type_into("#op-good", "10").await;
    browser.type_into("#op-scrap", "2\u{E007}").await;
    assert_eq!(
        browser
            .js("const s = document.getElementById('op-scrap-reason'); \
                 return [s.required, s.validity.valueMissing, s.options.length > 5, \
                 document.querySelector('label[for=op-scrap-reason]').textContent]")
            .await,
        json!([true, true, true, "Scrap reason"]),
        "the scrap reason is not asked for"
    );
    assert_eq!(
        stream_len(&api, "press-7").await,
        before,
        "parts sent without a scrap reason"
    );
    browser.keys("#op-scrap-reason", "Surface").await;
    assert_eq!(
        browser
            .js("return document.getElementById('op-scrap-reason').value")
            .await,
        "scrap.surface"
    );
    browser.keys("#op-scrap", "\u{E007}").await;
    browser
        .until(
            "the order's figures",
            "document.getElementById('op-order-figures').textContent.startsWith('10 good, 2 scrap')",
        )
        .await;
    let scrap = until_api(
        &api,
        "the scrap by reason",
        &format!(
            "/api/v1/scrap?machine_id=press-7&from={}&to={}",
            ts(t0 - Span::hours(1)),
            ts(Utc::now() + Span::minutes(5))
        ),
        |v| v["scrap_count"] == 2,
    )
    .await;
    assert_eq!(
        scrap["by_reason"],
        json!([{ "scrap_reason": "scrap.surface", "name": "Surface defect", "scrap": 2, "reports": 1, "share": 1.0 }]),
        "{scrap}"
    );

    // The maintenance due on the machine: acknowledged from the keyboard (focus, Enter).
    browser
        .js("document.querySelector('#op-tasks li button[data-cmd=task]').focus(); return true;")
        .await;
    assert_eq!(
        browser
            .js("return document.activeElement.textContent")
            .await,
        "Acknowledge"
    );
    browser
        .keys("#op-tasks li button[data-cmd=task]", "\u{E007}")
        .await;
    let tasks = until_api(
        &api,
        "the task acknowledged",
        "/api/v1/maintenance/tasks?machine_id=press-7",
        |v| v[0]["acknowledged_by"] == "op-anna",
    )
    .await;
    assert_eq!(tasks[0]["status"], "scheduled", "{tasks}");
    browser
        .until(
            "the task shown as acknowledged, without its button",
            "document.querySelector('#op-tasks li[data-acknowledged=true]') && \
             !document.querySelector('#op-tasks li button[data-cmd=task]') && \
             document.querySelector('#op-tasks li').textContent.includes('Acknowledged by op-anna')",
        )
        .await;

    // Complete the order: in the operator's own view when the role may (the people
    // branch gives operators the order commands); else the button is not shown to the
    // operator and the line's supervisor completes it on the same phone.
    let me = api
        .raw(reqwest::Method::GET, "/api/v1/auth/me", &token, None)
        .await
        .1;
    let operator_may = me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "orders");
    if !operator_may {
        assert_eq!(
            browser
                .js(&ret("#op-order button[data-action=complete]"))
                .await,
            false,
            "the operator is shown a Complete button the server would refuse"
        );
        sign_out(&browser).await;
        let lead = api.token("lead-1", "supervisor").await;
        sign_in(&browser, &lead, "supervisor").await;
        view(&browser, "operator/press-7", "view-operator").await;
    }
    browser
        .until(
            "the Complete button",
            &click("#op-order button[data-action=complete]"),
        )
        .await;
    browser
        .until(
            "the order gone from the machine",
            "!document.getElementById('op-order-none').hidden",
        )
        .await;

    let order = api.get("/api/v1/production-orders/PO-7001").await;
    assert_eq!(order["status"], "completed", "{order}");
    assert_eq!(order["good_count"], 10, "{order}");
    assert_eq!(order["scrap_count"], 2, "{order}");
    let kpi = api
        .kpis(
            "press-7",
            t0 - Span::hours(1),
            Utc::now() + Span::seconds(1),
        )
        .await;
    assert_eq!(kpi["good_count"], 10, "{kpi}");
    assert_eq!(kpi["scrap_count"], 2, "{kpi}");
    assert_eq!(
        browser
            .js("return document.getElementById('outbox').hidden")
            .await,
        true,
        "a command is left in the outbox"
    );
    browser
        .screenshot(&artefact("floor-operator-phone-done.png"))
        .await;
    browser.quit().await;
}

// ---- the supervisor's settings: reason codes and shifts (ADR 0053) ----------------------

#[tokio::test]
async fn a_supervisor_edits_reason_codes_and_shifts_and_operators_get_them() {
    let server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let api = Api::new(&server);
    api.machine("mill-2").await;
    let t0 = now_s();
    api.state("mill-2", t0 - Span::minutes(30), "running").await;
    api.state("mill-2", t0 - Span::minutes(10), "down").await;
    let lead = api.token("lead-3", "supervisor").await;

    let desk = open(&server, DESK, "#supervisor").await;
    sign_in(&desk, &lead, "supervisor").await;
    desk.until(
        "the reason codes and the line to give shifts",
        "document.querySelector('#sv-reasons tr[data-code=\"small_stop.jam\"]') && \
         document.querySelector('#sv-shift-line option[value=\"L1\"]') && \
         document.getElementById('sv-reason').dataset.allowed === '1'",
    )
    .await;

    // A new code, and a built-in one retired.
    desk.js(
        "const v = (id, x) => { document.getElementById(id).value = x; }; \
         v('sv-reason-code', 'breakdown.coolant'); v('sv-reason-name', 'Coolant failure'); \
         v('sv-reason-category', 'unplanned'); v('sv-reason-loss', 'breakdown'); \
         document.getElementById('sv-reason').requestSubmit(); return true;",
    )
    .await;
    desk.until(
        "the new code listed",
        "document.querySelector('#sv-reasons tr[data-code=\"breakdown.coolant\"]') !== null",
    )
    .await;
    assert_eq!(
        desk.js(&ret(
            "#sv-reasons tr[data-code=\"small_stop.jam\"] button[data-act=retire]"
        ))
        .await,
        true
    );
    desk.until(
        "small_stop.jam retired",
        "document.querySelector('#sv-reasons tr[data-code=\"small_stop.jam\"]').dataset.retired === '1'",
    )
    .await;

    // Two shifts for line L1.
    desk.js(
        "document.getElementById('sv-shift-add').click(); document.getElementById('sv-shift-add').click(); \
         const set = (sel, x) => { const e = document.querySelector(sel); e.value = x; \
           e.dispatchEvent(new Event('change', { bubbles: true })); }; \
         set('#sv-shift-rows input[data-row=\"0\"][data-field=shift_name]', 'early'); \
         set('#sv-shift-rows input[data-row=\"1\"][data-field=shift_name]', 'late'); \
         set('#sv-shift-rows input[data-row=\"1\"][data-field=start_time]', '14:00'); \
         set('#sv-shift-rows input[data-row=\"1\"][data-field=end_time]', '22:00'); \
         const sat = document.querySelector('#sv-shift-rows input[data-row=\"1\"][data-day=\"6\"]'); \
         sat.click(); \
         document.getElementById('sv-shifts').requestSubmit(); return true;",
    )
    .await;
    let calendar = until_api(&api, "L1's shifts", "/api/v1/calendar", |c| {
        c["lines"][0]["shifts"]
            .as_array()
            .is_some_and(|s| s.len() == 2)
    })
    .await;
    let shifts = &calendar["lines"][0]["shifts"];
    assert_eq!(calendar["lines"][0]["line"], "L1", "{calendar}");
    assert_eq!(shifts[0]["shift_name"], "early", "{calendar}");
    assert_eq!(shifts[0]["start_time"], "06:00", "{calendar}");
    assert_eq!(shifts[1]["shift_name"], "late", "{calendar}");
    assert_eq!(shifts[1]["end_time"], "22:00", "{calendar}");
    assert_eq!(shifts[1]["days"], json!([1, 2, 3, 4, 5, 6]), "{calendar}");

    // A holiday of one site (ADR 0060, 0062): the site is offered once the hierarchy has it.
    api.post(
        "/api/v1/hierarchy/nodes",
        json!({ "node_id": "north", "level": "site", "name": "North" }),
    )
    .await;
    desk.until(
        "the site offered for a holiday",
        "document.querySelector('#sv-holiday-site option[value=\"north\"]') !== null",
    )
    .await;
    desk.js(
        "const set = (id, x) => { const e = document.getElementById(id); e.value = x; \
           e.dispatchEvent(new Event('input', { bubbles: true })); }; \
         set('sv-holiday-name', 'North stock-take'); set('sv-holiday-from', '2026-12-28T06:00'); \
         set('sv-holiday-to', '2026-12-28T14:00'); set('sv-holiday-site', 'north'); \
         document.getElementById('sv-holiday').requestSubmit(); return true;",
    )
    .await;
    let calendar = until_api(&api, "the site's holiday", "/api/v1/calendar", |c| {
        c["non_working"].as_array().is_some_and(|n| n.len() == 1)
    })
    .await;
    assert_eq!(calendar["non_working"][0]["site"], "north", "{calendar}");
    desk.until(
        "the site's holiday listed and the form reset",
        "document.querySelector('#sv-holidays tr[data-holiday]') !== null && \
         document.getElementById('sv-holiday-site').value === ''",
    )
    .await;
    desk.js("document.querySelector('#sv-holidays tr[data-holiday] button').click(); return true;")
        .await;
    until_api(
        &api,
        "the site's holiday removed",
        "/api/v1/calendar",
        |c| c["non_working"].as_array().is_some_and(|n| n.is_empty()),
    )
    .await;

    // A holiday and a day off for L1 (ADR 0060), then the holiday removed again.
    desk.js(
        "const set = (id, x) => { const e = document.getElementById(id); e.value = x; \
           e.dispatchEvent(new Event('input', { bubbles: true })); }; \
         set('sv-holiday-name', 'Plant holiday'); set('sv-holiday-from', '2026-12-24T00:00'); \
         set('sv-holiday-to', '2026-12-27T00:00'); \
         document.getElementById('sv-holiday').requestSubmit(); \
         set('sv-dayoff-date', '2026-12-31'); \
         document.getElementById('sv-dayoff').requestSubmit(); return true;",
    )
    .await;
    let calendar = until_api(
        &api,
        "the holiday and the day off",
        "/api/v1/calendar",
        |c| {
            c["non_working"].as_array().is_some_and(|n| n.len() == 1)
                && c["exceptions"].as_array().is_some_and(|x| x.len() == 1)
        },
    )
    .await;
    assert_eq!(
        calendar["non_working"][0]["name"], "Plant holiday",
        "{calendar}"
    );
    assert_eq!(
        calendar["non_working"][0]["from"], "2026-12-24T00:00:00",
        "{calendar}"
    );
    assert_eq!(calendar["exceptions"][0]["line"], "L1", "{calendar}");
    assert_eq!(calendar["exceptions"][0]["day"], "2026-12-31", "{calendar}");
    assert_eq!(calendar["exceptions"][0]["shifts"], json!([]), "{calendar}");
    // A 4-on-4-off rotation for L1 from the editor's preset, with a break on the day
    // shift (ADR 0060), then loaded back into the editor from the server's calendar.
    desk.js(
        "const set = (el, x) => { el.value = x; \
           el.dispatchEvent(new Event('change', { bubbles: true })); }; \
         set(document.getElementById('sv-rot-preset'), '4-on-4-off'); \
         set(document.getElementById('sv-rot-from'), '2026-11-30'); \
         set(document.getElementById('sv-rot-anchor'), '2026-11-30'); \
         set(document.querySelector('#sv-rot-shifts input[data-shift=\"0\"][data-field=breaks]'), '10:00-10:30'); \
         document.getElementById('sv-rotation').requestSubmit(); return true;",
    )
    .await;
    let calendar = until_api(&api, "L1's rotation", "/api/v1/calendar", |c| {
        c["rotations"].as_array().is_some_and(|r| r.len() == 1)
    })
    .await;
    let rotation = &calendar["rotations"][0];
    assert_eq!(rotation["line"], "L1", "{calendar}");
    assert_eq!(rotation["effective_from"], "2026-11-30", "{calendar}");
    let days = rotation["rotation"]["days"].as_array().unwrap();
    assert_eq!(days.len(), 8, "{calendar}");
    let crews: Vec<String> = days
        .iter()
        .map(|d| {
            format!(
                "{}{}",
                d[0]["team"].as_str().unwrap(),
                d[1]["team"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        crews,
        ["AC", "AC", "AC", "AC", "BD", "BD", "BD", "BD"],
        "{calendar}"
    );
    assert_eq!(
        days[0][0]["breaks"],
        json!([{"start": "10:00:00", "end": "10:30:00"}]),
        "{calendar}"
    );
    assert_eq!(days[0][1]["start"], "18:00:00", "{calendar}");
    // The page has the new calendar once it lists the rotation.
    desk.until(
        "the rotation listed",
        "document.querySelector('#sv-rotations tbody tr') !== null",
    )
    .await;
    desk.js(
        "const d = document.getElementById('sv-rot-days'); d.value = 1; \
         d.dispatchEvent(new Event('change', { bubbles: true })); \
         document.getElementById('sv-rot-load').click(); return true;",
    )
    .await;
    desk.until(
        "the rotation back in the editor",
        "document.querySelectorAll('#sv-rot-grid tbody tr').length === 8 && \
         document.querySelector('#sv-rot-grid tr[data-cycle-day=\"5\"] input[data-field=team]').value === 'B' && \
         document.querySelector('#sv-rot-shifts input[data-field=breaks]').value === '10:00-10:30'",
    )
    .await;
    desk.until(
        "the holiday listed",
        "document.querySelector('#sv-holidays tr[data-holiday] button') !== null && \
         document.querySelector('#sv-exceptions tr[data-day=\"2026-12-31\"]') !== null",
    )
    .await;
    axe(&desk, "the supervisor's calendar").await;
    desk.js("document.querySelector('#sv-holidays tr[data-holiday] button').click(); return true;")
        .await;
    until_api(&api, "the holiday removed", "/api/v1/calendar", |c| {
        c["non_working"].as_array().is_some_and(|n| n.is_empty())
    })
    .await;
    axe(&desk, "the supervisor's settings").await;

    // Quality holds (ADR 0057): a received lot put on hold from the card, then released
    // with the decision's reason; both are events with the supervisor as actor.
    api.post(
        "/api/v1/lots",
        json!({ "item_id": "steel", "item_type": "raw", "lot_id": "S-77",
                "supplier_lot": "SUP-9", "location": "RAW", "quantity": 40 }),
    )
    .await;
    desk.js(
        "const set = (id, x) => { document.getElementById(id).value = x; }; \
         set('sv-hold-item', 'steel'); set('sv-hold-lot', 'S-77'); \
         set('sv-hold-reason', 'supplier recall SUP-9'); \
         document.getElementById('sv-hold').requestSubmit(); return true;",
    )
    .await;
    desk.until(
        "the held lot listed",
        "document.querySelector('#sv-held tr[data-held=\"steel/S-77\"] button[data-decision=release]') !== null",
    )
    .await;
    let lot = api.get("/api/v1/lots/steel/S-77").await;
    assert_eq!(lot["status"], "held", "{lot}");
    assert_eq!(lot["hold_reason"], "supplier recall SUP-9", "{lot}");
    axe(&desk, "the supervisor's quality holds").await;
    desk.js(
        "document.getElementById('sv-decision-reason').value = 'certificate received'; \
         document.querySelector('#sv-held tr[data-held=\"steel/S-77\"] button[data-decision=release]').click(); \
         return true;",
    )
    .await;
    desk.until(
        "the released lot gone from the holds",
        "document.querySelector('#sv-held tr[data-held=\"steel/S-77\"]') === null && \
         !document.getElementById('sv-held-none').hidden",
    )
    .await;
    let lot = api.get("/api/v1/lots/steel/S-77").await;
    assert_eq!(lot["status"], "available", "{lot}");
    let actors: Vec<&str> = lot["movements"]
        .as_array()
        .map(|l| l.iter().filter_map(|m| m["actor"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        actors.iter().filter(|a| **a == "lead-3").count() >= 2,
        "the hold and the release by the supervisor: {lot}"
    );
    desk.js("document.getElementById('sv-reason').scrollIntoView(); return true;")
        .await;
    desk.screenshot(&artefact("floor-supervisor-settings.png"))
        .await;

    let codes = api.get("/api/v1/reason-codes").await;
    let find = |code: &str| {
        codes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["code"] == code)
            .cloned()
            .unwrap_or_else(|| panic!("{code}: {codes}"))
    };
    assert_eq!(find("breakdown.coolant")["name"], "Coolant failure");
    assert_eq!(find("small_stop.jam")["retired"], true);
    let log = api
        .get("/api/v1/streams/reason_catalogue/plant/events")
        .await;
    assert_eq!(log["events"][0]["payload"]["by"], "lead-3", "{log}");

    // The operator's stop can be given the new code, and not the retired one.
    let op = api.token("op-dana", "operator").await;
    let phone = open(&server, PHONE, "#operator/mill-2").await;
    sign_in(&phone, &op, "operator").await;
    phone
        .until(
            "the stop to classify",
            "document.querySelector('#op-stops select') !== null",
        )
        .await;
    let offered = phone
        .js("return [...document.querySelectorAll('#op-stops select option')].map(o => o.value)")
        .await;
    let offered: Vec<&str> = offered
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(offered.contains(&"breakdown.coolant"), "{offered:?}");
    assert!(!offered.contains(&"small_stop.jam"), "{offered:?}");
    desk.quit().await;
    phone.quit().await;
}

// ---- 2. the supervisor assigns work, the operator sees it live --------------------------

#[tokio::test]
async fn a_supervisor_assigns_an_order_and_the_operator_sees_it_live() {
    let server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let api = Api::new(&server);
    api.machine("cnc-3").await;
    api.post(
        "/api/v1/operators",
        json!({ "operator_id": "op-ben", "name": "Ben Okafor", "badge_id": "B-17", "skills": ["cnc"] }),
    )
    .await;
    api.send(
        reqwest::Method::PATCH,
        "/api/v1/inventory/update",
        json!({ "item_id": "bar-stock", "item_type": "raw", "location": "RAW-A",
                "delta": 500, "reason": "goods receipt" }),
    )
    .await;
    let lead = api.token("lead-2", "supervisor").await;
    let ben = api.token("op-ben", "operator").await;

    let phone = open(&server, PHONE, "#operator/cnc-3").await;
    sign_in(&phone, &ben, "operator").await;
    phone
        .until(
            "no order yet",
            "!document.getElementById('op-order-none').hidden",
        )
        .await;
    phone.js("window.__marker = 1; return true;").await;

    let desk = open(&server, DESK, "#supervisor").await;
    sign_in(&desk, &lead, "supervisor").await;
    desk.until(
        "the operator to pick",
        "document.querySelector('#sv-operators input[value=\"op-ben\"]') && \
         document.querySelector('#sv-machine option[value=\"cnc-3\"]')",
    )
    .await;
    axe(&desk, "the supervisor view").await;
    desk.js(
        "const v = (id, x) => { document.getElementById(id).value = x; }; \
         v('sv-order-id', 'PO-8001'); v('sv-product', 'shaft'); v('sv-quantity', 40); \
         v('sv-bom', 'bar-stock 1.2'); v('sv-machine', 'cnc-3'); \
         document.querySelector('#sv-operators input[value=\"op-ben\"]').checked = true; \
         document.getElementById('sv-order').requestSubmit(); return true;",
    )
    .await;
    desk.until(
        "the order in the list",
        "document.querySelector('#sv-orders tr[data-order=\"PO-8001\"]')",
    )
    .await;

    phone
        .until(
            "the order on the operator's phone, live",
            "document.getElementById('op-order-id').textContent === 'PO-8001' && \
             document.getElementById('op-order-people').textContent.includes('op-ben')",
        )
        .await;
    assert_eq!(
        phone.js("return window.__marker === 1").await,
        true,
        "the page was reloaded"
    );
    let order = api.get("/api/v1/production-orders/PO-8001").await;
    assert_eq!(order["assigned_machine"], "cnc-3", "{order}");
    let assigned = order["assigned_operators"]
        .as_array()
        .expect("assigned_operators");
    assert!(
        assigned
            .iter()
            .any(|p| p == "op-ben" || p["operator_id"] == "op-ben"),
        "{order}"
    );
    axe(&phone, "the operator view with an assigned order").await;
    phone
        .screenshot(&artefact("floor-operator-assigned.png"))
        .await;
    desk.screenshot(&artefact("floor-supervisor-assign.png"))
        .await;

    // Ben clocks on the order from his phone; the labour figures name it.
    phone
        .until(
            "Ben picked as the operator",
            "document.getElementById('op-person').value === 'op-ben'",
        )
        .await;
    assert_eq!(
        phone
            .js(&ret("#op-order button[data-action=clock-on]"))
            .await,
        true
    );
    until_api(
        &api,
        "Ben's labour on the order",
        "/api/v1/operators/op-ben/labour",
        |v| v.to_string().contains("PO-8001"),
    )
    .await;
    assert_eq!(
        phone
            .js("return document.getElementById('outbox').hidden")
            .await,
        true,
        "the clock-on was not accepted"
    );
    phone.quit().await;
    desk.quit().await;
}

// ---- 3. offline ---------------------------------------------------------------------------

#[tokio::test]
async fn actions_recorded_offline_reach_the_server_once_and_merge_by_floor_time() {
    let server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let api = Api::new(&server);

    // The PWA's pieces, with their content types; the worker may control /floor.
    for (path, content_type) in [
        ("/floor", "text/html"),
        ("/assets/floor.webmanifest", "application/manifest+json"),
        ("/assets/floor-sw.js", "text/javascript"),
    ] {
        let res = api.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let got = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(got.starts_with(content_type), "{path}: {got}");
        if path.ends_with("sw.js") {
            assert_eq!(res.headers()["service-worker-allowed"], "/floor");
        }
        if path.ends_with("manifest") {
            let manifest: Value = res.json().await.unwrap();
            assert_eq!(manifest["scope"], "/floor");
            assert_eq!(manifest["start_url"], "/floor");
        }
    }

    let t0 = now_s();
    for m in ["off-a", "off-b"] {
        api.machine(m).await;
        api.state(m, t0 - Span::minutes(40), "running").await;
    }
    let token = api.token("op-cara", "operator").await;

    let browser = open(&server, PHONE, "#operator/off-a").await;
    sign_in(&browser, &token, "operator").await;
    browser
        .until(
            "the machine and a controlling service worker",
            "document.getElementById('op-state').dataset.state === 'running' && \
             navigator.serviceWorker.controller !== null",
        )
        .await;

    browser.set_offline(true).await;
    browser
        .until(
            "the app to see it is offline",
            "document.getElementById('net').dataset.net === 'offline'",
        )
        .await;
    let (down_at, up_at, parts_at) = (
        t0 - Span::minutes(18),
        t0 - Span::minutes(11),
        t0 - Span::minutes(6),
    );
    browser.js(&format!("{} return true;", when(down_at))).await;
    assert_eq!(
        browser.js(&ret("#op-state button[data-state=down]")).await,
        true
    );
    browser
        .until(
            "1 pending",
            "document.querySelectorAll('#outbox-list li[data-state=pending]').length === 1",
        )
        .await;
    browser.js(&format!("{} return true;", when(up_at))).await;
    assert_eq!(
        browser
            .js(&ret("#op-state button[data-state=running]"))
            .await,
        true
    );
    browser
        .until(
            "2 pending",
            "document.querySelectorAll('#outbox-list li[data-state=pending]').length === 2",
        )
        .await;
    browser
        .js(&format!(
            "{} document.getElementById('op-good').value = 10; \
             document.getElementById('op-scrap').value = 2; \
             document.getElementById('op-scrap-reason').value = 'scrap.dimensional'; \
             document.getElementById('op-parts').requestSubmit(); return true;",
            when(parts_at)
        ))
        .await;
    browser
        .until(
            "3 pending",
            "document.querySelectorAll('#outbox-list li[data-state=pending]').length === 3",
        )
        .await;

    // Reload while still offline: the service worker serves the app, the outbox is kept.
    browser.goto(&server.url("/floor#operator/off-a")).await;
    browser
        .until(
            "the app, offline, with its 3 pending commands",
            "document.body.dataset.ready === '1' && document.body.dataset.role === 'operator' && \
             document.querySelectorAll('#outbox-list li[data-state=pending]').length === 3 && \
             document.getElementById('net').textContent.includes('3 waiting')",
        )
        .await;
    assert_eq!(
        browser
            .js("return navigator.serviceWorker.controller !== null")
            .await,
        true,
        "the reloaded page has no service worker"
    );
    // The worker, cut off too, answers the shell from its cache.
    let served = browser
        .js_async(
            "fetch('/assets/floor.css').then(r => done(r.headers.get('x-served-from')), \
             e => done(String(e)));",
        )
        .await;
    assert_eq!(served, "service-worker-cache");
    axe(&browser, "the operator view, offline").await;
    browser
        .screenshot(&artefact("floor-operator-offline.png"))
        .await;
    let before = stream_len(&api, "off-a").await;

    browser.set_offline(false).await;
    browser
        .until(
            "the outbox emptied",
            "document.getElementById('outbox').hidden",
        )
        .await;

    // The same actions on the second machine, sent online.
    api.post(
        "/api/v1/machines/events",
        json!({ "events": [
            { "event_type": "state_changed", "machine_id": "off-b", "timestamp": ts(down_at), "state": "down" },
            { "event_type": "state_changed", "machine_id": "off-b", "timestamp": ts(up_at), "state": "running" },
            { "event_type": "parts_produced", "machine_id": "off-b", "timestamp": ts(parts_at), "good": 10, "scrap": 2 },
        ]}),
    )
    .await;
    assert_eq!(
        stream_len(&api, "off-a").await,
        before + 3,
        "each of the 3 commands once"
    );
    assert_eq!(
        stream_len(&api, "off-a").await,
        stream_len(&api, "off-b").await
    );

    let (from, to) = (t0 - Span::minutes(20), t0);
    let kpi_b = until_api(
        &api,
        "off-b's parts in its KPIs",
        &format!(
            "/api/v1/kpi-metrics?machine_id=off-b&from={}&to={}",
            ts(from),
            ts(to)
        ),
        |v| v[0]["good_count"] == 10 && v[0]["downtime_s"] == 420.0,
    )
    .await;
    let kpi_a = until_api(
        &api,
        "off-a's parts in its KPIs",
        &format!(
            "/api/v1/kpi-metrics?machine_id=off-a&from={}&to={}",
            ts(from),
            ts(to)
        ),
        |v| v[0]["good_count"] == 10 && v[0]["downtime_s"] == 420.0,
    )
    .await;
    for field in [
        "good_count",
        "scrap_count",
        "run_time_s",
        "downtime_s",
        "planned_production_time_s",
        "availability",
        "performance",
        "quality",
        "oee",
    ] {
        assert_eq!(
            kpi_a[0][field], kpi_b[0][field],
            "{field}: {kpi_a} vs {kpi_b}"
        );
    }
    assert!(
        kpi_a[0]["downtime_s"].as_f64().unwrap() >= 7.0 * 60.0 - 1.0,
        "{kpi_a}"
    );
    browser.quit().await;
}

// ---- 4. the auditor; the admin's views --------------------------------------------------

#[tokio::test]
async fn an_auditor_sees_no_write_control_and_a_forged_write_is_refused() {
    let server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let api = Api::new(&server);
    let t0 = now_s();
    api.machine("weld-4").await;
    api.order("PO-9001", "weld-4", true).await;
    api.state("weld-4", t0 - Span::minutes(30), "running").await;
    api.state("weld-4", t0 - Span::minutes(5), "down").await;
    api.post(
        "/api/v1/maintenance/schedule",
        json!({ "machine_id": "weld-4", "kind": "corrective", "description": "Torch liner",
                "scheduled_date": ts(t0 + Span::hours(1)) }),
    )
    .await;
    let auditor = api.token("audit-1", "auditor").await;

    let browser = open(&server, DESK, "").await;
    sign_in(&browser, &auditor, "auditor").await;
    for (hash, section, ready) in [
        (
            "operator/weld-4",
            "view-operator",
            "document.getElementById('op-order-id').textContent === 'PO-9001' && \
             document.querySelector('#op-stops li') && document.querySelector('#op-tasks li')",
        ),
        (
            "supervisor",
            "view-supervisor",
            "document.querySelector('#sv-orders tr[data-order=\"PO-9001\"]') && \
             document.querySelector('#sv-stops tbody tr') && document.querySelector('#sv-backlog tbody tr')",
        ),
    ] {
        view(&browser, hash, section).await;
        browser.until(section, ready).await;
        assert_eq!(
            browser.js(&format!("return {VISIBLE_WRITES}")).await,
            json!([]),
            "write controls shown to an auditor on {section}"
        );
        axe(&browser, section).await;
    }
    // No admin view for an auditor.
    assert_eq!(
        browser
            .js("return document.querySelector('#tabs a[data-view=admin]').getClientRects().length")
            .await,
        0
    );
    // A write forged from the page's own script, with the page's token: 403.
    let forged = browser
        .js_async(
            "const h = { Authorization: 'Bearer ' + sessionStorage.getItem('shopfloor.token'), \
                         'Content-Type': 'application/json' }; \
             Promise.all([ \
               fetch('/api/v1/production-orders/PO-9001/hold', { method: 'POST', headers: h, body: '{}' }), \
               fetch('/api/v1/machines/events', { method: 'POST', headers: h, body: JSON.stringify( \
                 { event_type: 'parts_produced', machine_id: 'weld-4', timestamp: new Date().toISOString(), good: 1, scrap: 0 }) }), \
             ]).then(rs => done(rs.map(r => r.status)), e => done(String(e)));",
        )
        .await;
    assert_eq!(forged, json!([403, 403]));
    let order = api.get("/api/v1/production-orders/PO-9001").await;
    assert_eq!(order["status"], "in_progress");
    assert_eq!(order["good_count"], 0);
    browser.screenshot(&artefact("floor-auditor.png")).await;

    // The admin sees every view with its controls; they pass axe too.
    sign_out(&browser).await;
    sign_in(&browser, ADMIN, "admin").await;
    view(&browser, "admin", "view-admin").await;
    browser
        .until(
            "the tokens",
            "document.querySelector('#ad-tokens tr[data-token=\"audit-1\"] button[data-cmd=revoke]')",
        )
        .await;
    axe(&browser, "the admin view").await;
    browser.screenshot(&artefact("floor-admin.png")).await;
    browser
        .js(&ret(
            "#ad-tokens tr[data-token=\"audit-1\"] button[data-cmd=revoke]",
        ))
        .await;
    browser
        .until(
            "the token revoked",
            "document.querySelector('#ad-tokens tr[data-token=\"audit-1\"]').innerText.includes('revoked')",
        )
        .await;
    view(&browser, "supervisor", "view-supervisor").await;
    browser
        .until(
            "the order's actions",
            "document.querySelector('#sv-orders tr[data-order=\"PO-9001\"] button[data-action=hold]')",
        )
        .await;
    axe(&browser, "the supervisor view").await;
    browser.screenshot(&artefact("floor-supervisor.png")).await;
    let (status, _) = api
        .raw(reqwest::Method::GET, "/api/v1/auth/me", &auditor, None)
        .await;
    assert_eq!(status, 401, "the revoked token still works");

    // A command made offline and refused on replay (the order was completed meanwhile)
    // stays on screen with the server's reason until it is dismissed.
    browser.set_offline(true).await;
    browser
        .until(
            "offline",
            "document.getElementById('net').dataset.net === 'offline'",
        )
        .await;
    assert_eq!(
        browser
            .js(&ret(
                "#sv-orders tr[data-order=\"PO-9001\"] button[data-action=hold]"
            ))
            .await,
        true
    );
    browser
        .until(
            "the hold pending",
            "document.querySelector('#outbox-list li[data-state=pending]')",
        )
        .await;
    api.post("/api/v1/production-orders/PO-9001/complete", json!({}))
        .await;
    browser.set_offline(false).await;
    let refused = browser
        .until(
            "the hold refused, with the reason",
            "document.querySelector('#outbox-list li[data-state=refused]')?.innerText",
        )
        .await;
    assert!(
        refused.as_str().unwrap().contains("PO-9001: hold"),
        "{refused}"
    );
    assert_eq!(
        api.get("/api/v1/production-orders/PO-9001").await["status"],
        "completed"
    );
    axe(&browser, "a refused command").await;
    browser.screenshot(&artefact("floor-refused.png")).await;
    assert_eq!(
        browser
            .js(&ret("#outbox-list li[data-state=refused] button"))
            .await,
        true
    );
    browser
        .until(
            "the outbox empty",
            "document.getElementById('outbox').hidden",
        )
        .await;
    browser.quit().await;
}
