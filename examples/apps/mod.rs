//! Two tiny services for the demo, written with plain hyper and no tracing
//! code: whatever traces the demo shows come from the sidecars alone.

pub mod consumer;
pub mod producer;
