//! Per-listener limits and slow clients: beyond `--max-connections` a
//! connection is closed unread, beyond `--max-concurrent-requests` a
//! request is answered 503 with `Retry-After`, and a client that sends its
//! header section too slowly (slowloris) is cut off by
//! `--header-read-timeout`; each is counted, nothing of it reaches the
//! app, and other clients are served meanwhile.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::apps;
use support::{Client, TestProxy, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SETTLE: Duration = Duration::from_secs(10);

/// Sends one keep-alive request on `s` and reads its `ok\n` answer (the
/// `tally` app's), leaving the connection open.
async fn request_on(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok\n") {
        let n = tokio::time::timeout(SETTLE, s.read(&mut buf)).await.expect("an answer in time").unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Whether the peer closed `s` (EOF or reset) within the settle time,
/// and what it sent before.
async fn closed(s: &mut TcpStream) -> (bool, String) {
    let mut got = Vec::new();
    let r = tokio::time::timeout(SETTLE, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (r.is_ok(), String::from_utf8_lossy(&got).into_owned())
}

async fn counter(proxy: &TestProxy, name: &str, labels: &[(&str, &str)]) -> f64 {
    proxy.metrics().await.value(name, labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_unread() {
    let app = apps::tally().await;
    let proxy = TestProxy::to(app.addr).flags(&["--max-connections", "2"]).start().await;
    let addr = proxy.inbound.unwrap();
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(request_on(&mut first, "/one").await.starts_with("HTTP/1.1 200"));
    assert!(request_on(&mut second, "/two").await.starts_with("HTTP/1.1 200"));

    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET /three HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let (was_closed, answer) = closed(&mut third).await;
    assert!(was_closed && answer.is_empty(), "the third connection got {answer:?} (closed: {was_closed})");
    let refused = [("direction", "inbound"), ("reason", "max_connections")];
    assert_eq!(counter(&proxy, "sidetrace_refused_connections_total", &refused).await, 1.0);

    // The two admitted connections are still served; once one closes,
    // a new connection is admitted.
    assert!(request_on(&mut first, "/one-again").await.starts_with("HTTP/1.1 200"));
    drop(second);
    let served = wait::until(SETTLE, async || {
        let Ok(mut s) = TcpStream::connect(addr).await else { return false };
        if s.write_all(b"GET /four HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await.is_err() {
            return false;
        }
        closed(&mut s).await.1.starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(served.is_some(), "no connection admitted after one closed");
    let seen = String::from_utf8_lossy(&app.received()).into_owned();
    assert!(!seen.contains("/three"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_limit_get_503_with_retry_after() {
    let app = apps::sleeper().await;
    let proxy = TestProxy::to(app).flags(&["--max-concurrent-requests", "2"]).start().await;
    let url = proxy.inbound_url();
    // Two requests the app holds for a minute take both permits (each
    // tries again if a probe below held a permit when it came).
    let held: Vec<_> = (0..2)
        .map(|i| {
            let url = format!("{url}/held-{i}?ms=60000");
            tokio::spawn(async move {
                while Client::http1().get(&url).timeout(Duration::from_secs(120)).send().await.status == 503 {}
            })
        })
        .collect();
    let refused = wait::until(SETTLE, async || {
        let r = Client::http1().get(&format!("{url}/third")).send().await;
        (r.status == 503).then_some(r)
    })
    .await
    .expect("a third request while two are in flight is refused");
    assert_eq!(refused.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    let overloaded = [("direction", "inbound"), ("reason", "overloaded")];
    assert!(counter(&proxy, "sidetrace_rejected_requests_total", &overloaded).await >= 1.0);

    // Once the held requests are gone (their clients hang up), requests
    // are served again.
    for h in held {
        h.abort();
    }
    let served =
        wait::until(SETTLE, async || Client::http1().get(&format!("{url}/after")).send().await.status == 200).await;
    assert!(served.is_some(), "requests still refused after the held ones ended");
    let spans = proxy.spans();
    assert!(spans.iter().all(|s| s.uri.path() != "/third"), "a refused request made a span");
}

/// Writes `bytes` one at a time, `pause` apart, until the peer closes.
async fn trickle(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, pause: Duration) {
    for b in bytes {
        if w.write_all(&[b]).await.is_err() {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

/// A slowloris client: `quick` at once, then `slow` a byte every 100 ms.
/// Returns whether the proxy cut it off, and what it answered.
async fn slowloris(addr: SocketAddr, quick: &'static str, slow: String) -> (bool, String) {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    w.write_all(quick.as_bytes()).await.unwrap();
    let writer = tokio::spawn(trickle(w, slow.as_bytes().to_vec(), Duration::from_millis(100)));
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    (ended.is_ok(), String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_while_others_are_served() {
    let app = apps::tally().await;
    let flags = ["--header-read-timeout", "1s", "--detect-timeout", "500ms"];
    let proxy = TestProxy::to(app.addr).flags(&flags).start().await;
    let addr = proxy.inbound.unwrap();
    // Two minutes of header bytes, if nobody stops it.
    let slow_header = format!("X-Slow: {}\r\n\r\n", "a".repeat(1200));
    let after_line = tokio::spawn(slowloris(addr, "GET /slow-headers HTTP/1.1\r\nHost: a\r\n", slow_header.clone()));
    let from_start = tokio::spawn(slowloris(addr, "G", format!("ET /slow-line HTTP/1.1\r\nHost: a\r\n{slow_header}")));

    // Meanwhile, another client is served.
    let mut other = TcpStream::connect(addr).await.unwrap();
    assert!(request_on(&mut other, "/meanwhile").await.starts_with("HTTP/1.1 200"));

    for (name, slow) in [("after the request line", after_line), ("from the first byte", from_start)] {
        let (cut, answer) = slow.await.unwrap();
        assert!(cut, "a client slow {name} was never cut off (answered {answer:?})");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "slow {name}: {answer:?}");
    }
    let seen = String::from_utf8_lossy(&app.received()).into_owned();
    assert!(!seen.contains("/slow"), "the app saw {seen:?}");
    let timeouts = [("direction", "inbound"), ("reason", "header_timeout")];
    assert_eq!(counter(&proxy, "sidetrace_rejected_requests_total", &timeouts).await, 2.0);
}
