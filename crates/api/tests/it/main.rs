//! Black-box tests of the HTTP API: the real router on a real socket, a fresh database per
//! test (`#[sqlx::test]`), talking JSON over HTTP with reqwest.

mod alerts;
mod audit;
mod auth;
mod auth_cache;
mod bad_input;
mod docs;
mod errors;
mod fuzz_finds;
mod hierarchy;
mod idempotency;
mod inventory;
mod limits;
mod live;
mod lots;
mod machines;
mod maintenance;
mod openapi_drift;
mod openapi_shape;
mod orders;
mod oversized;
mod people;
mod reads;
mod reports;
mod roles;
mod settings;
mod spc;
mod support;
