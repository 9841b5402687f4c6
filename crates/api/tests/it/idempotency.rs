//! Idempotency-Key: a replay returns the first answer verbatim and appends nothing; the
//! same key with another body is refused.

use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_replayed_post_returns_the_first_answer_and_appends_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sup = app.token("supervisor").await;
    let body = json!({ "product_id": "W", "quantity": 3 });
    let key = [("idempotency-key", "order-1")];
    let first = app
        .send(
            Method::POST,
            "/api/v1/production-orders",
            Some(&sup),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let count = app.event_count().await;
    let again = app
        .send(
            Method::POST,
            "/api/v1/production-orders",
            Some(&sup),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(app.event_count().await, count);

    // Another body with the same key is refused; nothing is appended.
    let other = json!({ "product_id": "W", "quantity": 4 });
    let r = app
        .send(
            Method::POST,
            "/api/v1/production-orders",
            Some(&sup),
            Some(&other),
            &key,
        )
        .await;
    r.assert_problem(422);
    assert_eq!(app.event_count().await, count);

    // Keys belong to a principal: another token's same key is a new request.
    let sup2 = app.token("supervisor").await;
    let r = app
        .send(
            Method::POST,
            "/api/v1/production-orders",
            Some(&sup2),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(r.status, 201);
    assert_ne!(r.body["order_id"], first.body["order_id"]);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_refusal_is_replayed_too(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.post(
        "/api/v1/production-orders",
        &app.admin,
        &json!({ "order_id": "PO-1", "product_id": "W", "quantity": 3 }),
    )
    .await;
    let key = [("idempotency-key", "start-1")];
    let r = app
        .send(
            Method::POST,
            "/api/v1/production-orders/PO-1/start",
            Some(&app.admin),
            Some(&json!({})),
            &key,
        )
        .await;
    r.assert_problem(409);
    let again = app
        .send(
            Method::POST,
            "/api/v1/production-orders/PO-1/start",
            Some(&app.admin),
            Some(&json!({})),
            &key,
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body, r.body);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn patch_and_batches_are_idempotent(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("A").await;
    app.machine("B").await;
    let op = app.token("operator").await;
    let update = json!({ "item_id": "S", "item_type": "raw", "location": "L", "delta": 10, "reason": "delivery" });
    let key = [("idempotency-key", "delivery-77")];
    let first = app
        .send(
            Method::PATCH,
            "/api/v1/inventory/update",
            Some(&op),
            Some(&update),
            &key,
        )
        .await;
    assert_eq!(first.status, 200);
    let again = app
        .send(
            Method::PATCH,
            "/api/v1/inventory/update",
            Some(&op),
            Some(&update),
            &key,
        )
        .await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.body["quantity"], 10.0);

    let batch = json!({ "events": [
        { "event_type": "parts_produced", "machine_id": "A", "timestamp": "2025-03-01T08:00:00Z", "good": 1, "scrap": 0 },
        { "event_type": "parts_produced", "machine_id": "B", "timestamp": "2025-03-01T08:00:00Z", "good": 1, "scrap": 0 },
    ]});
    let key = [("idempotency-key", "batch-1")];
    let count = app.event_count().await;
    let r = app
        .send(
            Method::POST,
            "/api/v1/machines/events",
            Some(&op),
            Some(&batch),
            &key,
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(app.event_count().await, count + 2);
    let r = app
        .send(
            Method::POST,
            "/api/v1/machines/events",
            Some(&op),
            Some(&batch),
            &key,
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["accepted"], 2);
    assert_eq!(app.event_count().await, count + 2);

    // Even when the stored answer is lost, the derived event ids make the retry append
    // nothing.
    sqlx::query("DELETE FROM api_idempotency_keys")
        .execute(&app.pool)
        .await
        .unwrap();
    let r = app
        .send(
            Method::POST,
            "/api/v1/machines/events",
            Some(&op),
            Some(&batch),
            &key,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(app.event_count().await, count + 2);
    let r = app
        .send(
            Method::PATCH,
            "/api/v1/inventory/update",
            Some(&op),
            Some(&update),
            &[("idempotency-key", "delivery-77")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.event_count().await, count + 2);
    let a = app.get("/api/v1/machines/A", &op).await;
    assert_eq!(a.body["good_count"], 1);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_bad_key_is_400(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let long = "k".repeat(300);
    let r = app
        .send(
            Method::POST,
            "/api/v1/production-orders",
            Some(&app.admin),
            Some(&json!({ "product_id": "W", "quantity": 1 })),
            &[("idempotency-key", long.as_str())],
        )
        .await;
    r.assert_problem(400);
}
