//! The domain crate's integration tests, one binary: given/when/then per aggregate, value
//! types, the reason catalogue, process managers, property tests and event snapshots.

mod alert;
mod hierarchy;
mod inventory;
mod lots;
mod machine;
mod maintenance;
mod operator;
mod order;
mod policy;
mod process;
mod props;
mod reason;
mod snapshots;
mod spc;
mod support;
mod values;
