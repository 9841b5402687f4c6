//! The HTTP edge of Shopfloor (axum).
//!
//! Handlers are thin: they parse, authorise, and either call the command side or read a
//! read model. [`router`] builds the whole app from an [`AppState`], so tests can drive it
//! with or without a socket.
//!
//! # Layout
//! - [`dashboard`]: the live plant dashboard at `/` (embedded assets, no token).
//! - [`state`]: what every handler can reach (store, pool, command service, tokens).
//! - [`health`]: `/healthz`, `/readyz` and `/metrics` (no token).
//! - [`auth`]: bearer tokens (stored hashed), roles and the permission matrix.
//! - [`error`]: [`error::ApiError`], every error answer as problem+json.
//! - [`extract`]: JSON/query/path extractors with problem+json rejections, and the
//!   command context of a request (actor, request/correlation ids, Idempotency-Key,
//!   If-Match).
//! - [`metric_catalogue`]: every metric family with its kind and help text, described
//!   to the recorder in one place.
//! - [`middleware`]: request ids, problem finishing and error logging, metrics, fallbacks.
//! - [`idempotency`]: replays of POST/PATCH with an Idempotency-Key.
//! - [`views`]: the JSON shapes of single entities.
//! - [`ratelimit`]: token buckets per principal and per client IP (failed auth).
//! - [`serve`]: serving on a socket with a header read timeout, a request timeout and a
//!   connection limit (slow clients cannot exhaust the server), draining request bodies
//!   left unread so that the client reads the answer.
//! - [`routes`]: the `/api/v1` endpoints, one module per resource, and the OpenAPI
//!   document with its offline docs page.
//!
//! # Layers (outermost first)
//! request ids → problem finishing → body limit (1 MiB) → routes. The `/api/v1` routes
//! that need a token are wrapped in the failed-authentication limit per client IP (429),
//! authentication (401), the rate limit per principal (429) and idempotency; each handler
//! names the permission it needs (403). Metrics is a route layer (it labels by route).

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod metric_catalogue;
pub mod middleware;
pub mod plant_metrics;
pub mod ratelimit;
pub mod routes;
pub mod serve;
pub mod state;
pub mod views;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;

pub use auth::{Permission, Role};
pub use error::ApiError;
pub use ratelimit::{RateLimiter, RateLimits};
pub use serve::{serve, ServeLimits};
pub use state::{AppState, Readiness};

/// The largest request body accepted (1 MiB); larger gets 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The whole HTTP application, with the default rate limits.
pub fn router(state: AppState) -> Router {
    router_with_limits(state, RateLimits::default())
}

/// The whole HTTP application with these rate limits (per principal, and per client IP
/// for failed authentication: see [`ratelimit`]).
pub fn router_with_limits(state: AppState, limits: RateLimits) -> Router {
    use axum::middleware::{from_fn, from_fn_with_state};
    let limiter = RateLimiter::new(limits);
    let protected = Router::new()
        .merge(routes::machines::routes())
        .merge(routes::orders::routes())
        .merge(routes::people::routes())
        .merge(routes::stops::routes())
        .merge(routes::maintenance::routes())
        .merge(routes::inventory::routes())
        .merge(routes::lots::routes())
        .merge(routes::tokens::routes())
        .merge(routes::audit::routes())
        .merge(routes::reference::routes())
        .merge(routes::hierarchy::routes())
        .merge(routes::calendar::routes())
        .merge(routes::reads::routes())
        .merge(routes::live::routes())
        .merge(routes::reports::routes())
        .merge(routes::alerts::routes())
        .merge(routes::spc::routes())
        .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .layer(from_fn_with_state(
            limiter.clone(),
            ratelimit::per_principal,
        ))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(from_fn_with_state(limiter, ratelimit::failed_auth));
    Router::new()
        .merge(health::routes())
        .merge(dashboard::routes())
        .merge(routes::docs::routes())
        .merge(protected)
        .route_layer(from_fn(middleware::metrics))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(from_fn(middleware::finish))
        .layer(from_fn(middleware::request_ids))
        .with_state(state)
}
