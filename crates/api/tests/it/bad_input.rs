//! Hostile input on the JSON bodies: oversized bodies, deeply nested JSON, huge batches,
//! unicode in ids, SQL metacharacters in every string field, and a property test of
//! arbitrary bodies on every write route. Each gets a clear 4xx problem, or is stored
//! and read back exactly; never a 5xx, never a hang.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::TestApp;

/// Asserts a clean answer: 2xx, or a 4xx problem document.
fn clean(r: &crate::support::Resp, what: &str) {
    assert!(
        r.status < 500,
        "{what}: server error {} {}",
        r.status,
        r.body
    );
    if r.status >= 400 {
        r.assert_problem(r.status);
    }
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn oversized_deep_and_huge_bodies_get_a_clear_4xx(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    let client = reqwest::Client::new();
    let post_raw = |body: Vec<u8>| {
        let client = client.clone();
        let url = app.url("/api/v1/machines/events");
        let admin = app.admin.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(admin)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            TestApp::read(r).await
        }
    };
    // 2 MiB of JSON string.
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    post_raw(big.into_bytes()).await.assert_problem(413);
    // 10,000 nested arrays (small, but deeper than any parser should recurse).
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = post_raw(deep.into_bytes()).await;
    r.assert_problem(400);
    // 10,000 nested objects inside a valid-looking event.
    let deep = format!(
        "{{\"event_type\": \"parts_produced\", \"machine_id\": \"M-1\", \"good\": 1, \"scrap\": 0, \
         \"timestamp\": \"2026-01-01T00:00:00Z\", \"extra\": {}1{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    post_raw(deep.into_bytes()).await.assert_problem(400);
    // 100,000 events in one batch: over the body limit.
    let event = json!({ "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2026-01-01T00:00:00Z", "good": 1, "scrap": 0 });
    let batch = json!({ "events": vec![event.clone(); 100_000] });
    let r = post_raw(serde_json::to_vec(&batch).unwrap()).await;
    r.assert_problem(413);
    // As many as fit under the limit: a clear answer either way.
    let batch = json!({ "events": vec![event; 8_000] });
    let r = post_raw(serde_json::to_vec(&batch).unwrap()).await;
    clean(&r, "8,000-event batch");
    // Not JSON, wrong types, empty.
    for body in [
        &b"not json"[..],
        b"",
        b"null",
        b"[]",
        b"{\"events\": 5}",
        b"\xff\xfe",
    ] {
        let r = post_raw(body.to_vec()).await;
        assert!((400..500).contains(&r.status), "{body:?}: {}", r.status);
        r.assert_problem(r.status);
    }
}

/// Strings that have hurt SQL, JSON, logs and terminals.
const NASTY: &[&str] = &[
    "x'; DROP TABLE events; --",
    "' OR '1'='1",
    "\" OR \"\"=\"",
    "Robert'); DELETE FROM api_tokens;--",
    "a\\b\\\\c",
    "%s%n%x",
    "$1 $2 ::text",
    "/* comment */",
    "line\nbreak\ttab",
    "\u{0}nul",
    "Presse-Ä-東京-🚀",
    "\u{202e}gnp.exe",
    "ﷺ𒐫",
];

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn unicode_and_sql_metacharacters_are_refused_or_round_trip_exactly(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for (i, nasty) in NASTY.iter().enumerate() {
        // As a machine id, type and line.
        let id = format!("M{i}-{nasty}");
        let r = app
            .post(
                "/api/v1/machines",
                &app.admin,
                &json!({ "machine_id": id, "type": nasty, "line": nasty, "ideal_cycle_time_s": 1.0 }),
            )
            .await;
        clean(&r, &format!("machine {id:?}"));
        if r.status == 201 {
            assert!(
                logged(
                    &app,
                    "MachineRegistered",
                    &[
                        ("machine_id", &id),
                        ("machine_type", nasty),
                        ("line", nasty)
                    ]
                )
                .await,
                "machine {id:?} did not round-trip"
            );
        }
        // As a reason on a machine that exists.
        let safe = format!("S{i}");
        app.machine(&safe).await;
        let r = app
            .post(
                "/api/v1/machines/events",
                &app.admin,
                &json!({ "event_type": "state_changed", "machine_id": safe, "state": "down",
                         "reason": nasty, "timestamp": "2026-01-01T00:00:00Z" }),
            )
            .await;
        clean(&r, &format!("reason {nasty:?}"));
        if r.status == 202 {
            assert!(
                logged(
                    &app,
                    "MachineStateChanged",
                    &[("machine_id", &safe), ("reason", nasty)]
                )
                .await,
                "reason {nasty:?} did not round-trip"
            );
        }
        // As an order's product, an inventory item and location, a token name.
        let r = app
            .post(
                "/api/v1/production-orders",
                &app.admin,
                &json!({ "product_id": nasty, "quantity": 1, "output_location": nasty }),
            )
            .await;
        clean(&r, &format!("order {nasty:?}"));
        if r.status == 201 {
            assert!(
                logged(&app, "", &[("product_id", nasty)]).await,
                "order product {nasty:?} did not round-trip"
            );
        }
        let r = app
            .patch(
                "/api/v1/inventory/update",
                &app.admin,
                &json!({ "item_id": nasty, "item_type": "raw", "location": nasty, "delta": 5, "reason": nasty }),
            )
            .await;
        clean(&r, &format!("inventory {nasty:?}"));
        if r.status == 200 {
            assert!(
                logged(&app, "", &[("item_id", nasty), ("location", nasty)]).await,
                "inventory {nasty:?} did not round-trip"
            );
        }
        let r = app
            .post(
                "/api/v1/auth/tokens",
                &app.admin,
                &json!({ "name": format!("t{i}{nasty}"), "role": "auditor" }),
            )
            .await;
        clean(&r, &format!("token name {nasty:?}"));
        // In a query string and a path.
        let q = format!("/api/v1/kpi-metrics?machine_id={}", urlencode(nasty));
        clean(&app.get(&q, &app.admin).await, &q);
        let p = format!("/api/v1/machines/{}", urlencode(nasty));
        let r = app.get(&p, &app.admin).await;
        clean(&r, &p);
    }
    // The tables are all still there, and hold what was written.
    assert!(app.event_count().await > 0);
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(tokens >= 0);
}

/// Whether the global log holds an event (of this type, unless empty) whose payload has
/// exactly these string fields.
async fn logged(app: &TestApp, event_type: &str, fields: &[(&str, &str)]) -> bool {
    let log = app
        .get("/api/v1/events?after=0&limit=1000", &app.admin)
        .await;
    assert_eq!(log.status, 200, "{}", log.body);
    log.body["events"].as_array().unwrap().iter().any(|e| {
        (event_type.is_empty() || e["event_type"] == event_type)
            && fields.iter().all(|(k, v)| e["payload"][*k] == *v)
    })
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Any JSON value, up to a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(NASTY).prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(
                    &[
                        "event_type",
                        "machine_id",
                        "timestamp",
                        "state",
                        "good",
                        "scrap",
                        "reason",
                        "planned",
                        "events",
                        "order_id",
                        "product_id",
                        "quantity",
                        "item_id",
                        "item_type",
                        "location",
                        "delta",
                        "type",
                        "line",
                        "ideal_cycle_time_s",
                        "name",
                        "role",
                        "kind",
                        "scheduled_date",
                    ][..]
                ),
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// Arbitrary bodies on every write route: never a 5xx. `PROPTEST_CASES` sets how many
/// (a few hundred in the normal run).
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn arbitrary_bodies_never_get_a_server_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let routes: &[(Method, &str)] = &[
        (Method::POST, "/api/v1/machines/events"),
        (Method::POST, "/api/v1/machines"),
        (Method::POST, "/api/v1/production-orders"),
        (Method::POST, "/api/v1/production-orders/PO-1/assign"),
        (Method::POST, "/api/v1/maintenance/schedule"),
        (Method::PATCH, "/api/v1/inventory/update"),
        (Method::POST, "/api/v1/auth/tokens"),
    ];
    // Generated values, awaited one by one (no shrinking: the failing body is printed).
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (any_json(), 0..routes.len());
    for _ in 0..cases {
        let (body, route) = strategy.new_tree(&mut runner).unwrap().current();
        let (method, path) = &routes[route];
        let r = app
            .send(method.clone(), path, Some(&app.admin), Some(&body), &[])
            .await;
        assert!(
            r.status < 500,
            "{method} {path} {body}: {} {}",
            r.status,
            r.body
        );
    }
}
