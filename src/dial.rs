//! Dialing upstreams, for the HTTP pool and the opaque relay alike: the
//! connect timeout, the refusal to connect back into the proxy's own
//! listener, and the connect-time and round-trip metrics. What is sent
//! over the connection is the caller's business.

use crate::metrics::DirectionMetrics;
use crate::metrics::net::{Connect, Peer};
use crate::metrics::tcp_info::smoothed_rtt;
use crate::trace::Upstream;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Why a connection to the upstream could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("upstream refused the connection")]
    Refused,
    #[error("connecting to the upstream timed out")]
    Timeout,
    #[error("the destination is this proxy's own listener: the request would loop")]
    Loop,
    /// Inbound traffic redirected to one of sidetrace's other ports (the
    /// outbound listener, the admin or trace API): forwarding it would
    /// open them to whoever can reach the pod.
    #[error("the destination is one of this proxy's own ports")]
    OwnPort,
    #[error("could not connect to the upstream: {0}")]
    Failed(std::io::Error),
}

impl DialError {
    fn outcome(&self) -> Connect {
        match self {
            DialError::Refused => Connect::Refused,
            DialError::Timeout => Connect::Timeout,
            DialError::Loop | DialError::OwnPort | DialError::Failed(_) => Connect::Error,
        }
    }
}

pub struct Dialer {
    timeout: Duration,
    metrics: Arc<DirectionMetrics>,
    /// The listener this direction's traffic arrives on: connecting to it
    /// again would be a loop.
    listener: Option<SocketAddr>,
    /// sidetrace's other listeners, never a destination (inbound only).
    forbidden: Vec<SocketAddr>,
}

impl Dialer {
    pub fn new(timeout: Duration, metrics: Arc<DirectionMetrics>, listener: Option<SocketAddr>) -> Dialer {
        Dialer { timeout, metrics, listener, forbidden: Vec::new() }
    }

    /// Refuses to connect to any of `listeners` as well.
    pub fn forbidding(mut self, listeners: impl IntoIterator<Item = SocketAddr>) -> Dialer {
        self.forbidden.extend(listeners);
        self
    }

    pub async fn connect(&self, dest: &Upstream) -> Result<TcpStream, DialError> {
        let connecting = async {
            match dest {
                Upstream::Addr(a) => TcpStream::connect(*a).await,
                Upstream::Name(auth) => {
                    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
                    TcpStream::connect((host, auth.port_u16().unwrap_or(80))).await
                }
            }
        };
        let started = Instant::now();
        let sock = match tokio::time::timeout(self.timeout, connecting).await {
            Err(_) => Err(DialError::Timeout),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(DialError::Refused),
            Ok(Err(e)) => Err(DialError::Failed(e)),
            Ok(Ok(s)) => Ok(s),
        };
        let net = &self.metrics.net;
        net.connected(started.elapsed(), sock.as_ref().map_or_else(DialError::outcome, |_| Connect::Ok));
        let sock = sock?;
        if self.listener.is_some_and(|own| Dialer::reaches(&sock, own)) {
            return Err(DialError::Loop);
        }
        if self.forbidden.iter().any(|own| Dialer::reaches(&sock, *own)) {
            return Err(DialError::OwnPort);
        }
        net.rtt(Peer::Upstream, smoothed_rtt(&sock));
        let _ = sock.set_nodelay(true);
        Ok(sock)
    }

    /// Whether `sock` leads to our own listener `own`: an HTTP_PROXY
    /// request for the proxy's own address, or an app address that is the
    /// listener's port under another name. Forwarding to our own inbound
    /// side would loop until the file descriptors run out.
    fn reaches(sock: &TcpStream, own: SocketAddr) -> bool {
        let (Ok(peer), Ok(local)) = (sock.peer_addr(), sock.local_addr()) else {
            return false;
        };
        let same_host = peer.ip() == local.ip() || peer.ip().is_loopback();
        peer == own || (own.ip().is_unspecified() && peer.port() == own.port() && same_host)
    }
}
