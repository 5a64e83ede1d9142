//! The Python test collector (tests/peers/otlp_collector.py), which decodes
//! what the exporters send with the official OpenTelemetry protobufs.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Collector {
    child: Child,
    pub http: u16,
    pub grpc: u16,
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
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/otlp_collector.py");
        let mut child = Command::new(python())
            .args([script, "--http-port", &http.to_string(), "--grpc-port", &grpc.to_string()])
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
        Collector { child, http, grpc }
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub fn received(&self) -> Vec<Value> {
        let out = super::curl(&[&format!("{}/received", self.http_url())]);
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
