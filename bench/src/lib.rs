//! The benchmark backend: a small hyper server that speaks HTTP/1.1 and
//! HTTP/2 with prior knowledge (h2c) on one port, so that the backend is
//! never what limits a run. It is used as a separate process by
//! `bench/run.py` and in-process by the allocation micro-benchmark.
//!
//! Routes (any method unless said):
//!
//! | path | answer |
//! |---|---|
//! | `/` (anything not below) | 200, a 1 KiB body |
//! | `/delay/{ms}` | 200, a 1 KiB body after `ms` milliseconds |
//! | `/stream/{bytes}` | 200, `bytes` bytes streamed in 64 KiB chunks |
//! | `/sink` | reads the whole request body, answers its length |
//! | `/v1/traces` (POST) | an OTLP/HTTP sink: counts requests and bytes, answers an empty `ExportTraceServiceResponse` |
//! | `/__stats` | the counters, as JSON |
//! | `/call` | with `--call-via PROXY --call URL`: one GET of URL through the HTTP proxy PROXY (a sidecar's outbound listener), copying no header, then 200 and a 1 KiB body: an app that calls a downstream for each request, as the stitching benchmark needs |
//! | `content-type: application/grpc*` | gRPC unary: reads the request, answers one 1 KiB message and `grpc-status: 0` trailers |
//!
//! Every answer is built from static bytes: the backend allocates little
//! per request (it is subtracted as the "direct" path in `allocs`).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;

const KIB: usize = 1024;
const CHUNK: usize = 64 * KIB;
static BYTES: [u8; CHUNK] = [b'x'; CHUNK];
/// A gRPC length-prefixed message (uncompressed, 1024 bytes) holding one
/// protobuf `bytes` field 1 of 1021 bytes: 0x0a, varint 1021 (0xfd 0x07).
static GRPC_FRAME: [u8; 5 + KIB] = grpc_frame();

const fn grpc_frame() -> [u8; 5 + KIB] {
    let mut f = [b'x'; 5 + KIB];
    f[0] = 0;
    f[1] = 0;
    f[2] = 0;
    f[3] = (KIB >> 8) as u8;
    f[4] = (KIB & 0xff) as u8;
    f[5] = 0x0a;
    f[6] = 0xfd;
    f[7] = 0x07;
    f
}

/// Counters a run reads from `/__stats`.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub sink_bytes: AtomicU64,
    pub otlp_requests: AtomicU64,
    pub otlp_bytes: AtomicU64,
}

/// Where `/call` goes: through `proxy` (absolute-form requests, as
/// `HTTP_PROXY` clients send them) to `url`.
pub struct Call {
    pub proxy: std::net::SocketAddr,
    pub url: hyper::Uri,
    /// Idle HTTP/1.1 connections to the proxy.
    pool: std::sync::Mutex<Vec<hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>>>,
}

pub static CALL: std::sync::OnceLock<Call> = std::sync::OnceLock::new();

impl Call {
    pub fn new(proxy: std::net::SocketAddr, url: hyper::Uri) -> Call {
        Call { proxy, url, pool: std::sync::Mutex::default() }
    }

    async fn once(&self) -> bool {
        let idle = self.pool.lock().unwrap().pop();
        let mut sender = match idle {
            Some(s) if !s.is_closed() => s,
            _ => {
                let Ok(sock) = tokio::net::TcpStream::connect(self.proxy).await else { return false };
                let _ = sock.set_nodelay(true);
                let Ok((sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(sock)).await else {
                    return false;
                };
                tokio::spawn(conn);
                sender
            }
        };
        if sender.ready().await.is_err() {
            return false;
        }
        let host = self.url.authority().map(|a| a.as_str()).unwrap_or_default();
        let req = Request::get(self.url.clone())
            .header(header::HOST, host)
            .body(http_body_util::Empty::new())
            .expect("a GET");
        let ok = match sender.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                drain(resp.into_body()).await;
                ok
            }
            Err(_) => false,
        };
        self.pool.lock().unwrap().push(sender);
        ok
    }
}

/// Serves connections from `listener` until the process ends.
pub async fn serve(listener: TcpListener, stats: Arc<Stats>) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20);
    let builder = Arc::new(builder);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        stats.connections.fetch_add(1, Relaxed);
        let (builder, stats) = (builder.clone(), stats.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, stats.clone()));
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(req: Request<Incoming>, stats: Arc<Stats>) -> Result<Response<Reply>, Infallible> {
    stats.requests.fetch_add(1, Relaxed);
    let is_grpc =
        req.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        drain(req.into_body()).await;
        let trailers = {
            let mut t = hyper::HeaderMap::new();
            t.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
            t
        };
        let body = Reply::Grpc { message: Some(Bytes::from_static(&GRPC_FRAME)), trailers: Some(trailers) };
        return Ok(Response::builder()
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(body)
            .expect("static response"));
    }
    let path = req.uri().path();
    if let Some(ms) = path.strip_prefix("/delay/") {
        let ms = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(kib());
    }
    if let Some(n) = path.strip_prefix("/stream/") {
        let remaining = n.parse().unwrap_or(0);
        return Ok(Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, remaining)
            .body(Reply::Stream { remaining })
            .expect("static response"));
    }
    match path {
        "/call" => match CALL.get() {
            Some(call) if call.once().await => Ok(kib()),
            _ => Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Reply::Full(Some(Bytes::from_static(b"the call failed\n"))))
                .expect("static response")),
        },
        "/sink" => {
            let n = drain(req.into_body()).await;
            stats.sink_bytes.fetch_add(n, Relaxed);
            Ok(text(n.to_string()))
        }
        "/v1/traces" => {
            let json = req.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().ends_with(b"json"));
            let n = drain(req.into_body()).await;
            stats.otlp_requests.fetch_add(1, Relaxed);
            stats.otlp_bytes.fetch_add(n, Relaxed);
            let (ct, body) = if json { ("application/json", "{}") } else { ("application/x-protobuf", "") };
            Ok(Response::builder()
                .header(header::CONTENT_TYPE, ct)
                .body(Reply::Full(Some(Bytes::from_static(body.as_bytes()))))
                .expect("static response"))
        }
        "/__stats" => Ok(text(format!(
            "{{\"connections\":{},\"requests\":{},\"sink_bytes\":{},\"otlp_requests\":{},\"otlp_bytes\":{}}}",
            stats.connections.load(Relaxed),
            stats.requests.load(Relaxed),
            stats.sink_bytes.load(Relaxed),
            stats.otlp_requests.load(Relaxed),
            stats.otlp_bytes.load(Relaxed)
        ))),
        _ => {
            if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
                drain(req.into_body()).await;
            }
            Ok(kib())
        }
    }
}

/// Reads a request body to its end; returns its length in bytes.
async fn drain(mut body: Incoming) -> u64 {
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    n
}

fn kib() -> Response<Reply> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Reply::Full(Some(Bytes::from_static(&BYTES[..KIB]))))
        .expect("static response")
}

fn text(s: String) -> Response<Reply> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Reply::Full(Some(Bytes::from(s))))
        .expect("static response")
}

/// Response bodies, all from static bytes.
pub enum Reply {
    Full(Option<Bytes>),
    Stream { remaining: u64 },
    Grpc { message: Option<Bytes>, trailers: Option<hyper::HeaderMap> },
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(match this {
            Reply::Full(b) => b.take().map(|b| Ok(Frame::data(b))),
            Reply::Stream { remaining } => {
                if *remaining == 0 {
                    None
                } else {
                    let n = (*remaining).min(CHUNK as u64) as usize;
                    *remaining -= n as u64;
                    Some(Ok(Frame::data(Bytes::from_static(&BYTES[..n]))))
                }
            }
            Reply::Grpc { message, trailers } => match message.take() {
                Some(m) => Some(Ok(Frame::data(m))),
                None => trailers.take().map(|t| Ok(Frame::trailers(t))),
            },
        })
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Reply::Full(b) => b.is_none(),
            Reply::Stream { remaining } => *remaining == 0,
            Reply::Grpc { message, trailers } => message.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Reply::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Reply::Stream { remaining } => SizeHint::with_exact(*remaining),
            Reply::Grpc { .. } => SizeHint::default(),
        }
    }
}
