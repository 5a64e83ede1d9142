//! Opaque TCP: TLS, unknown and server-first protocols are relayed byte
//! for byte to their destination; the proxy only notes the connection
//! (opened, closed, bytes each way, the TLS server name) in `metrics::net`.

use crate::dial::Dialer;
use crate::metrics::net::{Net, Peer};
use crate::trace::Upstream;
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// `tls` is `Some` for a TLS connection, holding its server name if sent.
/// The upstream is dialled like any other (`dial::Dialer`): same timeout,
/// connect metrics and refusal to loop back into the proxy.
pub async fn relay(
    client: TcpStream,
    prefix: BytesMut,
    target: SocketAddr,
    dialer: &Dialer,
    tls: Option<Option<&str>>,
    net: &Net,
) {
    let sni = tls.flatten();
    let conn = net.opaque_opened(sni, tls.is_some());
    conn.add_read(Peer::Client, prefix.len() as u64);
    let upstream = match dialer.connect(&Upstream::Addr(target)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%target, error = %e, "opaque connect failed");
            return;
        }
    };
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
