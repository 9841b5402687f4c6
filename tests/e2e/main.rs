//! End-to-end tests: the real `shopfloor` binary against the real services.

mod backup;
mod binary;
mod dashboard;
mod deploy;
mod faults;
mod pipeline;
mod security;
mod services;
mod support;
