//! The `shopfloor` binary as a library: settings, the command line, and the
//! application that runs the roles (API, relay, projector, ingest) until stopped.
//!
//! `main.rs` is a thin shell over [`cli::main`]; tests build an [`app::Application`]
//! directly, learn its bound port, and stop it through its cancellation token.

pub mod app;
pub mod bench;
pub mod bench_alerts;
pub mod bench_genealogy;
pub mod bench_http;
pub mod bench_opcua;
pub mod bench_reports;
pub mod cli;
pub mod group;
pub mod settings;
