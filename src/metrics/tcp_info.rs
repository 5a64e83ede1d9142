//! The kernel's view of a TCP connection (`getsockopt(TCP_INFO)`, see
//! tcp(7)): its smoothed round-trip time, which only something holding the
//! socket can see. Sampled once per connection, right after the handshake
//! (upstream) or the first bytes (client), when the kernel has measured it.

use std::os::fd::AsRawFd;
use std::time::Duration;

/// `tcpi_rtt`, the smoothed RTT; `None` if the kernel has no estimate yet.
pub fn smoothed_rtt(sock: &impl AsRawFd) -> Option<Duration> {
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info.
    let info = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc =
            libc::getsockopt(sock.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len);
        if rc != 0 {
            return None;
        }
        info
    };
    (info.tcpi_rtt > 0).then(|| Duration::from_micros(info.tcpi_rtt.into()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_connections_have_an_rtt() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let rtt = super::smoothed_rtt(&c).expect("the handshake gave an RTT");
        assert!(rtt < std::time::Duration::from_secs(1), "{rtt:?}");
        assert!(super::smoothed_rtt(&s).is_some());
    }
}
