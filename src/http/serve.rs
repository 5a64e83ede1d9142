//! Serving client connections with hyper: HTTP/1 connections that give
//! their buffers back while idle, HTTP/2 connections, and a graceful end
//! when the drain is signalled.

use super::conn::ConnMeta;
use super::idle;
use super::prefixed::PrefixedIo;
use super::proxy::ProxyService;
use super::shared::Shared;
use crate::drain;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use tokio::net::TcpStream;

/// An HTTP/1 client connection: hyper serves it while requests come, and
/// gives it back whenever it goes idle (`idle`), so that waiting for the
/// next request costs no buffers.
pub async fn serve_http1(io: PrefixedIo<TcpStream>, shared: Arc<Shared>, meta: ConnMeta, drain: drain::Watch) {
    let meta = Arc::new(meta);
    let svc = ProxyService::new(shared.clone(), meta.clone());
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
    let svc = ProxyService::new(shared, Arc::new(meta));
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
