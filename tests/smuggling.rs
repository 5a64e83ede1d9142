//! Request smuggling and malformed HTTP/1 over raw sockets, on both
//! listeners: every shape that could make the proxy and the app disagree
//! about where a request ends, and every request no parser should accept,
//! is answered by the proxy (400, or 431 for header sections too large),
//! forwards nothing (the `tally` app sees no byte of it), closes that
//! connection, and is counted in `sidetrace_rejected_requests_total`; the
//! next connection is served as usual.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use support::apps::{self, Tally};
use support::{TestProxy, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One hostile request: its bytes, given the request target and the Host
/// value; the status the proxy must answer; the reason it must count.
struct Case {
    name: &'static str,
    bytes: fn(&str, &str) -> Vec<u8>,
    status: u16,
    reason: &'static str,
}

fn head(target: &str, host: &str, lines: &str) -> String {
    format!("POST {target} HTTP/1.1\r\nHost: {host}\r\n{lines}")
}

const CASES: &[Case] = &[
    Case {
        name: "Content-Length then Transfer-Encoding",
        bytes: |t, h| head(t, h, "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX").into(),
        status: 400,
        reason: "content_length_and_transfer_encoding",
    },
    Case {
        name: "Transfer-Encoding then Content-Length",
        bytes: |t, h| head(t, h, "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX").into(),
        status: 400,
        reason: "content_length_and_transfer_encoding",
    },
    Case {
        name: "two differing Content-Length",
        bytes: |t, h| head(t, h, "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").into(),
        status: 400,
        reason: "content_length",
    },
    Case {
        name: "obs-fold",
        bytes: |t, h| head(t, h, "Content-Length: 0\r\nX-A: 1\r\n  folded\r\n\r\n").into(),
        status: 400,
        reason: "obs_fold",
    },
    Case {
        name: "bare CR in a header line",
        bytes: |t, h| head(t, h, "Content-Length: 0\r\nX-A: 1\r2\r\n\r\n").into(),
        status: 400,
        reason: "line_ending",
    },
    Case {
        name: "bare LF ending a header line",
        bytes: |t, h| head(t, h, "X-A: 1\nContent-Length: 0\r\n\r\n").into(),
        status: 400,
        reason: "line_ending",
    },
    Case {
        name: "invalid chunk size",
        bytes: |t, h| head(t, h, "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n").into(),
        status: 400,
        reason: "chunk",
    },
    Case {
        name: "chunk extension with a control byte",
        bytes: |t, h| head(t, h, "Transfer-Encoding: chunked\r\n\r\n5;ext\x01=1\r\nhello\r\n0\r\n\r\n").into(),
        status: 400,
        reason: "chunk",
    },
    Case {
        name: "Transfer-Encoding: chunked, gzip",
        bytes: |t, h| head(t, h, "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n").into(),
        status: 400,
        reason: "transfer_encoding",
    },
    Case {
        name: "Transfer-Encoding: gzip",
        bytes: |t, h| head(t, h, "Transfer-Encoding: gzip\r\n\r\n").into(),
        status: 400,
        reason: "transfer_encoding",
    },
    Case {
        name: "HTTP/1.1 without Host",
        bytes: |t, _| format!("GET {t} HTTP/1.1\r\nUser-Agent: raw\r\n\r\n").into(),
        status: 400,
        reason: "host",
    },
    Case {
        name: "two Host lines",
        bytes: |t, h| format!("GET {t} HTTP/1.1\r\nHost: {h}\r\nHost: elsewhere\r\n\r\n").into(),
        status: 400,
        reason: "host",
    },
    Case {
        name: "a 70 KiB header section",
        bytes: |t, h| format!("GET {t} HTTP/1.1\r\nHost: {h}\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024)).into(),
        status: 431,
        reason: "headers_too_large",
    },
    Case {
        name: "150 header lines",
        bytes: |t, h| {
            let lines: String = (0..150).map(|i| format!("X-H{i}: {i}\r\n")).collect();
            format!("GET {t} HTTP/1.1\r\nHost: {h}\r\n{lines}\r\n").into()
        },
        status: 431,
        reason: "headers_too_large",
    },
    Case {
        name: "invalid method",
        bytes: |t, h| format!("G(T {t} HTTP/1.1\r\nHost: {h}\r\n\r\n").into(),
        status: 400,
        reason: "malformed",
    },
    Case {
        name: "invalid request target",
        bytes: |t, h| format!("GET {t}\x01x HTTP/1.1\r\nHost: {h}\r\n\r\n").into(),
        status: 400,
        reason: "malformed",
    },
];

/// Sends `bytes` on a new connection and reads until the proxy closes it:
/// the status of its answer (if any) and all it sent.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> (Option<u16>, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                // A reset after the answer still closes the connection.
                Err(_) => return true,
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(read.is_ok(), "the proxy kept the connection open after answering: {text:?}");
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok());
    (status, text)
}

/// The listener, the request target and Host for the app, per direction:
/// inbound in origin form, outbound as to an HTTP proxy.
fn target(proxy: &TestProxy, app: &Tally, direction: &str, path: &str) -> (SocketAddr, String, String) {
    let host = app.addr.to_string();
    match direction {
        "inbound" => (proxy.inbound.unwrap(), path.to_string(), host),
        _ => (proxy.outbound.unwrap(), format!("http://{host}{path}"), host),
    }
}

async fn hostile_requests_are_refused(direction: &str) {
    let app = apps::tally().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let mut counted: HashMap<&str, f64> = HashMap::new();
    for (i, case) in CASES.iter().enumerate() {
        let before = app.len();
        let (addr, t, host) = target(&proxy, &app, direction, &format!("/case-{i}"));
        let (status, answer) = send_raw(addr, &(case.bytes)(&t, &host)).await;
        assert_eq!(status, Some(case.status), "{direction}, {}: {answer:?}", case.name);
        *counted.entry(case.reason).or_default() += 1.0;

        // The next connection is served, and it is all the app has seen
        // since: nothing of the refused request reached it.
        let (addr, t, host) = target(&proxy, &app, direction, &format!("/after-{i}"));
        let good = format!("GET {t} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (status, answer) = send_raw(addr, good.as_bytes()).await;
        assert_eq!(status, Some(200), "{direction}, after {}: {answer:?}", case.name);
        let seen = String::from_utf8_lossy(&app.received()[before..]).into_owned();
        assert!(
            seen.starts_with(&format!("GET /after-{i} HTTP/1.1\r\n")),
            "{direction}, {}: the app saw {seen:?}",
            case.name
        );
        assert_eq!(seen.matches("\r\n\r\n").count(), 1, "{direction}, {}: the app saw {seen:?}", case.name);
        assert!(!seen.contains(&format!("case-{i}")), "{direction}, {}: the app saw {seen:?}", case.name);
    }
    let found = wait::until(Duration::from_secs(5), async || {
        let m = proxy.metrics().await;
        let all_counted = counted.iter().all(|(reason, n)| {
            m.value("sidetrace_rejected_requests_total", &[("direction", direction), ("reason", reason)]) == Some(*n)
        });
        all_counted.then_some(())
    })
    .await;
    if found.is_none() {
        let m = proxy.metrics().await;
        let got: Vec<_> = counted
            .keys()
            .map(|r| (r, m.value("sidetrace_rejected_requests_total", &[("direction", direction), ("reason", r)])))
            .collect();
        panic!("{direction}: expected {counted:?}, /metrics has {got:?}");
    }
    assert!(proxy.spans().iter().all(|s| s.uri.path().starts_with("/after-")), "a refused request made a span");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_inbound() {
    hostile_requests_are_refused("inbound").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_outbound() {
    hostile_requests_are_refused("outbound").await;
}

/// A smuggled request behind a good one on the same connection: the good
/// one is answered, the second refused, and the app sees only the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_smuggling_attempt_is_refused() {
    let app = apps::tally().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let bytes = "GET /first HTTP/1.1\r\nHost: a\r\n\r\n\
                 POST /second HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n\
                 0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let (status, answer) = send_raw(proxy.inbound.unwrap(), bytes.as_bytes()).await;
    assert_eq!(status, Some(200), "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer:?}");
    assert!(answer.contains("HTTP/1.1 400 "), "{answer:?}");
    let seen = String::from_utf8_lossy(&app.received()).into_owned();
    assert!(seen.starts_with("GET /first HTTP/1.1\r\n"), "{seen:?}");
    assert!(!seen.contains("second") && !seen.contains("smuggled"), "{seen:?}");
}

/// A bad chunk that arrives after the request went upstream cannot be
/// answered 400 any more: the request is cut short, and the app never
/// gets the bad bytes (nor anything after them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_chunk_after_forwarding_cuts_the_request() {
    let app = apps::tally().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let mut s = TcpStream::connect(proxy.inbound.unwrap()).await.unwrap();
    s.write_all(b"POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").await.unwrap();
    let forwarded = wait::until(Duration::from_secs(10), async || app.received().ends_with(b"hello\r\n")).await;
    assert!(
        forwarded.is_some(),
        "the first chunk never reached the app: {:?}",
        String::from_utf8_lossy(&app.received())
    );
    s.write_all(b"zz\r\nevil\r\n0\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection stayed open");
    let seen = String::from_utf8_lossy(&app.received()).into_owned();
    assert!(!seen.contains("zz") && !seen.contains("evil"), "{seen:?}");
    let found = wait::until(Duration::from_secs(5), async || {
        let m = proxy.metrics().await;
        m.value("sidetrace_rejected_requests_total", &[("direction", "inbound"), ("reason", "chunk")]) == Some(1.0)
    })
    .await;
    assert!(found.is_some(), "the cut request was not counted");
}
