//! Integration tests of the read side against the real PostgreSQL and NATS.

mod relay;
mod support;
