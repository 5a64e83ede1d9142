//! The collector's store on disk: every batch it acknowledged survives a
//! `kill -9` and is served after a restart on the same directory; the
//! retention and the size cap remove the oldest data first.

mod support;

use std::time::Duration;
use support::collector::{SidetraceCollector, TestSpan, hex, now_ns, request, span, string, trace_id};
use support::tools::scratch_dir;

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// A trace of `spans` spans starting at `start`, with some weight in its
/// attributes so the size cap is reached with few spans.
fn trace(id: u64, start: u64, spans: u64) -> Vec<TestSpan> {
    let trace = trace_id(id);
    let padding = string("padding", &"x".repeat(200));
    (0..spans)
        .map(|i| {
            let (parent, kind) = if i == 0 { (None, SERVER) } else { (Some(1), CLIENT) };
            span(
                "durable",
                &trace,
                i + 1,
                parent,
                "GET /d",
                kind,
                start + i,
                Duration::from_millis(2),
                vec![padding.clone()],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_kill_9() {
    let dir = scratch_dir("collector-kill9");
    let storage = dir.to_str().unwrap().to_string();
    let mut collector = SidetraceCollector::start(&storage, &[]);
    let now = now_ns();
    // Many concurrent senders, so acknowledgements come from shared commits.
    let mut sent = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..8u64 {
        let url = format!("{}/v1/traces", collector.http_url());
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for batch in 0..10u64 {
                let id = sender * 1000 + batch;
                let body = prost::Message::encode_to_vec(&request(&trace(id, now + id, 20)));
                let r = support::Client::http1()
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                if r.status == 200 {
                    acked.push(id);
                }
            }
            acked
        });
    }
    while let Some(acked) = tasks.join_next().await {
        sent.extend(acked.unwrap());
    }
    assert_eq!(sent.len(), 80, "every batch was acknowledged");
    collector.process.signal(libc::SIGKILL);
    collector.process.kill();

    let collector = SidetraceCollector::start(&storage, &[]);
    for id in &sent {
        let doc = collector.json(&format!("/api/traces/{}", hex(&trace_id(*id)))).await;
        assert_eq!(doc["spans"].as_array().unwrap().len(), 20, "trace {id}");
    }
    let services = collector.json("/api/services").await;
    assert_eq!(services["services"][0]["spans"], 80 * 20);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_what_is_older() {
    let dir = scratch_dir("collector-retention");
    let collector =
        SidetraceCollector::start(dir.to_str().unwrap(), &["--retention", "1h", "--enforce-interval", "100ms"]);
    let now = now_ns();
    let hour = 3_600_000_000_000;
    collector.send(&request(&trace(1, now - 2 * hour, 3))).await;
    collector.send(&request(&trace(2, now - hour / 2, 3))).await;
    let gone = support::wait::until(Duration::from_secs(20), async || {
        (collector.get(&format!("/api/traces/{}", hex(&trace_id(1)))).await.status == 404).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the trace older than the retention is still served");
    collector.wait_for_trace(&hex(&trace_id(2)), 3).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_cap_removes_the_oldest_first() {
    let dir = scratch_dir("collector-size");
    let collector =
        SidetraceCollector::start(dir.to_str().unwrap(), &["--max-bytes", "256KiB", "--enforce-interval", "100ms"]);
    let base = now_ns() - 600_000_000_000;
    // About 2 MB in all, oldest first: each trace starts a second after the last.
    let traces = 100u64;
    for id in 0..traces {
        collector.send(&request(&trace(id, base + id * 1_000_000_000, 10))).await;
    }
    // Settled: the same count across a few rounds of enforcement.
    let count = async || collector.json("/api/services").await["services"][0]["spans"].as_u64().unwrap_or(0);
    let kept = support::wait::until(Duration::from_secs(20), async || {
        let before = count().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        (before < traces * 10 && count().await == before).then_some(before)
    })
    .await
    .expect("the size cap removed nothing, or never settled");
    assert!(kept > 0, "everything was removed");
    // The newest trace is whole, the oldest gone.
    collector.wait_for_trace(&hex(&trace_id(traces - 1)), 10).await;
    assert_eq!(collector.get(&format!("/api/traces/{}", hex(&trace_id(0)))).await.status, 404);
    // What is left is the newest, with nothing missing in between.
    let mut present = Vec::new();
    for id in 0..traces {
        present.push(collector.get(&format!("/api/traces/{}", hex(&trace_id(id)))).await.status == 200);
    }
    let first_kept = present.iter().position(|p| *p).unwrap();
    assert!(present[first_kept..].iter().all(|p| *p), "removed out of order: {present:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
