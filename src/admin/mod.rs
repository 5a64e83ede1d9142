//! The admin server: liveness, readiness, the trace API, Prometheus
//! metrics and live stats. It never sits on the request path; it reads what
//! the export task left in the ring and snapshots the metrics' atomics.

use crate::export::ExportStats;
use crate::export::otlp::Encoder;
use crate::export::ring::Ring;
use crate::metrics::Metrics;
use crate::metrics::expo::Format;
use crate::trace::TraceId;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

pub struct AdminState {
    pub ready: AtomicBool,
    pub ring: Arc<Ring>,
    pub encoder: Arc<Encoder>,
    pub metrics: Arc<Metrics>,
    pub export: Arc<ExportStats>,
    /// The configuration as `Config::printable` renders it.
    pub config: serde_json::Value,
}

pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(sock), svc)
                .await;
        });
    }
}

fn route(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    let path = req.uri().path();
    match path {
        "/live" => text(StatusCode::OK, "live\n"),
        "/api/config" => json(&state.config),
        "/ready" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            let body = match state.metrics.render(format, &state.export) {
                Ok(body) => body,
                Err(error) => {
                    tracing::warn!(%error, "metrics exposition failed");
                    return text(StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be encoded\n");
                }
            };
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(format.content_type()));
            r
        }
        "/api/stats" => json(&state.metrics.stats()),
        "/api/traces" => {
            let limit = match query_param(req.uri().query(), "limit").map(|v| v.parse::<usize>()) {
                None => 100,
                Some(Ok(n)) if n > 0 => n,
                Some(_) => return text(StatusCode::BAD_REQUEST, "limit must be a positive whole number\n"),
            };
            json(&state.encoder.request(&state.ring.newest(limit)))
        }
        _ => match path.strip_prefix("/api/traces/") {
            Some(id) => match TraceId::from_hex(id.as_bytes(), false).filter(TraceId::is_valid) {
                None => text(StatusCode::BAD_REQUEST, "a trace id is 32 hex digits, not all zero\n"),
                Some(id) => {
                    let spans = state.ring.trace(id);
                    if spans.is_empty() {
                        return text(StatusCode::NOT_FOUND, "no spans of that trace are in the buffer\n");
                    }
                    json(&state.encoder.request(&spans))
                }
            },
            None => text(StatusCode::NOT_FOUND, "not found; try /live, /ready, /metrics, /api/traces, /api/stats\n"),
        },
    }
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn json<T: serde::Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(v) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            r
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "could not encode the response\n"),
    }
}
