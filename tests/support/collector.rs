//! The Python test collector (tests/peers/otlp_collector.py), which decodes
//! what the exporters send with the official OpenTelemetry protobufs.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Collector {
    child: Child,
    pub http: u16,
    pub grpc: u16,
    /// curl flags to reach an HTTPS (mTLS) collector.
    tls_args: Vec<String>,
}

fn python() -> String {
    std::env::var("SIDETRACE_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-venv/bin/python").to_string())
}

impl Collector {
    pub fn start() -> Collector {
        Collector::start_on(0, 0)
    }

    pub fn start_on(http: u16, grpc: u16) -> Collector {
        Collector::start_with(http, grpc, &[])
    }

    /// With more collector flags, e.g. `--tls-cert`.
    pub fn start_with(http: u16, grpc: u16, extra: &[&str]) -> Collector {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/otlp_collector.py");
        let mut child = Command::new(python())
            .args([script, "--http-port", &http.to_string(), "--grpc-port", &grpc.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e}); run scripts/test.sh, which creates it", python()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = |key: &str| -> u16 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("the collector did not start (is opentelemetry-proto installed?): {line:?}"))
        };
        let (http, grpc) = (port("http="), port("grpc="));
        Collector { child, http, grpc, tls_args: Vec::new() }
    }

    /// For a collector started with `--tls-cert`: how the test itself reads it.
    pub fn reached_with(mut self, ca: &str, cert: &str, key: &str) -> Collector {
        self.tls_args = ["--cacert", ca, "--cert", cert, "--key", key].iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn http_url(&self) -> String {
        let scheme = if self.tls_args.is_empty() { "http" } else { "https" };
        format!("{scheme}://127.0.0.1:{}", self.http)
    }

    pub fn received(&self) -> Vec<Value> {
        let mut args: Vec<&str> = self.tls_args.iter().map(String::as_str).collect();
        let url = format!("{}/received", self.http_url());
        args.push(&url);
        let out = super::curl(&args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad /received: {e}"))
    }

    /// Every OTLP span received, flattened, with its resource attributes.
    pub fn otlp_spans(&self) -> Vec<(Value, Value)> {
        let mut out = Vec::new();
        for batch in self.received() {
            for rs in batch["request"]["resourceSpans"].as_array().cloned().unwrap_or_default() {
                for ss in rs["scopeSpans"].as_array().cloned().unwrap_or_default() {
                    for s in ss["spans"].as_array().cloned().unwrap_or_default() {
                        out.push((s, rs["resource"].clone()));
                    }
                }
            }
        }
        out
    }

    /// Waits, for at most `limit`, until `n` spans have arrived; returns
    /// what has arrived by then.
    pub async fn wait_for_spans(&self, n: usize, limit: std::time::Duration) -> Vec<(Value, Value)> {
        let until = std::time::Instant::now() + limit;
        loop {
            let spans = self.otlp_spans();
            if spans.len() >= n || std::time::Instant::now() > until {
                return spans;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub fn control(&self, json: &str) {
        let out = super::curl(&["-X", "POST", "--data", json, &format!("{}/control", self.http_url())]);
        assert!(out.status.success());
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
