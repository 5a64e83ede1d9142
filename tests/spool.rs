//! The disk spool through a crash: batches spooled while the collector is
//! down survive `kill -9` and a restart, arrive once each when it is back,
//! and a batch file damaged on disk is skipped while the rest replays.

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::collectors::Collector;
use support::{Client, TestProxy, apps, tools, wait};

fn spawn_proxy(app: std::net::SocketAddr, collector: std::net::SocketAddr, spool: &Path) -> TestProxy {
    let endpoint = format!("http://{collector}");
    TestProxy::to(app)
        .flags(&["--outbound", "off", "--admin", "off", "--access-log", "off"])
        .flags(&["--otlp-endpoint", &endpoint, "--spool-dir", spool.to_str().unwrap()])
        .flags(&["--queue-size", "20", "--export-batch-size", "10", "--export-delay", "50ms"])
        .flags(&["--export-concurrency", "1", "--retry-initial", "200ms", "--retry-max", "500ms"])
        .spawn()
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
    let app = apps::echo().await;
    let (collector_addr, grpc_addr) = (apps::refusing(), apps::refusing());
    let dir = tools::scratch_dir("spool-test");
    let spool = dir.join("otlp_http");

    // Collector down: memory holds two batches, the rest goes to disk.
    let mut proxy = spawn_proxy(app.addr, collector_addr, &dir);
    let client = Client::http1();
    // A request every 20 ms or so, as a client that is not a load test
    // sends them: a burst would overflow the 20-span queue, and this test
    // is about the spool, not the queue.
    for i in 0..200 {
        assert_eq!(client.get(&format!("{}/r/{i}", proxy.inbound_url())).send().await.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Until the spool stops growing, with at least ten batches in it.
    let mut files = Vec::new();
    let settled = wait::until(Duration::from_secs(10), async || {
        let now = batch_files(&spool);
        let stable = now.len() >= 10 && now.len() == files.len();
        files = now;
        stable
    })
    .await;
    assert!(settled.is_some(), "expected batches on disk, found {}\n{}", files.len(), proxy.output());
    proxy.process().signal(libc::SIGKILL);
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

    let collector = Collector::start_on(collector_addr.port(), grpc_addr.port());
    let _proxy = spawn_proxy(app.addr, collector_addr, &dir);
    collector.wait_for_spans(expected.len(), Duration::from_secs(30)).await;
    // A little longer: nothing may arrive twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received: Vec<String> =
        collector.otlp_spans().await.iter().map(|(s, _)| s["spanId"].as_str().unwrap().to_string()).collect();
    let unique: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(unique.len(), received.len(), "a batch arrived twice");
    assert_eq!(unique, expected, "exactly the intact spooled batches arrived");
    assert!(batch_files(&spool).is_empty(), "delivered batches are removed from the spool");
    let _ = std::fs::remove_dir_all(&dir);
}
