//! Integration tests of the read side against the real PostgreSQL and NATS.

mod accepted;
mod calendars;
mod catalogue;
mod chunks;
mod downtime;
mod floor;
mod genealogy;
mod hierarchy;
mod kpi;
mod live;
mod projectors;
mod readmodels;
mod relay;
mod scrap;
mod support;
