//! One recorder per request: it holds the span being built and finishes it
//! exactly once, on whichever exit comes first:
//! - the response body's end (`http::body::ProxyBody`), or its error;
//! - an answer the proxy made itself (`http::proxy`, a `ProxyError`);
//! - a tunnel's close (`http::upgrade`: WebSocket, CONNECT);
//! - drop: the client went away, the drain timeout cut the request at
//!   shutdown, or any exit nobody thought of.

use super::recorder::Recorder;
use crate::trace::SpanRecord;
use crate::trace::capture::HeaderCapture;
use crate::vocab::{Direction, ErrorType};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct InFlight {
    recorder: Arc<Recorder>,
    span: Option<Box<SpanRecord>>,
    started: Instant,
    /// Shared with the request body on its way upstream; only allocated
    /// when the request has a body.
    request_bytes: Option<Arc<AtomicU64>>,
    pub response_bytes: u64,
}

impl InFlight {
    pub fn new(recorder: Arc<Recorder>, span: SpanRecord, started: Instant) -> Self {
        if !span.probe {
            recorder.metrics.request_started(&span);
        }
        InFlight { recorder, span: Some(Box::new(span)), started, request_bytes: None, response_bytes: 0 }
    }

    pub fn request_counter(&mut self) -> Arc<AtomicU64> {
        self.request_bytes.get_or_insert_with(Arc::default).clone()
    }

    pub fn set_request_bytes(&mut self, n: u64) {
        self.request_counter().store(n, Ordering::Relaxed);
    }

    pub fn set_status(&mut self, status: u16) {
        if let Some(s) = self.span.as_deref_mut() {
            s.status = Some(status);
        }
    }

    /// Adds the response headers listed for capture.
    pub fn capture(&mut self, capture: &HeaderCapture, headers: &http::HeaderMap) {
        if let Some(s) = self.span.as_deref_mut().filter(|_| !capture.is_empty()) {
            capture.capture(headers, &mut s.headers);
        }
    }

    pub fn set_peer_service(&mut self, service: http::HeaderValue) {
        if let Some(s) = self.span.as_deref_mut() {
            s.peer_service = Some(service);
        }
    }

    pub fn set_grpc_status(&mut self, code: u32) {
        if let Some(s) = self.span.as_deref_mut() {
            s.grpc_status = Some(code);
        }
    }

    pub fn finish(&mut self, error: Option<ErrorType>) {
        let Some(mut span) = self.span.take() else { return };
        span.end = span.start + self.started.elapsed();
        span.response_body_size = self.response_bytes;
        span.request_body_size = self.request_bytes.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
        span.error = error.or_else(|| status_error(&span));
        self.recorder.record(*span);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.span.is_some() {
            let why = if self.recorder.cut.is_cut() { ErrorType::DrainTimeout } else { ErrorType::ClientAborted };
            self.finish(Some(why));
        }
    }
}

/// `error.type` from the outcome when nothing failed in the proxy:
/// the status code per the HTTP conventions, or the gRPC status per the
/// RPC conventions (servers count only the codes that mean a server fault).
fn status_error(span: &SpanRecord) -> Option<ErrorType> {
    if let Some(code) = span.grpc_status.filter(|c| *c != 0) {
        let server_fault = matches!(code, 2 | 4 | 12 | 13 | 14 | 15);
        if span.direction == Direction::Outbound || server_fault {
            return Some(ErrorType::Grpc(code));
        }
        return None;
    }
    span.is_error().then(|| ErrorType::Status(span.status.unwrap_or(0)))
}
