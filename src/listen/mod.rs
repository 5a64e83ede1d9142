//! Listeners: accept connections, learn where each was headed
//! (`SO_ORIGINAL_DST` for iptables-redirected traffic), detect its protocol,
//! and hand it to the HTTP server (`crate::http`) or relay it as opaque TCP.

pub mod detect;
pub mod opaque;
pub mod original_dst;

use crate::drain;
use crate::http::{self, ConnMeta, PrefixedIo, Shared};
use crate::metrics::net::Peer;
use crate::metrics::tcp_info::smoothed_rtt;
use crate::vocab::{DetectOutcome, Direction};
use detect::Protocol;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, drain: drain::Watch) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = drain.signaled() => return,
        };
        match accepted {
            Ok((sock, client)) => {
                let Some(slot) = shared.limits.admit() else {
                    // Closed unread: the client sees the connection end
                    // before any answer, and may try another replica.
                    shared.metrics.refusals.connection();
                    tracing::debug!(%client, "connection refused: --max-connections reached");
                    drop(sock);
                    continue;
                };
                let shared = shared.clone();
                let drain = drain.clone();
                tokio::spawn(async move {
                    handle(sock, client, shared, drain).await;
                    drop(slot);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                tracing::warn!(direction = shared.direction.as_str(), error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// A dual-stack (`[::]`) listener sees IPv4 peers as `::ffff:a.b.c.d`;
/// spans and logs name them as the IPv4 addresses they are.
fn unmapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

async fn handle(mut sock: TcpStream, client: SocketAddr, shared: Arc<Shared>, drain: drain::Watch) {
    let _ = sock.set_nodelay(true);
    let Ok(local) = sock.local_addr() else { return };
    let original_dst = original_dst::original_dst(&sock);
    let meta = ConnMeta {
        client: unmapped(client),
        local: unmapped(local),
        original_dst,
        keepalive: Default::default(),
        framing: Default::default(),
    };
    let dest_port = match shared.direction {
        Direction::Inbound => Some(original_dst.map_or(shared.app.port(), |a| a.port())),
        Direction::Outbound => original_dst.map(|a| a.port()),
    };
    let net = &shared.metrics.net;
    let (protocol, prefix) = if dest_port.is_some_and(|p| shared.opaque_ports.contains(&p)) {
        net.detected(Protocol::Opaque.wire(), DetectOutcome::Skipped);
        (Protocol::Opaque, bytes::BytesMut::new())
    } else {
        // Boxed, like the opaque relay below: the task's own size is what an
        // idle HTTP/1 connection costs, so rarer or passing states live apart.
        let (p, buf, outcome) = Box::pin(detect::detect(&mut sock, shared.detect_timeout)).await;
        net.detected(p.wire(), outcome);
        (p, buf)
    };
    net.rtt(Peer::Client, smoothed_rtt(&sock));
    match protocol {
        Protocol::Http1 => http::serve_http1(PrefixedIo::new(prefix, sock), shared, meta, drain).await,
        Protocol::Http2 => Box::pin(http::serve_http2(PrefixedIo::new(prefix, sock), shared, meta, drain)).await,
        Protocol::Tls { sni } => Box::pin(relay(sock, prefix, &shared, &meta, Some(sni.as_deref()))).await,
        Protocol::Opaque => Box::pin(relay(sock, prefix, &shared, &meta, None)).await,
    }
}

/// `tls` is `Some` for a TLS connection, holding its server name if sent.
async fn relay(sock: TcpStream, prefix: bytes::BytesMut, shared: &Shared, meta: &ConnMeta, tls: Option<Option<&str>>) {
    let target = match shared.direction {
        Direction::Inbound => Some(shared.inbound_target(meta.original_dst)),
        Direction::Outbound => meta.original_dst,
    };
    match target {
        Some(t) => opaque::relay(sock, prefix, t, &shared.dialer, tls, &shared.metrics.net).await,
        None => tracing::debug!(client = %meta.client, "non-HTTP connection with no original destination; closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_peers_are_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.213.0.1]:5000".parse().unwrap();
        assert_eq!(unmapped(mapped), "10.213.0.1:5000".parse::<SocketAddr>().unwrap());
        let v6: SocketAddr = "[fd00::1]:5000".parse().unwrap();
        assert_eq!(unmapped(v6), v6);
    }
}
