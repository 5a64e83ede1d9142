//! What the metrics tests share: an app that sleeps as told, a keep-alive
//! client, a parser of the text expositions, and a real Prometheus server.
#![allow(dead_code)]

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use sidetrace::Sidecar;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Answers every path after `?ms=N` milliseconds with status `?status=S`
/// (default 200), so a test knows what each request cost upstream.
pub async fn sleeper_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let q = req.uri().query().unwrap_or("");
                    let param = |k: &str| q.split('&').find_map(|p| p.strip_prefix(k)?.strip_prefix('='));
                    let ms: u64 = param("ms").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let status: u16 = param("status").and_then(|v| v.parse().ok()).unwrap_or(200);
                    if ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"ok\n")));
                    *r.status_mut() = StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    addr
}

pub type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

pub async fn connect(addr: SocketAddr) -> Sender {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// One GET on a kept-alive connection: status, body, and the time from
/// sending to the body's end as this client saw it.
pub async fn get(sender: &mut Sender, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String, Duration) {
    sender.ready().await.unwrap();
    let mut req = Request::get(uri);
    if uri.starts_with('/') {
        req = req.header("host", "metrics.test");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let started = Instant::now();
    let resp = sender.send_request(req.body(Empty::new()).unwrap()).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), started.elapsed())
}

/// A one-off GET to a server (the admin port, Prometheus' API).
pub async fn fetch(addr: SocketAddr, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let (status, body, _) = get(&mut connect(addr).await, uri, headers).await;
    (status, body)
}

/// A one-off GET of the admin port's `/metrics` with an `Accept` header:
/// the response's content type and bytes.
pub async fn metrics_bytes(s: &Sidecar, accept: &str) -> (String, Bytes) {
    let mut c = connect(s.admin.unwrap()).await;
    c.ready().await.unwrap();
    let req = Request::get("/metrics").header("accept", accept).body(Empty::new()).unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, resp.into_body().collect().await.unwrap().to_bytes())
}

pub async fn metrics_text(s: &Sidecar, accept: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
    let (status, body) = fetch(s.admin.unwrap(), "/metrics", &headers).await;
    assert_eq!(status, 200);
    body
}

#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub exemplar: Option<BTreeMap<String, String>>,
}

pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    // Label values here never hold `",`, so a plain split is enough.
    s.split("\",")
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once("=\""))
        .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
        .collect()
}

/// The samples of an exposition (either format), with exemplars.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (sample, exemplar) = match line.split_once(" # ") {
                Some((s, e)) => (s, Some(e)),
                None => (line, None),
            };
            let (series, value) = sample.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            let exemplar = exemplar.map(|e| parse_labels(&e[1..e.find('}').unwrap()]));
            Sample { name: name.to_string(), labels, value: value.parse().unwrap(), exemplar }
        })
        .collect()
}

pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

/// Whether a peer binary can run; in CI (`CI` set) a missing peer fails
/// the test instead, since `.ci/run` installs it.
pub fn peer(binary: &str) -> bool {
    let ok = Command::new(binary).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{binary} is missing; scripts/test.sh installs it (apt prometheus)");
        eprintln!("SKIPPED: {binary} is not installed (apt-get install -y prometheus)");
    }
    ok
}

// ---------------------------------------------------------------------------
// A real Prometheus server.

/// A Prometheus server on a free loopback port, scraping `targets` every
/// second with the `--enable-feature` flags given (comma-separated); killed
/// (and its data removed) when dropped.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Prometheus {
    pub async fn start(targets: &[SocketAddr], features: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("sidetrace-prom-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sidetrace\n    static_configs:\n      - targets: [{}]\n",
            targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr = crate::support::closed_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!("--enable-feature={features}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap();
        let p = Prometheus { child, addr, dir };
        let up = wait_for(Duration::from_secs(30), || async {
            TcpStream::connect(p.addr).await.is_ok() && fetch(p.addr, "/-/ready", &[]).await.0 == 200
        })
        .await;
        assert!(up, "prometheus did not become ready:\n{}", p.log());
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// An instant query, at `time` if given: the first result's value.
    pub async fn query(&self, q: &str, time: Option<f64>) -> Option<f64> {
        let r = self.api("query", q, time.map(|t| format!("&time={t:.3}")).unwrap_or_default()).await;
        r["data"]["result"].get(0)?["value"][1].as_str()?.parse().ok()
    }

    pub async fn api(&self, endpoint: &str, q: &str, extra: String) -> Value {
        let q = percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC);
        let (status, body) = fetch(self.addr, &format!("/api/v1/{endpoint}?query={q}{extra}"), &[]).await;
        assert_eq!(status, 200, "{endpoint} {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn wait_for<F: Future<Output = bool>>(limit: Duration, mut check: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
