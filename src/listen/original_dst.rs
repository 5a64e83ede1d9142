//! `SO_ORIGINAL_DST`: where a connection was headed before an iptables
//! REDIRECT sent it to us (netfilter keeps it in the conntrack entry).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

const SO_ORIGINAL_DST: libc::c_int = 80;
const IP6T_SO_ORIGINAL_DST: libc::c_int = 80;

/// The original destination, or `None` when the connection was not
/// redirected (no conntrack NAT entry, or it points at ourselves).
pub fn original_dst(sock: &tokio::net::TcpStream) -> Option<SocketAddr> {
    let local = sock.local_addr().ok()?;
    let fd = sock.as_raw_fd();
    let dst = match local {
        SocketAddr::V4(_) => v4(fd),
        SocketAddr::V6(_) => v6(fd).or_else(|| v4(fd)),
    }?;
    redirected(dst, local)
}

/// Once any NAT rule exists in the namespace, conntrack tracks every
/// connection, so an unredirected one also has an "original" destination:
/// the listener itself. On a dual-stack listener its local address is
/// IPv4-mapped while conntrack's is plain IPv4; both are compared in
/// canonical form, or an explicit-proxy client of `[::]:15001` would be
/// sent back to the proxy (508).
fn redirected(dst: SocketAddr, local: SocketAddr) -> Option<SocketAddr> {
    let local = SocketAddr::new(local.ip().to_canonical(), local.port());
    (dst != local).then_some(dst)
}

fn v4(fd: libc::c_int) -> Option<SocketAddr> {
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed sockaddr_in.
    unsafe {
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::getsockopt(fd, libc::SOL_IP, SO_ORIGINAL_DST, (&raw mut addr).cast(), &mut len);
        if rc != 0 || addr.sin_family as libc::c_int != libc::AF_INET {
            return None;
        }
        let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
        Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(addr.sin_port))))
    }
}

fn v6(fd: libc::c_int) -> Option<SocketAddr> {
    // SAFETY: as above, with a sockaddr_in6.
    unsafe {
        let mut addr: libc::sockaddr_in6 = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        let rc = libc::getsockopt(fd, libc::SOL_IPV6, IP6T_SO_ORIGINAL_DST, (&raw mut addr).cast(), &mut len);
        if rc != 0 || addr.sin6_family as libc::c_int != libc::AF_INET6 {
            return None;
        }
        let ip = Ipv6Addr::from(addr.sin6_addr.s6_addr);
        let v6 = SocketAddrV6::new(ip, u16::from_be(addr.sin6_port), addr.sin6_flowinfo, addr.sin6_scope_id);
        Some(match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => SocketAddr::V6(v6),
        })
    }
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
