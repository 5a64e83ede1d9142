//! One request through the proxy, in the order it meets each step:
//! extract the trace context, pick the destination, start the span,
//! rewrite headers (hop-by-hop out, context in), forward through the pool,
//! and hand the response back with the span riding on its body.

use super::conn::ConnMeta;
use super::error::ProxyError;
use super::headers::{strip_hop_by_hop, wants_upgrade};
use super::request_body::ForwardBody;
use super::response_body::{ProxyBody, grpc_status};
use super::shared::Shared;
use super::upgrade;
use crate::record::InFlight;
use crate::trace::context::{self, Outgoing};
use crate::trace::{SpanId, SpanRecord, TraceId, Upstream};
use crate::vocab::Direction;
use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

#[derive(Clone)]
pub struct ProxyService {
    shared: Arc<Shared>,
    conn: Arc<ConnMeta>,
}

impl ProxyService {
    pub fn new(shared: Arc<Shared>, conn: Arc<ConnMeta>) -> Self {
        ProxyService { shared, conn }
    }
}

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if req.version() == Version::HTTP_2 {
            return Box::pin(handle(self.shared.clone(), self.conn.clone(), req));
        }
        // HTTP/1 runs one request at a time; the connection learns when
        // this one is over so that it can idle without buffers.
        self.conn.keepalive.request_started(http_body::Body::is_end_stream(req.body()));
        let (shared, conn) = (self.shared.clone(), self.conn.clone());
        let connect = req.method() == Method::CONNECT;
        Box::pin(async move {
            let Ok(resp) = handle(shared, conn.clone(), req).await;
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS || (connect && resp.status().is_success()) {
                conn.keepalive.pin();
            }
            Ok(resp.map(|b| b.notify_on_drop(conn)))
        })
    }
}

pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnMeta>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = SystemTime::now();
    let started = Instant::now();
    let ctx = context::extract(req.headers());
    let span_id = SpanId::random();
    let (trace_id, parent_span_id, parent_sampled, tracestate) = match ctx.parent {
        Some(p) => (p.trace_id, Some(p.span_id), p.sampled, p.tracestate),
        None => (TraceId::random(), None, ctx.sampled_hint, None),
    };
    let sampled = shared.sampler.decide(trace_id, parent_sampled);
    let h2 = req.version() == Version::HTTP_2;
    let dest = destination(&shared, &conn, &req);
    // An HTTP/2 request's `:authority` stays in the cloned `uri`; the
    // exporter reads it from there, so nothing is copied here.
    let host = req.headers().get(HOST).cloned();
    let span = SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        sampled,
        tail: false,
        tracestate: tracestate.clone(),
        direction: shared.direction,
        start,
        end: start,
        method: req.method().clone(),
        uri: req.uri().clone(),
        route: (req.method() != Method::CONNECT).then(|| shared.routes.route(req.uri().path())),
        scheme_https: req.uri().scheme() == Some(&Scheme::HTTPS),
        version: req.version(),
        host,
        upstream: dest.as_ref().ok().cloned(),
        client: conn.client,
        user_agent: req.headers().get(USER_AGENT).cloned(),
        status: None,
        grpc_status: None,
        request_body_size: 0,
        response_body_size: 0,
        error: None,
    };
    let mut rec = InFlight::new(shared.recorder.clone(), span, started);
    let dest = match dest {
        Ok(d) => d,
        Err(e) => return Ok(local_error(e, rec)),
    };

    if req.method() == Method::CONNECT && shared.direction == Direction::Outbound {
        return Ok(connect_tunnel(&shared, &dest, req, rec).await);
    }

    let upgrade = !h2 && (wants_upgrade(req.headers()) || req.method() == Method::CONNECT);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let outgoing = Outgoing { trace_id, span_id, parent_span_id, sampled, tracestate: tracestate.as_ref() };
    context::inject(&mut parts.headers, &outgoing, ctx.formats);
    if !h2 {
        to_origin_form(&mut parts.uri, &mut parts.headers);
    }
    let method_is_connect = parts.method == Method::CONNECT;
    let keepalive = (!h2).then_some(&conn);
    let fwd = Request::from_parts(parts, ForwardBody::new(body, &mut rec, keepalive));

    let upstream_started = Instant::now();
    let sent = shared.pool.send(&dest, h2, fwd, upgrade);
    let result = match shared.response_timeout {
        Some(t) => tokio::time::timeout(t, sent).await.unwrap_or(Err(ProxyError::ResponseTimeout)),
        None => sent.await,
    };
    let upstream_wait = upstream_started.elapsed();
    let (mut resp, release) = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, upstream = %dest, "request failed");
            return Ok(local_error(e, rec));
        }
    };
    rec.set_status(resp.status().as_u16());
    if let Some(code) = grpc_status(resp.headers()) {
        rec.set_grpc_status(code);
    }
    // The proxy's own share: everything but the wait for the upstream.
    shared.metrics.net.overhead(started.elapsed().saturating_sub(upstream_wait));
    let switched =
        resp.status() == StatusCode::SWITCHING_PROTOCOLS || (method_is_connect && resp.status().is_success());
    if let (Some(client_upgrade), true) = (client_upgrade, switched) {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let (parts, _) = resp.into_parts();
        upgrade::spawn_tunnel(client_upgrade, upstream_upgrade, rec);
        return Ok(Response::from_parts(parts, ProxyBody::empty()));
    }
    strip_hop_by_hop(resp.headers_mut(), false);
    Ok(resp.map(|b| ProxyBody::upstream(b, rec, release)))
}

/// Where the request goes. Inbound: always the app, so the inbound side is
/// never a relay. Outbound: the absolute URI of an HTTP-proxy request, or
/// the original destination of a redirected connection.
fn destination(shared: &Shared, conn: &ConnMeta, req: &Request<Incoming>) -> Result<Upstream, ProxyError> {
    match shared.direction {
        Direction::Inbound => Ok(Upstream::Addr(shared.inbound_target(conn.original_dst))),
        Direction::Outbound => {
            if let Some(orig) = conn.original_dst {
                return Ok(Upstream::Addr(orig));
            }
            let uri = req.uri();
            let absolute_form = req.version() != Version::HTTP_2 && uri.authority().is_some();
            match uri.authority() {
                Some(auth) if absolute_form || req.method() == Method::CONNECT => {
                    if uri.scheme() == Some(&Scheme::HTTPS) {
                        return Err(ProxyError::BadRequest("https:// URIs must be tunnelled with CONNECT"));
                    }
                    Ok(Upstream::Name(with_default_port(auth)))
                }
                _ => Err(ProxyError::NoDestination),
            }
        }
    }
}

fn with_default_port(auth: &Authority) -> Authority {
    if auth.port().is_some() {
        return auth.clone();
    }
    Authority::try_from(format!("{}:80", auth.host())).unwrap_or_else(|_| auth.clone())
}

/// An HTTP/1 request forwarded to an origin carries origin-form
/// (`/path?q`), with the authority moved to `Host` if it was not there.
fn to_origin_form(uri: &mut Uri, headers: &mut http::HeaderMap) {
    if uri.authority().is_none() || uri.path_and_query().is_none() {
        return; // authority-form (CONNECT) stays as it is
    }
    if !headers.contains_key(HOST)
        && let Some(v) = uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(HOST, v);
    }
    let pq = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *uri = Uri::from(pq);
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

async fn connect_tunnel(
    shared: &Shared,
    dest: &Upstream,
    mut req: Request<Incoming>,
    mut rec: InFlight,
) -> Response<ProxyBody> {
    match shared.dialer.connect(dest).await.map_err(ProxyError::from) {
        Ok(sock) => {
            rec.set_status(200);
            upgrade::spawn_connect(hyper::upgrade::on(&mut req), sock, rec);
            Response::new(ProxyBody::empty())
        }
        Err(e) => local_error(e, rec),
    }
}
