//! What only something on the connection can see, per direction: the
//! proxy's own overhead per request, upstream connect time, TCP round-trip
//! times, protocol detection outcomes, and opaque TCP connections (with the
//! TLS server name, bounded like routes) and their bytes.
//!
//! Everything here is a fixed array or a bounded table of atomics.

use super::bounded::{Bounded, Entry, OTHER};
use super::expo::{Kind, Writer};
use super::histogram::{Buckets, Histogram};
use crate::vocab::{DetectOutcome, WireProtocol};
use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Proxy overhead and round-trip times: 10 µs to 1 s.
pub static FINE: LazyLock<Buckets> = LazyLock::new(|| {
    Buckets::new(
        &[
            0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0,
        ],
        1e9,
    )
});

const PROTOCOLS: [&str; 4] = ["http1", "http2", "tls", "opaque"];
const OUTCOMES: [&str; 4] = ["detected", "timeout", "eof", "skipped"];
const CONNECT_OUTCOMES: [&str; 4] = ["ok", "connection_refused", "connect_timeout", "connect_error"];
const PEERS: [&str; 2] = ["client", "upstream"];

/// How an upstream connect ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    Ok,
    Refused,
    Timeout,
    Error,
}

/// Which end of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Client = 0,
    Upstream = 1,
}

type TcpEntry = Arc<Entry<TcpCounters>>;

/// One opaque TCP (or TLS) label set's counters.
pub struct TcpCounters {
    protocol: &'static str,
    sni: Box<str>,
    opened: AtomicU64,
    closed: AtomicU64,
    /// Bytes read from the client (sent upstream), and from the upstream.
    read: [AtomicU64; 2],
}

impl TcpCounters {
    fn new(protocol: &'static str, sni: &str) -> TcpCounters {
        TcpCounters {
            protocol,
            sni: sni.into(),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            read: Default::default(),
        }
    }

    pub fn add_read(&self, from: Peer, n: u64) {
        self.read[from as usize].fetch_add(n, Ordering::Relaxed);
    }
}

/// An open opaque connection: counts its close when dropped, whichever
/// way the relay ends.
pub struct OpaqueConn(TcpEntry);

impl OpaqueConn {
    /// Wraps one side of the relay so its reads are counted.
    pub fn count<S>(&self, inner: S, peer: Peer) -> Counted<S> {
        Counted { inner, counters: self.0.clone(), peer }
    }

    /// Bytes read before the relay started (the detection prefix).
    pub fn add_read(&self, from: Peer, n: u64) {
        self.0.value.add_read(from, n);
    }
}

impl Drop for OpaqueConn {
    fn drop(&mut self) {
        self.0.value.closed.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct IdleConn<'a>(&'a AtomicU64);

impl Drop for IdleConn<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// A stream that adds what it reads to one peer's byte counter: the
    /// relay's bytes are visible while a long connection is still open.
    pub struct Counted<S> {
        #[pin]
        inner: S,
        counters: TcpEntry,
        peer: Peer,
    }
}

impl<S: AsyncRead> AsyncRead for Counted<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.counters.value.add_read(*this.peer, (buf.filled().len() - before) as u64);
        }
        r
    }
}

impl<S: AsyncWrite> AsyncWrite for Counted<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

pub struct Net {
    overhead: Histogram,
    connect: [Histogram; 4],
    rtt: [Histogram; 2],
    detections: [[AtomicU64; 4]; 4],
    /// Opaque TCP, TLS without a server name, and TLS by (bounded) name.
    opaque: TcpEntry,
    tls_unnamed: TcpEntry,
    tls: Bounded<TcpCounters>,
    http1_idle: AtomicU64,
    /// Kubelet probes forwarded: succeeded (2xx, 3xx), failed.
    probes: [AtomicU64; 2],
}

impl Net {
    pub fn new(max_names: usize) -> Net {
        Net {
            overhead: Histogram::new(&FINE),
            connect: std::array::from_fn(|_| Histogram::new(&super::red::DURATION)),
            rtt: std::array::from_fn(|_| Histogram::new(&FINE)),
            detections: Default::default(),
            opaque: Arc::new(Entry { id: 0, name: "".into(), value: TcpCounters::new("opaque", "") }),
            tls_unnamed: Arc::new(Entry { id: 0, name: "".into(), value: TcpCounters::new("tls", "") }),
            tls: Bounded::new(max_names, || TcpCounters::new("tls", OTHER)),
            http1_idle: AtomicU64::new(0),
            probes: Default::default(),
        }
    }

    /// A kubelet probe went through; it is counted here and nowhere else.
    pub fn probe(&self, succeeded: bool) {
        self.probes[usize::from(!succeeded)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn overhead(&self, d: Duration) {
        self.overhead.observe(d.as_nanos() as u64);
    }

    pub fn connected(&self, elapsed: Duration, outcome: Connect) {
        self.connect[outcome as usize].observe(elapsed.as_nanos() as u64);
    }

    pub fn rtt(&self, peer: Peer, rtt: Option<Duration>) {
        if let Some(rtt) = rtt {
            self.rtt[peer as usize].observe(rtt.as_nanos() as u64);
        }
    }

    pub fn detected(&self, protocol: WireProtocol, outcome: DetectOutcome) {
        self.detections[protocol as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// An HTTP/1 client connection waits for its next request without
    /// buffers; it counts as idle until the guard is dropped.
    pub fn http1_idle(&self) -> IdleConn<'_> {
        self.http1_idle.fetch_add(1, Ordering::Relaxed);
        IdleConn(&self.http1_idle)
    }

    /// An opaque connection opens; keep the guard until it closes.
    pub fn opaque_opened(&self, sni: Option<&str>, tls: bool) -> OpaqueConn {
        let c = match (tls, sni) {
            (false, _) => self.opaque.clone(),
            (true, None) => self.tls_unnamed.clone(),
            (true, Some(name)) => self.tls.get(name, || TcpCounters::new("tls", name)),
        };
        c.value.opened.fetch_add(1, Ordering::Relaxed);
        OpaqueConn(c)
    }
}

/// Renders the families of this module, both directions under each.
pub fn render(w: &mut Writer, dirs: &[(&'static str, &Net)]) {
    let f = w.family(
        "sidetrace_proxy_overhead_seconds",
        Kind::Histogram,
        Some("seconds"),
        "Time a request spent in the proxy itself: from its arrival to its response head going back, less the wait for the upstream (including any connect).",
    );
    for (d, n) in dirs {
        w.histogram(&f, &[("direction", d)], &n.overhead.snapshot());
    }
    let f = w.family(
        "sidetrace_upstream_connect_duration_seconds",
        Kind::Histogram,
        Some("seconds"),
        "Time to open a TCP connection to the upstream, by outcome.",
    );
    for (d, n) in dirs {
        for (o, h) in CONNECT_OUTCOMES.iter().zip(&n.connect) {
            let s = h.snapshot();
            if s.count() > 0 || *o == "ok" {
                w.histogram(&f, &[("direction", d), ("outcome", o)], &s);
            }
        }
    }
    let f = w.family(
        "sidetrace_tcp_smoothed_rtt_seconds",
        Kind::Histogram,
        Some("seconds"),
        "The kernel's smoothed round-trip time (TCP_INFO) of client and upstream connections, sampled once per connection.",
    );
    for (d, n) in dirs {
        for (p, h) in PEERS.iter().zip(&n.rtt) {
            w.histogram(&f, &[("direction", d), ("peer", p)], &h.snapshot());
        }
    }
    let f = w.family(
        "sidetrace_http1_idle_connections",
        Kind::Gauge,
        None,
        "HTTP/1 client connections waiting for their next request; while idle they hold no read or write buffers.",
    );
    for (d, n) in dirs {
        w.gauge(&f, &[("direction", d)], n.http1_idle.load(Ordering::Relaxed) as f64);
    }
    let f = w.family(
        "sidetrace_protocol_detections",
        Kind::Counter,
        None,
        "Connections by detected protocol and how detection ended (skipped: a --opaque-ports port).",
    );
    for (d, n) in dirs {
        for (p, row) in PROTOCOLS.iter().zip(&n.detections) {
            for (o, c) in OUTCOMES.iter().zip(row) {
                let v = c.load(Ordering::Relaxed);
                if v > 0 {
                    w.counter(&f, &[("direction", d), ("protocol", p), ("outcome", o)], v);
                }
            }
        }
    }
    let f = w.family(
        "sidetrace_probe_requests",
        Kind::Counter,
        None,
        "Kubelet probes (User-Agent: kube-probe/) forwarded to the app; they make no span, no log line and no request metrics unless --trace-probes.",
    );
    for (d, n) in dirs {
        for (o, c) in ["success", "failure"].iter().zip(&n.probes) {
            w.counter(&f, &[("direction", d), ("outcome", o)], c.load(Ordering::Relaxed));
        }
    }
    render_tcp(w, dirs);
}

type Pick = fn(&TcpCounters) -> &AtomicU64;

fn render_tcp(w: &mut Writer, dirs: &[(&'static str, &Net)]) {
    let entries: Vec<_> = dirs
        .iter()
        .map(|(d, n)| {
            (*d, [n.opaque.clone(), n.tls_unnamed.clone()].into_iter().chain(n.tls.entries()).collect::<Vec<_>>())
        })
        .collect();
    let rows = || {
        entries.iter().flat_map(|(d, es)| {
            es.iter().filter(|e| e.value.opened.load(Ordering::Relaxed) > 0).map(move |e| (*d, &e.value))
        })
    };
    if rows().next().is_none() {
        return;
    }
    let labels = |d: &'static str, c: &TcpCounters| [("direction", d), ("protocol", c.protocol)];
    let counters: [(&str, &str, Pick); 2] = [
        ("sidetrace_tcp_connections_opened", "Opaque TCP and TLS connections opened.", |c| &c.opened),
        ("sidetrace_tcp_connections_closed", "Opaque TCP and TLS connections closed.", |c| &c.closed),
    ];
    for (name, help, get) in counters {
        let f = w.family(name, Kind::Counter, None, help);
        for (d, c) in rows() {
            let [a, b] = labels(d, c);
            w.counter(&f, &[a, b, ("tls_server_name", &c.sni)], get(c).load(Ordering::Relaxed));
        }
    }
    let f = w.family(
        "sidetrace_tcp_read_bytes",
        Kind::Counter,
        None,
        "Bytes relayed over opaque TCP and TLS connections, by the peer they were read from.",
    );
    for (d, c) in rows() {
        for (p, bytes) in PEERS.iter().zip(&c.read) {
            let [a, b] = labels(d, c);
            w.counter(&f, &[a, b, ("tls_server_name", &c.sni), ("peer", p)], bytes.load(Ordering::Relaxed));
        }
    }
}

/// How many TLS server names overflowed into `_other`.
pub fn tls_name_overflow(n: &Net) -> u64 {
    n.tls.overflowed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::expo::Format;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn opaque_connections_count_bytes_and_bound_server_names() {
        let net = Net::new(2);
        for name in ["a.example", "b.example", "c.example", "d.example"] {
            drop(net.opaque_opened(Some(name), true));
        }
        let conn = net.opaque_opened(None, false);
        conn.add_read(Peer::Client, 5);
        let (a, mut b) = tokio::io::duplex(64);
        let mut counted = conn.count(a, Peer::Upstream);
        b.write_all(b"0123456789").await.unwrap();
        let mut buf = [0u8; 10];
        counted.read_exact(&mut buf).await.unwrap();
        let mut w = Writer::new(Format::Prometheus);
        render(&mut w, &[("outbound", &net)]);
        let text = w.finish();
        let has = |needle: &str| assert!(text.contains(needle), "{needle} not in\n{text}");
        has(
            r#"sidetrace_tcp_connections_opened_total{direction="outbound",protocol="tls",tls_server_name="a.example"} 1"#,
        );
        has(
            r#"sidetrace_tcp_connections_closed_total{direction="outbound",protocol="tls",tls_server_name="_other"} 2"#,
        );
        has(r#"sidetrace_tcp_connections_closed_total{direction="outbound",protocol="opaque"} 0"#);
        has(r#"sidetrace_tcp_read_bytes_total{direction="outbound",protocol="opaque",peer="client"} 5"#);
        has(r#"sidetrace_tcp_read_bytes_total{direction="outbound",protocol="opaque",peer="upstream"} 10"#);
        assert_eq!(tls_name_overflow(&net), 2);
        drop(conn);
    }
}
