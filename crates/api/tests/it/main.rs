//! Black-box tests of the HTTP API: the real router on a real socket, a fresh database per
//! test (`#[sqlx::test]`), talking JSON over HTTP with reqwest.

mod audit;
mod auth;
mod docs;
mod errors;
mod idempotency;
mod inventory;
mod machines;
mod maintenance;
mod orders;
mod reads;
mod support;
