//! The OpenAPI document and the offline docs page.

use reqwest::Method;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn the_openapi_document_lists_every_endpoint(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app
        .send(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = r.body["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/machines", "post"),
        ("/api/v1/machines/events", "post"),
        ("/api/v1/machines/{machine_id}", "get"),
        ("/api/v1/production-orders", "post"),
        ("/api/v1/production-orders/{order_id}", "get"),
        ("/api/v1/production-orders/{order_id}/assign", "post"),
        ("/api/v1/production-orders/{order_id}/start", "post"),
        ("/api/v1/production-orders/{order_id}/complete", "post"),
        ("/api/v1/production-orders/{order_id}/cancel", "post"),
        ("/api/v1/maintenance/schedule", "post"),
        ("/api/v1/inventory/update", "patch"),
        ("/api/v1/auth/tokens", "post"),
        ("/api/v1/events", "get"),
        ("/api/v1/streams/{stream_type}/{stream_id}/state", "get"),
        ("/api/v1/reason-codes", "get"),
        ("/api/v1/machines", "get"),
        ("/api/v1/production-orders", "get"),
        ("/api/v1/maintenance/tasks", "get"),
        ("/api/v1/inventory", "get"),
        ("/api/v1/kpi-metrics", "get"),
        ("/api/v1/ingest/rejected", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert_eq!(
        r.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn the_docs_page_loads_nothing_from_outside(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app.send(Method::GET, "/api/v1/docs", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.content_type().starts_with("text/html"));
    let html = r.body.as_str().unwrap();
    assert!(html.contains("openapi.json"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external URL in the docs page"
    );
    assert!(!html.contains("src="), "the docs page loads a resource");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn reason_codes_are_listed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app.get("/api/v1/reason-codes", &app.admin).await;
    assert_eq!(r.status, 200);
    assert!(r
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["code"] == "planned.break" && c["planned"] == true));
}
