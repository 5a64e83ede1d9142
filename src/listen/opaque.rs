//! Opaque TCP: TLS, unknown and server-first protocols are relayed byte
//! for byte to their destination; the proxy only notes the connection.

use bytes::BytesMut;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub async fn relay(
    mut client: TcpStream,
    prefix: BytesMut,
    target: SocketAddr,
    connect_timeout: Duration,
    sni: Option<&str>,
) {
    let upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%target, error = %e, "opaque connect failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%target, "opaque connect timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let mut upstream = upstream;
    if !prefix.is_empty() && upstream.write_all(&prefix).await.is_err() {
        return;
    }
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => {
            tracing::debug!(%target, sni, bytes_up = up + prefix.len() as u64, bytes_down = down, "opaque connection closed")
        }
        Err(e) => tracing::debug!(%target, sni, error = %e, "opaque connection ended with an error"),
    }
}
