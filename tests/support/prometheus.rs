//! A real Prometheus server (Debian's `prometheus`, 2.42) for one test:
//! started on a free loopback port with the configuration the test wrote,
//! asked through its HTTP API, killed (and its data removed) on drop.

use super::client::Client;
use super::process::Process;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Prometheus {
    process: Process,
    pub addr: SocketAddr,
    data: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus --config.file=CONFIG` with its data under `dir`
    /// and `extra` flags (`--enable-feature=…`); ready when this returns.
    pub async fn start(dir: &Path, config: &Path, extra: &[&str]) -> Prometheus {
        let addr = super::apps::refusing();
        let data = dir.join("prometheus-data");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra);
        let p = Prometheus { process: Process::spawn("prometheus", &mut cmd), addr, data };
        let client = Client::http1();
        let url = format!("http://{addr}/-/ready");
        let ready = super::wait::until(
            Duration::from_secs(60),
            async || matches!(client.get(&url).try_send().await, Ok(r) if r.status == 200),
        )
        .await;
        assert!(ready.is_some(), "prometheus did not become ready:\n{}", p.log());
        p
    }

    /// Its log (stderr), for a failure message.
    pub fn log(&self) -> String {
        self.process.stderr_text()
    }

    /// `GET /api/v1/PATH?params`: the `data` of a successful answer.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        let url = format!("http://{}/api/v1/{path}?{}", self.addr, query.join("&"));
        let r = Client::http1().get(&url).send().await;
        assert_eq!(r.status, 200, "{path} {params:?}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.text()));
        assert_eq!(v["status"], "success", "{path} {params:?}: {v}");
        v["data"].clone()
    }

    /// An instant query's result vector, now.
    pub async fn instant(&self, query: &str) -> Vec<Value> {
        self.api("query", &[("query", query)]).await["result"].as_array().cloned().unwrap_or_default()
    }

    /// The first value of an instant query now, if any.
    pub async fn value(&self, query: &str) -> Option<f64> {
        self.instant(query).await.first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
