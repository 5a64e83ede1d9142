//! Delivery adds up. Every span, and every access-log record sent as an
//! OTLP log record, that a sidecar records is, at each quiet moment, in
//! exactly one place: exported, dropped with a reason, or waiting (the
//! queue, an exporter's memory, in flight, the spool):
//!
//! recorded + restored from the spool = exported + rejected + dropped (by
//! reason) + waiting
//!
//! read from `/metrics` of the real binary, per exporter, after each phase:
//! the collector down (refusing), answering 503, answering 429, slow, and
//! back; a spool too small for the outage; and, with `--spool-mode always`,
//! a `kill -9` and a restart on the same spool. At the end of each run the
//! collector's own record says which traces arrived: each exactly once, or
//! missing only as many as were counted dropped; after the `kill -9`, every
//! one at least once and at most the batches then in flight twice.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::collectors::Collector;
use support::metrics::Metrics;
use support::{Client, TestProxy, apps, tools, wait};

const BATCH: usize = 10;
const CONCURRENCY: usize = 2;
const LIMIT: Duration = Duration::from_secs(30);

fn spawn(app: SocketAddr, collector: SocketAddr, spool: &Path, mode: &str, spool_max: &str) -> TestProxy {
    let endpoint = format!("http://{collector}");
    let (batch, concurrency) = (BATCH.to_string(), CONCURRENCY.to_string());
    TestProxy::to(app)
        .flags(&["--outbound", "off", "--otlp-endpoint", &endpoint, "--logs-exporter", "otlp"])
        .flags(&["--spool-dir", spool.to_str().unwrap(), "--spool-mode", mode, "--spool-max-bytes", spool_max])
        .flags(&["--queue-size", "100", "--export-batch-size", &batch, "--export-delay", "50ms"])
        .flags(&["--export-concurrency", &concurrency, "--retry-initial", "100ms", "--retry-max", "200ms"])
        .flags(&["--retry-max-elapsed", "1s"])
        .spawn()
}

/// The trace ids of the requests a client sent: the sampled ones make a
/// span and a log record, the others a log record only.
#[derive(Default)]
struct Caused {
    sampled: BTreeSet<String>,
    unsampled: BTreeSet<String>,
}

impl Caused {
    fn all(&self) -> BTreeSet<String> {
        self.sampled.union(&self.unsampled).cloned().collect()
    }
}

/// `n` requests, each with a trace of its own; one in five not sampled.
async fn traffic(proxy: &TestProxy, caused: &mut Caused, tag: u32, n: u32) {
    let client = Client::http1();
    let first = caused.sampled.len() + caused.unsampled.len();
    for i in 0..n {
        let trace = format!("{tag:08x}{:024x}", first + i as usize + 1);
        let sampled = i % 5 != 4;
        let traceparent = format!("00-{trace}-00f067aa0ba902b7-{}", if sampled { "01" } else { "00" });
        let r = client.get(&format!("{}/d/{tag}/{i}", proxy.inbound_url())).header("traceparent", &traceparent).send();
        assert_eq!(r.await.status, 200);
        let set = if sampled { &mut caused.sampled } else { &mut caused.unsampled };
        set.insert(trace);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The two sides of the sum for one exporter, and the terms, for a
/// failure message.
fn sum(m: &Metrics, exporter: &str) -> (f64, f64, String) {
    let e = [("exporter", exporter)];
    let v = |name: &str, labels: &[(&str, &str)]| m.value(name, labels).unwrap_or_else(|| panic!("no {name}"));
    let (recorded, queue_drops, queued, exported, rejected, dropped) = match exporter {
        "otlp_logs" => (
            v("sidetrace_log_records_recorded_total", &[]),
            v("sidetrace_log_records_dropped_total", &[("reason", "queue_full")]),
            v("sidetrace_log_records_queued", &[]),
            v("sidetrace_log_records_exported_total", &e),
            v("sidetrace_log_records_rejected_total", &e),
            m.sum("sidetrace_log_records_dropped_total", &e),
        ),
        _ => (
            v("sidetrace_spans_recorded_total", &[]),
            v("sidetrace_spans_dropped_total", &[("reason", "queue_full")]),
            v("sidetrace_span_queue_spans", &[]),
            v("sidetrace_exporter_spans_exported_total", &e),
            v("sidetrace_exporter_spans_rejected_total", &e),
            m.sum("sidetrace_spans_dropped_total", &e),
        ),
    };
    let restored = v("sidetrace_exporter_spool_restored_total", &e);
    let place = |w: &str| v("sidetrace_exporter_waiting", &[("exporter", exporter), ("where", w)]);
    let (memory, in_flight, spool) = (place("memory"), place("in_flight"), place("spool"));
    let lhs = recorded + restored;
    let rhs = queue_drops + queued + exported + rejected + dropped + memory + in_flight + spool;
    let terms = format!(
        "{exporter}: recorded {recorded} + restored {restored} = {lhs}, but queue drops {queue_drops} + queued \
         {queued} + exported {exported} + rejected {rejected} + dropped {dropped} + memory {memory} + in flight \
         {in_flight} + spool {spool} = {rhs}"
    );
    (lhs, rhs, terms)
}

fn holds(m: &Metrics) -> Result<(), String> {
    for exporter in ["otlp_http", "otlp_logs"] {
        let (lhs, rhs, terms) = sum(m, exporter);
        if lhs != rhs {
            return Err(terms);
        }
    }
    Ok(())
}

fn waiting(m: &Metrics) -> f64 {
    m.sum("sidetrace_exporter_waiting", &[]) + m.sum("sidetrace_span_queue_spans", &[])
}

/// Once the queue is empty, the sum holds for spans and log records, and
/// `also` is true of the scrape; fails the test naming the phase if not.
async fn settle(proxy: &TestProxy, phase: &str, also: impl Fn(&Metrics) -> bool) -> Metrics {
    let mut last = None;
    let found = wait::until(LIMIT, async || {
        let m = proxy.metrics().await;
        let queued = m.value("sidetrace_span_queue_spans", &[]) == Some(0.0)
            && m.value("sidetrace_log_records_queued", &[]) == Some(0.0);
        let ok = queued && holds(&m).is_ok() && also(&m);
        last = Some(m.clone());
        ok.then_some(m)
    })
    .await;
    found.unwrap_or_else(|| {
        let m = last.expect("a scrape");
        panic!(
            "{phase}: the sum does not hold or the phase did not end: {:?}\n{}\n{}",
            holds(&m),
            m.text,
            proxy.output()
        )
    })
}

/// Everything delivered: nothing waits anywhere.
async fn drained(proxy: &TestProxy, phase: &str) -> Metrics {
    settle(proxy, phase, |m| waiting(m) == 0.0).await
}

fn dropped(m: &Metrics) -> (f64, f64) {
    let spans = m.sum("sidetrace_spans_dropped_total", &[]);
    let logs = m.sum("sidetrace_log_records_dropped_total", &[]);
    (spans, logs)
}

/// How often each trace id arrived, as a span and as a log record.
async fn received(collector: &Collector) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut spans = BTreeMap::new();
    for (s, _) in collector.otlp_spans().await {
        *spans.entry(s["traceId"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let mut logs = BTreeMap::new();
    for (r, ..) in collector.otlp_logs().await {
        *logs.entry(r["traceId"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    (spans, logs)
}

/// Of the traces in `caused`, how many arrived once, and how many more
/// than once (the surplus), failing on any trace nobody caused.
fn tally(got: &BTreeMap<String, usize>, caused: &BTreeSet<String>, tag: u32) -> (usize, usize) {
    let prefix = format!("{tag:08x}");
    let mine: Vec<(&String, &usize)> = got.iter().filter(|(t, _)| t.starts_with(&prefix)).collect();
    for (t, _) in &mine {
        assert!(caused.contains(*t), "a trace nobody caused arrived: {t}");
    }
    let surplus = mine.iter().map(|(_, n)| **n - 1).sum();
    (mine.len(), surplus)
}

/// The collector down, 503, 429, slow and back; then a spool too small.
async fn faults(mode: &str, tag: u32) {
    let app = apps::echo().await;
    let collector_addr = apps::refusing();
    let dir = tools::scratch_dir(&format!("delivery-{mode}"));
    let proxy = spawn(app.addr, collector_addr, &dir.join("roomy"), mode, "64MiB");
    let mut caused = Caused::default();

    // Down: connections refused. Batches exhaust their retries (1 s) and
    // wait in the spool; none is dropped.
    traffic(&proxy, &mut caused, tag, 60).await;
    let m = settle(&proxy, "collector down", |m| {
        m.sum("sidetrace_exporter_batches_total", &[("outcome", "failed")]) >= 2.0
            && m.sum("sidetrace_exporter_waiting", &[("where", "spool")]) > 0.0
    })
    .await;
    assert_eq!(dropped(&m), (0.0, 0.0), "collector down: a spool keeps what exhausted its retries\n{}", m.text);
    assert_eq!(m.sum("sidetrace_exporter_spans_exported_total", &[]), 0.0);

    // Back: everything waiting arrives.
    let collector = Collector::start_on(collector_addr.port(), 0);
    let m = drained(&proxy, "collector back").await;
    assert_eq!(m.value("sidetrace_exporter_spans_exported_total", &[("exporter", "otlp_http")]), Some(48.0));
    assert_eq!(m.value("sidetrace_log_records_exported_total", &[("exporter", "otlp_logs")]), Some(60.0));

    // 503, then 429 (with Retry-After), then slow: each while traffic flows.
    collector.fail(503, None, Duration::from_secs(3)).await;
    traffic(&proxy, &mut caused, tag, 40).await;
    settle(&proxy, "collector answering 503", |_| true).await;
    drained(&proxy, "after 503").await;
    collector.fail(429, Some("1"), Duration::from_secs(3)).await;
    traffic(&proxy, &mut caused, tag, 40).await;
    settle(&proxy, "collector answering 429", |_| true).await;
    drained(&proxy, "after 429").await;
    collector.slow(Duration::from_millis(400), Duration::from_secs(3)).await;
    traffic(&proxy, &mut caused, tag, 40).await;
    settle(&proxy, "collector slow", |_| true).await;
    let m = drained(&proxy, "after slow").await;
    assert_eq!(dropped(&m), (0.0, 0.0), "no fault so far drops anything\n{}", m.text);

    // Every trace arrived exactly once: as a span if sampled, and as a log record.
    let (spans, logs) = received(&collector).await;
    assert_eq!(tally(&spans, &caused.sampled, tag), (caused.sampled.len(), 0), "spans: each exactly once");
    assert_eq!(tally(&logs, &caused.all(), tag), (caused.all().len(), 0), "log records: each exactly once");

    // A spool too small for a 503 outage: what it cannot take is dropped
    // and counted (spool_full), and only that is missing at the end.
    let tag = tag + 1;
    let small = spawn(app.addr, collector_addr, &dir.join("small"), mode, "6KiB");
    let mut caused = Caused::default();
    collector.fail(503, None, Duration::from_secs(4)).await;
    traffic(&small, &mut caused, tag, 80).await;
    settle(&small, "spool full", |m| {
        m.sum("sidetrace_spans_dropped_total", &[("reason", "spool_full")]) > 0.0
            && m.sum("sidetrace_log_records_dropped_total", &[("reason", "spool_full")]) > 0.0
    })
    .await;
    let m = drained(&small, "after spool full").await;
    let (span_drops, log_drops) = dropped(&m);
    let (spans, logs) = received(&collector).await;
    let (arrived, surplus) = tally(&spans, &caused.sampled, tag);
    assert_eq!(
        (arrived as f64 + span_drops, surplus),
        (caused.sampled.len() as f64, 0),
        "spans: arrived once or dropped"
    );
    let (arrived, surplus) = tally(&logs, &caused.all(), tag);
    assert_eq!(
        (arrived as f64 + log_drops, surplus),
        (caused.all().len() as f64, 0),
        "records: arrived once or dropped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sum_holds_through_faults_with_the_spool_on_overflow() {
    faults("overflow", 0x0f10_0000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sum_holds_through_faults_with_the_spool_always() {
    faults("always", 0x0a10_0000).await;
}

/// `--spool-mode always`: once the pipeline has handed its batches over,
/// they are on disk; a `kill -9` while the collector is slow loses none,
/// and the restarted sidecar sends them (a batch in flight at the kill may
/// arrive twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_mode_survives_kill_9_and_sends_after_restart() {
    let tag = 0x0a11_0000;
    let app = apps::echo().await;
    let collector = Collector::start();
    let collector_addr: SocketAddr = format!("127.0.0.1:{}", collector.http).parse().unwrap();
    let dir = tools::scratch_dir("delivery-kill");
    let mut proxy = spawn(app.addr, collector_addr, &dir, "always", "64MiB");
    let mut caused = Caused::default();
    collector.slow(Duration::from_secs(2), Duration::from_secs(6)).await;
    traffic(&proxy, &mut caused, tag, 60).await;
    let m =
        settle(&proxy, "before kill -9", |m| m.sum("sidetrace_exporter_waiting", &[("where", "spool")]) > 0.0).await;
    assert_eq!(dropped(&m), (0.0, 0.0), "{}", m.text);
    proxy.process().signal(libc::SIGKILL);
    drop(proxy);

    let proxy = spawn(app.addr, collector_addr, &dir, "always", "64MiB");
    let m = drained(&proxy, "after restart").await;
    assert!(m.sum("sidetrace_exporter_spool_restored_total", &[]) > 0.0, "the spool is sent again\n{}", m.text);
    assert_eq!(dropped(&m), (0.0, 0.0), "{}", m.text);
    // Every trace arrived; at most the batches in flight at the kill twice.
    let (spans, logs) = received(&collector).await;
    let (arrived, surplus) = tally(&spans, &caused.sampled, tag);
    assert_eq!(arrived, caused.sampled.len(), "every span arrived");
    eprintln!("kill -9: {arrived} spans arrived, {surplus} of them twice");
    assert!(surplus <= CONCURRENCY * BATCH, "spans sent twice: {surplus}");
    let (arrived, surplus) = tally(&logs, &caused.all(), tag);
    assert_eq!(arrived, caused.all().len(), "every log record arrived");
    assert!(surplus <= CONCURRENCY * BATCH, "log records sent twice: {surplus}");
    let _ = std::fs::remove_dir_all(&dir);
}
