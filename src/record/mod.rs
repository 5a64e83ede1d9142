//! The record stage: where a request's span is kept while it runs
//! (`InFlight`) and where it goes once finished (`Recorder`). Every
//! finished request passes `Recorder::record` exactly once: metrics count
//! it (sampled or not), the access log writes it, and the export sink
//! decides whether to keep it. Nothing here waits: each consumer takes the
//! record with atomics or a non-blocking send.

mod inflight;
mod recorder;
pub mod stitch;

pub use inflight::InFlight;
pub use recorder::Recorder;
