//! What the proxy knows about one client connection, shared by the
//! connection's task and the requests it carries. The keep-alive state is
//! `http::idle`'s; it lives here so the two files do not import each other.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct ConnMeta {
    pub client: SocketAddr,
    pub local: SocketAddr,
    /// Set when an iptables REDIRECT brought the connection here.
    pub original_dst: Option<SocketAddr>,
    /// HTTP/1 only: whether a request is in flight, so that an idle
    /// connection can give up its buffers (`http::idle`).
    pub keepalive: KeepAlive,
    /// HTTP/1 only: the framing scanner's verdict, read by the guard.
    pub framing: FramingVerdict,
}

/// Where the framing scanner (fed by `http::idle`, as bytes are read)
/// meets the guard layer (which sees requests as hyper hands them over):
/// both count requests from the connection's first.
#[derive(Debug, Default)]
pub struct FramingVerdict {
    /// Requests the guard has been handed.
    pub(super) dispatched: AtomicU32,
    /// 1 + the number of the first request that broke a rule; 0 while none has.
    pub(super) bad: AtomicU32,
    /// Its reason, as an index into `RejectReason::ALL`.
    pub(super) reason: AtomicU8,
}

/// Per-connection bookkeeping, shared by the service (which sees requests
/// start and responses end) and the socket wrapper (which sees reads).
#[derive(Default)]
pub struct KeepAlive {
    pub(super) flags: AtomicU8,
    /// Bumped whenever the client's bytes reach hyper.
    pub(super) activity: AtomicU32,
    /// In this worker's sweep list.
    pub(super) listed: AtomicBool,
    /// The sweep saw a whole interval of silence.
    pub(super) expired: AtomicBool,
    pub(super) parked: Mutex<Option<TcpStream>>,
}
