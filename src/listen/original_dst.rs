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
    let dst = match dst {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().map_or(dst, |v4| SocketAddr::new(v4.into(), v6.port())),
        v4 => v4,
    };
    (dst != local).then_some(dst)
}
