//! End-to-end tests: the real `shopfloor` binary against the real services.

mod binary;
mod pipeline;
mod support;
