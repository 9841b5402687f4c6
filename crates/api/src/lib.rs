//! The HTTP edge of Shopfloor (axum).
//!
//! Handlers are thin: they parse, authorise, and either call the command side or
//! read a read model. [`router`] builds the whole app from an [`AppState`], so tests
//! can drive it with or without a socket.
//!
//! # Layout
//! - [`state`]: what every handler can reach (store, pool, NATS, readiness).
//! - [`health`]: `/healthz`, `/readyz` and `/metrics`.

pub mod health;
pub mod state;

use axum::Router;

pub use state::{AppState, Readiness};

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new().merge(health::routes()).with_state(state)
}
