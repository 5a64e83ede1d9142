//! Where finished spans go: every finished request passes
//! `Recorder::record` exactly once.

use crate::access_log::AccessLog;
use crate::export::SpanSink;
use crate::metrics::DirectionMetrics;
use crate::trace::SpanRecord;
use std::sync::Arc;

/// One direction's consumers of finished spans.
pub struct Recorder {
    pub metrics: Arc<DirectionMetrics>,
    pub access_log: Option<AccessLog>,
    pub sink: SpanSink,
}

impl Recorder {
    pub fn record(&self, span: SpanRecord) {
        self.metrics.record(&span);
        if let Some(log) = &self.access_log {
            log.log(&span);
        }
        self.sink.push(span);
    }
}
