//! `sidetrace collector` receiving OTLP: from a sidecar (its spans served
//! by trace id and found by every search filter), from hand-made requests
//! (bad bodies, unknown encodings, invalid ids answered as OTLP says; gzip
//! and JSON accepted; logs joined to their trace), and the dependency graph
//! of a three-service chain.

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;
use support::collector::{SidetraceCollector, hex, int, logs, now_ns, request, span, string, trace_id};
use support::{Client, TestProxy, apps};

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const MS: Duration = Duration::from_millis(1);

fn trace_ids(doc: &Value) -> BTreeSet<String> {
    doc["traces"].as_array().unwrap().iter().map(|t| t["trace_id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecars_spans_are_served_by_id_and_found_by_every_filter() {
    let collector = SidetraceCollector::start("memory", &[]);
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr)
        .service("shop")
        .flags(&["--otlp-endpoint", &collector.http_url(), "--export-delay", "50ms", "--route", "/orders/{id}"])
        .start()
        .await;
    let client = Client::http1();
    for path in ["/orders/1", "/orders/2", "/status/503", "/slow/300"] {
        client.get(&format!("{}{path}", proxy.inbound_url())).send().await;
    }
    let recorded = proxy.wait_for_spans(4).await;
    let mut by_path = std::collections::HashMap::new();
    for s in &recorded {
        let trace = s.trace_id.to_string();
        let doc = collector.wait_for_trace(&trace, 1).await;
        let spans = doc["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 1, "{doc}");
        let served = &spans[0];
        assert_eq!(served["span_id"], s.span_id.to_string());
        assert_eq!(served["kind"], "SERVER");
        assert_eq!(served["service"], "shop");
        assert_eq!(served["resource"]["service.name"], "shop");
        let path = served["attributes"]["url.path"].as_str().unwrap_or_default().to_string();
        by_path.insert(path, trace);
    }
    let ids = |q: &str| {
        let collector = &collector;
        let q = q.to_string();
        async move { trace_ids(&collector.json(&format!("/api/traces?{q}")).await) }
    };
    let all = ids("service=shop").await;
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(ids("service=nobody").await.is_empty());
    let orders: BTreeSet<String> = [&by_path["/orders/1"], &by_path["/orders/2"]].into_iter().cloned().collect();
    assert_eq!(ids("route=/orders/{id}").await, orders);
    assert_eq!(ids("route=%2Forders%2F%7Bid%7D&status=200").await, orders);
    assert_eq!(ids("status=503").await, BTreeSet::from([by_path["/status/503"].clone()]));
    assert_eq!(ids("status=error").await, BTreeSet::from([by_path["/status/503"].clone()]));
    assert_eq!(ids("status=ok").await.len(), 3);
    assert_eq!(ids("min_duration=250ms").await, BTreeSet::from([by_path["/slow/300"].clone()]));
    assert_eq!(ids("attr=url.path=/orders/2").await, BTreeSet::from([by_path["/orders/2"].clone()]));
    assert_eq!(ids("attr=service.name=shop&attr=http.request.method=GET").await.len(), 4);
    assert!(ids("attr=url.path=/orders").await.is_empty(), "attributes match exactly, not as a prefix");
    assert_eq!(ids("limit=2").await.len(), 2);
    let listed = collector.json("/api/traces?service=shop").await;
    let first = &listed["traces"][0];
    assert_eq!(first["root"]["service"], "shop");
    assert_eq!(first["spans"], 1);
    assert!(first["start_unix_nano"].is_string());
    let starts: Vec<u64> = listed["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["start_unix_nano"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first: {starts:?}");
    let services = collector.json("/api/services").await;
    assert_eq!(services, json!({"services": [{"name": "shop", "spans": 4}]}));
    let stats = collector.json("/api/stats").await;
    let routes = stats["routes"].as_array().unwrap();
    let orders = routes.iter().find(|r| r["route"] == "/orders/{id}").unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(
        (orders["service"].clone(), orders["direction"].clone(), orders["count"].clone()),
        (json!("shop"), json!("inbound"), json!(2))
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_as_otlp_says() {
    let collector = SidetraceCollector::start("memory", &[]);
    // A length-delimited field whose length runs past the end.
    let r = collector.post("/v1/traces", "application/x-protobuf", vec![0x0a, 0xff, 0x01, 0x02]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let status = tonic_types::Status::decode(&r.body[..]).expect("a google.rpc.Status body");
    assert!(status.message.contains("not a valid protobuf"), "{}", status.message);
    let r = collector.post("/v1/traces", "application/json", b"{\"resourceSpans\": 7}".to_vec()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = collector.post("/v1/traces", "text/plain", b"hello".to_vec()).await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("Content-Type"), "{}", r.text());
    let r = Client::http1()
        .post(&format!("{}/v1/traces", collector.http_url()))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "br")
        .body(Vec::new())
        .send()
        .await;
    assert_eq!(r.status, 415, "{}", r.text());

    // Invalid ids: counted in partial_success, the rest kept.
    let now = now_ns();
    let good = span("shop", &trace_id(1), 1, None, "GET /", SERVER, now, MS, vec![]);
    let mut short = good.clone();
    short.span.trace_id = vec![1, 2, 3];
    let mut zero = good.clone();
    zero.span.span_id = vec![0; 8];
    let r = collector.send(&request(&[good, short, zero])).await;
    let answer = ExportTraceServiceResponse::decode(&r.body[..]).unwrap();
    let partial = answer.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(partial.error_message.contains("trace_id"), "{}", partial.error_message);
    collector.wait_for_trace(&hex(&trace_id(1)), 1).await;

    // OTLP/JSON (hex ids, string integers), gzipped.
    let json_body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": hex(&trace_id(2)), "spanId": "0000000000000007", "name": "GET /j", "kind": 2,
            "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 1000).to_string(),
            "attributes": [{"key": "http.response.status_code", "value": {"intValue": "201"}}]
        }]}]
    }]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json_body.to_string().as_bytes()).unwrap();
    let r = Client::http1()
        .post(&format!("{}/v1/traces", collector.http_url()))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = collector.wait_for_trace(&hex(&trace_id(2)), 1).await;
    assert_eq!(doc["spans"][0]["attributes"]["http.response.status_code"], 201);
    assert_eq!(doc["spans"][0]["service"], "json-svc");

    // Logs, joined to their trace; one with a bad trace id is rejected.
    let line = |body: &str, trace: Vec<u8>| LogRecord {
        time_unix_nano: now,
        severity_text: "INFO".into(),
        body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(body.into())),
        }),
        trace_id: trace,
        span_id: 1u64.to_be_bytes().to_vec(),
        attributes: vec![string("http.route", "/")],
        ..Default::default()
    };
    let body = logs("shop", vec![line("GET / 200", trace_id(1)), line("bad", vec![9; 3])]).encode_to_vec();
    let r = collector.post("/v1/logs", "application/x-protobuf", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answer =
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(&r.body[..]).unwrap();
    assert_eq!(answer.partial_success.unwrap().rejected_log_records, 1);
    let logs = collector.json(&format!("/api/logs?trace_id={}", hex(&trace_id(1)))).await;
    assert_eq!(logs["logs"].as_array().unwrap().len(), 1, "{logs}");
    assert_eq!(logs["logs"][0]["body"], "GET / 200");
    assert_eq!(logs["logs"][0]["severity"], "INFO");
    assert_eq!(logs["logs"][0]["span_id"], "0000000000000001");
    let trace = collector.json(&format!("/api/traces/{}", hex(&trace_id(1)))).await;
    assert_eq!(trace["logs"][0]["body"], "GET / 200");

    // The query API's own errors.
    for (path, status) in [
        ("/api/traces/nothex", 400),
        (&format!("/api/traces/{}", hex(&trace_id(99))) as &str, 404),
        ("/api/traces?status=teapot", 400),
        ("/api/traces?min_duration=soon", 400),
        ("/api/traces?attr=novalue", 400),
        ("/api/traces?start=yesterday", 400),
        ("/api/nothing", 404),
    ] {
        let r = collector.get(path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        let doc: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(doc["error"].is_string(), "{path}: {doc}");
    }
    // The UI, served beside the API it reads.
    let r = collector.get("/ui").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<html"), "{}", r.text());
    let config: Value = serde_json::from_slice(&collector.get("/api/ui-config").await.body).unwrap();
    assert_eq!(config["mode"], "collector");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_of_a_three_service_chain() {
    let collector = SidetraceCollector::start("memory", &[]);
    let mut spans = Vec::new();
    let t0 = now_ns() - 60_000_000_000;
    for i in 0..10u64 {
        let trace = trace_id(100 + i);
        let at = t0 + i * 1_000_000_000;
        let failed = i == 0;
        spans.push(span("producer", &trace, 1, None, "GET /orders", SERVER, at, 50 * MS, vec![]));
        spans.push(span("producer", &trace, 2, Some(1), "GET", CLIENT, at + 1_000_000, 40 * MS, vec![]));
        spans.push(span("consumer", &trace, 3, Some(2), "GET /stock", SERVER, at + 2_000_000, 30 * MS, vec![]));
        let client =
            span("consumer", &trace, 4, Some(3), "GET", CLIENT, at + 3_000_000, Duration::from_millis(10 + i), vec![]);
        let server = span("store", &trace, 5, Some(4), "GET /items", SERVER, at + 4_000_000, 5 * MS, vec![]);
        spans.push(if failed { client.error() } else { client });
        spans.push(if failed { server.error() } else { server });
        // Payments has no instrumentation: only the caller's peer.service names it.
        let peer = vec![string("peer.service", "payments"), int("http.response.status_code", 200)];
        spans.push(span("producer", &trace, 6, Some(1), "POST", CLIENT, at + 45_000_000, 3 * MS, peer));
    }
    collector.send(&request(&spans)).await;
    let deps = collector.json("/api/dependencies").await;
    let edge = |client: &str, server: &str| {
        deps["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["client"] == client && e["server"] == server)
            .unwrap_or_else(|| panic!("no edge {client} → {server}: {deps}"))
            .clone()
    };
    assert_eq!(deps["edges"].as_array().unwrap().len(), 3, "{deps}");
    let pc = edge("producer", "consumer");
    assert_eq!((pc["requests"].clone(), pc["errors"].clone()), (json!(10), json!(0)));
    assert_eq!(pc["p50_ms"], 40.0);
    let cs = edge("consumer", "store");
    assert_eq!(
        (cs["requests"].clone(), cs["errors"].clone(), cs["error_rate"].clone()),
        (json!(10), json!(1), json!(0.1))
    );
    // CLIENT durations 10..=19 ms: nearest rank.
    assert_eq!(
        (cs["p50_ms"].clone(), cs["p90_ms"].clone(), cs["p99_ms"].clone()),
        (json!(14.0), json!(18.0), json!(19.0))
    );
    // Rates are over the part of the hour that holds data: the first call
    // began 60 s ago, so ten calls are about 10/60 a second, not 10/3600.
    let rate = cs["rate"].as_f64().unwrap();
    assert!((10.0 / 120.0..=10.0 / 60.0).contains(&rate), "{rate}");
    let stats = collector.json("/api/stats").await;
    let seconds = stats["window_seconds"].as_f64().unwrap();
    assert!((60.0..120.0).contains(&seconds), "{stats}");
    let pp = edge("producer", "payments");
    assert_eq!(pp["requests"], 10);
    let nodes: Vec<(String, u64)> = deps["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n["requests"].as_u64().unwrap()))
        .collect();
    let expected = [("consumer", 10), ("payments", 10), ("producer", 10), ("store", 10)];
    assert_eq!(nodes, expected.map(|(n, r)| (n.to_string(), r)).to_vec());
    // Outside the window: nothing.
    let old = collector.json("/api/dependencies?start=0&end=1000").await;
    assert_eq!(old, json!({"nodes": [], "edges": []}));
    let trace = collector.json("/api/traces?service=store&status=error").await;
    assert_eq!(trace_ids(&trace), BTreeSet::from([hex(&trace_id(100))]));
    assert_eq!(trace["traces"][0]["root"]["service"], "producer");
    assert_eq!(trace["traces"][0]["spans"], 6);
    assert_eq!(trace["traces"][0]["services"], json!(["consumer", "producer", "store"]));
    assert_eq!(trace["traces"][0]["duration_ns"], 50_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_sends_spans_and_logs_on_to_another_collector() {
    let downstream = SidetraceCollector::start("memory", &[]);
    let upstream = SidetraceCollector::start("memory", &["--forward", &downstream.http_url()]);
    let now = now_ns();
    let trace = trace_id(500);
    upstream.send(&request(&[span("edge", &trace, 1, None, "GET /f", SERVER, now, MS, vec![])])).await;
    let record = LogRecord { time_unix_nano: now, trace_id: trace.clone(), ..Default::default() };
    let r = upstream.post("/v1/logs", "application/x-protobuf", logs("edge", vec![record]).encode_to_vec()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = downstream.wait_for_trace(&hex(&trace), 1).await;
    assert_eq!(doc["spans"][0]["service"], "edge");
    let path = format!("/api/logs?trace_id={}", hex(&trace));
    let forwarded = support::wait::until(Duration::from_secs(20), async || {
        let logs = downstream.json(&path).await;
        (logs["logs"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    assert!(forwarded.is_some(), "the log record was not forwarded\n{}", upstream.process.output());
}
