//! Tokens and roles: every role on every route (table-driven), 401 and 403, issuing,
//! listing and revoking tokens.

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::TestApp;

const OPERATOR: u8 = 1;
const SUPERVISOR: u8 = 2;
const AUDITOR: u8 = 4;
const ADMIN: u8 = 8;
const ALL: u8 = OPERATOR | SUPERVISOR | AUDITOR | ADMIN;

/// Every route that needs a token, with the roles allowed on it.
fn routes() -> Vec<(Method, &'static str, u8)> {
    use Method as M;
    vec![
        (M::POST, "/api/v1/machines", SUPERVISOR | ADMIN),
        (M::GET, "/api/v1/machines/M-1", ALL),
        (
            M::POST,
            "/api/v1/machines/events",
            OPERATOR | SUPERVISOR | ADMIN,
        ),
        (M::POST, "/api/v1/production-orders", SUPERVISOR | ADMIN),
        (M::GET, "/api/v1/production-orders/PO-1", ALL),
        (
            M::POST,
            "/api/v1/production-orders/PO-1/assign",
            SUPERVISOR | ADMIN,
        ),
        (
            M::POST,
            "/api/v1/production-orders/PO-1/start",
            OPERATOR | SUPERVISOR | ADMIN,
        ),
        (
            M::POST,
            "/api/v1/production-orders/PO-1/hold",
            OPERATOR | SUPERVISOR | ADMIN,
        ),
        (
            M::POST,
            "/api/v1/production-orders/PO-1/resume",
            OPERATOR | SUPERVISOR | ADMIN,
        ),
        (
            M::POST,
            "/api/v1/production-orders/PO-1/complete",
            OPERATOR | SUPERVISOR | ADMIN,
        ),
        (
            M::POST,
            "/api/v1/production-orders/PO-1/cancel",
            SUPERVISOR | ADMIN,
        ),
        (M::GET, "/api/v1/production-orders/PO-1/inspections", ALL),
        (
            M::POST,
            "/api/v1/production-orders/PO-1/inspections",
            OPERATOR | SUPERVISOR | ADMIN,
        ),
        (M::POST, "/api/v1/maintenance/schedule", SUPERVISOR | ADMIN),
        (M::GET, "/api/v1/maintenance/tasks/T-1", ALL),
        (
            M::POST,
            "/api/v1/maintenance/tasks/T-1/start",
            SUPERVISOR | ADMIN,
        ),
        (
            M::POST,
            "/api/v1/maintenance/tasks/T-1/complete",
            SUPERVISOR | ADMIN,
        ),
        (
            M::POST,
            "/api/v1/maintenance/tasks/T-1/cancel",
            SUPERVISOR | ADMIN,
        ),
        (
            M::PATCH,
            "/api/v1/inventory/update",
            OPERATOR | SUPERVISOR | ADMIN,
        ),
        (M::GET, "/api/v1/inventory/items/STEEL", ALL),
        (M::GET, "/api/v1/reason-codes", ALL),
        (M::POST, "/api/v1/auth/tokens", ADMIN),
        (M::GET, "/api/v1/auth/tokens", ADMIN),
        (M::DELETE, "/api/v1/auth/tokens/nobody", ADMIN),
        (M::GET, "/api/v1/events", AUDITOR | ADMIN),
        (
            M::GET,
            "/api/v1/streams/machine/M-1/events",
            AUDITOR | ADMIN,
        ),
        (M::GET, "/api/v1/streams/machine/M-1/state", AUDITOR | ADMIN),
        (M::GET, "/api/v1/machines", ALL),
        (M::GET, "/api/v1/machines/M-1/states", ALL),
        (M::GET, "/api/v1/production-orders", ALL),
        (M::GET, "/api/v1/maintenance/tasks", ALL),
        (M::GET, "/api/v1/inventory", ALL),
        (M::GET, "/api/v1/inventory/movements", ALL),
        (M::GET, "/api/v1/kpi-metrics", ALL),
        (M::GET, "/api/v1/downtime", ALL),
        (M::GET, "/api/v1/ingest/rejected", ALL),
        (M::GET, "/api/v1/projections", AUDITOR | ADMIN),
        (M::POST, "/api/v1/operators", SUPERVISOR | ADMIN),
        (M::GET, "/api/v1/operators", ALL),
        (M::PATCH, "/api/v1/operators/P-1", SUPERVISOR | ADMIN),
        (
            M::POST,
            "/api/v1/operators/P-1/clock-on",
            OPERATOR | SUPERVISOR | ADMIN,
        ),
        (M::GET, "/api/v1/stops/unclassified", ALL),
    ]
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn every_role_on_every_route(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tokens = [
        (OPERATOR, app.token("operator").await),
        (SUPERVISOR, app.token("supervisor").await),
        (AUDITOR, app.token("auditor").await),
        (ADMIN, app.token("admin").await),
        (ADMIN, app.admin.clone()),
    ];
    // A body that is wrong for every write route, so an allowed call changes nothing.
    let body = json!({ "nothing": true });
    for (method, path, allowed) in routes() {
        let b = (method != Method::GET && method != Method::DELETE).then_some(&body);
        let r = app.send(method.clone(), path, None, b, &[]).await;
        r.assert_problem(401);
        let r = app
            .send(method.clone(), path, Some("sft_not-a-known-token"), b, &[])
            .await;
        r.assert_problem(401);
        for (role, token) in &tokens {
            let r = app.send(method.clone(), path, Some(token), b, &[]).await;
            if allowed & role != 0 {
                assert!(
                    r.status != 401 && r.status != 403,
                    "{method} {path} as role {role}: {} {}",
                    r.status,
                    r.body
                );
            } else {
                let detail = r.assert_problem(403);
                assert!(detail.contains("may not"), "{detail}");
            }
        }
    }
    assert_eq!(app.event_count().await, 0, "refused calls appended events");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn public_routes_need_no_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/docs",
    ] {
        let r = app.send(Method::GET, path, None, None, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn malformed_authorization_is_401(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for value in ["Basic abc", "Bearer", "Bearer    ", "token"] {
        let r = app
            .send(
                Method::GET,
                "/api/v1/reason-codes",
                None,
                None,
                &[("authorization", value)],
            )
            .await;
        r.assert_problem(401);
    }
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn tokens_are_issued_hashed_usable_at_once_listed_and_revoked(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app
        .post(
            "/api/v1/auth/tokens",
            &app.admin,
            &json!({ "name": "line-1", "role": "operator" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["role"], "operator");
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 43, "token too short: {token}");

    // Stored hashed only.
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE name = 'line-1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 32);
    let text: String = sqlx::query_scalar("SELECT row_to_json(t)::text FROM api_tokens t")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!text.contains(&token));

    // Usable at once, with its role.
    let r = app.get("/api/v1/reason-codes", &token).await;
    assert_eq!(r.status, 200);
    let r = app
        .post(
            "/api/v1/auth/tokens",
            &token,
            &json!({ "name": "x", "role": "admin" }),
        )
        .await;
    r.assert_problem(403);

    // Listed without secrets.
    let r = app.get("/api/v1/auth/tokens", &app.admin).await;
    assert_eq!(r.status, 200);
    let list = r.body.as_array().unwrap();
    assert!(list
        .iter()
        .any(|t| t["name"] == "line-1" && t["role"] == "operator"));
    assert!(!r.body.to_string().contains(&token));
    assert!(list
        .iter()
        .all(|t| t.get("token").is_none() && t.get("token_hash").is_none()));

    // A name is unique among active tokens.
    let r = app
        .post(
            "/api/v1/auth/tokens",
            &app.admin,
            &json!({ "name": "line-1", "role": "auditor" }),
        )
        .await;
    r.assert_problem(409);

    // Revoked: unusable at once; the name can then be issued again.
    let r = app
        .send(
            Method::DELETE,
            "/api/v1/auth/tokens/line-1",
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    app.get("/api/v1/reason-codes", &token)
        .await
        .assert_problem(401);
    let r = app
        .send(
            Method::DELETE,
            "/api/v1/auth/tokens/line-1",
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    r.assert_problem(404);
    let r = app
        .post(
            "/api/v1/auth/tokens",
            &app.admin,
            &json!({ "name": "line-1", "role": "auditor" }),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_ne!(r.body["token"].as_str().unwrap(), token);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn bad_token_requests_are_400(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "name": "a", "role": "boss" }), "role"),
        (json!({ "name": "", "role": "admin" }), "name"),
        (json!({ "name": "has space", "role": "admin" }), "name"),
        (json!({ "role": "admin" }), "name"),
    ];
    for (body, field) in cases {
        let r = app.post("/api/v1/auth/tokens", &app.admin, &body).await;
        let detail = r.assert_problem(400);
        assert!(detail.contains(field), "{detail}");
    }
    let r = app
        .post(
            "/api/v1/auth/tokens",
            &app.admin,
            &json!({ "name": "bootstrap-admin", "role": "admin" }),
        )
        .await;
    r.assert_problem(409);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn actor_request_and_correlation_ids_go_into_event_metadata(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app
        .post(
            "/api/v1/auth/tokens",
            &app.admin,
            &json!({ "name": "sup-7", "role": "supervisor" }),
        )
        .await;
    let token = r.body["token"].as_str().unwrap().to_string();
    let body =
        json!({ "machine_id": "M-1", "type": "press", "line": "L1", "ideal_cycle_time_s": 1.5 });
    let r = app
        .send(
            Method::POST,
            "/api/v1/machines",
            Some(&token),
            Some(&body),
            &[("x-request-id", "req-123"), ("x-correlation-id", "corr-9")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers["x-request-id"], "req-123");
    let r = app.get("/api/v1/events?after=0", &app.admin).await;
    let e = &r.body["events"][0];
    assert_eq!(e["metadata"]["actor"], "sup-7");
    assert_eq!(e["metadata"]["request_id"], "req-123");
    assert_eq!(e["metadata"]["correlation_id"], "corr-9");
    assert_eq!(e["metadata"]["source"], "api");

    // Without X-Correlation-Id the request id is the correlation id; without
    // X-Request-Id one is made and returned.
    let r = app
        .post("/api/v1/machines", &token, &json!({ "machine_id": "M-2", "type": "press", "line": "L1", "ideal_cycle_time_s": 1.5 }))
        .await;
    let rid = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(!rid.is_empty());
    let r = app.get("/api/v1/events?after=1", &app.admin).await;
    assert_eq!(r.body["events"][0]["metadata"]["request_id"], rid);
    assert_eq!(r.body["events"][0]["metadata"]["correlation_id"], rid);
}
