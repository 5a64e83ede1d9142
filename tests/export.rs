//! Span export to a collector that decodes with the official OpenTelemetry
//! protobufs (tests/peers/otlp_collector.py): every encoding delivers
//! exactly the recorded spans; failures are retried per the OTLP rules;
//! nothing is lost or duplicated through outages; a stalled collector does
//! not slow requests.

mod support;

use serde_json::Value;
use sidetrace::trace::SpanRecord;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, UNIX_EPOCH};
use support::collectors::{self, Collector};
use support::otlp::attributes;
use support::{Client, TestProxy, apps, wait};

/// One request the test made, and what the test knows of it.
#[derive(Clone, Debug)]
struct Made {
    path: String,
    /// The query as exported: `token` is redacted by default.
    query: Option<&'static str>,
    route: &'static str,
    status: u16,
    /// The echo app's answer to it.
    body: &'static str,
}

/// The i-th request of `traffic`: four kinds, in turn.
fn request(i: usize) -> Made {
    match i % 4 {
        0 => Made {
            path: format!("/orders/{i}"),
            query: Some("page=2&token=REDACTED"),
            route: "/orders/{id}",
            status: 200,
            body: "hello from the app\n",
        },
        1 => Made { path: "/status/500".into(), query: None, route: "/status/{id}", status: 500, body: "status 500\n" },
        2 => Made {
            path: format!("/users/{}/profile", 1000 + i),
            query: None,
            route: "/users/{id}/profile",
            status: 200,
            body: "hello from the app\n",
        },
        _ => Made { path: "/".into(), query: None, route: "/", status: 200, body: "hello from the app\n" },
    }
}

/// `n` requests through the proxy at `url`, each answered as the app
/// answers it; returns what was asked.
async fn traffic(url: &str, n: usize) -> Vec<Made> {
    let client = Client::http1();
    let mut made = Vec::new();
    for i in 0..n {
        let m = request(i);
        let target = match i % 4 {
            0 => format!("{url}{}?page=2&token=secret", m.path),
            _ => format!("{url}{}", m.path),
        };
        let r = client.get(&target).send().await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (m.status, m.body), "{target}");
        made.push(m);
    }
    made
}

/// The spans the collector received are exactly the ones the proxy
/// recorded (by id, once each), and each says what the test knows of the
/// request it made: the expectation is built from the requests, not by
/// the encoder under test; ids and times come from the proxy's records.
fn check_identical(proxy: &TestProxy, recorded: &[SpanRecord], received: &[(Value, Value)], made: &[Made]) {
    assert_eq!(received.len(), recorded.len(), "exactly the recorded spans arrive");
    let ids: HashSet<&str> = received.iter().map(|(s, _)| s["spanId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), received.len(), "no span arrives twice");
    let records: HashMap<String, &SpanRecord> = recorded.iter().map(|r| (r.span_id.to_string(), r)).collect();
    let inbound = proxy.inbound.unwrap();
    let mut unmatched: Vec<&Made> = made.iter().collect();
    for (got, resource) in received {
        let id = got["spanId"].as_str().unwrap();
        let r = records.get(id).unwrap_or_else(|| panic!("span {id} arrived but was never recorded: {got}"));
        assert_eq!(got["traceId"], r.trace_id.to_string(), "{got}");
        assert!(got.get("parentSpanId").is_none(), "no parent was sent: {got}");
        let nanos = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos().to_string();
        assert_eq!(got["startTimeUnixNano"], nanos(r.start), "{got}");
        assert_eq!(got["endTimeUnixNano"], nanos(r.end), "{got}");
        assert_eq!(got["flags"], 0x101, "sampled, parent not remote: {got}");

        let attrs = attributes(&got["attributes"]);
        let path = attrs.get("url.path").cloned().unwrap_or_default();
        let query = attrs.get("url.query").cloned();
        let at = unmatched
            .iter()
            .position(|m| m.path == path && m.query.map(str::to_string) == query)
            .unwrap_or_else(|| panic!("a span for a request never made, or made once and exported twice: {got}"));
        let m = unmatched.swap_remove(at);
        assert_eq!(got["name"], format!("GET {}", m.route), "{got}");
        assert_eq!(got["kind"], "SPAN_KIND_SERVER", "{got}");
        let mut want: BTreeMap<String, String> = [
            ("http.request.method", "GET".to_string()),
            ("url.path", m.path.clone()),
            ("url.scheme", "http".into()),
            ("http.route", m.route.into()),
            ("http.response.status_code", m.status.to_string()),
            ("server.address", inbound.ip().to_string()),
            ("server.port", inbound.port().to_string()),
            ("client.address", "127.0.0.1".into()),
            ("network.protocol.version", "1.1".into()),
            ("http.request.body.size", "0".into()),
            ("http.response.body.size", m.body.len().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(q) = m.query {
            want.insert("url.query".into(), q.into());
        }
        // The client's port is its own choice: any port, but one.
        let port = attrs.get("client.port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0);
        assert!(port.is_some(), "client.port: {got}");
        want.insert("client.port".into(), port.unwrap().to_string());
        if m.status == 500 {
            want.insert("error.type".into(), "500".into());
            assert_eq!(got["status"]["code"], "STATUS_CODE_ERROR", "{got}");
        } else {
            assert!(got["status"].get("code").is_none(), "status unset: {got}");
        }
        assert_eq!(attrs, want, "the attributes of {} {:?}", m.path, m.query);

        let res = attributes(&resource["attributes"]);
        assert_eq!(res["service.name"], "export-test");
        assert_eq!(res["deployment.environment.name"], "ci");
        assert!(res.contains_key("service.instance.id"), "{resource}");
    }
    assert!(unmatched.is_empty(), "requests made whose spans never arrived: {unmatched:?}");
}

async fn exporting_proxy(app: std::net::SocketAddr, flags: &[&str]) -> TestProxy {
    TestProxy::to(app)
        .service("export-test")
        .flags(flags)
        .config(|c| {
            c.resource.attributes.insert("deployment.environment.name".into(), "ci".into());
        })
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_otlp_encoding_delivers_exactly_the_recorded_spans() {
    for (protocol, gzip) in
        [("http/protobuf", false), ("http/protobuf", true), ("http/json", false), ("grpc", false), ("grpc", true)]
    {
        let collector = Collector::start();
        let app = apps::echo().await;
        let endpoint = if protocol == "grpc" { collector.grpc_url() } else { collector.http_url() };
        let compression = if gzip { "gzip" } else { "none" };
        let flags = [
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            protocol,
            "--otlp-compression",
            compression,
            "--otlp-header",
            "x-tenant=acme",
            "--export-delay",
            "100ms",
        ];
        let proxy = exporting_proxy(app.addr, &flags).await;
        let made = traffic(&proxy.inbound_url(), 12).await;
        let recorded = proxy.wait_for_spans(12).await;
        let received = collector.wait_for_spans(12, Duration::from_secs(20)).await;
        check_identical(&proxy, &recorded, &received, &made);
        let batches = collector.received().await;
        let transport = batches[0]["transport"].as_str().unwrap().to_string();
        let expected = match (protocol, gzip) {
            ("grpc", _) => "grpc".to_string(),
            (p, true) => format!("{p}+gzip"),
            (p, false) => p.to_string(),
        };
        assert_eq!(transport, expected);
        assert_eq!(batches[0]["headers"]["x-tenant"], "acme", "{protocol}: the configured header is sent");
        let stats = &proxy.sidecar().stats.exporters()[0];
        assert_eq!(stats.exported_spans.load(Relaxed), 12);
        proxy.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_json_field_by_field() {
    let collector = Collector::start();
    let app = apps::echo().await;
    let url = format!("{}/api/v2/spans", collector.http_url());
    let proxy = exporting_proxy(app.addr, &["--zipkin-endpoint", &url, "--export-delay", "100ms"]).await;
    let parent = "00f067aa0ba902b7";
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = Client::http1()
        .get(&format!("{}/status/500", proxy.inbound_url()))
        .header("traceparent", &format!("00-{trace}-{parent}-01"))
        .send()
        .await;
    assert_eq!(r.status, 500);
    let recorded = proxy.wait_for_spans(1).await.remove(0);
    let zipkin = wait::until(Duration::from_secs(10), async || {
        let batches: Vec<Value> =
            collector.received().await.into_iter().filter(|b| b["transport"] == "zipkin").collect();
        batches.into_iter().next()
    })
    .await
    .expect("a Zipkin batch arrives");
    let span = &zipkin["spans"][0];
    let start_us = recorded.start.duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
    assert_eq!(span["traceId"], trace);
    assert_eq!(span["id"], recorded.span_id.to_string());
    assert_eq!(span["parentId"], parent);
    assert_eq!(span["kind"], "SERVER");
    assert_eq!(span["name"], "GET /status/{id}");
    assert_eq!(span["timestamp"].as_u64().unwrap(), start_us);
    assert_eq!(span["duration"].as_u64().unwrap(), (recorded.duration_nanos() / 1000).max(1));
    assert_eq!(span["localEndpoint"]["serviceName"], "export-test");
    assert_eq!(span["remoteEndpoint"]["ipv4"], "127.0.0.1");
    assert_eq!(span["tags"]["http.request.method"], "GET");
    assert_eq!(span["tags"]["http.response.status_code"], "500");
    assert_eq!(span["tags"]["otel.status_code"], "ERROR");
    assert_eq!(span["tags"]["error"], "500");
    assert!(span.get("shared").is_none(), "the proxy's server span has its own id, so it is not shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_503_then_every_span_arrives_once() {
    let collector = Collector::start();
    collector.fail(503, Some("2"), Duration::from_secs(10)).await;
    let app = apps::echo().await;
    let flags = [
        "--otlp-endpoint",
        &collector.http_url(),
        "--export-delay",
        "200ms",
        "--retry-initial",
        "100ms",
        "--retry-max",
        "1s",
    ];
    let proxy = exporting_proxy(app.addr, &flags).await;
    let made = traffic(&proxy.inbound_url(), 40).await;
    let recorded = proxy.wait_for_spans(40).await;
    let received = collector.wait_for_spans(40, Duration::from_secs(40)).await;
    check_identical(&proxy, &recorded, &received, &made);
    let stats = &proxy.sidecar().stats.exporters()[0];
    let retries = stats.retries.load(Relaxed);
    let batches = stats.batches_ok.load(Relaxed);
    // Retry-After: 2 over 10 s allows about five attempts per batch; a
    // 100 ms backoff capped at 1 s would make well over ten.
    assert!(retries >= batches, "every batch was retried at least once: {retries} retries, {batches} batches");
    assert!(retries <= batches * 7, "Retry-After was not honoured: {retries} retries for {batches} batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_for_30s_then_every_span_arrives_once() {
    let (down, grpc) = (apps::refusing(), apps::refusing());
    let app = apps::echo().await;
    let endpoint = format!("http://{down}");
    let flags =
        ["--otlp-endpoint", &endpoint, "--export-delay", "200ms", "--retry-initial", "500ms", "--retry-max", "3s"];
    let proxy = exporting_proxy(app.addr, &flags).await;
    let made = traffic(&proxy.inbound_url(), 60).await;
    let recorded = proxy.wait_for_spans(60).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let collector = Collector::start_on(down.port(), grpc.port());
    let received = collector.wait_for_spans(60, Duration::from_secs(30)).await;
    check_identical(&proxy, &recorded, &received, &made);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_overflow_exported_plus_dropped_equals_produced() {
    let collector = Collector::start();
    collector.fail(503, None, Duration::from_secs(3)).await;
    let app = apps::echo().await;
    let flags = [
        "--otlp-endpoint",
        &collector.http_url(),
        "--queue-size",
        "20",
        "--export-batch-size",
        "10",
        "--export-concurrency",
        "1",
        "--export-delay",
        "50ms",
        "--retry-initial",
        "100ms",
        "--retry-max",
        "200ms",
        "--retry-max-elapsed",
        "1s",
    ];
    let proxy = exporting_proxy(app.addr, &flags).await;
    let url = proxy.inbound_url();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { traffic(&url, 100).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = proxy.sidecar().stats.clone();
    proxy.shutdown().await;
    let produced = stats.recorded.load(Relaxed);
    let e = &stats.exporters()[0];
    let exported = e.exported_spans.load(Relaxed);
    let dropped = stats.dropped_queue_full.load(Relaxed) + e.dropped_total();
    assert_eq!(produced, 400);
    assert!(dropped > 0, "the small queue overflowed");
    assert_eq!(exported + dropped, produced, "exported {exported} + dropped {dropped} = produced {produced}");
    assert_eq!(collector.otlp_spans().await.len() as u64, exported, "the collector got exactly the exported spans");
}

/// Requests completed one after another within `window`, each answered 200.
async fn requests_in_window(url: &str, window: Duration) -> usize {
    let client = Client::http1();
    let until = std::time::Instant::now() + window;
    let mut n = 0;
    while std::time::Instant::now() < until {
        assert_eq!(client.get(&format!("{url}/n/{n}")).send().await.status, 200);
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_collector_does_not_slow_requests() {
    let app = apps::echo().await;
    let healthy = Collector::start();
    let stalled = collectors::stalled().await;
    let mut counts = Vec::new();
    for (name, endpoint) in
        [("healthy", healthy.http_url()), ("stalled", format!("http://{stalled}")), ("healthy", healthy.http_url())]
    {
        let flags = ["--otlp-endpoint", &endpoint, "--export-delay", "50ms", "--queue-size", "500"];
        let proxy = exporting_proxy(app.addr, &flags).await;
        let n = requests_in_window(&proxy.inbound_url(), Duration::from_secs(3)).await;
        if name == "stalled" {
            let e = &proxy.sidecar().stats.exporters()[0];
            // Memory stays bounded by the queue: what does not fit is dropped and counted.
            assert!(e.queue_spans.load(Relaxed) <= 500);
            assert!(proxy.sidecar().sink_queued() <= 500);
            assert_eq!(e.exported_spans.load(Relaxed), 0);
        }
        counts.push((name, n));
    }
    let healthy_mean = (counts[0].1 + counts[2].1) as f64 / 2.0;
    let stalled_n = counts[1].1 as f64;
    eprintln!("requests completed in 3 s: {counts:?}");
    assert!(stalled_n >= healthy_mean * 0.6, "a stalled collector slowed requests: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_and_non_retryable_answers_are_counted_not_retried() {
    let collector = Collector::start();
    let app = apps::echo().await;
    // Partial success: the collector takes the batch but refuses 3 spans.
    collector.reject(3).await;
    let flags = ["--otlp-endpoint", &collector.http_url(), "--export-delay", "100ms", "--export-batch-size", "10"];
    let proxy = exporting_proxy(app.addr, &flags).await;
    let url = proxy.inbound_url();
    traffic(&url, 10).await;
    collector.wait_for_spans(10, Duration::from_secs(10)).await;
    let e = proxy.sidecar().stats.exporters()[0].clone();
    let delivered = wait::until(Duration::from_secs(5), async || e.batches_ok.load(Relaxed) == 1).await;
    assert!(delivered.is_some(), "no batch delivered");
    assert_eq!(e.rejected_spans.load(Relaxed), 3);
    assert_eq!(e.exported_spans.load(Relaxed), 7);

    // 400 is not retryable: the batch is dropped at once and counted.
    collector.reject(0).await;
    collector.fail(400, None, Duration::from_secs(3600)).await;
    traffic(&url, 10).await;
    let failed = wait::until(Duration::from_secs(5), async || e.batches_failed.load(Relaxed) == 1).await;
    assert!(failed.is_some(), "no batch failed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(e.dropped_spans_non_retryable.load(Relaxed), 10);
    assert_eq!(e.retries.load(Relaxed), 0, "a 400 is never retried");
    assert_eq!(collector.failed_attempts().await, 1, "one attempt, no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unavailable_is_retried_until_it_succeeds() {
    let collector = Collector::start();
    collector.fail_grpc("UNAVAILABLE", Duration::from_secs(2)).await;
    let app = apps::echo().await;
    let endpoint = collector.grpc_url();
    let flags = [
        "--otlp-endpoint",
        &endpoint,
        "--otlp-protocol",
        "grpc",
        "--export-delay",
        "100ms",
        "--retry-initial",
        "200ms",
    ];
    let proxy = exporting_proxy(app.addr, &flags).await;
    let made = traffic(&proxy.inbound_url(), 8).await;
    let recorded = proxy.wait_for_spans(8).await;
    let received = collector.wait_for_spans(8, Duration::from_secs(20)).await;
    check_identical(&proxy, &recorded, &received, &made);
    assert!(proxy.sidecar().stats.exporters()[0].retries.load(Relaxed) > 0);
}
