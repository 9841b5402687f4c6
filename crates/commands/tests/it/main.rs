//! Integration tests of the command side against the real PostgreSQL.

mod batch;
mod process;
mod service;
mod support;
