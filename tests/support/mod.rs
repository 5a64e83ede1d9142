//! The test harness: a sidecar bound to ephemeral loopback ports, fake apps
//! named by behaviour, and helpers to wait for spans and run curl.
#![allow(dead_code)]

pub mod collector;
pub mod netns;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sidetrace::Sidecar;
use sidetrace::config::Config;
use sidetrace::trace::SpanRecord;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

pub async fn proxy_for(app: SocketAddr) -> Sidecar {
    proxy_with(Config::local(app, "test-service")).await
}

pub async fn proxy_with(config: Config) -> Sidecar {
    Sidecar::start(config).await.expect("sidecar starts")
}

/// Waits (bounded) until the sidecar has recorded at least `n` spans.
pub async fn spans(sidecar: &Sidecar, n: usize) -> Vec<SpanRecord> {
    for _ in 0..250 {
        let all = sidecar.ring.newest(usize::MAX);
        if all.len() >= n {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = sidecar.ring.newest(usize::MAX);
    panic!("expected {n} spans, have {}: {all:#?}", all.len());
}

/// What the app saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
}

#[derive(Clone)]
pub struct App {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections the app has accepted.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl App {
    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the app saw a request")
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// The `echo` app, over HTTP/1.1 and HTTP/2 (prior knowledge):
/// - `/echo`: streams the request body back (trailers too)
/// - `/bytes/N`: N bytes of a repeating pattern, streamed in 64 KiB frames
/// - `/trailers`: a body followed by trailers `x-checksum: abc`
/// - `/status/N`: answers N
/// - `/slow/MS`: answers after MS milliseconds
/// - `/headers`: the request's headers as `name: value` lines, sorted
/// - `/sink`: reads the whole body and answers its length
/// - anything else: `hello from the app`
pub async fn echo_app() -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let connections: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let app = App { addr, seen: seen.clone(), connections: connections.clone() };
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(respond(req, seen).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    app
}

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
            let body = req.into_body();
            let stream = futures_util::stream::unfold(body, |mut b| async move {
                match b.frame().await {
                    Some(Ok(f)) => Some((Ok::<_, Infallible>(f), b)),
                    _ => None,
                }
            });
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
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
            let mut r = Response::new(full(format!("status {code}\n")));
            *r.status_mut() =
                code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::OK);
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

/// Runs curl with `-sS` and returns its output.
pub fn curl(args: &[&str]) -> Output {
    std::process::Command::new("curl").arg("-sS").args(args).output().expect("curl is installed")
}

/// A child process that is killed and reaped when the test lets go of it,
/// whether the test passes or panics.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits, for at most 5 s, until something accepts connections on
/// 127.0.0.1:`port`. Returns whether it did.
pub fn wait_for_port(port: u16) -> bool {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits, for at most `limit`, until `done` holds; returns whether it did.
pub async fn until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while !done() {
        if std::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// A port on loopback with nothing listening.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A sidecar whose inbound side forwards to `app`, and its inbound URL.
pub async fn inbound_for(app: &App) -> (Sidecar, String) {
    let s = proxy_for(app.addr).await;
    let url = format!("http://{}", s.inbound.unwrap());
    (s, url)
}
