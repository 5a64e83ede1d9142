//! Three tiny services for the demo, written with plain hyper and no
//! tracing code, none forwarding a header: whatever traces the demo shows
//! come from the sidecars alone.

pub mod consumer;
pub mod producer;
pub mod store;
