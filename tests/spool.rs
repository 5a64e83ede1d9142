//! The disk spool through a crash: batches spooled while the collector is
//! down survive `kill -9` and a restart, arrive once each when it is back,
//! and a batch file damaged on disk is skipped while the rest replays.

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::collector::Collector;
use support::*;

fn start_proxy(app: std::net::SocketAddr, collector_port: u16, spool: &Path) -> (KillOnDrop, u16) {
    let port = closed_port().port();
    let child = Command::new(env!("CARGO_BIN_EXE_sidetrace"))
        .args(["run", "--inbound", &format!("127.0.0.1:{port}"), "--app", &app.to_string()])
        .args(["--outbound", "off", "--admin", "off", "--access-log", "off"])
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{collector_port}")])
        .args(["--spool-dir", spool.to_str().unwrap(), "--queue-size", "20", "--export-batch-size", "10"])
        .args([
            "--export-delay",
            "50ms",
            "--export-concurrency",
            "1",
            "--retry-initial",
            "200ms",
            "--retry-max",
            "500ms",
        ])
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let proxy = KillOnDrop(child);
    assert!(wait_for_port(port), "proxy did not start");
    (proxy, port)
}

fn batch_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "batch")).collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The span ids inside a spool file, decoded with the Rust OTLP types.
fn span_ids(file: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(file).unwrap();
    let req = ExportTraceServiceRequest::decode(&bytes[20..]).expect("a spooled batch is an OTLP request");
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.span_id.iter().map(|b| format!("{b:02x}")).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_batches_survive_sigkill_and_arrive_once() {
    let app = echo_app().await;
    let collector_port = closed_port().port();
    let grpc_port = closed_port().port();
    let dir = std::env::temp_dir().join(format!("sidetrace-spool-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spool = dir.join("otlp_http");

    // Collector down: memory holds two batches, the rest goes to disk.
    let (proxy, port) = start_proxy(app.addr, collector_port, &dir);
    let url = format!("http://127.0.0.1:{port}");
    for i in 0..200 {
        assert!(curl(&["-o", "/dev/null", &format!("{url}/r/{i}")]).status.success());
    }
    let mut files = Vec::new();
    for _ in 0..100 {
        let now = batch_files(&spool);
        if now.len() >= 10 && now.len() == files.len() {
            break;
        }
        files = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(files.len() >= 10, "expected batches on disk, found {}", files.len());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(proxy.0.id() as i32, libc::SIGKILL) };
    drop(proxy);

    let files = batch_files(&spool);
    let mut expected = BTreeSet::new();
    for f in &files {
        expected.extend(span_ids(f));
    }
    // Damage one batch: cut it mid-record. It must be skipped, the rest replayed.
    let damaged = &files[files.len() / 2];
    let damaged_ids = span_ids(damaged);
    let len = std::fs::metadata(damaged).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(damaged).unwrap().set_len(len / 2).unwrap();
    for id in &damaged_ids {
        expected.remove(id);
    }

    let collector = Collector::start_on(collector_port, grpc_port);
    let (_proxy, _) = start_proxy(app.addr, collector_port, &dir);
    collector.wait_for_spans(expected.len(), Duration::from_secs(30)).await;
    // A little longer: nothing may arrive twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received: Vec<String> =
        collector.otlp_spans().iter().map(|(s, _)| s["spanId"].as_str().unwrap().to_string()).collect();
    let unique: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(unique.len(), received.len(), "a batch arrived twice");
    assert_eq!(unique, expected, "exactly the intact spooled batches arrived");
    assert!(batch_files(&spool).is_empty(), "delivered batches are removed from the spool");
    let _ = std::fs::remove_dir_all(&dir);
}
