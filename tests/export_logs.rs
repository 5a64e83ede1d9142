//! The access log as OTLP log records (`--logs-exporter otlp`), decoded by
//! the test collector with the official OpenTelemetry protobufs: one record
//! per request, sampled or not, each with its request's trace and span
//! ids, over OTLP/HTTP (protobuf, JSON) and gRPC, beside the spans.

mod support;

use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use support::collectors::Collector;
use support::otlp::attributes;
use support::{Client, TestProxy, apps};

const LIMIT: Duration = Duration::from_secs(20);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_log_record_with_its_trace_over_every_protocol() {
    for protocol in ["http/protobuf", "http/json", "grpc"] {
        let collector = Collector::start();
        let app = apps::echo().await;
        let endpoint = if protocol == "grpc" { collector.grpc_url() } else { collector.http_url() };
        let proxy = TestProxy::to(app.addr)
            .service("orders")
            .flags(&[
                "--otlp-endpoint",
                &endpoint,
                "--otlp-protocol",
                protocol,
                "--logs-exporter",
                "otlp",
                "--export-delay",
                "100ms",
            ])
            .start()
            .await;
        for i in 0..6 {
            let path = if i == 5 { "/status/503".to_string() } else { format!("/orders/{i}?token=secret") };
            Client::http1().get(&format!("{}{path}", proxy.inbound_url())).send().await;
        }
        let spans = proxy.wait_for_spans(6).await;
        let logs = collector.wait_for_logs(6, LIMIT).await;
        assert_eq!(logs.len(), 6, "{protocol}: one record per request");
        let span_ids: HashSet<(String, String)> =
            spans.iter().map(|s| (hex(&s.trace_id.0), hex(&s.span_id.0))).collect();
        for (record, resource, transport) in &logs {
            assert_eq!(transport, protocol, "{record}");
            let ids = (record["traceId"].as_str().unwrap().to_string(), record["spanId"].as_str().unwrap().to_string());
            assert!(span_ids.contains(&ids), "{protocol}: a record of no span: {record}");
            assert_eq!(attributes(&resource["attributes"])["service.name"], "orders");
            assert_eq!(record["eventName"], "sidetrace.access");
            let attrs = attributes(&record["attributes"]);
            assert!(!attrs.contains_key("url.query"), "the query stays out of the log: {record}");
            assert!(!record.to_string().contains("secret"), "{record}");
            let body = record["body"]["stringValue"].as_str().unwrap();
            assert!(body.starts_with("inbound GET /"), "{body}");
            let failed = attrs["http.response.status_code"] == "503";
            assert_eq!(record["severityText"], if failed { "WARN" } else { "INFO" }, "{record}");
            assert_eq!(record["severityNumber"], if failed { "SEVERITY_NUMBER_WARN" } else { "SEVERITY_NUMBER_INFO" });
        }
        // The spans went out too, on their own path.
        assert_eq!(collector.wait_for_spans(6, LIMIT).await.len(), 6);
        let stats = proxy.sidecar().stats.exporters();
        let logs_stats = stats.iter().find(|e| e.name == "otlp_logs").expect("an otlp_logs exporter");
        assert_eq!(logs_stats.exported_spans.load(std::sync::atomic::Ordering::Relaxed), 6);
        proxy.shutdown().await;
    }
}

/// Sampling decides which spans leave; the access log keeps one record per
/// request, as the access log on stdout does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_out_requests_still_send_their_log_record() {
    let collector = Collector::start();
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr)
        .env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &format!("{}/v1/logs", collector.http_url()))
        .flags(&[
            "--otlp-endpoint",
            &collector.http_url(),
            "--sampling-ratio",
            "0",
            "--keep-slower-than",
            "0s",
            "--export-delay",
            "100ms",
        ])
        .spawn();
    for i in 0..5 {
        Client::http1().get(&format!("{}/orders/{i}", proxy.inbound_url())).send().await;
    }
    let logs = collector.wait_for_logs(5, LIMIT).await;
    assert_eq!(logs.len(), 5);
    let flags: Vec<&Value> = logs.iter().map(|(r, ..)| &r["flags"]).collect();
    assert!(flags.iter().all(|f| f.is_null() || f == &&Value::from(0)), "unsampled records: {flags:?}");
    // No span was sampled: the collector saw none, and the ring holds none.
    assert!(collector.otlp_spans().await.is_empty());
    assert!(proxy.api_spans().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_logs_exporter_is_one_clear_error() {
    let out = support::proxy::sidetrace(&["run", "--app", "127.0.0.1:1"]).env("OTEL_LOGS_EXPORTER", "kafka").output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OTEL_LOGS_EXPORTER") && err.contains("kafka"), "{err}");
    let out = support::proxy::sidetrace(&["run", "--app", "127.0.0.1:1", "--otlp-logs-endpoint", "ftp://x"]).output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--otlp-logs-endpoint"), "{err}");
}
