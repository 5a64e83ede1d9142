//! The HTTP path: hyper serves the client connection, `proxy::handle` runs
//! each request (context, span, forward), `pool` talks to the upstream,
//! `body` streams both ways and `record` finishes the span on every exit.

pub mod body;
pub mod error;
pub mod headers;
pub mod pool;
pub mod proxy;
pub mod record;
pub mod upgrade;

use crate::access_log::AccessLog;
use crate::drain;
use crate::export::SpanSink;
use crate::listen::{ConnMeta, Direction};
use crate::metrics::route::RouteTemplates;
use crate::trace::SpanRecord;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Everything one direction's connections share.
pub struct Shared {
    pub direction: Direction,
    pub app: SocketAddr,
    pub opaque_ports: Vec<u16>,
    pub detect_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Option<Duration>,
    pub pool: Arc<pool::Pool>,
    pub sink: SpanSink,
    pub access_log: Option<AccessLog>,
    pub routes: Arc<RouteTemplates>,
    pub sampler: Arc<crate::trace::sampling::Sampler>,
    pub metrics: Arc<crate::metrics::DirectionMetrics>,
}

impl Shared {
    /// Inbound traffic goes to the app; a redirected connection keeps its
    /// original port (the app may listen on several).
    pub fn inbound_target(&self, original_dst: Option<SocketAddr>) -> SocketAddr {
        original_dst.map_or(self.app, |o| SocketAddr::new(self.app.ip(), o.port()))
    }

    /// Every finished request passes here once: metrics count it (sampled
    /// or not), the access log writes it, the sink decides on export.
    pub fn record(&self, span: SpanRecord) {
        self.metrics.record(&span, &self.routes);
        if let Some(log) = &self.access_log {
            log.log(&span);
        }
        self.sink.push(span);
    }
}

pub async fn serve_connection<I>(io: I, h2: bool, shared: Arc<Shared>, meta: ConnMeta, drain: drain::Watch)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = proxy::ProxyService::new(shared, meta);
    // Detection already chose the protocol; the builder must not guess again.
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder = if h2 { builder.http2_only() } else { builder.http1_only() };
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => log_conn_end(r),
        _ = drain.signaled() => {
            conn.as_mut().graceful_shutdown();
            log_conn_end(conn.await);
        }
    }
}

fn log_conn_end(r: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}
