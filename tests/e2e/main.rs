//! End-to-end tests: the real `shopfloor` binary against the real services.

mod backup;
mod binary;
mod dashboard;
mod deploy;
mod faults;
mod metrics_lint;
mod openapi_fuzz;
mod pipeline;
mod security;
mod services;
mod support;
