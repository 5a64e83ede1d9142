//! Serving client connections with hyper: HTTP/1 connections that give
//! their buffers back while idle, HTTP/2 connections, and a graceful end
//! when the drain is signalled.

use super::conn::ConnMeta;
use super::dedicated::Dedicated;
use super::guard_layer;
use super::idle;
use super::joint;
use super::prefixed::PrefixedIo;
use super::shared::Shared;
use super::stack::stack;
use crate::drain;
use crate::vocab::Direction;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use tokio::net::TcpStream;

/// An HTTP/1 client connection: hyper serves it while requests come, and
/// gives it back whenever it goes idle (`idle`), so that waiting for the
/// next request costs no buffers. Inbound, the client connection's own
/// upstream connection (`dedicated`) is driven here too, and idles with it.
pub async fn serve_http1(io: PrefixedIo<TcpStream>, shared: Arc<Shared>, meta: ConnMeta, drain: drain::Watch) {
    let meta = Arc::new(meta);
    let dedicated = (shared.direction == Direction::Inbound).then(|| Arc::new(Dedicated::default()));
    let svc = TowerToHyperService::new(stack(&shared, &meta, true, dedicated.clone()));
    let mut io = io;
    let mut quick_return = false;
    loop {
        let wrapped = TokioIo::new(idle::ReleasingIo::new(io, meta.clone(), quick_return));
        // Boxed so that the idle task is small: the connection's state
        // lives only while it serves.
        let conn = Box::pin(shared.http1.serve_connection(wrapped, svc.clone()).with_upgrades());
        let served = run(conn, &drain, |c| c.as_mut().graceful_shutdown());
        let ended = match &dedicated {
            Some(d) => joint::drive_beside(served, |cx| d.poll_drive(cx)).await,
            None => served.await,
        };
        guard_layer::count_connection_end(&shared, &meta, ended.as_ref().err());
        let Some(sock) = meta.keepalive.take_parked() else { return };
        if let Some(d) = &dedicated {
            d.park();
        }
        let _idle = shared.metrics.net.http1_idle();
        let parked_at = std::time::Instant::now();
        if !idle_wait(&sock, dedicated.as_deref(), &shared, &drain).await {
            return;
        }
        quick_return = parked_at.elapsed() < idle::QUICK_RETURN;
        io = PrefixedIo::new(bytes::BytesMut::new(), sock);
    }
}

/// Waits for an idle client's next bytes; `false` when the connection
/// should close instead (drain, idle timeout, a socket error). An app that
/// closes its side meanwhile loses only its own connection: the next
/// request makes a new one.
async fn idle_wait(client: &TcpStream, dedicated: Option<&Dedicated>, shared: &Shared, drain: &drain::Watch) -> bool {
    let idle_limit = async {
        match shared.idle_timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(idle_limit);
    let mut upstream = dedicated.and_then(Dedicated::take_parked);
    loop {
        let upstream_stirs = async {
            match &upstream {
                Some(u) => u.readable().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = client.readable() => {
                if let (Some(d), Some(u)) = (dedicated, upstream) {
                    d.put_back(u);
                }
                return r.is_ok();
            }
            _ = upstream_stirs => upstream = None,
            _ = drain.signaled() => return false,
            _ = &mut idle_limit => return false,
        }
    }
}

pub async fn serve_http2(io: PrefixedIo<TcpStream>, shared: Arc<Shared>, meta: ConnMeta, drain: drain::Watch) {
    let svc = TowerToHyperService::new(stack(&shared, &Arc::new(meta), false, None));
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let _ = run(conn, &drain, |c| c.as_mut().graceful_shutdown()).await;
}

/// The largest request header section accepted, request line included;
/// beyond it, 431. Envoy's default is 60 KiB, nginx's 32 KiB in 8 KiB
/// lines; hyper's own (its whole read buffer, ~400 KiB) is more than any
/// client needs and a cheap way to make a proxy buffer.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The HTTP/1 server settings every client connection gets. hyper's
/// header read timer starts when it waits for a head; an idle connection
/// is handed to a fresh hyper connection when its next bytes come
/// (`idle`), so the timeout counts from the request's first byte.
pub fn http1_builder(header_read_timeout: Option<std::time::Duration>) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new());
    b.max_header_size(MAX_HEADER_BYTES);
    b.header_read_timeout(header_read_timeout);
    b
}

/// Serves until the connection ends; a drain asks it to finish what is in
/// flight and close, and the drain's timeout closes it.
async fn run<C, E>(mut conn: C, drain: &drain::Watch, graceful: impl FnOnce(&mut C)) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>> + Unpin,
    E: std::fmt::Display,
{
    let r = tokio::select! {
        // The connection first: a drain is rare, and a fixed order spares
        // the random one on every poll.
        biased;
        r = &mut conn => r,
        _ = drain.signaled() => {
            graceful(&mut conn);
            tokio::select! {
                r = &mut conn => r,
                // The drain timeout ran out: dropping the connection ends
                // its requests, whose spans say `drain_timeout`.
                _ = drain.cut() => Ok(()),
            }
        }
    };
    if let Err(e) = &r {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
    r
}
