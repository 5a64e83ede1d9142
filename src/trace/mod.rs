//! Everything about a request's span: ids, context propagation (W3C, B3),
//! and the finished span record. Route templates live in `metrics::route`;
//! the record leaves through `export`.

pub mod context;
pub mod ids;
pub mod redact;
pub mod sampling;
pub mod span;

pub use ids::{SpanId, TraceId};
pub use span::{ErrorType, SpanRecord, Upstream};
