//! `sidetrace collector` as the tests run it: the real binary on ephemeral
//! loopback ports (read from its start-up line), killed on drop, with its
//! query API at hand; and OTLP requests built from spans a test describes.
//! (`collectors` holds the fake peers the sidecar exports to; this is
//! sidetrace's own collector.)

use super::client::{Client, Response};
use super::process::Process;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SETTLE: Duration = Duration::from_secs(20);

/// Every listener of `sidetrace collector` on an ephemeral loopback port.
pub const LOOPBACK: [&str; 6] = ["--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0", "--ui", "127.0.0.1:0"];

pub struct SidetraceCollector {
    pub process: Process,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub ui: SocketAddr,
}

impl SidetraceCollector {
    /// `sidetrace collector --storage STORAGE EXTRA…` on loopback, ready
    /// when this returns.
    pub fn start(storage: &str, extra: &[&str]) -> SidetraceCollector {
        let mut args = vec!["collector"];
        args.extend(LOOPBACK);
        args.extend(["--storage", storage, "--log", "info"]);
        args.extend_from_slice(extra);
        let mut process = Process::spawn("sidetrace collector", &mut super::proxy::command(&args));
        let started = super::wait::until_sync(SETTLE, || {
            process.assert_running();
            let lines = process.stderr.lock().unwrap();
            lines.iter().map(|l| super::proxy::strip_ansi(l)).find(|l| l.contains("sidetrace collector started"))
        });
        let line = started.unwrap_or_else(|| panic!("the collector did not start\n{}", process.output()));
        let addr = |key: &str| -> SocketAddr {
            let value = line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap();
            value.parse().unwrap_or_else(|e| panic!("{key}={value}: {e}"))
        };
        SidetraceCollector { http: addr("otlp_http"), grpc: addr("otlp_grpc"), ui: addr("ui"), process }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ui)
    }

    /// GET on the query API; the answer whatever its status.
    pub async fn get(&self, path: &str) -> Response {
        Client::http1().get(&self.api_url(path)).send().await
    }

    /// GET on the query API, which must answer 200 with JSON.
    pub async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {}\n{}", r.text(), self.process.output());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()))
    }

    /// POSTs `body` to an OTLP/HTTP path with a content type.
    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        Client::http1()
            .post(&format!("{}{path}", self.http_url()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
    }

    /// Sends spans as binary protobuf; the answer must be 200.
    pub async fn send(&self, request: &ExportTraceServiceRequest) -> Response {
        let r = self.post("/v1/traces", "application/x-protobuf", request.encode_to_vec()).await;
        assert_eq!(r.status, 200, "/v1/traces: {}", r.text());
        r
    }

    /// `/api/traces/{id}` once it has `n` spans; panics after a while.
    pub async fn wait_for_trace(&self, trace_id: &str, n: usize) -> Value {
        let path = format!("/api/traces/{trace_id}");
        let found = super::wait::until(SETTLE, async || {
            let r = self.get(&path).await;
            let doc: Value = serde_json::from_slice(&r.body).ok()?;
            (r.status == 200 && doc["spans"].as_array().is_some_and(|s| s.len() >= n)).then_some(doc)
        })
        .await;
        found.unwrap_or_else(|| panic!("trace {trace_id} never had {n} spans\n{}", self.process.output()))
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

pub fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

pub fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

pub fn boolean(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(value)) }),
        ..Default::default()
    }
}

/// A span the way tests describe one; ids are raw bytes.
#[derive(Clone)]
pub struct TestSpan {
    pub service: String,
    pub span: Span,
}

/// `id` repeated into a 16-byte trace id (hex: 32 digits).
pub fn trace_id(id: u64) -> Vec<u8> {
    let mut t = vec![0xab; 8];
    t.extend_from_slice(&id.to_be_bytes());
    t
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span of `service`: kind 1 INTERNAL … 5 CONSUMER; times in ns.
#[allow(clippy::too_many_arguments)]
pub fn span(
    service: &str,
    trace: &[u8],
    id: u64,
    parent: Option<u64>,
    name: &str,
    kind: i32,
    start: u64,
    duration: Duration,
    attributes: Vec<KeyValue>,
) -> TestSpan {
    TestSpan {
        service: service.into(),
        span: Span {
            trace_id: trace.to_vec(),
            span_id: id.to_be_bytes().to_vec(),
            parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
            name: name.into(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: start + duration.as_nanos() as u64,
            attributes,
            ..Default::default()
        },
    }
}

impl TestSpan {
    pub fn error(mut self) -> TestSpan {
        self.span.status = Some(Status { code: 2, message: "failed".into() });
        self
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource { attributes: vec![string("service.name", service)], ..Default::default() })
}

/// One request, one `ResourceSpans` per service in order of appearance.
pub fn request(spans: &[TestSpan]) -> ExportTraceServiceRequest {
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    for s in spans {
        let name = Some(s.service.as_str());
        let at = resource_spans.iter().position(|rs| {
            rs.resource.as_ref().and_then(|r| r.attributes.first()).and_then(|kv| kv.value.as_ref()).and_then(|v| {
                match &v.value {
                    Some(any_value::Value::StringValue(x)) => Some(x.as_str()),
                    _ => None,
                }
            }) == name
        });
        let at = at.unwrap_or_else(|| {
            resource_spans.push(ResourceSpans {
                resource: resource(&s.service),
                scope_spans: vec![ScopeSpans::default()],
                ..Default::default()
            });
            resource_spans.len() - 1
        });
        resource_spans[at].scope_spans[0].spans.push(s.span.clone());
    }
    ExportTraceServiceRequest { resource_spans }
}

/// A log record of `service` inside a span.
pub fn logs(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}
