//! docs/api/openapi.yaml is the query API's contract with the UI: it must
//! be valid OpenAPI 3.1, and what every endpoint answers (errors included)
//! must match the schema it documents. Checked by the test venv's
//! `openapi-spec-validator` and `jsonschema` (tests/peers/openapi_check.py).

mod support;

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use prost::Message;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use support::collector::{SidetraceCollector, boolean, hex, int, logs, now_ns, request, span, string, trace_id};
use support::tools::{repo, scratch_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_openapi_document() {
    let Some(python) = support::python::with(&["jsonschema", "openapi_spec_validator", "yaml"]) else { return };
    let collector = SidetraceCollector::start("memory", &["--log-link-template", "https://logs.example/?q={trace_id}"]);
    let now = now_ns() - 5_000_000_000;
    let trace = trace_id(7);
    let ms = Duration::from_millis(1);
    let mut root =
        span("front", &trace, 1, None, "GET /a/{id}", 2, now, 20 * ms, vec![string("http.route", "/a/{id}")]);
    root.span.events = vec![Event { time_unix_nano: now + 5, name: "retry".into(), ..Default::default() }];
    let mut call =
        span("front", &trace, 2, Some(1), "GET", 3, now + 1, 10 * ms, vec![int("http.response.status_code", 500)]);
    call.span.links = vec![Link { trace_id: trace_id(8), span_id: 9u64.to_be_bytes().to_vec(), ..Default::default() }];
    let back = span(
        "back",
        &trace,
        3,
        Some(2),
        "GET /b",
        2,
        now + 2,
        5 * ms,
        vec![boolean("sidetrace.stitched", true), int("sidetrace.stitch.candidates", 1), string("peer.service", "x")],
    )
    .error();
    let orphan = span("back", &trace_id(9), 5, Some(4), "orphan", 1, now + 3, ms, vec![]);
    let peer_only = span("front", &trace, 6, Some(1), "POST", 3, now + 4, ms, vec![string("peer.service", "ledger")]);
    collector.send(&request(&[root, call, back, orphan, peer_only])).await;
    let record = LogRecord {
        time_unix_nano: now + 3,
        severity_number: 17,
        body: Some(AnyValue { value: Some(any_value::Value::IntValue(42)) }),
        trace_id: trace.clone(),
        span_id: 3u64.to_be_bytes().to_vec(),
        ..Default::default()
    };
    let untraced = LogRecord { observed_time_unix_nano: now + 4, ..Default::default() };
    let r = collector
        .post("/v1/logs", "application/x-protobuf", logs("back", vec![record, untraced]).encode_to_vec())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let id = hex(&trace);
    let calls = [
        ("/api/services", "/api/services".to_string()),
        ("/api/traces", "/api/traces".to_string()),
        ("/api/traces", "/api/traces?service=back&status=error&attr=peer.service=x&min_duration=1ms".to_string()),
        ("/api/traces", "/api/traces?status=nope".to_string()),
        ("/api/traces/{trace_id}", format!("/api/traces/{id}")),
        ("/api/traces/{trace_id}", format!("/api/traces/{}", hex(&trace_id(9)))),
        ("/api/traces/{trace_id}", format!("/api/traces/{}", hex(&trace_id(1234)))),
        ("/api/traces/{trace_id}", "/api/traces/xyz".to_string()),
        ("/api/logs", format!("/api/logs?trace_id={id}")),
        ("/api/logs", "/api/logs?service=back".to_string()),
        ("/api/dependencies", "/api/dependencies".to_string()),
        ("/api/dependencies", "/api/dependencies?start=2026-01-01T00:00:00Z&end=2020-01-01T00:00:00Z".to_string()),
        ("/api/stats", "/api/stats".to_string()),
        ("/api/ui-config", "/api/ui-config".to_string()),
    ];
    let mut answers = Vec::new();
    for (template, path) in calls {
        let r = collector.get(&path).await;
        let body: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.text()));
        answers.push(json!({"path": template, "status": r.status.as_u16(), "body": body}));
    }
    // The answers cover what the schema describes, not only empty lists.
    let by_id = &answers[4]["body"];
    assert_eq!(by_id["spans"].as_array().unwrap().len(), 4, "{by_id}");
    assert_eq!(by_id["logs"].as_array().unwrap().len(), 1, "{by_id}");
    assert_eq!(by_id["logs"][0]["body"], "42");
    assert_eq!(by_id["logs"][0]["severity"], "ERROR");
    assert_eq!(answers[2]["body"]["traces"][0]["stitched"], true);
    assert_eq!(answers[9]["body"]["logs"].as_array().unwrap().len(), 2);
    assert_eq!(answers[13]["body"]["log_link_template"], "https://logs.example/?q={trace_id}");
    let dir = scratch_dir("collector-openapi");
    let file = dir.join("answers.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&answers).unwrap()).unwrap();
    let out = Command::new(python)
        .arg(repo("tests/peers/openapi_check.py"))
        .arg(repo("docs/api/openapi.yaml"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}\nanswers: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        file.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
