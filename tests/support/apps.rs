//! Fake apps named by behaviour, each on its own loopback port:
//!
//! - `echo`: HTTP/1.1 and h2c; answers by path (see `echo`) and records
//!   what it saw of each request and how many connections it accepted;
//! - `slow`: answers every request after a delay;
//! - `sleeper`: answers every request after the delay and with the status
//!   its query asks for (`?ms=N&status=S`), on any path;
//! - `reset`: promises a megabyte and hangs up after a kilobyte;
//! - `refusing`: a port with nothing listening (connections are refused);
//! - `stalled`: accepts connections and never answers;
//! - `tcp_echo` / `server_first`: not HTTP: echoes bytes, greeting first
//!   or not;
//! - `websocket_echo`, `grpc` (tonic's health and reflection services);
//! - `one_connection`: Python's `http.server.HTTPServer`, which serves one
//!   connection at a time, as many small services do;
//! - `relay`: an app with no tracing code that calls a downstream for
//!   each request through its sidecar, forwarding no header, a bounded
//!   number of requests at a time (see `relay`);
//! - `scripted`: answers its Nth connection with the Nth status given and
//!   closes it, recording each request head (for `wait-ready`);
//! - `tally`: keeps every byte it receives, and answers each request head
//!   `200 ok` (for tests that must show nothing was forwarded);
//! - `killable`: an app in a process of its own (HTTP/1.1 and h2c), for a
//!   test to kill (SIGKILL) mid-answer, freeze (SIGSTOP) and bring back on
//!   the same port (see `killable`);
//! - `keeps_then_closes`: HTTP/1.1 keep-alive that closes a connection
//!   after its first answer, at once or as the next request arrives
//!   (with a FIN or a reset: `Close`);
//! - `tls`: `openssl s_server -www`, an HTTPS app with a certificate of
//!   the test's own (for TLS that must pass through untouched).
//!
//! The apps run on the test's runtime (or a thread, for `scripted`) and
//! stop with it; `one_connection`, `killable` and `tls` are processes
//! killed on drop.

use super::process::Process;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the app saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
}

/// A running `echo` app.
#[derive(Clone)]
pub struct App {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl App {
    /// The last request the app saw.
    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the app saw a request")
    }

    /// Connections the app has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// Serves `handler` over HTTP/1.1 and h2c (prior knowledge) on every
/// connection `listener` accepts, counting them in `connections`.
fn serve<F, Fut>(listener: TcpListener, connections: Arc<AtomicUsize>, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            connections.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let head = req.method() == http::Method::HEAD;
                        let resp = handler(req).await;
                        Ok::<_, Infallible>(if head { without_body(resp) } else { resp })
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
}

/// The answer to a HEAD request: the GET answer's head, its length
/// included when known, and no body (RFC 9110 §9.3.2). hyper leaves the
/// body out by itself over HTTP/1 but not over HTTP/2.
fn without_body(resp: Response<Body>) -> Response<Body> {
    use hyper::body::Body as _;
    let (mut head, body) = resp.into_parts();
    if let Some(len) = body.size_hint().exact() {
        head.headers.entry(http::header::CONTENT_LENGTH).or_insert_with(|| len.into());
    }
    Response::from_parts(head, full(Bytes::new()))
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// The `echo` app, over HTTP/1.1 and HTTP/2 (prior knowledge):
/// - `/echo`: streams the request body back, trailers too (announced in a
///   `Trailer` header when the request announced them, as HTTP/1 needs);
/// - `/bytes/N`: N bytes of `pattern`, streamed in 64 KiB frames;
/// - `/trailers`: a body followed by the trailer `x-checksum: abc`;
/// - `/status/N`: answers N (with no body for 204 and 304);
/// - `/slow/MS`: answers after MS milliseconds;
/// - `/headers`: the request's headers as `name: value` lines, sorted;
/// - `/respond?name=value&…`: answers 200 with those response headers
///   (percent-decoded, a name may repeat) and a short body;
/// - `/sink`: reads the whole body and answers its length;
/// - anything else: `hello from the app`.
pub async fn echo() -> App {
    let (listener, addr) = listen().await;
    let app = App { addr, seen: Arc::default(), connections: Arc::default() };
    let seen = app.seen.clone();
    serve(listener, app.connections.clone(), move |req| respond(req, seen.clone()));
    app
}

/// `n` bytes of a pattern with a period of 251 (a prime, so no power-of-two
/// framing lines up with it).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn respond(req: Request<Incoming>, seen: Arc<Mutex<Vec<Seen>>>) -> Response<Body> {
    seen.lock().unwrap().push(Seen {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next().unwrap_or(""), parts.next()) {
        ("echo", _) => {
            let announced = req.headers().get("trailer").cloned();
            let body = req.into_body();
            let stream = futures_util::stream::unfold(body, |mut b| async move {
                match b.frame().await {
                    Some(Ok(f)) => Some((Ok::<_, Infallible>(f), b)),
                    _ => None,
                }
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            if let Some(t) = announced {
                r.headers_mut().insert("trailer", t);
            }
            r
        }
        ("bytes", Some(n)) => {
            let total: usize = n.parse().unwrap_or(0);
            // 256 periods of the pattern, so every chunk starts aligned.
            let chunk = Bytes::from(pattern(251 * 256));
            let stream = futures_util::stream::unfold(0usize, move |sent| {
                let chunk = chunk.clone();
                async move {
                    if sent >= total {
                        return None;
                    }
                    let n = (total - sent).min(chunk.len());
                    Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), sent + n))
                }
            });
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        ("trailers", _) => {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", "abc".parse().unwrap());
            let frames = vec![
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"body before trailers\n"))),
                Ok(Frame::trailers(trailers)),
            ];
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames))));
            // HTTP/1 sends only the trailer fields announced up front.
            r.headers_mut().insert("trailer", "x-checksum".parse().unwrap());
            r
        }
        ("status", Some(code)) => {
            let status = code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::OK);
            // 204 and 304 have no content (RFC 9110 §15.3.5, §15.4.5);
            // hyper leaves it out by itself over HTTP/1 but not over HTTP/2.
            let body = match status {
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED => Bytes::new(),
                _ => Bytes::from(format!("status {code}\n")),
            };
            let mut r = Response::new(full(body));
            *r.status_mut() = status;
            r
        }
        ("slow", Some(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            Response::new(full("slow hello\n"))
        }
        ("headers", _) => {
            let mut lines: Vec<String> =
                req.headers().iter().map(|(k, v)| format!("{}: {}", k, v.to_str().unwrap_or("<binary>"))).collect();
            lines.sort();
            Response::new(full(lines.join("\n") + "\n"))
        }
        ("respond", _) => {
            let mut r = Response::new(full("headers as asked\n"));
            for pair in req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned();
                if let (Ok(name), Ok(value)) = (k.parse::<http::HeaderName>(), HeaderValue::from_str(&v)) {
                    r.headers_mut().append(name, value);
                }
            }
            r
        }
        ("sink", _) => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(Ok(f)) = body.frame().await {
                if let Some(d) = f.data_ref() {
                    n += d.len() as u64;
                }
            }
            Response::new(full(format!("{n}\n")))
        }
        _ => Response::new(full("hello from the app\n")),
    }
}

/// An app that calls `downstream` for the requests it serves, through
/// its sidecar's outbound listener as `HTTP_PROXY` clients do (HTTP/1.1,
/// absolute URLs), copying no header from its inbound request (HTTP/1.1
/// or h2c), at most `concurrency` requests at a time. By path:
/// - `/once/ID?delay_ms=D&status=S` (or `/down/…`, so relays chain):
///   waits D ms, calls `/down/ID` once (with `?status=S` if given, which
///   `sleeper` answers with), answers with the downstream's status;
/// - `/hold/ID?calls=N&every_ms=M`: calls `/down/ID-k` N times, M ms
///   apart, then answers (a long request that keeps calling out);
/// - `/stream/ID?calls=N&every_ms=M`: answers at once with a body it keeps
///   streaming, and once the answer has begun makes the same calls (a
///   streaming response).
///
/// The sidecar starts after the app (it needs the app's address): tell the
/// app its sidecar's outbound address with `Relay::through`.
pub async fn relay(downstream: SocketAddr, concurrency: usize) -> Relay {
    let (listener, addr) = listen().await;
    let sidecar: Arc<std::sync::OnceLock<SocketAddr>> = Arc::default();
    let proxy = sidecar.clone();
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let call = move |path: String| {
        let proxy = *proxy.get().expect("Relay::through was called");
        async move {
            let url = format!("http://{downstream}{path}");
            match super::Client::http1().get(&url).via(proxy).try_send().await {
                Ok(r) => r.status,
                Err(_) => StatusCode::BAD_GATEWAY,
            }
        }
    };
    serve(listener, Arc::default(), move |req| {
        let permits = permits.clone();
        let call = call.clone();
        async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let query = req.uri().query().unwrap_or("").to_string();
            let param = |k: &str| -> u64 {
                query.split('&').find_map(|p| p.strip_prefix(k)?.strip_prefix('=')?.parse().ok()).unwrap_or(0)
            };
            let (calls, every) = (param("calls"), Duration::from_millis(param("every_ms")));
            let path = req.uri().path().to_string();
            let mut parts = path.trim_start_matches('/').splitn(2, '/');
            let (mode, id) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
            match mode {
                "once" | "down" => {
                    tokio::time::sleep(Duration::from_millis(param("delay_ms"))).await;
                    let status = match param("status") {
                        0 => String::new(),
                        s => format!("?status={s}"),
                    };
                    let mut r = Response::new(full("relayed\n"));
                    *r.status_mut() = call(format!("/down/{id}{status}")).await;
                    r
                }
                "hold" => {
                    for k in 0..calls {
                        call(format!("/down/{id}-{k}")).await;
                        tokio::time::sleep(every).await;
                    }
                    Response::new(full("held\n"))
                }
                "stream" => {
                    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
                    tokio::spawn(async move {
                        // The answer has begun: its head and a first line are
                        // written (the second send waits until hyper took the
                        // first) and have had a moment to reach the sidecar.
                        for _ in 0..2 {
                            let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"begun\n")))).await;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        for k in 0..calls {
                            call(format!("/down/{id}-{k}")).await;
                            let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"tick\n")))).await;
                            tokio::time::sleep(every).await;
                        }
                    });
                    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
                    Response::new(BodyExt::boxed(StreamBody::new(stream)))
                }
                _ => {
                    let mut r = Response::new(full("unknown relay path\n"));
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    r
                }
            }
        }
    });
    Relay { addr, sidecar }
}

pub struct Relay {
    pub addr: SocketAddr,
    sidecar: Arc<std::sync::OnceLock<SocketAddr>>,
}

impl Relay {
    /// The app's calls go through this proxy from now on.
    pub fn through(&self, outbound: SocketAddr) {
        self.sidecar.set(outbound).expect("one sidecar per app");
    }
}

/// Answers every request `slow hello` after `delay`.
pub async fn slow(delay: Duration) -> SocketAddr {
    let (listener, addr) = listen().await;
    serve(listener, Arc::default(), move |_req| async move {
        tokio::time::sleep(delay).await;
        Response::new(full("slow hello\n"))
    });
    addr
}

/// Answers every path `ok` after `?ms=N` milliseconds (default 0) with
/// status `?status=S` (default 200), so that a test chooses each request's
/// route, cost upstream and status, and knows them.
pub async fn sleeper() -> SocketAddr {
    let (listener, addr) = listen().await;
    serve(listener, Arc::default(), |req| async move {
        let query = req.uri().query().unwrap_or("");
        let param = |k: &str| query.split('&').find_map(|p| p.strip_prefix(k)?.strip_prefix('='));
        let ms: u64 = param("ms").and_then(|v| v.parse().ok()).unwrap_or(0);
        let status = param("status").and_then(|v| v.parse().ok()).and_then(|c| StatusCode::from_u16(c).ok());
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let mut r = Response::new(full("ok\n"));
        *r.status_mut() = status.unwrap_or(StatusCode::OK);
        r
    });
    addr
}

/// Promises a megabyte (`Content-Length: 1000000`), sends a kilobyte of
/// `x`, and hangs up.
pub async fn reset() -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n").await;
                let _ = s.write_all(&[b'x'; 1024]).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A loopback port with nothing listening: connecting is refused. (The
/// port was free a moment ago; a test that binds it later, as a
/// collector that comes back, uses it the same way.)
pub fn refusing() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Accepts connections, reads nothing, answers nothing, holds them open.
pub async fn stalled() -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// Echoes whatever it reads, as raw TCP.
pub async fn tcp_echo() -> SocketAddr {
    tcp(None).await
}

/// Sends `greeting` as soon as a connection opens (as SMTP or a database
/// does), then echoes.
pub async fn server_first(greeting: &'static [u8]) -> SocketAddr {
    tcp(Some(greeting)).await
}

async fn tcp(greeting: Option<&'static [u8]>) -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Some(g) = greeting {
                    let _ = s.write_all(g).await;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A WebSocket server that sends every message back.
pub async fn websocket_echo() -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() || ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A gRPC server with tonic's health service (unary) and reflection
/// (bidirectional streaming).
pub async fn grpc() -> SocketAddr {
    let (listener, addr) = listen().await;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

const ONE_CONNECTION: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Header and body go out in two writes; without this, Nagle and
    # delayed ACKs cost 40 ms a request, with or without a proxy.
    disable_nagle_algorithm = True
    def do_GET(self):
        body = b"hello from a one-connection app\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// Python's `http.server.HTTPServer` with HTTP/1.1 keep-alive: it serves
/// one connection at a time, and the next waits in its accept backlog
/// until the current one closes.
pub fn one_connection() -> (Process, SocketAddr) {
    let p =
        Process::spawn("the one-connection app", std::process::Command::new("python3").args(["-c", ONE_CONNECTION]));
    let port = super::wait::until_sync(Duration::from_secs(10), || {
        p.stdout.lock().unwrap().first().and_then(|l| l.trim().parse::<u16>().ok())
    });
    let port = port.unwrap_or_else(|| panic!("the app did not print its port\n{}", p.output()));
    (p, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// `openssl s_server -www` with `cert` and `key` on a loopback port: it
/// answers any HTTPS GET with a page about the session (which names
/// `s_server`). Ready (accepting) when this returns.
pub async fn tls(cert: &std::path::Path, key: &std::path::Path) -> (Process, SocketAddr) {
    let addr = refusing();
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["s_server", "-accept", &addr.to_string(), "-www", "-quiet"]);
    cmd.arg("-cert").arg(cert).arg("-key").arg(key);
    let mut server = Process::spawn("openssl s_server", &mut cmd);
    let up = super::wait::until(Duration::from_secs(10), async || {
        server.assert_running();
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(up.is_some(), "openssl s_server did not start\n{}", server.output());
    (server, addr)
}

/// An HTTP/1.1 server on a thread that answers its Nth connection with the
/// Nth of `statuses` (a status line's tail, e.g. `503 Service Unavailable`)
/// and closes it; `requests` holds each request head it read.
pub struct Scripted {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

pub fn scripted(statuses: &[&str]) -> Scripted {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = requests.clone();
    let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
    let thread = std::thread::spawn(move || {
        for status in statuses {
            let Ok((mut s, _)) = listener.accept() else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            record.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
            let _ = write!(s, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    Scripted { addr, requests, thread }
}

impl Scripted {
    /// Waits until every scripted answer has been given.
    pub fn join(self) -> Vec<String> {
        self.thread.join().expect("the scripted server panicked");
        self.requests.lock().unwrap().clone()
    }
}

/// A raw HTTP/1.1 app that keeps every byte it receives (`received`) and
/// answers `200 ok` to each request head it sees (bodies are not read as
/// such: the tests send it bodiless requests when they expect answers).
#[derive(Clone)]
pub struct Tally {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Tally {
    /// Every byte received so far, on every connection.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// How many bytes it has received.
    pub fn len(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

pub async fn tally() -> Tally {
    let (listener, addr) = listen().await;
    let app = Tally { addr, received: Arc::default() };
    let received = app.received.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    received.lock().unwrap().extend_from_slice(&buf[..n]);
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    app
}

/// The variable that makes the test binary, run again, serve the
/// `killable` app on that port.
const KILLABLE_PORT: &str = "SIDETRACE_TEST_KILLABLE_PORT";

/// An app in a process of its own: the test binary itself, run again with
/// only its test `entry` selected, which calls `killable_main`. It serves
/// HTTP/1.1 and h2c on `addr`, by path:
/// - `/partial…`: `200` promising a megabyte (`content-length: 1000000`),
///   a kilobyte of `x`, then nothing more, ever (it prints `partial sent`
///   once the kilobyte is out);
/// - `/hold…`: reads the request and never answers (prints `held`);
/// - anything else: `hello from the killable app`.
///
/// A test kills it (`process.kill()`, SIGKILL) or freezes it
/// (`process.signal(SIGSTOP)`), and starts it again on the same port.
pub struct Killable {
    pub addr: SocketAddr,
    pub process: Process,
}

/// Starts the killable app on `port` (0: any), ready when this returns.
pub fn killable(entry: &str, port: u16) -> Killable {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args([entry, "--exact", "--ignored", "--nocapture", "--test-threads=1"]).env(KILLABLE_PORT, port.to_string());
    let process = Process::spawn("the killable app", &mut cmd);
    let addr = super::wait::until_sync(Duration::from_secs(10), || {
        let lines = process.stdout.lock().unwrap();
        // After libtest's `test killable_app ... `, on the same line.
        lines.iter().find_map(|l| l.split("killable app on ").nth(1)?.trim().parse::<SocketAddr>().ok())
    });
    let addr = addr.unwrap_or_else(|| panic!("the killable app did not start\n{}", process.output()));
    Killable { addr, process }
}

impl Killable {
    /// Waits until the app has printed `line` (`partial sent`, `held`)
    /// `n` times in all.
    pub fn wait_for(&self, line: &str, n: usize) {
        let printed = super::wait::until_sync(Duration::from_secs(10), || {
            self.process.stdout.lock().unwrap().iter().filter(|l| l.trim_end().ends_with(line)).count() >= n
        });
        assert!(printed.is_some(), "the killable app never said {line:?} {n} times\n{}", self.process.output());
    }
}

/// The killable app's side: serves until killed. Does nothing unless the
/// test binary was started by `killable` (a plain `--ignored` run).
pub fn killable_main() {
    let Some(port) = std::env::var(KILLABLE_PORT).ok().and_then(|p| p.parse::<u16>().ok()) else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        // tokio sets SO_REUSEADDR: the port binds again after a kill.
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("the killable app's port");
        println!("killable app on {}", listener.local_addr().unwrap());
        serve(listener, Arc::default(), |req| async move {
            let path = req.uri().path();
            if path.starts_with("/partial") {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
                tokio::spawn(async move {
                    // The second send waits until hyper took the first.
                    let _ = tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 1024])))).await;
                    let _ = tx.send(Ok(Frame::data(Bytes::new()))).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    println!("partial sent");
                    std::future::pending::<()>().await;
                    drop(tx);
                });
                let body = BodyExt::boxed(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)));
                let mut r = Response::new(body);
                r.headers_mut().insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("1000000"));
                r
            } else if path.starts_with("/hold") {
                println!("held");
                std::future::pending().await
            } else {
                Response::new(full("hello from the killable app\n"))
            }
        });
        std::future::pending::<()>().await
    });
}

/// When `keeps_then_closes` closes a connection after its first answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// At once: the connection dies while the proxy holds it idle.
    Idle,
    /// Once the connection's next request has been read, unanswered (a
    /// FIN): the app's keep-alive timer fired just as the request came.
    Unanswered,
    /// As the next request arrives, without reading it: the kernel answers
    /// the unread bytes with a reset.
    Reset,
}

/// An HTTP/1.1 app that answers `200 ok` with keep-alive (no `Connection:
/// close`) and yet closes each connection after its first answer, as
/// `close` says. `connections()` counts what it accepted.
pub async fn keeps_then_closes(close: Close) -> App {
    let (listener, addr) = listen().await;
    let app = App { addr, seen: Arc::default(), connections: Arc::default() };
    let connections = app.connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                let mut answered = false;
                loop {
                    if answered && close == Close::Reset {
                        // Dropped with the request unread: a reset.
                        let _ = s.readable().await;
                        return;
                    }
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    head.extend_from_slice(&buf[..n]);
                    if !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        continue;
                    }
                    // The whole head is read: closing now sends a FIN, not
                    // the RST that unread bytes would.
                    if answered {
                        return;
                    }
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await;
                    answered = true;
                    head.clear();
                    if close == Close::Idle {
                        return;
                    }
                }
            });
        }
    });
    app
}
