//! Heap allocations per request on sidetrace's request path.
//!
//! A counting `#[global_allocator]` wraps the system allocator. In one
//! process: the benchmark backend, a hyper client, and (for the proxied
//! paths) a `sidetrace::Sidecar` started with `Config::local_with`. The
//! client sends sequential `GET /` requests (1 KiB answers) over one
//! keep-alive connection, HTTP/1.1 and then HTTP/2, first directly to the
//! backend and then through each sidecar variant. The direct figure (the
//! client's and the backend's own allocations) is subtracted, so what is
//! left is the proxy's: its request path plus, amortised, its background
//! work (span export, the ring).
//!
//! Prints one JSON object on stdout. `allocs [--requests N] [--settle-ms MS]`
//! (the settle time, before and after the counted window, lets the
//! exporter's 1 s batch timer fire); build with
//! `cargo build --release --features allocs` in `bench/`.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Allocation calls by size class: bucket i counts sizes in (2^(i-1), 2^i].
static SIZES: [AtomicU64; 40] = [const { AtomicU64::new(0) }; 40];

fn size_class(size: usize) -> usize {
    (usize::BITS - size.saturating_sub(1).leading_zeros()).min(39) as usize
}

fn sizes() -> [u64; 40] {
    std::array::from_fn(|i| SIZES[i].load(Relaxed))
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        SIZES[size_class(layout.size())].fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        SIZES[size_class(layout.size())].fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size.saturating_sub(layout.size()) as u64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
enum Proto {
    H1,
    H2,
}

struct Measured {
    allocs: f64,
    reallocs: f64,
    bytes: f64,
    micros: f64,
    /// Allocation calls per request by size class.
    sizes: [f64; 40],
}

/// `{"<=64": 1.5, ...}`: size classes where `m` allocates more than `base`
/// per request (at least 0.05 calls more).
fn size_diff(m: &Measured, base: &Measured) -> String {
    let parts: Vec<String> = (0..40)
        .filter(|&i| m.sizes[i] - base.sizes[i] >= 0.05)
        .map(|i| format!("\"<={}\":{:.2}", 1u64 << i, m.sizes[i] - base.sizes[i]))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Sends `warmup` then `n` sequential requests to `addr`; counts the
/// allocations of the `n` (plus a settle time for background work).
async fn measure(addr: SocketAddr, proto: Proto, warmup: u64, n: u64, settle: Duration) -> Measured {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let io = TokioIo::new(stream);
    enum Sender {
        H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
        H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
    }
    let mut sender = match proto {
        Proto::H1 => {
            let (s, conn) = hyper::client::conn::http1::handshake(io).await.expect("h1 handshake");
            tokio::spawn(conn);
            Sender::H1(s)
        }
        Proto::H2 => {
            let (s, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.expect("h2 handshake");
            tokio::spawn(conn);
            Sender::H2(s)
        }
    };
    let uri: hyper::Uri = format!("http://{addr}/").parse().expect("uri");
    let mut one = async || {
        let req = Request::get(uri.clone()).header("host", "bench").body(Empty::<Bytes>::new()).expect("request");
        let resp = match &mut sender {
            Sender::H1(s) => {
                s.ready().await.expect("ready");
                s.send_request(req).await.expect("response")
            }
            Sender::H2(s) => {
                s.ready().await.expect("ready");
                s.send_request(req).await.expect("response")
            }
        };
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body.len(), 1024);
    };
    for _ in 0..warmup {
        one().await;
    }
    tokio::time::sleep(settle).await;
    let (a0, r0, b0, s0) = (ALLOCS.load(Relaxed), REALLOCS.load(Relaxed), BYTES.load(Relaxed), sizes());
    let t0 = Instant::now();
    for _ in 0..n {
        one().await;
    }
    let micros = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    // Let the exporter's batch timer fire, so its work lands in the window.
    tokio::time::sleep(settle).await;
    let (a1, r1, b1, s1) = (ALLOCS.load(Relaxed), REALLOCS.load(Relaxed), BYTES.load(Relaxed), sizes());
    let per = |x: u64, y: u64| (y - x) as f64 / n as f64;
    let sizes = std::array::from_fn(|i| per(s0[i], s1[i]));
    Measured { allocs: per(a0, a1), reallocs: per(r0, r1), bytes: per(b0, b1), micros, sizes }
}

fn main() {
    let mut requests = 20_000u64;
    let mut settle_ms = 1500u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--requests" => requests = args.next().and_then(|v| v.parse().ok()).expect("--requests N"),
            "--settle-ms" => settle_ms = args.next().and_then(|v| v.parse().ok()).expect("--settle-ms MS"),
            other => panic!("unknown argument {other}; usage: allocs [--requests N] [--settle-ms MS]"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let settle = Duration::from_millis(settle_ms);
        let warmup = (requests / 10).max(200);
        let stats = Arc::new(sidetrace_bench::Stats::default());
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
        let app = backend.local_addr().expect("addr");
        tokio::spawn(sidetrace_bench::serve(backend, stats.clone()));
        let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let sink_url = format!("http://{}", sink.local_addr().expect("addr"));
        tokio::spawn(sidetrace_bench::serve(sink, Arc::new(sidetrace_bench::Stats::default())));

        let variants: [(&str, Vec<&str>); 3] = [
            ("tracing_otlp", vec!["--otlp-endpoint", &sink_url]),
            ("tracing_ring_only", vec![]),
            ("tracing_off", vec!["--sampling-ratio", "0", "--keep-slower-than", "0s"]),
        ];
        let mut out = Vec::new();
        for (proto, pname) in [(Proto::H1, "http1"), (Proto::H2, "http2")] {
            let direct = measure(app, proto, warmup, requests, settle).await;
            out.push(format!(
                "{{\"proto\":\"{pname}\",\"path\":\"direct\",\"allocs_per_req\":{:.2},\"reallocs_per_req\":{:.2},\"bytes_per_req\":{:.0},\"us_per_req\":{:.1}}}",
                direct.allocs, direct.reallocs, direct.bytes, direct.micros
            ));
            for (name, flags) in &variants {
                let config = sidetrace::config::Config::local_with(app, "bench", flags);
                let sidecar = sidetrace::Sidecar::start(config).await.expect("sidecar start");
                let inbound = sidecar.inbound.expect("inbound");
                let m = measure(inbound, proto, warmup, requests, settle).await;
                out.push(format!(
                    "{{\"proto\":\"{pname}\",\"path\":\"{name}\",\"allocs_per_req\":{:.2},\"reallocs_per_req\":{:.2},\"bytes_per_req\":{:.0},\"us_per_req\":{:.1},\"proxy_allocs_per_req\":{:.2},\"proxy_reallocs_per_req\":{:.2},\"proxy_bytes_per_req\":{:.0},\"proxy_allocs_by_size\":{}}}",
                    m.allocs,
                    m.reallocs,
                    m.bytes,
                    m.micros,
                    m.allocs - direct.allocs,
                    m.reallocs - direct.reallocs,
                    m.bytes - direct.bytes,
                    size_diff(&m, &direct)
                ));
                sidecar.shutdown().await;
            }
        }
        println!("{{\"requests\":{requests},\"results\":[{}]}}", out.join(","));
    });
}
