//! End-to-end tests: the real `shopfloor` binary against the real services.

mod alerts;
mod backup;
mod binary;
mod dashboard;
mod deploy;
mod faults;
mod floor_app;
mod group;
mod ha;
mod hierarchy;
mod metrics_lint;
mod openapi_fuzz;
mod pipeline;
mod security;
mod services;
mod support;
mod webdriver;
