//! Liveness, readiness and metrics: the endpoints that need no token.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// 200 while the process is alive.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 200 once PostgreSQL and NATS answer and, with ingest on, the MQTT
/// subscription stands; 503 with what is down otherwise.
async fn readyz(State(state): State<AppState>) -> Response {
    let r = &state.readiness;
    let postgres = tokio::time::timeout(
        r.timeout(),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool),
    )
    .await
    .map(|res| res.is_ok())
    .unwrap_or(false);
    let nats = r.nats.as_ref().map(|c| {
        matches!(
            c.connection_state(),
            async_nats::connection::State::Connected
        )
    });
    let mqtt = r.mqtt.as_ref().map(|rx| *rx.borrow());
    let ready = postgres && nats.unwrap_or(true) && mqtt.unwrap_or(true);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": { "postgres": postgres, "nats": nats, "mqtt": mqtt },
    });
    (status, Json(body)).into_response()
}

/// Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
