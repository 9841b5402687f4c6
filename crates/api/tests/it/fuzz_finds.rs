//! Server errors that schemathesis found against the served OpenAPI document
//! (`tests/e2e/openapi_fuzz.rs`), each kept out by a test of its own.

use sqlx::PgPool;

use crate::support::TestApp;

/// A NUL character in the telemetry `sensor` filter made PostgreSQL refuse the value
/// (SQLSTATE 22021), and the telemetry read answered 500; the ingest store's errors now
/// map like the event store's (a refused value: 400; the database unreachable: 503).
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_nul_in_a_telemetry_filter_is_400_not_500(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app
        .get("/api/v1/machines/M-1/telemetry?sensor=temp%00c", &app.admin)
        .await;
    let detail = r.assert_problem(400);
    assert!(!detail.contains("22021"), "a raw database error: {detail}");
}
