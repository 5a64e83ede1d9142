//! The span's layer, around everything that forwards a request. In the
//! order a request meets them:
//!
//! - **context**: the parent context the request carries (W3C, B3), or a
//!   new trace; a span id; the head sampler's decision;
//! - **destination**: where the request goes (`destination`); a request
//!   with none is answered here, 400;
//! - **record**: the span record, with its route templated once, held by a
//!   `record::InFlight` that finishes it on every exit;
//! - the layers below rewrite and forward the request (`forward`);
//! - **respond**: the status and `grpc-status` go on the span, the proxy's
//!   own overhead to metrics, and the recorder rides on the response body
//!   (or on a tunnel) until it ends. A failure below becomes the answer its
//!   `ProxyError` names (502, 504, ...), with `error.type` on the span.
//!
//! Errors from below arrive boxed (tower's timeout and limit layers box
//! theirs), and are turned back into a `ProxyError` here.

use super::conn::ConnMeta;
use super::destination::destination;
use super::error::ProxyError;
use super::exchange::{Exchange, Forwarded};
use super::response_body::{ProxyBody, grpc_status};
use super::shared::{SERVICE_HEADER, Shared};
use super::upgrade;
use crate::record::InFlight;
use crate::record::stitch::{Registration, Stitch};
use crate::trace::context::SpanContext;
use crate::trace::tracestate;
use crate::trace::{LinkedSpan, SpanRecord, Stitching, Upstream};
use crate::vocab::Direction;
use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::uri::Scheme;
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};
use tower::{BoxError, Layer, Service};

#[derive(Clone)]
pub struct RecordLayer {
    shared: Arc<Shared>,
    conn: Arc<ConnMeta>,
}

impl RecordLayer {
    pub fn new(shared: Arc<Shared>, conn: Arc<ConnMeta>) -> Self {
        RecordLayer { shared, conn }
    }
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;
    fn layer(&self, inner: S) -> Record<S> {
        Record { inner, shared: self.shared.clone(), conn: self.conn.clone() }
    }
}

#[derive(Clone)]
pub struct Record<S> {
    inner: S,
    shared: Arc<Shared>,
    conn: Arc<ConnMeta>,
}

impl<S> Service<Request<Incoming>> for Record<S>
where
    S: Service<Exchange, Response = Forwarded>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = RecordFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The layers below are always ready, or refuse a request by failing
        // its call (tower's load shedding does): never by waiting here.
        let _ = ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> RecordFuture<S::Future> {
        let started = Instant::now();
        let shared = &self.shared;
        let mut stitching = Stitching::None;
        let stitch = shared.stitch.as_ref().filter(|_| shared.direction == Direction::Outbound);
        let mut context = SpanContext::start_with(req.headers(), req.uri().path(), &shared.sampler, || {
            match stitch?.lookup() {
                Stitch::Alone => None,
                Stitch::Join(parent) => {
                    stitching = Stitching::Joined;
                    Some(parent)
                }
                Stitch::Ambiguous { links, candidates } => {
                    // The one allocation stitching makes, and only when it
                    // cannot tell which request a call belongs to.
                    stitching = Stitching::Linked { links: links.iter().copied().collect(), candidates };
                    None
                }
            }
        });
        if let (Direction::Outbound, Some(a)) = (self.shared.direction, &self.shared.announce) {
            // Outbound, this service's name goes first in tracestate, for the
            // next sidecar to name its caller; the CLIENT span records it too.
            let entry = &a.tracestate_entry;
            context.tracestate =
                Some(tracestate::with_own_entry(context.tracestate.as_ref(), entry).unwrap_or_else(|| entry.clone()));
        }
        let dest = destination(&self.shared, &self.conn, &req);
        let mut span = span_record(&self.shared, &self.conn, &req, &context, dest.as_ref().ok());
        span.stitching = stitching;
        // Inbound, the request is a parent for the app's calls until its
        // response head leaves.
        let registration = match &self.shared.stitch {
            Some(r) if self.shared.direction == Direction::Inbound && !span.probe => {
                Some(r.register(LinkedSpan { trace_id: span.trace_id, span_id: span.span_id, sampled: span.sampled }))
            }
            _ => None,
        };
        let mut rec = InFlight::new(self.shared.recorder.clone(), span, started);
        let dest = match dest {
            Ok(d) => d,
            Err(e) => return RecordFuture::answered(local_error(e, rec)),
        };
        let request_bytes = (!req.body().is_end_stream()).then(|| rec.request_counter());
        let inner = self.inner.call(Exchange { req, dest, context, request_bytes });
        RecordFuture::Forwarding { inner, rec: Some(rec), started, shared: self.shared.clone(), registration }
    }
}

/// The span as the request arrived: the response fills in the rest.
fn span_record(
    shared: &Shared,
    conn: &ConnMeta,
    req: &Request<Incoming>,
    ctx: &SpanContext,
    dest: Option<&Upstream>,
) -> SpanRecord {
    let start = SystemTime::now();
    SpanRecord {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        parent_span_id: ctx.parent_span_id,
        sampled: ctx.sampled,
        tail: false,
        probe: !shared.trace_probes && is_kube_probe(req.headers()),
        tracestate: ctx.tracestate.clone(),
        direction: shared.direction,
        start,
        end: start,
        method: req.method().clone(),
        // An HTTP/2 request's `:authority` stays in the cloned `uri`; the
        // exporter reads it from there, so nothing is copied here.
        uri: req.uri().clone(),
        route: (req.method() != Method::CONNECT).then(|| shared.routes.route(req.uri().path())),
        scheme_https: req.uri().scheme() == Some(&Scheme::HTTPS),
        version: req.version(),
        host: req.headers().get(HOST).cloned(),
        upstream: dest.cloned(),
        client: conn.client,
        user_agent: req.headers().get(USER_AGENT).cloned(),
        peer_service: None,
        stitching: Default::default(),
        status: None,
        grpc_status: None,
        request_body_size: 0,
        response_body_size: 0,
        error: None,
        headers: {
            let mut h = Vec::new();
            shared.capture_request.capture(req.headers(), &mut h);
            h
        },
    }
}

/// The kubelet's HTTP probes say `User-Agent: kube-probe/<version>`.
fn is_kube_probe(headers: &http::HeaderMap) -> bool {
    headers.get(USER_AGENT).is_some_and(|ua| ua.as_bytes().starts_with(b"kube-probe/"))
}

pin_project! {
    #[project = RecordProj]
    pub enum RecordFuture<F> {
        Forwarding {
            #[pin]
            inner: F,
            rec: Option<InFlight>,
            started: Instant,
            shared: Arc<Shared>,
            registration: Option<Registration>,
        },
        Answered { resp: Option<Response<ProxyBody>> },
    }
}

impl<F> RecordFuture<F> {
    fn answered(resp: Response<ProxyBody>) -> Self {
        RecordFuture::Answered { resp: Some(resp) }
    }
}

impl<F, E> Future for RecordFuture<F>
where
    F: Future<Output = Result<Forwarded, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RecordProj::Answered { resp } => Poll::Ready(Ok(resp.take().expect("polled after completion"))),
            RecordProj::Forwarding { inner, rec, started, shared, registration } => {
                let result = ready!(inner.poll(cx));
                registration.take();
                let rec = rec.take().expect("polled after completion");
                Poll::Ready(Ok(respond(result.map_err(Into::into), rec, *started, shared)))
            }
        }
    }
}

/// The respond phase.
fn respond(
    result: Result<Forwarded, BoxError>,
    mut rec: InFlight,
    started: Instant,
    shared: &Shared,
) -> Response<ProxyBody> {
    match result {
        Err(e) => {
            let e = ProxyError::from_layer(e);
            tracing::debug!(error = %e, "request failed");
            local_error(e, rec)
        }
        Ok(Forwarded::Response { mut resp, release, upstream_wait }) => {
            rec.set_status(resp.status().as_u16());
            rec.capture(&shared.capture_response, resp.headers());
            if shared.direction == Direction::Outbound
                && let Some(callee) = resp.headers_mut().remove(&SERVICE_HEADER)
            {
                rec.set_peer_service(callee);
            }
            if let Some(code) = grpc_status(resp.headers()) {
                rec.set_grpc_status(code);
            }
            // The proxy's own share: everything but the wait for the upstream.
            shared.metrics.net.overhead(started.elapsed().saturating_sub(upstream_wait));
            resp.map(|b| ProxyBody::upstream(b, rec, release))
        }
        Ok(Forwarded::Upgraded { mut head, client, upstream, upstream_wait }) => {
            rec.set_status(head.status.as_u16());
            rec.capture(&shared.capture_response, &head.headers);
            if shared.direction == Direction::Outbound
                && let Some(callee) = head.headers.remove(&SERVICE_HEADER)
            {
                rec.set_peer_service(callee);
            }
            shared.metrics.net.overhead(started.elapsed().saturating_sub(upstream_wait));
            upgrade::spawn_tunnel(client, upstream, rec);
            Response::from_parts(head, ProxyBody::empty())
        }
        Ok(Forwarded::Connected { client, sock }) => {
            rec.set_status(200);
            upgrade::spawn_connect(client, sock, rec);
            Response::new(ProxyBody::empty())
        }
    }
}

fn local_error(e: ProxyError, mut rec: InFlight) -> Response<ProxyBody> {
    let status = e.status();
    rec.set_status(status.as_u16());
    rec.finish(Some(e.error_type()));
    let mut resp = Response::new(ProxyBody::local(Bytes::from(format!("sidetrace: {e}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
