//! Native histograms: the Prometheus protobuf exposition decoded against
//! the spans it counts, and a real Prometheus 2.42 with native histograms
//! enabled answering `histogram_quantile` in agreement with `/api/stats`.
//!
//! The protobuf exposition is decoded here (prost, with the
//! `io.prometheus.client` types prometheus-client generates), not in
//! `tests/support`: this file is its only reader, and every test binary
//! compiles every support module.

mod support;

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::{
    Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;
use support::prometheus::Prometheus;
use support::{Client, TestProxy, apps, tools, wait};

/// What Prometheus 2.42 sends when started with native histograms enabled.
const NATIVE_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Schema 3: the bucket holding `seconds`, `ceil(8 log2 seconds)`, computed
/// here from the definition rather than as the sidecar does.
fn bucket_key(seconds: f64) -> i32 {
    (8.0 * seconds.log2()).ceil() as i32
}

fn bucket_bounds(key: i32) -> (f64, f64) {
    (2f64.powf((key - 1) as f64 / 8.0), 2f64.powf(key as f64 / 8.0))
}

/// A native histogram's positive buckets, key → count, from its spans and
/// deltas.
fn native_buckets(h: &Histogram) -> BTreeMap<i32, u64> {
    let (mut key, mut count, mut deltas) = (0i32, 0i64, h.positive_delta.iter());
    let mut out = BTreeMap::new();
    for (i, span) in h.positive_span.iter().enumerate() {
        key += span.offset + if i == 0 { 0 } else { 1 };
        for j in 0..span.length {
            count += deltas.next().expect("a delta per bucket");
            out.insert(key + j as i32, count as u64);
        }
        key += span.length as i32 - 1;
    }
    out
}

fn label<'a>(m: &'a Metric, name: &str) -> Option<&'a str> {
    m.label.iter().find(|l: &&LabelPair| l.name == name).map(|l| l.value.as_str())
}

// ---------------------------------------------------------------------------
// 1. The protobuf exposition: native buckets where the spans say, classic
//    buckets and exemplars beside them, every other family as before.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_exposition_has_native_buckets_where_the_spans_fell() {
    let app = apps::sleeper().await;
    let sidecar = TestProxy::to(app).service("metrics-test").start().await;
    let mut c = Client::http1().connect(sidecar.inbound.unwrap()).await;
    for i in 0..30 {
        c.get(&format!("/work?ms={}", [0, 3, 20][i % 3])).send().await;
    }
    let spans = sidecar.wait_for_spans(30).await;
    let scrape = sidecar.scrape(NATIVE_ACCEPT).await;
    assert_eq!(
        scrape.header("content-type"),
        Some("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited")
    );
    let mut body = scrape.body;
    let mut families = BTreeMap::new();
    while !body.is_empty() {
        let f = MetricFamily::decode_length_delimited(&mut body).expect("a length-delimited MetricFamily");
        families.insert(f.name.clone(), f);
    }

    let duration = &families["http_server_request_duration_seconds"];
    assert_eq!(duration.r#type, MetricType::Histogram as i32);
    let m = duration.metric.iter().find(|m| label(m, "http_route") == Some("/work")).expect("the /work series");
    assert_eq!(label(m, "http_response_status_code"), Some("200"));
    let h = m.histogram.as_ref().expect("a histogram");
    assert_eq!((h.schema, h.zero_threshold, h.zero_count), (3, 2f64.powi(-17), 0));
    assert!(h.negative_span.is_empty());
    // Each span's duration, bucketed by the schema's definition, gives the
    // counts the sidecar exposed.
    let mut want: BTreeMap<i32, u64> = BTreeMap::new();
    for s in &spans {
        *want.entry(bucket_key(s.duration_nanos() as f64 / 1e9)).or_default() += 1;
    }
    assert_eq!(native_buckets(h), want);
    assert_eq!(h.sample_count, 30);
    let total: f64 = spans.iter().map(|s| s.duration_nanos() as f64 / 1e9).sum();
    assert!((h.sample_sum - total).abs() < 1e-9, "sum {} vs spans' {total}", h.sample_sum);
    // The classic buckets stay, cumulative, with exemplars naming spans.
    let last = h.bucket.last().expect("classic buckets");
    assert_eq!((last.upper_bound, last.cumulative_count), (f64::INFINITY, 30));
    for b in &h.bucket {
        let below = spans.iter().filter(|s| s.duration_nanos() as f64 / 1e9 <= b.upper_bound).count();
        assert_eq!(b.cumulative_count, below as u64, "le={}", b.upper_bound);
    }
    let exemplar = h.bucket.iter().find_map(|b| b.exemplar.as_ref()).expect("an exemplar");
    let trace_id = exemplar.label.iter().find(|l| l.name == "trace_id").map(|l| l.value.clone());
    assert!(spans.iter().any(|s| Some(s.trace_id.to_string()) == trace_id), "{exemplar:?}");

    // Other histograms are classic only.
    let size = &families["http_server_response_body_size_bytes"].metric[0];
    let size = size.histogram.as_ref().unwrap();
    assert!(size.positive_span.is_empty() && size.zero_threshold == 0.0 && !size.bucket.is_empty());
    // Counters, gauges and info carry their usual names and values.
    assert_eq!(families["sidetrace_route_overflow_total"].r#type, MetricType::Counter as i32);
    let build = &families["sidetrace_build_info"].metric[0];
    assert_eq!(label(build, "version"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(build.gauge.as_ref().map(|g| g.value), Some(1.0));
    assert!(families.contains_key("process_cpu_seconds_total"));
    let active = &families["http_server_active_requests"].metric[0];
    assert_eq!(active.gauge.as_ref().map(|g| g.value), Some(0.0));
}

// ---------------------------------------------------------------------------
// 2. A real Prometheus with native histograms: histogram_quantile agrees
//    with /api/stats within one bucket of the schema.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_native_histogram_p99_agrees_with_api_stats() {
    if tools::prometheus().is_none() {
        return;
    }
    let app = apps::sleeper().await;
    let sidecar = TestProxy::to(app).service("metrics-test").start().await;
    let features = ["native-histograms", "exemplar-storage"];
    let prom = Prometheus::scraping("metrics-native-p99", &[sidecar.admin.unwrap()], &features).await;
    let series =
        format!("http_server_request_duration_seconds{{instance=\"{}\",http_route=\"/work\"}}", sidecar.admin.unwrap());
    let count = format!("histogram_count({series})");

    // One request first, so that the series exists before the traffic;
    // then 380 fast requests and 20 that wait 310 ms upstream, 20 at a time.
    let inbound = sidecar.inbound.unwrap();
    Client::http1().get(&format!("{}/work", sidecar.inbound_url())).send().await;
    let seen = wait::until(Duration::from_secs(30), async || prom.value(&count).await == Some(1.0)).await;
    assert!(seen.is_some(), "prometheus never scraped the first request:\n{}", prom.log());
    let workers: Vec<_> = (0..20)
        .map(|w| {
            tokio::spawn(async move {
                let mut c = Client::http1().connect(inbound).await;
                for i in 0..20 {
                    let r = c.get(if i == 0 { "/work?ms=310" } else { "/work" }).send().await;
                    assert_eq!(r.status, 200, "worker {w}");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let all = wait::until(Duration::from_secs(30), async || prom.value(&count).await == Some(401.0)).await;
    assert!(all.is_some(), "prometheus never saw all 401 requests:\n{}", prom.log());

    // The series is a native histogram: its sample is a histogram, not a value.
    let sample = prom.api("query", &[("query", &series)]).await;
    let sample = &sample["result"][0];
    assert!(sample["histogram"][1]["buckets"].is_array() && sample["value"].is_null(), "not native: {sample}");

    let p99 = prom
        .value(&format!("histogram_quantile(0.99, sum(rate({series}[10m])))"))
        .await
        .expect("a p99 from the native histogram");
    let stats = sidecar.stats().await;
    let row = stats["routes"].as_array().unwrap().iter().find(|r| r["route"] == "/work").expect("/work in /api/stats");
    assert_eq!(row["count"], 401);
    let stats_p99 = row["p99_ms"].as_f64().unwrap() / 1000.0;

    // The tolerance, from the schema: rate() keeps the 400 requests after
    // the first scrape, whose 396th (0.99 × 400) is the 397th of all 401
    // (ceil(0.99 × 401), as /api/stats ranks) since the first was fast. So
    // both answers are about the same request. histogram_quantile can only
    // place it somewhere in its bucket, (2^((k-1)/8), 2^(k/8)], 2^(1/8) ≈
    // 9.05% wide; /api/stats knows it within 1/128. So /api/stats' p99 must
    // lie in the bucket of Prometheus' answer, give or take 1/128 (and the
    // bucket either side of a boundary, should the answer sit exactly on one).
    let fits = |key: i32| {
        let (lower, upper) = bucket_bounds(key);
        stats_p99 >= lower * (1.0 - 1.0 / 128.0) && stats_p99 <= upper * (1.0 + 1.0 / 128.0)
    };
    let keys = [bucket_key(p99 * (1.0 - 1e-9)), bucket_key(p99 * (1.0 + 1e-9))];
    eprintln!(
        "p99: histogram_quantile over native buckets {p99:.6} s (bucket {:?}), /api/stats {stats_p99:.6} s, ratio {:.4}",
        keys.map(bucket_bounds),
        p99 / stats_p99
    );
    assert!(
        keys.into_iter().any(fits),
        "histogram_quantile says {p99} s, in bucket(s) {:?}; /api/stats says {stats_p99} s",
        keys.map(bucket_bounds)
    );
    // (Which bounds the ratio too: within 2^(1/8) ≈ 1.0905, plus 1/128.)
    assert!((p99 / stats_p99 - 1.0).abs() <= 2f64.powf(1.0 / 8.0) - 1.0 + 1.0 / 128.0);

    // Every other family still came through the protobuf parser.
    let instance = format!("instance=\"{}\"", sidecar.admin.unwrap());
    for q in ["up", "sidetrace_build_info", "sidetrace_proxy_overhead_seconds_count", "process_cpu_seconds_total"] {
        let n = prom.value(&format!("count({q}{{{instance}}})")).await;
        assert!(n.is_some_and(|n| n >= 1.0), "{q} not scraped:\n{}", prom.log());
    }
    // Prometheus 2.42 keeps only the native histogram of a series that has
    // both; 2.45 and later keep the classic buckets too when the scrape
    // config sets `scrape_classic_histograms: true`.
    let classic = prom.value(&format!("count(http_server_request_duration_seconds_bucket{{{instance}}})")).await;
    eprintln!("classic duration buckets kept by this Prometheus: {classic:?}");
    // Exemplars travel on the classic buckets, and Prometheus keeps them for
    // the native series: they name spans the sidecar knows.
    let ex = prom.api("query_exemplars", &[("query", &series), ("start", "0"), ("end", "9999999999")]).await;
    let trace_id = ex[0]["exemplars"][0]["labels"]["trace_id"].as_str().map(str::to_string);
    let trace_id = trace_id.unwrap_or_else(|| panic!("no exemplars stored: {ex}"));
    let r = Client::http1().get(&format!("{}/api/traces/{trace_id}", sidecar.admin_url())).send().await;
    assert_eq!(r.status, 200, "exemplar trace {trace_id} is not in /api/traces");
}
