//! The span record: a plain struct made once per request on the hot path
//! and handed to the export queue. It holds cheap clones (`Uri`,
//! `HeaderValue` and the interned route are reference-counted) and defers
//! anything that costs (attribute strings) to the exporter.

use super::capture::Captured;
use super::ids::{SpanId, TraceId};
use crate::vocab::{Direction, ErrorType};
use http::{HeaderValue, Method, Uri, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Clone, Debug)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    /// The head sampler's decision, as propagated.
    pub sampled: bool,
    /// Kept although unsampled, because it failed or was slow.
    pub tail: bool,
    /// A kubelet probe (`User-Agent: kube-probe/…`): counted apart, not
    /// traced, unless `--trace-probes`.
    pub probe: bool,
    pub tracestate: Option<HeaderValue>,
    /// Inbound makes a SERVER span, outbound a CLIENT span.
    pub direction: Direction,
    pub start: SystemTime,
    pub end: SystemTime,
    pub method: Method,
    pub uri: Uri,
    /// `http.route`, templated once when the request arrived; `None` for
    /// CONNECT, which has no route.
    pub route: Option<Arc<str>>,
    pub scheme_https: bool,
    pub version: Version,
    /// `server.address`: the Host/authority the client asked for.
    pub host: Option<HeaderValue>,
    /// The upstream the proxy sent the request to.
    pub upstream: Option<Upstream>,
    pub client: SocketAddr,
    pub user_agent: Option<HeaderValue>,
    /// CLIENT spans: the callee's service, as its sidecar answered it
    /// (`sidetrace-service`). A SERVER span's caller is read from its
    /// `tracestate` instead (`caller_service`).
    pub peer_service: Option<HeaderValue>,
    /// CLIENT spans: how stitching placed a call that carried no context.
    pub stitching: Stitching,
    pub status: Option<u16>,
    pub grpc_status: Option<u32>,
    pub request_body_size: u64,
    pub response_body_size: u64,
    pub error: Option<ErrorType>,
    /// The request and response headers the operator listed for capture;
    /// empty (no allocation) unless some are listed and present.
    pub headers: Vec<Captured>,
}

/// A span context another span is stitched under or links to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkedSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// Where stitching put an outbound call that carried no trace context.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Stitching {
    /// The call carried context, stitching is off, or nothing was in
    /// flight.
    #[default]
    None,
    /// Made the child of the one inbound request in flight.
    Joined,
    /// A trace of its own, linked to the inbound requests in flight
    /// (`candidates` of them, at most `record::stitch::MAX_LINKS` linked).
    Linked { links: Box<[LinkedSpan]>, candidates: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Upstream {
    Addr(SocketAddr),
    Name(http::uri::Authority),
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Addr(a) => a.fmt(f),
            Upstream::Name(n) => n.fmt(f),
        }
    }
}

impl SpanRecord {
    /// The authority the client asked for: `Host`, else HTTP/2's
    /// `:authority` (kept in the URI). `server.address` in spans and metrics
    /// comes from here first.
    pub fn requested_authority(&self) -> Option<&str> {
        let host = self.host.as_ref().and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty());
        host.or_else(|| self.uri.authority().map(|a| a.as_str()))
    }

    /// Gives the span its own copies of the request's bytes. The `Uri` and
    /// header values of a request point into hyper's read buffer, so a span
    /// kept for `/api/traces` would keep a whole 8 KiB buffer alive; the
    /// export pipeline compacts each span as it takes it off the queue.
    pub fn compact(&mut self) {
        let own = |v: &HeaderValue| HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
        // The authority leaves with the URI below: an HTTP/2 request's
        // `:authority` becomes the host `server.address` is read from.
        let authority = self.host.is_none().then(|| self.uri.authority().map(|a| a.as_str().to_owned())).flatten();
        let text = match self.uri.path_and_query() {
            Some(pq) => pq.as_str(),
            None => self.uri.authority().map_or("/", |a| a.as_str()),
        };
        if let Ok(uri) = Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(text.as_bytes())) {
            self.uri = uri;
        }
        for v in
            [&mut self.host, &mut self.user_agent, &mut self.tracestate, &mut self.peer_service].into_iter().flatten()
        {
            *v = own(v);
        }
        for c in &mut self.headers {
            c.value = own(&c.value);
        }
        if let Some(a) = authority {
            self.host = HeaderValue::from_str(&a).ok();
        }
        if let Some(Upstream::Name(a)) = &mut self.upstream
            && let Ok(owned) =
                http::uri::Authority::from_maybe_shared(bytes::Bytes::copy_from_slice(a.as_str().as_bytes()))
        {
            *a = owned;
        }
    }

    /// `peer.service`: the service on the other end, when a sidetrace there
    /// said it.
    pub fn peer_service(&self) -> Option<&str> {
        match self.direction {
            Direction::Inbound => self.tracestate.as_ref().and_then(|t| super::tracestate::own_entry(t.as_bytes())),
            Direction::Outbound => self.peer_service.as_ref().and_then(|v| v.to_str().ok()),
        }
    }

    pub fn duration_nanos(&self) -> u64 {
        self.end.duration_since(self.start).map_or(0, |d| d.as_nanos() as u64)
    }

    /// OpenTelemetry HTTP conventions: 5xx is an error on a SERVER span,
    /// 4xx and 5xx on a CLIENT span; gRPC status decides for gRPC calls.
    pub fn is_error(&self) -> bool {
        if self.error.is_some() {
            return true;
        }
        match self.status {
            Some(s) if s >= 500 => true,
            Some(s) if s >= 400 => self.direction == Direction::Outbound,
            _ => false,
        }
    }
}
