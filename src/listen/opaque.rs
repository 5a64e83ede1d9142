//! Opaque TCP: TLS, unknown and server-first protocols are relayed byte
//! for byte to their destination; the proxy only notes the connection
//! (opened, closed, bytes each way, the TLS server name) in `metrics::net`.

use crate::metrics::net::{Connect, Net, Peer};
use crate::metrics::tcp_info::smoothed_rtt;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// `tls` is `Some` for a TLS connection, holding its server name if sent.
pub async fn relay(
    client: TcpStream,
    prefix: BytesMut,
    target: SocketAddr,
    connect_timeout: Duration,
    tls: Option<Option<&str>>,
    net: &Net,
) {
    let sni = tls.flatten();
    let conn = net.opaque_opened(sni, tls.is_some());
    conn.add_read(Peer::Client, prefix.len() as u64);
    let started = Instant::now();
    let upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let refused = e.kind() == std::io::ErrorKind::ConnectionRefused;
            net.connected(started.elapsed(), if refused { Connect::Refused } else { Connect::Error });
            tracing::debug!(%target, error = %e, "opaque connect failed");
            return;
        }
        Err(_) => {
            net.connected(started.elapsed(), Connect::Timeout);
            tracing::debug!(%target, "opaque connect timed out");
            return;
        }
    };
    net.connected(started.elapsed(), Connect::Ok);
    net.rtt(Peer::Upstream, smoothed_rtt(&upstream));
    let _ = upstream.set_nodelay(true);
    let mut upstream = conn.count(upstream, Peer::Upstream);
    if !prefix.is_empty() && upstream.write_all(&prefix).await.is_err() {
        return;
    }
    let mut client = conn.count(client, Peer::Client);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => {
            tracing::debug!(%target, sni, bytes_up = up + prefix.len() as u64, bytes_down = down, "opaque connection closed")
        }
        Err(e) => tracing::debug!(%target, sni, error = %e, "opaque connection ended with an error"),
    }
}
