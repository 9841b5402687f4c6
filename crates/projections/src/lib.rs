//! The read side of Shopfloor: the relay that publishes the committed event log to
//! NATS JetStream, and the projectors that build the read models (machine status,
//! state intervals and downtime, KPIs, inventory, orders, maintenance) from it.
//!
//! Nothing is here yet: the `relay` and `projector` roles of the binary stand by
//! until this crate provides them.
