//! Span export to a collector that decodes with the official OpenTelemetry
//! protobufs (tests/peers/otlp_collector.py): every encoding delivers
//! exactly the recorded spans; failures are retried per the OTLP rules;
//! nothing is lost or duplicated through outages; a stalled collector does
//! not slow requests.

mod support;

use serde_json::Value;
use sidetrace::Sidecar;
use sidetrace::config::Config;
use sidetrace::trace::SpanRecord;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use support::collector::Collector;
use support::*;

async fn traffic(url: &str, n: usize) {
    let client = reqwest_like();
    for i in 0..n {
        let path = match i % 4 {
            0 => format!("/orders/{i}?page=2&token=secret"),
            1 => "/status/500".to_string(),
            2 => format!("/users/{}/profile", 1000 + i),
            _ => "/".to_string(),
        };
        let status = client.get(&format!("{url}{path}")).await;
        assert!(status > 0);
    }
}

/// A tiny HTTP/1 client over hyper for traffic loops.
struct Client;
fn reqwest_like() -> Client {
    Client
}
impl Client {
    async fn get(&self, url: &str) -> u16 {
        let uri: http::Uri = url.parse().unwrap();
        let stream = tokio::net::TcpStream::connect(uri.authority().unwrap().as_str()).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(uri.path_and_query().unwrap().as_str())
            .header("host", uri.authority().unwrap().as_str())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
        status
    }
}

/// Attribute lists as key → value text, whatever JSON shape the value has.
fn attrs(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let v = &kv["value"];
            let text = ["stringValue", "intValue", "boolValue", "doubleValue"]
                .iter()
                .find_map(|k| v.get(*k))
                .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                .unwrap_or_default();
            (kv["key"].as_str().unwrap_or_default().to_string(), text)
        })
        .collect()
}

fn check_identical(proxy: &Sidecar, recorded: &[SpanRecord], received: &[(Value, Value)]) {
    assert_eq!(received.len(), recorded.len(), "exactly the recorded spans arrive");
    let ids: HashSet<&str> = received.iter().map(|(s, _)| s["spanId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), received.len(), "no span arrives twice");
    for r in recorded {
        let want = serde_json::to_value(proxy.encoder.span(r)).unwrap();
        let (got, resource) =
            received.iter().find(|(s, _)| s["spanId"] == r.span_id.to_string()).unwrap_or_else(|| {
                panic!(
                    "span {} did not arrive; got {:?}",
                    r.span_id,
                    received.iter().map(|(s, _)| s["spanId"].clone()).collect::<Vec<_>>()
                )
            });
        assert_eq!(got["traceId"], r.trace_id.to_string());
        assert_eq!(
            got.get("parentSpanId").and_then(Value::as_str).unwrap_or(""),
            want["parentSpanId"].as_str().unwrap()
        );
        assert_eq!(got["name"], want["name"]);
        assert_eq!(got["kind"], "SPAN_KIND_SERVER");
        assert_eq!(got["startTimeUnixNano"], want["startTimeUnixNano"]);
        assert_eq!(got["endTimeUnixNano"], want["endTimeUnixNano"]);
        assert_eq!(attrs(&got["attributes"]), attrs(&want["attributes"]));
        let res = attrs(&resource["attributes"]);
        assert_eq!(res["service.name"], "export-test");
        assert_eq!(res["deployment.environment.name"], "ci");
        assert!(res.contains_key("service.instance.id"));
        if r.status == Some(500) {
            assert_eq!(got["status"]["code"], "STATUS_CODE_ERROR");
        }
    }
}

async fn exporting_proxy(app: std::net::SocketAddr, flags: &[&str]) -> Sidecar {
    let mut config = Config::local_with(app, "export-test", flags);
    config.resource.attributes.insert("deployment.environment.name".into(), "ci".into());
    proxy_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_otlp_encoding_delivers_exactly_the_recorded_spans() {
    for (protocol, gzip) in
        [("http/protobuf", false), ("http/protobuf", true), ("http/json", false), ("grpc", false), ("grpc", true)]
    {
        let collector = Collector::start();
        let app = echo_app().await;
        let endpoint =
            if protocol == "grpc" { format!("http://127.0.0.1:{}", collector.grpc) } else { collector.http_url() };
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
        traffic(&format!("http://{}", proxy.inbound.unwrap()), 12).await;
        let recorded = spans(&proxy, 12).await;
        let received = collector.wait_for_spans(12, Duration::from_secs(20)).await;
        check_identical(&proxy, &recorded, &received);
        let batches = collector.received();
        let transport = batches[0]["transport"].as_str().unwrap().to_string();
        let expected = match (protocol, gzip) {
            ("grpc", _) => "grpc".to_string(),
            (p, true) => format!("{p}+gzip"),
            (p, false) => p.to_string(),
        };
        assert_eq!(transport, expected);
        assert_eq!(batches[0]["headers"]["x-tenant"], "acme", "{protocol}: the configured header is sent");
        let stats = &proxy.stats.exporters()[0];
        assert_eq!(stats.exported_spans.load(std::sync::atomic::Ordering::Relaxed), 12);
        proxy.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_json_field_by_field() {
    let collector = Collector::start();
    let app = echo_app().await;
    let url = format!("{}/api/v2/spans", collector.http_url());
    let proxy = exporting_proxy(app.addr, &["--zipkin-endpoint", &url, "--export-delay", "100ms"]).await;
    let inbound = format!("http://{}", proxy.inbound.unwrap());
    let parent = "00f067aa0ba902b7";
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let out = curl(&["-H", &format!("traceparent: 00-{trace}-{parent}-01"), &format!("{inbound}/status/500")]);
    assert!(out.status.success());
    let recorded = spans(&proxy, 1).await.remove(0);
    let mut zipkin = Vec::new();
    for _ in 0..100 {
        zipkin = collector.received().into_iter().filter(|b| b["transport"] == "zipkin").collect();
        if !zipkin.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let span = &zipkin[0]["spans"][0];
    let start_us = recorded.start.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
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
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() + 10.0;
    collector.control(&format!(r#"{{"mode":"fail","status":503,"retry_after":"2","until":{until}}}"#));
    let app = echo_app().await;
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
    traffic(&format!("http://{}", proxy.inbound.unwrap()), 40).await;
    let recorded = spans(&proxy, 40).await;
    let received = collector.wait_for_spans(40, Duration::from_secs(40)).await;
    check_identical(&proxy, &recorded, &received);
    let stats = &proxy.stats.exporters()[0];
    let retries = stats.retries.load(std::sync::atomic::Ordering::Relaxed);
    let batches = stats.batches_ok.load(std::sync::atomic::Ordering::Relaxed);
    // Retry-After: 2 over 10 s allows about five attempts per batch; a
    // 100 ms backoff capped at 1 s would make well over ten.
    assert!(retries >= batches, "every batch was retried at least once: {retries} retries, {batches} batches");
    assert!(retries <= batches * 7, "Retry-After was not honoured: {retries} retries for {batches} batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_for_30s_then_every_span_arrives_once() {
    let port = closed_port().port();
    let grpc = closed_port().port();
    let app = echo_app().await;
    let endpoint = format!("http://127.0.0.1:{port}");
    let flags =
        ["--otlp-endpoint", &endpoint, "--export-delay", "200ms", "--retry-initial", "500ms", "--retry-max", "3s"];
    let proxy = exporting_proxy(app.addr, &flags).await;
    traffic(&format!("http://{}", proxy.inbound.unwrap()), 60).await;
    let recorded = spans(&proxy, 60).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let collector = Collector::start_on(port, grpc);
    let received = collector.wait_for_spans(60, Duration::from_secs(30)).await;
    check_identical(&proxy, &recorded, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_overflow_exported_plus_dropped_equals_produced() {
    use std::sync::atomic::Ordering::Relaxed;
    let collector = Collector::start();
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() + 3.0;
    collector.control(&format!(r#"{{"mode":"fail","status":503,"until":{until}}}"#));
    let app = echo_app().await;
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
    let url = format!("http://{}", proxy.inbound.unwrap());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { traffic(&url, 100).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = proxy.stats.clone();
    proxy.shutdown().await;
    let produced = stats.recorded.load(Relaxed);
    let e = &stats.exporters()[0];
    let exported = e.exported_spans.load(Relaxed);
    let dropped = stats.dropped_queue_full.load(Relaxed) + e.dropped_total();
    assert_eq!(produced, 400);
    assert!(dropped > 0, "the small queue overflowed");
    assert_eq!(exported + dropped, produced, "exported {exported} + dropped {dropped} = produced {produced}");
    assert_eq!(collector.otlp_spans().len() as u64, exported, "the collector got exactly the exported spans");
}

/// Accepts connections and never answers.
async fn stalled_collector() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

async fn requests_in_window(url: &str, window: Duration) -> usize {
    let client = reqwest_like();
    let until = std::time::Instant::now() + window;
    let mut n = 0;
    while std::time::Instant::now() < until {
        assert_eq!(client.get(&format!("{url}/n/{n}")).await, 200);
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_collector_does_not_slow_requests() {
    use std::sync::atomic::Ordering::Relaxed;
    let app = echo_app().await;
    let healthy = Collector::start();
    let stalled = stalled_collector().await;
    let flags = |endpoint: String| {
        vec![
            "--otlp-endpoint".to_string(),
            endpoint,
            "--export-delay".into(),
            "50ms".into(),
            "--queue-size".into(),
            "500".into(),
        ]
    };
    let mut counts = Vec::new();
    for (name, endpoint) in
        [("healthy", healthy.http_url()), ("stalled", format!("http://{stalled}")), ("healthy", healthy.http_url())]
    {
        let f = flags(endpoint);
        let refs: Vec<&str> = f.iter().map(String::as_str).collect();
        let proxy = exporting_proxy(app.addr, &refs).await;
        let n = requests_in_window(&format!("http://{}", proxy.inbound.unwrap()), Duration::from_secs(3)).await;
        if name == "stalled" {
            let e = &proxy.stats.exporters()[0];
            // Memory stays bounded by the queue: what does not fit is dropped and counted.
            assert!(e.queue_spans.load(Relaxed) <= 500);
            assert!(proxy.sink_queued() <= 500);
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
    use std::sync::atomic::Ordering::Relaxed;
    let collector = Collector::start();
    let app = echo_app().await;
    // Partial success: the collector takes the batch but refuses 3 spans.
    collector.control(r#"{"reject":3}"#);
    let flags = ["--otlp-endpoint", &collector.http_url(), "--export-delay", "100ms", "--export-batch-size", "10"];
    let proxy = exporting_proxy(app.addr, &flags).await;
    let url = format!("http://{}", proxy.inbound.unwrap());
    traffic(&url, 10).await;
    collector.wait_for_spans(10, Duration::from_secs(10)).await;
    let e = proxy.stats.exporters()[0].clone();
    assert!(until(Duration::from_secs(5), || e.batches_ok.load(Relaxed) == 1).await, "no batch delivered");
    assert_eq!(e.rejected_spans.load(Relaxed), 3);
    assert_eq!(e.exported_spans.load(Relaxed), 7);

    // 400 is not retryable: the batch is dropped at once and counted.
    let fail_until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() + 3600.0;
    collector.control(&format!(r#"{{"reject":0,"mode":"fail","status":400,"until":{fail_until}}}"#));
    traffic(&url, 10).await;
    assert!(until(Duration::from_secs(5), || e.batches_failed.load(Relaxed) == 1).await, "no batch failed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(e.dropped_spans_non_retryable.load(Relaxed), 10);
    assert_eq!(e.retries.load(Relaxed), 0, "a 400 is never retried");
    let attempts: Value =
        serde_json::from_slice(&curl(&[&format!("{}/attempts", collector.http_url())]).stdout).unwrap();
    assert_eq!(attempts["failed"], 1, "one attempt, no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unavailable_is_retried_until_it_succeeds() {
    let collector = Collector::start();
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() + 2.0;
    collector.control(&format!(r#"{{"mode":"fail","grpc_code":"UNAVAILABLE","until":{until}}}"#));
    let app = echo_app().await;
    let endpoint = format!("http://127.0.0.1:{}", collector.grpc);
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
    traffic(&format!("http://{}", proxy.inbound.unwrap()), 8).await;
    let recorded = spans(&proxy, 8).await;
    let received = collector.wait_for_spans(8, Duration::from_secs(20)).await;
    check_identical(&proxy, &recorded, &received);
    assert!(proxy.stats.exporters()[0].retries.load(std::sync::atomic::Ordering::Relaxed) > 0);
}
