//! Where finished spans go: every finished request passes
//! `Recorder::record` exactly once.

use crate::access_log::AccessLog;
use crate::drain;
use crate::export::SpanSink;
use crate::metrics::DirectionMetrics;
use crate::trace::SpanRecord;
use std::sync::Arc;

/// One direction's consumers of finished spans.
pub struct Recorder {
    pub metrics: Arc<DirectionMetrics>,
    pub access_log: Option<AccessLog>,
    pub sink: SpanSink,
    /// Set when the drain timeout cuts the requests still in flight.
    pub cut: drain::Cut,
}

impl Recorder {
    pub fn record(&self, span: SpanRecord) {
        if span.probe {
            // Probes are not traffic: no span, no log line, no RED figures.
            self.metrics.net.probe(span.status.is_some_and(|s| (200..400).contains(&s)));
            return;
        }
        self.metrics.record(&span);
        if let Some(log) = &self.access_log {
            log.log(&span);
        }
        self.sink.push(span);
    }
}
