//! The admin server: liveness, readiness, the trace API, Prometheus
//! metrics, live stats, the configuration in force, the web UI (`/ui`, from
//! `ui::router`, reading the endpoints here), and a way for a Job to stop
//! its sidecar. It never sits on the request path; it reads what the
//! export task left in the ring and snapshots the metrics' atomics.
//!
//! An axum router, served by `web::serve` like every HTTP server of
//! sidetrace's own.

use crate::export::otlp::Encoder;
use crate::export::ring::Ring;
use crate::metrics::Metrics;
use crate::metrics::expo::Format;
use crate::metrics::export_health::ExportStats;
use crate::trace::TraceId;
use crate::ui;
use crate::web;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub struct AdminState {
    /// Every listener is bound and no drain has begun.
    pub ready: AtomicBool,
    pub ring: Arc<Ring>,
    pub encoder: Arc<Encoder>,
    pub metrics: Arc<Metrics>,
    pub export: Arc<ExportStats>,
    /// The configuration as `Config::printable` renders it.
    pub config: serde_json::Value,
    /// `POST /shutdown` asks for the same drain as SIGTERM.
    pub shutdown: Notify,
}

pub async fn serve(listener: TcpListener, router: Router) {
    web::serve(listener, router, None).await
}

/// What the kubelet and Prometheus read: health, readiness, metrics, and
/// the loopback-only `POST /shutdown`. Nothing here shows traffic.
pub fn health_router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/live", get(|| async { text(StatusCode::OK, "live\n") }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/shutdown", post(shutdown))
        .with_state(state)
}

/// What shows traffic (paths, routes, peers, timings): the trace API,
/// live statistics, the configuration and the UI. Served on loopback
/// unless the operator opens it (`--api`).
pub fn api_router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/api/stats", get(|State(s): State<Arc<AdminState>>| async move { Json(s.metrics.stats()) }))
        .route("/api/config", get(|State(s): State<Arc<AdminState>>| async move { Json(s.config.clone()) }))
        .route("/api/traces", get(traces))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/ui-config", get(ui_config))
        .with_state(state)
        .merge(ui::router())
}

/// A listener's router, with answers for unknown paths and methods that
/// name what this listener does serve.
pub fn finish(router: Router, paths: &'static str) -> Router {
    router
        .fallback(move || async move { (StatusCode::NOT_FOUND, format!("not found; try {paths}\n")) })
        .method_not_allowed_fallback(|| async {
            text(StatusCode::METHOD_NOT_ALLOWED, "this path takes GET (POST for /shutdown)\n")
        })
}

pub const HEALTH_PATHS: &str = "/live, /ready, /metrics";
pub const API_PATHS: &str = "/ui, /api/traces, /api/stats, /api/config";
pub const ALL_PATHS: &str = "/ui, /live, /ready, /metrics, /api/traces, /api/stats, /api/config";

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn ready(State(s): State<Arc<AdminState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        text(StatusCode::OK, "ready\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match s.metrics.render(format, &s.export) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(error) => {
            tracing::warn!(%error, "metrics exposition failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded
",
            )
        }
    }
}

/// What the UI needs to know of the server it talks to (the collector's
/// contract): a sidecar serves its ring's spans as OTLP/JSON and its stats
/// without a service, which the UI reads in `sidecar` mode, naming the
/// service from here. The sidecar keeps no log lines and knows no log
/// system, so there is no log link.
async fn ui_config(State(s): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let service = s.config["resource"]["service.name"].clone();
    Json(serde_json::json!({
        "mode": "sidecar",
        "refresh_seconds": 10,
        "log_link_template": null,
        "service": service,
    }))
}

#[derive(serde::Deserialize)]
struct TracesQuery {
    limit: Option<String>,
}

async fn traces(State(s): State<Arc<AdminState>>, Query(q): Query<TracesQuery>) -> Response {
    let limit = match q.limit.map(|v| v.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return text(StatusCode::BAD_REQUEST, "limit must be a positive whole number\n"),
    };
    Json(s.encoder.request(&s.ring.newest(limit))).into_response()
}

async fn trace(State(s): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let Some(id) = TraceId::from_hex(id.as_bytes(), false).filter(TraceId::is_valid) else {
        return text(StatusCode::BAD_REQUEST, "a trace id is 32 hex digits, not all zero\n");
    };
    let spans = s.ring.trace(id);
    if spans.is_empty() {
        return text(StatusCode::NOT_FOUND, "no spans of that trace are in the buffer\n");
    }
    Json(s.encoder.request(&spans)).into_response()
}

/// Like Istio's `/quitquitquit`: a Job's command stops its sidecar when it
/// is done, where no native sidecar does it for it. Only from this
/// machine: the admin port may be reachable from the network, and no one
/// else may stop the proxy.
async fn shutdown(State(s): State<Arc<AdminState>>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    if !web::is_local(peer) {
        return text(StatusCode::FORBIDDEN, "/shutdown is only answered on loopback\n");
    }
    tracing::info!(%peer, "shutdown asked for on the admin port");
    s.ready.store(false, Ordering::Release);
    s.shutdown.notify_one();
    text(StatusCode::ACCEPTED, "shutting down\n")
}
