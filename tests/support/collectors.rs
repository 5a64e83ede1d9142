//! Fake span collectors named by behaviour:
//!
//! - `Collector`: the decoding peer, tests/peers/otlp_collector.py, which
//!   receives OTLP/HTTP (protobuf, JSON, gzip), OTLP/gRPC and Zipkin v2 and
//!   decodes every batch with the official OpenTelemetry protobufs (PyPI
//!   `opentelemetry-proto`); it can be told to fail (`fail`, `fail_grpc`)
//!   or to refuse some spans (`reject`), or to take each export slowly
//!   (`slow`);
//! - `ok`: accepts every OTLP/HTTP export and keeps nothing (for traffic
//!   whose spans no test reads);
//! - `stalled`: accepts connections and never answers;
//! - `recording_in`: inside a network namespace, accepts every OTLP/HTTP
//!   export and records each request's path, client address and trace
//!   context (not its spans): where an export came from, and that it was
//!   not traced.
//!
//! A collector that is down is `apps::refusing()`.

use super::client::Client;
use super::process::Process;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Collector {
    process: Process,
    pub http: u16,
    pub grpc: u16,
    /// How the test itself reaches an HTTPS (mTLS) collector.
    client: Client,
    scheme: &'static str,
}

impl Collector {
    /// On ports of its own.
    pub fn start() -> Collector {
        Collector::start_on(0, 0)
    }

    /// On the given ports (0: any).
    pub fn start_on(http: u16, grpc: u16) -> Collector {
        Collector::start_with(http, grpc, &[])
    }

    /// With more collector flags, e.g. `--tls-cert`.
    pub fn start_with(http: u16, grpc: u16, extra: &[&str]) -> Collector {
        let python = super::python::for_peers();
        let script = super::tools::repo("tests/peers/otlp_collector.py");
        let mut cmd = Command::new(&python);
        cmd.arg(script).args(["--http-port", &http.to_string(), "--grpc-port", &grpc.to_string()]).args(extra);
        let process = Process::spawn("the OTLP test collector", &mut cmd);
        let ready = super::wait::until_sync(Duration::from_secs(20), || {
            let lines = process.stdout.lock().unwrap();
            let line = lines.iter().find(|l| l.starts_with("READY "))?;
            let port = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)?.parse::<u16>().ok());
            Some((port("http=")?, port("grpc=")?))
        });
        let (http, grpc) = ready.unwrap_or_else(|| {
            panic!("the collector did not start (is opentelemetry-proto installed?)\n{}", process.output())
        });
        Collector { process, http, grpc, client: Client::http1(), scheme: "http" }
    }

    /// For a collector started with `--tls-cert`: how the test itself
    /// reaches it (trusting `ca`, presenting `cert` and `key`).
    pub fn reached_with(mut self, ca: &Path, cert: &Path, key: &Path) -> Collector {
        self.client = Client::http1().tls(ca, Some((cert, key)));
        self.scheme = "https";
        self
    }

    pub fn http_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.http)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self.client.get(&format!("{}{path}", self.http_url())).send().await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {}", r.text()))
    }

    /// Every batch received: `{"transport", "request" | "spans", "headers"}`.
    pub async fn received(&self) -> Vec<Value> {
        match self.get_json("/received").await {
            Value::Array(batches) => batches,
            other => panic!("/received is not a list: {other}"),
        }
    }

    /// Every OTLP span received, flattened, with its resource.
    pub async fn otlp_spans(&self) -> Vec<(Value, Value)> {
        let mut out = Vec::new();
        for batch in self.received().await {
            for rs in batch["request"]["resourceSpans"].as_array().into_iter().flatten() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        out.push((s.clone(), rs["resource"].clone()));
                    }
                }
            }
        }
        out
    }

    /// Every OTLP log record received, flattened, with its resource and
    /// the batch's transport.
    pub async fn otlp_logs(&self) -> Vec<(Value, Value, String)> {
        let mut out = Vec::new();
        for batch in self.received().await {
            for rl in batch["request"]["resourceLogs"].as_array().into_iter().flatten() {
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    for r in sl["logRecords"].as_array().into_iter().flatten() {
                        let transport = batch["transport"].as_str().unwrap_or_default().to_string();
                        out.push((r.clone(), rl["resource"].clone(), transport));
                    }
                }
            }
        }
        out
    }

    /// Waits, for at most `limit`, until `n` log records have arrived.
    pub async fn wait_for_logs(&self, n: usize, limit: Duration) -> Vec<(Value, Value, String)> {
        super::wait::until(limit, async || self.otlp_logs().await.len() >= n).await;
        self.otlp_logs().await
    }

    /// Waits, for at most `limit`, until `n` spans have arrived; returns
    /// what has arrived by then (the caller compares it with what it
    /// expected, which says more than a timeout would).
    pub async fn wait_for_spans(&self, n: usize, limit: Duration) -> Vec<(Value, Value)> {
        super::wait::until(limit, async || self.otlp_spans().await.len() >= n).await;
        self.otlp_spans().await
    }

    /// Failed export attempts so far (answered with a failure on purpose).
    pub async fn failed_attempts(&self) -> u64 {
        self.get_json("/attempts").await["failed"].as_u64().expect("a count")
    }

    async fn control(&self, update: Value) {
        let url = format!("{}/control", self.http_url());
        let r = self.client.post(&url).body(update.to_string()).send().await;
        assert_eq!(r.status, 200, "{update}: {}", r.text());
    }

    /// OTLP/HTTP exports are answered `status` (with `Retry-After:
    /// retry_after` if given) for the next `period`.
    pub async fn fail(&self, status: u16, retry_after: Option<&str>, period: Duration) {
        self.control(json!({"mode": "fail", "status": status, "retry_after": retry_after, "until": from_now(period)}))
            .await;
    }

    /// OTLP/HTTP exports are taken, each after `delay`, for the next `period`.
    pub async fn slow(&self, delay: Duration, period: Duration) {
        self.control(json!({"mode": "slow", "delay": delay.as_secs_f64(), "until": from_now(period)})).await;
    }

    /// OTLP/gRPC exports fail with `code` (e.g. `UNAVAILABLE`) for the next `period`.
    pub async fn fail_grpc(&self, code: &str, period: Duration) {
        self.control(json!({"mode": "fail", "grpc_code": code, "until": from_now(period)})).await;
    }

    /// Each OTLP/HTTP batch is taken with `n` spans refused (partial success).
    pub async fn reject(&self, n: u32) {
        self.control(json!({"reject": n})).await;
    }

    /// What the collector printed, for a failure message.
    pub fn output(&self) -> String {
        self.process.output()
    }
}

/// Seconds since the epoch, `period` from now, as the collector reads it.
fn from_now(period: Duration) -> f64 {
    (SystemTime::now() + period).duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// An OTLP/HTTP endpoint that accepts every export (an empty
/// `ExportTraceServiceResponse` is a full success) and keeps nothing.
pub async fn ok() -> SocketAddr {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                    resp.headers_mut().insert("content-type", "application/x-protobuf".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    addr
}

/// An OTLP/HTTP collector on `bind:port` in namespace `ns` of `w` that
/// answers every export with an empty 200 and records each request in
/// `record` (`netns::World::recording_service`, with an empty body).
pub fn recording_in(
    w: &mut super::netns::World,
    ns: &str,
    bind: &str,
    port: u16,
    record: &Path,
) -> super::netns::Record {
    w.recording_service(ns, bind, port, "", record)
}

/// A collector that accepts connections and never answers.
pub async fn stalled() -> SocketAddr {
    super::apps::stalled().await
}
