//! The HTTP path: hyper serves the client connection, `proxy::handle` runs
//! each request (context, span, forward), `pool` talks to the upstream,
//! `body` streams both ways and `record` finishes the span on every exit.

pub mod body;
pub mod error;
pub mod headers;
pub mod idle;
pub mod pool;
pub mod proxy;
pub mod record;
pub mod upgrade;

use crate::access_log::AccessLog;
use crate::drain;
use crate::export::SpanSink;
use crate::listen::prefixed::PrefixedIo;
use crate::listen::{ConnMeta, Direction};
use crate::metrics::route::RouteTemplates;
use crate::trace::SpanRecord;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Everything one direction's connections share.
pub struct Shared {
    pub direction: Direction,
    pub app: SocketAddr,
    pub opaque_ports: Vec<u16>,
    pub detect_timeout: Duration,
    pub response_timeout: Option<Duration>,
    /// How long an HTTP/1 client connection may wait for its next request.
    pub idle_timeout: Option<Duration>,
    pub http1: hyper::server::conn::http1::Builder,
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

/// An HTTP/1 client connection: hyper serves it while requests come, and
/// gives it back whenever it goes idle (`idle`), so that waiting for the
/// next request costs no buffers.
pub async fn serve_http1(io: PrefixedIo<TcpStream>, shared: Arc<Shared>, meta: ConnMeta, drain: drain::Watch) {
    let meta = Arc::new(meta);
    let svc = proxy::ProxyService::new(shared.clone(), meta.clone());
    let mut io = io;
    let mut quick_return = false;
    loop {
        let wrapped = TokioIo::new(idle::ReleasingIo::new(io, meta.clone(), quick_return));
        // Boxed so that the idle task is small: the connection's state
        // lives only while it serves.
        let conn = Box::pin(shared.http1.serve_connection(wrapped, svc.clone()).with_upgrades());
        run(conn, &drain, |c| c.as_mut().graceful_shutdown()).await;
        let Some(sock) = meta.keepalive.take_parked() else { return };
        let _idle = shared.metrics.net.http1_idle();
        let idle_limit = async {
            match shared.idle_timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let parked_at = std::time::Instant::now();
        tokio::select! {
            r = sock.readable() => if r.is_err() { return },
            _ = drain.signaled() => return,
            _ = idle_limit => return,
        }
        quick_return = parked_at.elapsed() < idle::QUICK_RETURN;
        io = PrefixedIo::new(bytes::BytesMut::new(), sock);
    }
}

pub async fn serve_http2(io: PrefixedIo<TcpStream>, shared: Arc<Shared>, meta: ConnMeta, drain: drain::Watch) {
    let svc = proxy::ProxyService::new(shared, Arc::new(meta));
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    run(conn, &drain, |c| c.as_mut().graceful_shutdown()).await;
}

/// Serves until the connection ends; a drain asks it to finish what is in
/// flight and close.
async fn run<C, E>(mut conn: C, drain: &drain::Watch, graceful: impl FnOnce(&mut C))
where
    C: std::future::Future<Output = Result<(), E>> + Unpin,
    E: std::fmt::Display,
{
    let r = tokio::select! {
        r = &mut conn => r,
        _ = drain.signaled() => {
            graceful(&mut conn);
            conn.await
        }
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}
