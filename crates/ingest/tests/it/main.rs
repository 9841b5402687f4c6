//! Integration tests of the ingest against the real PostgreSQL and Mosquitto.

mod demo;
mod engine;
mod fuzz;
mod identity;
mod mqtt;
mod sparkplug;
mod support;
mod tls;
