//! Liveness, readiness and metrics: the endpoints that need no token.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ProblemDocument};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The answer of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: &'static str,
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessReport {
    /// `ready` or `not ready`.
    pub status: &'static str,
    pub checks: ReadinessChecks,
    /// For each leader lock this process competes for (`relay`,
    /// `process_manager`): whether it holds it now. Exactly one process of a
    /// deployment should say `true` for each.
    pub leading: std::collections::BTreeMap<String, bool>,
}

/// What `/readyz` checked; `null` where the role does not use that service.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    pub postgres: bool,
    pub nats: Option<bool>,
    pub mqtt: Option<bool>,
}

/// Liveness: 200 while the process is alive (no token needed).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "alive", body = Liveness)))]
pub async fn healthz() -> impl IntoResponse {
    Json(Liveness { status: "ok" })
}

/// Readiness: 200 once PostgreSQL and NATS answer and, with ingest on, the MQTT
/// subscription stands; 503 with what is down otherwise (no token needed).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready", body = ReadinessReport),
        (status = 503, description = "a service is down: a problem whose `checks` member \
            says which", body = ProblemDocument)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
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
    let leading = r
        .leaders
        .iter()
        .map(|f| (f.name().to_string(), f.is_held()))
        .collect();
    readiness_answer(
        ReadinessChecks {
            postgres,
            nats,
            mqtt,
        },
        leading,
    )
}

/// 200 with the checks when every service used answers; else 503 problem+json naming
/// what is down, with the checks in its `checks` member.
fn readiness_answer(
    checks: ReadinessChecks,
    leading: std::collections::BTreeMap<String, bool>,
) -> Response {
    let down: Vec<&str> = [
        ("postgres", Some(checks.postgres)),
        ("nats", checks.nats),
        ("mqtt", checks.mqtt),
    ]
    .into_iter()
    .filter(|(_, ok)| *ok == Some(false))
    .map(|(name, _)| name)
    .collect();
    if down.is_empty() {
        let report = ReadinessReport {
            status: "ready",
            checks,
            leading,
        };
        return (StatusCode::OK, Json(report)).into_response();
    }
    let mut e = ApiError::unavailable(format!("not ready: {} down", down.join(", ")), 1)
        .with_title("Not ready")
        .with_extensions(json!({ "checks": checks, "leading": leading }));
    e.detail = format!("not ready: {} not reachable", down.join(", "));
    e.into_response()
}

/// Metrics in the Prometheus text format, version 0.0.4 (no token needed).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "every metric family, each with HELP and TYPE",
        content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    exposition(state.metrics.as_ref().map(|h| h.render()))
}

/// A Prometheus text exposition (version 0.0.4) as a response: empty without a recorder.
pub fn exposition(body: Option<String>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body.unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(checks: ReadinessChecks) -> (StatusCode, String, serde_json::Value) {
        let response = readiness_answer(checks, Default::default());
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let body = serde_json::from_slice(&body).unwrap_or_default();
        (status, content_type, body)
    }

    #[tokio::test]
    async fn not_ready_is_a_problem_that_names_what_is_down() {
        let (status, content_type, body) = answer(ReadinessChecks {
            postgres: true,
            nats: Some(false),
            mqtt: None,
        })
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(content_type.starts_with(crate::error::PROBLEM_JSON));
        assert_eq!(body["status"], 503);
        assert_eq!(body["checks"]["nats"], false);
        assert_eq!(body["checks"]["postgres"], true);
        assert!(body["checks"]["mqtt"].is_null());
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("nats") && !detail.contains("postgres"),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn ready_is_200_with_the_checks() {
        let (status, content_type, body) = answer(ReadinessChecks {
            postgres: true,
            nats: Some(true),
            mqtt: None,
        })
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("application/json"));
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["nats"], true);
    }
}
