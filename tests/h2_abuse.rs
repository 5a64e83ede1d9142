//! HTTP/2 abuse (SECURITY.md, "HTTP/2 abuse"): rapid reset
//! (CVE-2023-44487), CONTINUATION floods (the 2024 family), SETTINGS, PING
//! and WINDOW_UPDATE floods, streams beyond the concurrency limit, HPACK
//! bombs, huge header lists and oversize frames, each sent frame by frame over a raw socket
//! to the real binary's inbound listener.
//!
//! For each: the GOAWAY read from the socket carries the error code h2
//! sends, `sidetrace_http2_connection_errors_total{reason}` counts it, a
//! well-behaved client on another connection is answered 200, and the
//! proxy's RSS stays under a bound. The floods h2 would absorb (PING,
//! SETTINGS, small WINDOW_UPDATEs) meet sidetrace's own flood guard
//! (`http::h2_guard`), which closes them with ENHANCE_YOUR_CALM and counts
//! them the same way.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::process::status_kib;
use support::{Client, TestProxy, apps, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

// RFC 9113 §6: frame types and flags.
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

// RFC 9113 §7: error codes.
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

// RFC 9113 §6.5.2: settings.
const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// The server's limits (src/http/serve.rs, `h2_limits`), as the tests
/// expect to meet them.
const MAX_CONCURRENT_STREAMS: u32 = 100;
const MAX_LOCAL_ERROR_RESET_STREAMS: u32 = 1024;
const MAX_HEADER_LIST_SIZE: usize = 64 * 1024;

/// How much the proxy's RSS may grow over one abusive connection. An idle
/// spawned sidecar holds ~17 MiB, and grew by less than 2 MiB in any of
/// these tests: h2 bounds what a connection can make it hold to its
/// windows, its send buffers and one acknowledgement at a time.
const RSS_GROWTH_KIB: u64 = 16 * 1024;

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(20);

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> =
        values.iter().flat_map(|(k, v)| k.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect();
    frame(SETTINGS, 0, 0, &payload)
}

fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// An HPACK string literal, not Huffman-coded (RFC 7541 §5.2).
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix after the bits in `first`
/// (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A GET's header block: `:method GET`, `:scheme http` from the static
/// table, `:path` and `:authority` as literals never added to the dynamic
/// table.
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    b.push(0x04); // literal without indexing, name :path (static 4)
    hpack_str(&mut b, path.as_bytes());
    b.push(0x01); // literal without indexing, name :authority (static 1)
    hpack_str(&mut b, b"h2-abuse.test");
    b
}

fn get(stream: u32, path: &str) -> Vec<u8> {
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &get_block(path))
}

/// A GET whose block adds one header of `value_len` bytes to the HPACK
/// dynamic table (literal with incremental indexing, RFC 7541 §6.2.1) and
/// then refers to it `refs` more times, one byte each: a block of a few
/// KiB that decodes to `refs` times the entry.
fn hpack_bomb(stream: u32, value_len: usize, refs: usize) -> Vec<u8> {
    let mut b = get_block("/");
    b.push(0x40);
    hpack_str(&mut b, b"x-bomb");
    hpack_str(&mut b, &vec![b'a'; value_len]);
    // The newest dynamic entry is index 62 (RFC 7541 §2.3.3).
    b.extend(std::iter::repeat_n(0x80 | 62, refs));
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &b)
}

/// Whether a response header block says `:status 200` (static index 8),
/// after any dynamic table size updates.
fn is_200(block: &[u8]) -> bool {
    let mut i = 0;
    while i < block.len() && block[i] & 0xe0 == 0x20 {
        i += 1;
        if block[i - 1] & 0x1f == 0x1f {
            while i < block.len() && block[i] & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
    }
    block.get(i) == Some(&0x88)
}

/// Whether a response header block carries `:status 431`: h2 writes the
/// value Huffman-coded, "431" being `0x69 0x90 0xff` (RFC 7541 Appendix B),
/// after the name `:status` (static 8).
fn is_431(block: &[u8]) -> bool {
    block.windows(4).any(|w| w == [0x83, 0x69, 0x90, 0xff])
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

#[derive(Debug, PartialEq)]
struct GoAway {
    last_stream: u32,
    code: u32,
    debug: String,
}

impl GoAway {
    fn parse(f: &Frame) -> GoAway {
        let p = &f.payload;
        GoAway {
            last_stream: u32::from_be_bytes(p[0..4].try_into().unwrap()) & 0x7fff_ffff,
            code: u32::from_be_bytes(p[4..8].try_into().unwrap()),
            debug: String::from_utf8_lossy(&p[8..]).into_owned(),
        }
    }
}

/// What the reader counted without keeping.
#[derive(Default)]
struct Counts {
    ping_acks: AtomicU64,
    settings_acks: AtomicU64,
    window_updates: AtomicU64,
}

/// One client connection that speaks HTTP/2 frame by frame. The preface
/// and the client's SETTINGS are sent and the server's SETTINGS are
/// acknowledged on `connect`; then a task reads every frame the server
/// sends, counts PING and SETTINGS acknowledgements and WINDOW_UPDATEs,
/// and hands the rest over in order.
struct Raw {
    w: OwnedWriteHalf,
    frames: mpsc::UnboundedReceiver<Frame>,
    counts: Arc<Counts>,
    /// Frames received and not yet asked for.
    seen: Vec<Frame>,
}

impl Raw {
    async fn connect(addr: SocketAddr, client_settings: &[(u16, u32)]) -> Raw {
        let sock = TcpStream::connect(addr).await.unwrap();
        sock.set_nodelay(true).unwrap();
        let (mut r, mut w) = sock.into_split();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(settings(client_settings));
        w.write_all(&hello).await.unwrap();
        let first = tokio::time::timeout(STEP, read_frame(&mut r)).await.expect("the server's SETTINGS in time");
        let first = first.expect("the server's SETTINGS");
        assert_eq!((first.kind, first.flags), (SETTINGS, 0), "the server speaks first with SETTINGS: {first:?}");
        w.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        let (tx, frames) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            while let Some(f) = read_frame(&mut r).await {
                match (f.kind, f.flags & ACK) {
                    (PING, ACK) => c.ping_acks.fetch_add(1, Ordering::Relaxed),
                    (SETTINGS, ACK) => c.settings_acks.fetch_add(1, Ordering::Relaxed),
                    (WINDOW_UPDATE, _) => c.window_updates.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        if tx.send(f).is_err() {
                            return;
                        }
                        0
                    }
                };
            }
        });
        Raw { w, frames, counts, seen: Vec::new() }
    }

    /// Writes `bytes`; an error once the server has closed, or a timeout
    /// when it stopped reading.
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(STEP, self.w.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// The next frame (not a PING or SETTINGS acknowledgement nor a
    /// WINDOW_UPDATE), or `None`
    /// when the connection ended or `limit` passed.
    async fn next(&mut self, limit: Duration) -> Option<Frame> {
        tokio::time::timeout(limit, self.frames.recv()).await.ok().flatten()
    }

    /// Reads until the server's GOAWAY, keeping the frames before it in
    /// `seen`; `None` when the connection ended without one or `limit`
    /// passed.
    async fn goaway(&mut self, limit: Duration) -> Option<GoAway> {
        if let Some(f) = self.seen.iter().find(|f| f.kind == GOAWAY) {
            return Some(GoAway::parse(f));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let f = tokio::time::timeout_at(deadline, self.frames.recv()).await.ok().flatten()?;
            if f.kind == GOAWAY {
                return Some(GoAway::parse(&f));
            }
            self.seen.push(f);
        }
    }

    /// Whether a GOAWAY has arrived by now (every frame is kept in `seen`).
    fn goaway_arrived(&mut self) -> bool {
        while let Ok(f) = self.frames.try_recv() {
            self.seen.push(f);
        }
        self.seen.iter().any(|f| f.kind == GOAWAY)
    }
}

async fn read_frame(r: &mut OwnedReadHalf) -> Option<Frame> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
    Some(Frame { kind: head[3], flags: head[4], stream, payload })
}

/// A spawned sidecar in front of the `echo` app, its pid, and its RSS once
/// it has served one HTTP/2 request.
struct Setup {
    proxy: TestProxy,
    app: apps::App,
    pid: u32,
    idle_kib: u64,
}

async fn setup() -> Setup {
    let app = apps::echo().await;
    let mut proxy = TestProxy::to(app.addr).flags(&["--outbound", "off"]).spawn();
    let pid = proxy.process().id();
    well_behaved(&proxy).await;
    let idle_kib = status_kib(pid, "VmRSS:");
    Setup { proxy, app, pid, idle_kib }
}

impl Setup {
    fn addr(&self) -> SocketAddr {
        self.proxy.inbound.unwrap()
    }

    /// The proxy's RSS now, checked against the bound.
    fn assert_rss_bounded(&self, what: &str) -> u64 {
        let now = status_kib(self.pid, "VmRSS:");
        eprintln!("{what}: RSS {} KiB idle, {now} KiB now", self.idle_kib);
        assert!(
            now < self.idle_kib + RSS_GROWTH_KIB,
            "{what}: RSS grew from {} KiB to {now} KiB (bound: +{RSS_GROWTH_KIB} KiB)",
            self.idle_kib
        );
        now
    }

    /// Waits until `sidetrace_http2_connection_errors_total` counts `n`
    /// inbound connections closed with `reason`.
    async fn assert_counted(&self, reason: &str, n: f64) {
        let labels = [("direction", "inbound"), ("reason", reason)];
        let name = "sidetrace_http2_connection_errors_total";
        let found = wait::until(STEP, async || self.proxy.metrics().await.value(name, &labels) == Some(n)).await;
        if found.is_none() {
            let m = self.proxy.metrics().await;
            let all: Vec<_> = m.matching(name, &[("direction", "inbound")]).filter(|s| s.value > 0.0).collect();
            panic!("{name}{labels:?} never reached {n}: {all:#?}\n{}", self.proxy.output());
        }
    }

    /// No connection has been counted as closed for abuse.
    async fn assert_none_counted(&self) {
        let m = self.proxy.metrics().await;
        let name = "sidetrace_http2_connection_errors_total";
        assert!(m.has(name), "no {name} in /metrics");
        assert_eq!(m.sum(name, &[]), 0.0, "{:#?}", m.matching(name, &[]).filter(|s| s.value > 0.0).collect::<Vec<_>>());
    }
}

/// A well-behaved HTTP/2 client on a connection of its own is answered.
async fn well_behaved(proxy: &TestProxy) {
    let r = Client::h2c().get(&format!("{}/", proxy.inbound_url())).send().await;
    assert_eq!(r.status, 200, "a well-behaved client: {}", r.text());
    assert_eq!(r.text(), "hello from the app\n");
}

/// CVE-2023-44487: streams opened and reset at once, before the server
/// could accept them. Beyond 20 such streams h2 closes the connection
/// with ENHANCE_YOUR_CALM; the requests never reach the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_closes_the_connection_with_enhance_your_calm() {
    let s = setup().await;
    let seen_before = s.app.seen.lock().unwrap().len();
    let mut raw = Raw::connect(s.addr(), &[]).await;
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        burst.extend(get(id, "/rapid-reset"));
        burst.extend(rst_stream(id, CANCEL));
    }
    let _ = raw.send(&burst).await;
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    assert_eq!(goaway.debug, "too_many_resets");
    s.assert_counted("enhance_your_calm", 1.0).await;
    well_behaved(&s.proxy).await;
    let reached = s.app.seen.lock().unwrap().len() - seen_before - 1;
    assert!(reached < 100, "{reached} of 1000 reset requests reached the app");
    s.assert_rss_bounded("rapid reset");
}

/// The CONTINUATION flood (CVE-2024-27316 and its family): a HEADERS
/// without END_HEADERS, then CONTINUATION frames that never end it. h2
/// allows as many as the header list limit could need (64 KiB in 16 KiB
/// frames, plus a quarter, at least 5) and then sends ENHANCE_YOUR_CALM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_closes_the_connection_with_enhance_your_calm() {
    let s = setup().await;
    let mut raw = Raw::connect(s.addr(), &[]).await;
    // The block's first bytes, then one more literal header per frame.
    let mut first = get_block("/continuation-flood");
    first.push(0x00); // literal, new name, without indexing
    hpack_str(&mut first, b"x-a");
    raw.send(&frame(HEADERS, END_STREAM, 1, &first)).await.unwrap();
    let mut piece = Vec::new();
    hpack_str(&mut piece, b"b");
    piece.push(0x00);
    hpack_str(&mut piece, b"x-a");
    let one = frame(CONTINUATION, 0, 1, &piece);
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
    let mut sent = 0;
    // Endless but for the server: at most 100 000 frames.
    while sent < 1000 && !raw.goaway_arrived() {
        if raw.send(&batch).await.is_err() {
            break;
        }
        sent += 1;
        tokio::task::yield_now().await;
    }
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    assert_eq!(goaway.debug, "too_many_continuations");
    s.assert_counted("enhance_your_calm", 1.0).await;
    well_behaved(&s.proxy).await;
    s.assert_rss_bounded("CONTINUATION flood");
}

/// A header block that decodes to more than 4 times the header list limit
/// (an HPACK bomb: one 4 KiB entry in the dynamic table, referred to 100
/// times by one byte each) closes the connection with ENHANCE_YOUR_CALM;
/// one over the limit but under 4 times is answered 431, its connection
/// kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_header_lists_are_answered_431_and_hpack_bombs_closed() {
    let s = setup().await;
    let entry = 4000;
    let mut raw = Raw::connect(s.addr(), &[]).await;
    let over = MAX_HEADER_LIST_SIZE / (entry + 38) + 2;
    raw.send(&hpack_bomb(1, entry, over)).await.unwrap();
    let head = raw.next(STEP).await.expect("an answer to an oversize header list");
    assert_eq!((head.kind, head.stream), (HEADERS, 1), "{head:?}");
    assert!(is_431(&head.payload), "not a 431: {head:?}");
    // The connection stays: the next request is served.
    raw.send(&get(3, "/")).await.unwrap();
    let next = loop {
        let f = raw.next(STEP).await.expect("an answer on the same connection");
        if f.stream == 3 {
            break f;
        }
    };
    assert!(next.kind == HEADERS && is_200(&next.payload), "{next:?}");

    let mut bomb = Raw::connect(s.addr(), &[]).await;
    bomb.send(&hpack_bomb(1, entry, 100)).await.unwrap();
    let goaway = bomb.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    assert_eq!(goaway.debug, "header_list_way_too_large");
    s.assert_counted("enhance_your_calm", 1.0).await;
    well_behaved(&s.proxy).await;
    s.assert_rss_bounded("HPACK bomb");
}

/// HPACK table sizes: a client announcing a 4 GiB table for our encoder
/// gets one of 4 KiB (h2 caps it), and keeps being served while it makes
/// the proxy answer with distinct headers; a client whose header block
/// grows our decoder's table beyond the 4 KiB we announced breaks HPACK
/// (RFC 7541 §4.2) and its connection is closed with PROTOCOL_ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_hpack_tables_are_refused_or_capped() {
    let s = setup().await;
    let mut raw = Raw::connect(s.addr(), &[(SETTINGS_HEADER_TABLE_SIZE, u32::MAX)]).await;
    let value = "v".repeat(1000);
    for i in 0..300u32 {
        let id = 2 * i + 1;
        raw.send(&get(id, &format!("/respond?x-distinct-{i}={value}"))).await.unwrap();
        let head = loop {
            let f = raw.next(STEP).await.expect("an answer");
            if f.stream == id && f.kind == HEADERS {
                break f;
            }
        };
        assert!(is_200(&head.payload), "request {i}: {head:?}");
    }
    s.assert_rss_bounded("a 4 GiB SETTINGS_HEADER_TABLE_SIZE");

    let mut raw = Raw::connect(s.addr(), &[]).await;
    let mut block = Vec::new();
    hpack_int(&mut block, 0x20, 5, 1 << 30); // dynamic table size update: 1 GiB
    block.extend(get_block("/"));
    raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)).await.unwrap();
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    // RFC 9113 §4.3 calls a decoding error COMPRESSION_ERROR; h2 0.4 sends
    // PROTOCOL_ERROR for every HPACK error but one (SECURITY.md).
    assert_eq!(goaway.code, PROTOCOL_ERROR, "{goaway:?}");
    s.assert_counted("protocol_error", 1.0).await;
    well_behaved(&s.proxy).await;
    s.assert_rss_bounded("a dynamic table size update over the limit");
}

/// A frame longer than SETTINGS_MAX_FRAME_SIZE (16 KiB) is a
/// FRAME_SIZE_ERROR (RFC 9113 §4.2): h2 never buffers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_16_kib_are_a_frame_size_error() {
    let s = setup().await;
    let mut raw = Raw::connect(s.addr(), &[]).await;
    let mut big = frame(HEADERS, END_HEADERS | END_STREAM, 1, &[]);
    // The length field says 16 MiB - 1; the payload never comes.
    big[..3].copy_from_slice(&[0xff, 0xff, 0xff]);
    raw.send(&big).await.unwrap();
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, FRAME_SIZE_ERROR, "{goaway:?}");
    s.assert_counted("frame_size_error", 1.0).await;
    well_behaved(&s.proxy).await;
    s.assert_rss_bounded("a 16 MiB frame header");
}

/// Streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused
/// (RST_STREAM REFUSED_STREAM) and never reach the app; a client that
/// keeps opening them is closed with ENHANCE_YOUR_CALM once the server
/// has reset 1024 streams for its errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_then_the_connection_closed() {
    let s = setup().await;
    let mut raw = Raw::connect(s.addr(), &[]).await;
    let mut open = Vec::new();
    for i in 0..MAX_CONCURRENT_STREAMS {
        open.extend(get(2 * i + 1, "/slow/20000"));
    }
    raw.send(&open).await.unwrap();
    let held = wait::until(STEP, async || {
        let n = s.app.seen.lock().unwrap().iter().filter(|r| r.uri.path() == "/slow/20000").count();
        (n == MAX_CONCURRENT_STREAMS as usize).then_some(n)
    })
    .await;
    assert!(held.is_some(), "the app never held {MAX_CONCURRENT_STREAMS} requests");

    // Ten more: each refused, none served.
    let first_extra = 2 * MAX_CONCURRENT_STREAMS + 1;
    let extra: Vec<u32> = (0..10).map(|i| first_extra + 2 * i).collect();
    let burst: Vec<u8> = extra.iter().flat_map(|id| get(*id, "/beyond-the-limit")).collect();
    raw.send(&burst).await.unwrap();
    let mut refused = Vec::new();
    while refused.len() < extra.len() {
        let f = raw.next(STEP).await.expect("a refusal for every stream beyond the limit");
        assert!(f.stream < first_extra || f.kind == RST_STREAM, "a stream beyond the limit was served: {f:?}");
        if f.kind == RST_STREAM && f.stream >= first_extra {
            assert_eq!(u32::from_be_bytes(f.payload[..4].try_into().unwrap()), REFUSED_STREAM, "{f:?}");
            refused.push(f.stream);
        }
    }
    assert_eq!(refused, extra);
    s.assert_none_counted().await;

    // Then a flood of them.
    let next = first_extra + 2 * extra.len() as u32;
    let flood: Vec<u8> =
        (0..MAX_LOCAL_ERROR_RESET_STREAMS).flat_map(|i| get(next + 2 * i, "/beyond-the-limit")).collect();
    let _ = raw.send(&flood).await;
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    assert_eq!(goaway.debug, "too_many_internal_resets");
    // The held streams were processed: the GOAWAY says so (RFC 9113 §6.8).
    assert!(goaway.last_stream >= 2 * MAX_CONCURRENT_STREAMS - 1, "{goaway:?}");
    assert!(raw.seen.iter().all(|f| f.stream < first_extra || f.kind == RST_STREAM));
    let beyond = s.app.seen.lock().unwrap().iter().filter(|r| r.uri.path() == "/beyond-the-limit").count();
    assert_eq!(beyond, 0, "requests beyond the limit reached the app");
    s.assert_counted("enhance_your_calm", 1.0).await;
    well_behaved(&s.proxy).await;
    s.assert_rss_bounded("streams beyond the limit");
}

/// A PING flood from a client that reads every acknowledgement: h2 would
/// answer it forever, so the flood guard closes the connection with
/// ENHANCE_YOUR_CALM once the PINGs are past their budget (1000, plus 100
/// a second and 10 a stream). A client that never reads is closed too, or
/// stalls when h2 stops reading; it is never read without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_floods_are_closed_with_enhance_your_calm() {
    let s = setup().await;
    let mut raw = Raw::connect(s.addr(), &[]).await;
    let ping = frame(PING, 0, 0, b"floodflo");
    let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
    flood(&mut raw, &batch, 100, &s.proxy).await;
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    let acked = raw.counts.ping_acks.load(Ordering::Relaxed);
    // The guard counts frames as their bytes arrive, so h2 may not have
    // answered all of the budget's worth when the close comes.
    assert!(acked < 100_000, "{acked} PINGs acknowledged before the close");
    s.assert_counted("enhance_your_calm", 1.0).await;
    s.assert_rss_bounded("a PING flood, read");

    let sock = stalled_reader(s.addr()).await;
    let how = flood_unread(sock, &batch).await;
    well_behaved(&s.proxy).await;
    s.assert_rss_bounded(&format!("a PING flood, unread ({how})"));
}

/// A SETTINGS flood, each frame changing the initial window of every
/// stream: h2 acknowledges and applies them one at a time; past their
/// budget the guard closes the connection with ENHANCE_YOUR_CALM. A
/// SETTINGS acknowledgement nobody asked for is a protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_floods_are_closed_and_stray_acks_too() {
    let s = setup().await;
    let mut raw = Raw::connect(s.addr(), &[]).await;
    let mut batch = Vec::new();
    for i in 0..1000u32 {
        batch.extend(settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 65_535 + i), (SETTINGS_HEADER_TABLE_SIZE, i)]));
    }
    flood(&mut raw, &batch, 50, &s.proxy).await;
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    let acked = raw.counts.settings_acks.load(Ordering::Relaxed);
    assert!(acked < 50_001, "{acked} SETTINGS acknowledged before the close");
    s.assert_counted("enhance_your_calm", 1.0).await;
    s.assert_rss_bounded("a SETTINGS flood, read");

    let sock = stalled_reader(s.addr()).await;
    let how = flood_unread(sock, &batch).await;
    s.assert_rss_bounded(&format!("a SETTINGS flood, unread ({how})"));

    let mut raw = Raw::connect(s.addr(), &[]).await;
    raw.send(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, PROTOCOL_ERROR, "{goaway:?}");
    s.assert_counted("protocol_error", 1.0).await;
    well_behaved(&s.proxy).await;
}

/// WINDOW_UPDATE floods: increments the server never needed (it sent no
/// data) are past their budget after 1000 and the connection is closed
/// with ENHANCE_YOUR_CALM; an increment that takes the window beyond
/// 2^31-1 is a FLOW_CONTROL_ERROR, a zero one a PROTOCOL_ERROR (RFC 9113
/// §6.9). A download's own WINDOW_UPDATEs stay within the budget, which
/// grows with the DATA frames sent (`transparency.rs` and `protocols.rs`
/// move megabytes over HTTP/2 and gRPC through the same guard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_update_floods_are_closed() {
    let s = setup().await;
    let mut raw = Raw::connect(s.addr(), &[]).await;
    let one = window_update(0, 1);
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
    flood(&mut raw, &batch, 200, &s.proxy).await;
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    s.assert_counted("enhance_your_calm", 1.0).await;
    s.assert_rss_bounded("a WINDOW_UPDATE flood");

    // Fewer than the budget: the connection is still served.
    let mut raw = Raw::connect(s.addr(), &[]).await;
    raw.send(&one.iter().copied().cycle().take(one.len() * 900).collect::<Vec<u8>>()).await.unwrap();
    raw.send(&get(1, "/")).await.unwrap();
    let head = raw.next(STEP).await.expect("an answer after 900 WINDOW_UPDATEs");
    assert!(head.stream == 1 && is_200(&head.payload), "{head:?}");

    let mut raw = Raw::connect(s.addr(), &[]).await;
    let _ = raw.send(&[window_update(0, 0x7fff_ffff), window_update(0, 0x7fff_ffff)].concat()).await;
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, FLOW_CONTROL_ERROR, "{goaway:?}");
    s.assert_counted("flow_control_error", 1.0).await;

    let mut raw = Raw::connect(s.addr(), &[]).await;
    let _ = raw.send(&window_update(0, 0)).await;
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, PROTOCOL_ERROR, "{goaway:?}");
    s.assert_counted("protocol_error", 1.0).await;
    well_behaved(&s.proxy).await;
}

/// Sends `batch` `rounds` times, or until the server closes the
/// connection; a well-behaved client is served after the first batch.
async fn flood(raw: &mut Raw, batch: &[u8], rounds: usize, proxy: &TestProxy) {
    for round in 0..rounds {
        if raw.send(batch).await.is_err() || raw.goaway_arrived() {
            return;
        }
        if round == 0 {
            well_behaved(proxy).await;
        }
    }
}

/// A connection past the handshake whose reads nobody does.
async fn stalled_reader(addr: SocketAddr) -> TcpStream {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(settings(&[]));
    hello.extend(frame(SETTINGS, ACK, 0, &[]));
    sock.write_all(&hello).await.unwrap();
    sock
}

/// Writes `batch` until the server closes the connection or a write
/// stalls for 2 s (the server stopped reading), for at most 1 GiB; which
/// it was, and after how many bytes.
async fn flood_unread(mut sock: TcpStream, batch: &[u8]) -> String {
    let mut sent = 0;
    while sent < 1 << 30 {
        match tokio::time::timeout(Duration::from_secs(2), sock.write_all(batch)).await {
            Ok(Ok(())) => sent += batch.len(),
            Ok(Err(_)) => return format!("closed after {sent} bytes"),
            Err(_) => return format!("stalled after {sent} bytes"),
        }
    }
    panic!("the server read 1 GiB from a client that never reads its acknowledgements");
}

/// What a busy connection does is never a flood: 64 MiB downloaded over
/// one h2c connection (the client's WINDOW_UPDATEs grow with the DATA
/// frames) and 1500 requests on another, past the base budget of 1000 but
/// within 10 per stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_connections_are_not_floods() {
    let s = setup().await;
    let client = Client::h2c();
    let r = client.get(&format!("{}/bytes/{}", s.proxy.inbound_url(), 64 << 20)).send().await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 64 << 20));
    for _ in 0..1500 {
        assert_eq!(client.get(&format!("{}/", s.proxy.inbound_url())).send().await.status, 200);
    }
    s.assert_none_counted().await;
}

/// PRIORITY frames (deprecated by RFC 9113, still read) and empty DATA
/// frames on an open stream cost the server a frame each and carry
/// nothing; past their budget the flood guard closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_and_empty_data_floods_are_closed() {
    let s = setup().await;
    let mut raw = Raw::connect(s.addr(), &[]).await;
    let priority = frame(0x2, 0, 3, &[0, 0, 0, 1, 16]);
    let batch: Vec<u8> = priority.iter().copied().cycle().take(priority.len() * 1000).collect();
    flood(&mut raw, &batch, 20, &s.proxy).await;
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    s.assert_counted("enhance_your_calm", 1.0).await;

    let mut raw = Raw::connect(s.addr(), &[]).await;
    // A request whose body never comes: empty DATA frames, none ending it.
    raw.send(&frame(HEADERS, END_HEADERS, 1, &get_block("/sink"))).await.unwrap();
    let empty = frame(0x0, 0, 1, &[]);
    let batch: Vec<u8> = empty.iter().copied().cycle().take(empty.len() * 1000).collect();
    flood(&mut raw, &batch, 20, &s.proxy).await;
    let goaway = raw.goaway(STEP).await.expect("a GOAWAY");
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    s.assert_counted("enhance_your_calm", 2.0).await;
    s.assert_rss_bounded("PRIORITY and empty DATA floods");
    well_behaved(&s.proxy).await;
}
