//! Memory comes back after a burst: a sidecar's limit is sized for its
//! steady state, so the heap a burst of connections freed must go back to
//! the system (`src/memory.rs`), not stay with the allocator. The proxy
//! runs as its own process, so its RSS is its own.

mod support;

use std::time::Duration;
use support::process::{raise_fd_limit, status_kib};
use support::{TestProxy, apps, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNS: usize = 2000;

/// One connection, one request, its whole answer; the connection is
/// handed back open.
async fn one_request(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: burst\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"hello from the app\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the answer: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_falls_back_after_a_burst_of_connections() {
    raise_fd_limit(2 * CONNS as u64);
    let app = apps::echo().await;
    let mut proxy =
        TestProxy::to(app.addr).flags(&["--outbound", "off", "--admin", "off", "--access-log", "off"]).spawn();
    let pid = proxy.process().id();
    let addr = proxy.inbound.unwrap();
    drop(one_request(addr).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = status_kib(pid, "VmRSS:");

    // Every connection at once, each with its request in flight together.
    let burst: Vec<_> = (0..CONNS).map(|_| tokio::spawn(one_request(addr))).collect();
    let mut held = Vec::with_capacity(CONNS);
    for b in burst {
        held.push(b.await.unwrap());
    }
    let peak = status_kib(pid, "VmRSS:");
    drop(held);
    eprintln!("{CONNS} connections at once: RSS {idle} KiB idle, {peak} KiB with them open");
    assert!(peak > idle + 16 * 1024, "the burst did not grow the heap ({idle} -> {peak} KiB): nothing to give back");

    // Back within a few trimming rounds to near idle: less than a quarter
    // of what the burst added stays.
    let near_idle = idle + (peak - idle) / 4;
    let back = wait::until(Duration::from_secs(30), async || {
        let now = status_kib(pid, "VmRSS:");
        (now < near_idle).then_some(now)
    })
    .await;
    let now = status_kib(pid, "VmRSS:");
    assert!(
        back.is_some(),
        "RSS still {now} KiB 30 s after the burst (idle {idle}, peak {peak}, wanted < {near_idle})"
    );
    eprintln!("after the burst: RSS {now} KiB");
}
