//! `SO_ORIGINAL_DST`: where a connection was headed before an iptables or
//! nftables REDIRECT sent it to us (netfilter keeps it in the conntrack
//! entry). socket2 makes the `getsockopt` calls, for IPv4 and IPv6.

use socket2::SockRef;
use std::net::SocketAddr;

/// The original destination, or `None` when the connection was not
/// redirected (no conntrack NAT entry, or it points at ourselves).
pub fn original_dst(sock: &tokio::net::TcpStream) -> Option<SocketAddr> {
    let local = sock.local_addr().ok()?;
    let s = SockRef::from(sock);
    let dst = match local {
        SocketAddr::V4(_) => s.original_dst().ok(),
        // A dual-stack socket's IPv4 peers were redirected by the IPv4 rules.
        SocketAddr::V6(_) => s.original_dst_ipv6().or_else(|_| s.original_dst()).ok(),
    }?
    .as_socket()?;
    redirected(canonical(dst), local)
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Once any NAT rule exists in the namespace, conntrack tracks every
/// connection, so an unredirected one also has an "original" destination:
/// the listener itself. On a dual-stack listener its local address is
/// IPv4-mapped while conntrack's is plain IPv4; both are compared in
/// canonical form, or an explicit-proxy client of `[::]:15001` would be
/// sent back to the proxy (508).
fn redirected(dst: SocketAddr, local: SocketAddr) -> Option<SocketAddr> {
    (dst != canonical(local)).then_some(dst)
}

#[cfg(test)]
mod tests {
    use super::redirected;

    #[test]
    fn a_connection_to_the_listener_itself_was_not_redirected_in_either_form() {
        let dst = "127.0.0.1:15001".parse().unwrap();
        assert_eq!(redirected(dst, "127.0.0.1:15001".parse().unwrap()), None);
        assert_eq!(redirected(dst, "[::ffff:127.0.0.1]:15001".parse().unwrap()), None);
        let elsewhere = "10.0.0.7:9090".parse().unwrap();
        assert_eq!(redirected(elsewhere, "[::ffff:127.0.0.1]:15001".parse().unwrap()), Some(elsewhere));
    }
}
