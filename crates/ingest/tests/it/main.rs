//! Integration tests of the ingest against the real PostgreSQL and Mosquitto.

mod engine;
mod mqtt;
mod sparkplug;
mod support;
