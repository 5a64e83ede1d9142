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
    let client = meta.client;
    let svc = TowerToHyperService::new(stack(&shared, &Arc::new(meta), false, None));
    let flooded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io = super::h2_guard::FloodGuard::new(io, flooded.clone());
    let conn = http2_builder().serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let ended = run(conn, &drain, |c| c.as_mut().graceful_shutdown()).await;
    if flooded.load(std::sync::atomic::Ordering::Relaxed) {
        shared.metrics.refusals.http2_goaway(super::h2_guard::ENHANCE_YOUR_CALM);
    } else if let Some(code) = ended.as_ref().err().and_then(goaway_code) {
        tracing::debug!(%client, reason = crate::vocab::h2_error_code(code), "HTTP/2 connection closed with an error GOAWAY");
        shared.metrics.refusals.http2_goaway(code);
    }
}

/// The error code of the GOAWAY the server itself sent to close the
/// connection, when it closed for an error of the client's (a protocol
/// error, or one of h2's abuse limits: `ENHANCE_YOUR_CALM`). A GOAWAY the
/// client sent, a graceful close and an I/O error have none.
fn goaway_code(e: &hyper::Error) -> Option<u32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            let code = u32::from(h2.reason()?);
            return (h2.is_go_away() && h2.is_library() && code != 0).then_some(code);
        }
        source = s.source();
    }
    None
}

/// HTTP/2 (RFC 9113) limits, set explicitly rather than left to hyper's
/// and h2's defaults, so that SECURITY.md can name them and a dependency
/// update cannot move them. What h2 0.4 does beyond them is in SECURITY.md
/// ("HTTP/2 abuse") and `tests/h2_abuse.rs`.
pub mod h2_limits {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`: streams a client may have open at
    /// once; beyond it a new stream is refused (`RST_STREAM
    /// REFUSED_STREAM`), never served. RFC 9113 §6.5.2 advises at least
    /// 100; nginx's default is 128, hyper's 200.
    pub const MAX_CONCURRENT_STREAMS: u32 = 100;
    /// Streams the client opened and reset before they were accepted
    /// (rapid reset, CVE-2023-44487); beyond it `GOAWAY ENHANCE_YOUR_CALM`.
    /// h2's own default.
    pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
    /// Streams the server reset over the connection's life because of the
    /// client's errors (refused beyond `MAX_CONCURRENT_STREAMS`, malformed
    /// headers, "MadeYouReset", CVE-2025-8671); beyond it `GOAWAY
    /// ENHANCE_YOUR_CALM`. hyper's default.
    pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`, the same bound as an HTTP/1 header
    /// section (`MAX_HEADER_BYTES`): beyond it the stream is answered 431;
    /// a header block that decodes to more than 4 times it, or that needs
    /// more CONTINUATION frames than it could fill, closes the connection
    /// with `GOAWAY ENHANCE_YOUR_CALM` (h2 0.4.4+).
    pub const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
    /// `SETTINGS_HEADER_TABLE_SIZE`: the HPACK dynamic table the client may
    /// fill in our decoder (the RFC's default). A client's own, larger
    /// table size only bounds our encoder, which adds no more than the
    /// response headers it sends.
    pub const HEADER_TABLE_SIZE: u32 = 4096;
    /// `SETTINGS_MAX_FRAME_SIZE` (the RFC's minimum and default).
    pub const MAX_FRAME_SIZE: u32 = 16 * 1024;
    /// `SETTINGS_INITIAL_WINDOW_SIZE` and the connection window: request
    /// body bytes a client may send before the upstream takes them, per
    /// stream and per connection. The connection window bounds what one
    /// connection can make the proxy buffer. hyper's defaults.
    pub const STREAM_WINDOW: u32 = 1024 * 1024;
    pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
    /// Response bytes buffered per stream for a client that does not read
    /// (hyper's default is 400 KiB): beyond it the upstream's body waits.
    pub const MAX_SEND_BUF_SIZE: usize = 128 * 1024;
    /// A PING every `KEEP_ALIVE_INTERVAL`, and the connection closed when
    /// its acknowledgement has not come `KEEP_ALIVE_TIMEOUT` later: a dead
    /// peer, or a client that floods and stops reading, does not hold its
    /// streams and buffers for ever.
    pub const KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
    pub const KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
}

const _: () = assert!(h2_limits::MAX_HEADER_LIST_SIZE as usize == MAX_HEADER_BYTES);

/// The HTTP/2 server settings every client connection gets (`h2_limits`).
pub fn http2_builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    use h2_limits::*;
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new());
    b.max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    b.max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS);
    b.max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS);
    b.max_header_list_size(MAX_HEADER_LIST_SIZE);
    b.header_table_size(HEADER_TABLE_SIZE);
    b.max_frame_size(MAX_FRAME_SIZE);
    b.initial_stream_window_size(STREAM_WINDOW);
    b.initial_connection_window_size(CONNECTION_WINDOW);
    b.adaptive_window(false);
    b.max_send_buf_size(MAX_SEND_BUF_SIZE);
    b.keep_alive_interval(KEEP_ALIVE_INTERVAL);
    b.keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    b
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
