//! Integration tests of the event store against the real PostgreSQL: each test
//! gets a fresh database from `#[sqlx::test]`.

mod append;
mod archive;
mod cancel;
mod chain;
mod checkpoint;
mod group;
mod leader;
mod ordering;
mod repository;
mod roundtrip;
mod subscription;
mod support;
mod upcasting;
mod upgrade;
