//! The official OpenTelemetry Python SDK and its OTLP exporters
//! (`opentelemetry-exporter-otlp-proto-http` and `-grpc`, in the test venv)
//! send a trace with log lines to `sidetrace collector`; the query API
//! serves both, joined.

mod support;

use serde_json::json;
use std::process::Command;
use support::collector::SidetraceCollector;
use support::tools::{repo, run_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_exporters_deliver_traces_and_logs() {
    let Some(python) = support::python::with(&[
        "opentelemetry.sdk",
        "opentelemetry.exporter.otlp.proto.http",
        "opentelemetry.exporter.otlp.proto.grpc",
    ]) else {
        return;
    };
    let collector = SidetraceCollector::start("memory", &[]);
    for (protocol, endpoint) in [("http", collector.http_url()), ("grpc", collector.grpc_url())] {
        let service = format!("sdk-{protocol}");
        let out = run_ok(
            Command::new(&python).arg(repo("tests/peers/otel_sdk_send.py")).args([protocol, &endpoint, &service]),
        );
        let trace_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
        // The SDK's exporters returned only after the collector answered 200,
        // which it does once the batch is stored: no waiting here.
        let doc = collector.json(&format!("/api/traces/{trace_id}")).await;
        let spans = doc["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2, "{protocol}: {doc}");
        let (server, client) = (&spans[0], &spans[1]);
        assert_eq!(server["kind"], "SERVER");
        assert_eq!(server["parent_span_id"], json!(null));
        assert_eq!(server["attributes"]["http.route"], "/checkout");
        assert_eq!(server["resource"]["service.name"], service.as_str());
        assert_eq!(server["resource"]["telemetry.sdk.language"], "python");
        assert_eq!(client["kind"], "CLIENT");
        assert_eq!(client["parent_span_id"], server["span_id"]);
        assert_eq!(client["status"], json!({"code": "ERROR", "message": "card declined"}));
        let logs = doc["logs"].as_array().unwrap();
        let lines: Vec<(&str, &str, &str)> = logs
            .iter()
            .map(|l| (l["body"].as_str().unwrap(), l["severity"].as_str().unwrap(), l["span_id"].as_str().unwrap()))
            .collect();
        let expected = [
            ("checkout started", "INFO", server["span_id"].as_str().unwrap()),
            ("card declined", "WARN", client["span_id"].as_str().unwrap()),
        ];
        assert_eq!(lines, expected, "{protocol}: {doc}");
        // Span filters hold for one span: the failed span is the CLIENT
        // child, which has no route.
        let found = collector.json(&format!("/api/traces?service={service}&status=error")).await;
        assert_eq!(found["traces"][0]["trace_id"], trace_id.as_str(), "{found}");
        assert_eq!(found["traces"][0]["errors"], 1);
        assert_eq!(found["traces"][0]["root"]["route"], "/checkout");
        let none = collector.json(&format!("/api/traces?service={service}&route=/checkout&status=error")).await;
        assert_eq!(none["traces"], json!([]), "{none}");
    }
    let deps = collector.json("/api/dependencies").await;
    for client in ["sdk-http", "sdk-grpc"] {
        let edge =
            deps["edges"].as_array().unwrap().iter().find(|e| e["client"] == client && e["server"] == "payments");
        assert!(edge.is_some_and(|e| e["errors"] == 1), "{deps}");
    }
}
