//! Reports (issue 19, ADR 0041): shift, day and week reports of a line or the
//! site, in PDF, CSV (a zip of one file per table) and JSON, reproducible to the
//! byte from the log.
//!
//! # Steps
//! 1. [`anchor`]: the log position the report is taken at (the head, under its
//!    lock) and its chain hash; wait until the KPI read model has applied it.
//! 2. [`gather`]: the figures at that position, from the API's own query code
//!    (`kpi_metrics`, `downtime_report`, `state_intervals`) with `as_of`.
//! 3. [`render`]: pure, deterministic renderers (JSON, CSV zip, PDF).
//! 4. [`store`]: the file in object storage (S3-compatible, or a folder);
//!    [`catalog`]: its record (position, chain hash, SHA-256) in PostgreSQL.
//!
//! [`service::Reports`] ties them together; `verify` regenerates a report at its
//! recorded position and compares the bytes. [`schedule`] makes reports at each
//! shift's end, daily and weekly, led by one instance, and [`versions`] the
//! corrected version of a scheduled report that a late event changed (ADR 0051).
//! [`sections`] (orders, inspections, scrap, maintenance, alerts) and [`order`] (the
//! order report) fold the log itself up to the position ([`log`]).

pub mod anchor;
pub mod catalog;
pub mod deliver;
pub mod error;
pub mod gather;
pub mod log;
pub mod model;
pub mod order;
pub mod render;
pub mod schedule;
pub mod sections;
pub mod service;
pub mod store;
pub mod versions;

pub use catalog::{ListFilter, ReportMeta};
pub use error::ReportError;
pub use model::{Anchor, Format, ReportData, ReportKind, ReportRequest};
pub use service::{Reports, Verification};
pub use store::{AzureSettings, ReportStore, S3Settings, StorageSettings};
