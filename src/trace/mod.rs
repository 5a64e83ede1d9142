//! Everything about a request's span, below every stage of the path: ids,
//! context propagation (W3C, B3), sampling, route templates, the finished
//! span record and its semantic-convention view. The record leaves through
//! `record` (metrics, access log) and `export`.

pub mod capture;
pub mod context;
pub mod ids;
pub mod redact;
pub mod route;
pub mod sampling;
pub mod semconv;
pub mod span;
pub mod tracestate;

pub use crate::vocab::ErrorType;
pub use ids::{SpanId, TraceId};
pub use span::{LinkedSpan, SpanRecord, Stitching, Upstream};
