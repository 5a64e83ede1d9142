//! A real Prometheus server (Debian's `prometheus`, 2.42) for one test:
//! started on a free loopback port with the configuration the test wrote
//! (`start`), or scraping a list of targets every second (`scraping`, with
//! the `--enable-feature` flags asked for: `exemplar-storage`,
//! `native-histograms`, which also makes it scrape the protobuf format),
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
    /// What drop removes: its data, or the whole directory `scraping` made.
    owned: PathBuf,
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
        let p = Prometheus { process: Process::spawn("prometheus", &mut cmd), addr, owned: data };
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

    /// Scrapes `targets`' `/metrics` every second (and evaluates every
    /// second) with the features given (`--enable-feature=F` each); its
    /// configuration and data live in a scratch directory named `name`,
    /// removed on drop.
    pub async fn scraping(name: &str, targets: &[SocketAddr], features: &[&str]) -> Prometheus {
        let dir = super::tools::scratch_dir(name);
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.join("prometheus.yml");
        let yaml = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sidetrace\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(&config, yaml).unwrap();
        let flags: Vec<String> = features.iter().map(|f| format!("--enable-feature={f}")).collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut p = Prometheus::start(&dir, &config, &flags).await;
        p.owned = dir;
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
        first_value(&self.instant(query).await)
    }

    /// The first value of an instant query evaluated at `time` (Unix
    /// seconds), if any.
    pub async fn value_at(&self, query: &str, time: f64) -> Option<f64> {
        let time = format!("{time:.3}");
        let data = self.api("query", &[("query", query), ("time", &time)]).await;
        first_value(data["result"].as_array()?)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.owned);
    }
}

fn first_value(result: &[Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
