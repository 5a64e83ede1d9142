//! Span records as OTLP messages (types from `opentelemetry-proto`). What
//! a span says is decided by `trace::semconv::view`; this builds the
//! message structs from it, which serve OTLP/JSON, Zipkin and
//! `/api/traces`. OTLP/protobuf is written from the same view without
//! them (`otlp_wire`).

use crate::config::Resource;
use crate::trace::SpanRecord;
use crate::trace::semconv::{self, AttrValue, SCHEMA_URL, Scratch};
use crate::vocab::protocol_version;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Link};

/// What the conversion needs besides the spans.
pub struct Encoder {
    pub resource: Resource,
    pub redact_query_keys: Vec<String>,
}

pub(crate) const SCOPE_NAME: &str = "sidetrace";
/// The `event_name` of an access-log record.
pub const LOG_EVENT: &str = "sidetrace.access";
pub(crate) const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

impl Encoder {
    pub fn request(&self, spans: &[SpanRecord]) -> ExportTraceServiceRequest {
        let mut scratch = Scratch::default();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope()),
                    spans: spans.iter().map(|s| self.span_with(s, &mut scratch)).collect(),
                    schema_url: SCHEMA_URL.into(),
                }],
                schema_url: SCHEMA_URL.into(),
            }],
        }
    }

    /// The access log as OTLP log records, one per request, each carrying
    /// its request's trace and span ids (as Envoy's OpenTelemetry access
    /// logger sends them). The attributes are the span's, without the
    /// query string, which the access log never writes.
    pub fn logs_request(&self, spans: &[SpanRecord]) -> ExportLogsServiceRequest {
        let mut scratch = Scratch::default();
        let records = spans
            .iter()
            .map(|s| {
                let v = self.view(s, &mut scratch);
                let error = v.status == StatusCode::Error;
                let attributes = v
                    .attributes()
                    .iter()
                    .filter(|(k, _)| *k != "url.query")
                    .map(|&(k, value)| kv(k, any(value)))
                    .collect();
                let body = format!(
                    "{} {} {} HTTP/{} {} {:.3}ms",
                    s.direction.as_str(),
                    s.method,
                    crate::trace::redact::log_path(s.uri.path()),
                    protocol_version(s.version),
                    s.status.unwrap_or(0),
                    s.duration_nanos() as f64 / 1e6,
                );
                LogRecord {
                    time_unix_nano: v.end_nanos,
                    observed_time_unix_nano: v.end_nanos,
                    // SeverityNumber: INFO is 9, WARN 13.
                    severity_number: if error { 13 } else { 9 },
                    severity_text: if error { "WARN" } else { "INFO" }.into(),
                    body: Some(AnyValue { value: Some(Value::StringValue(body)) }),
                    attributes,
                    flags: u32::from(s.sampled),
                    trace_id: s.trace_id.0.to_vec(),
                    span_id: s.span_id.0.to_vec(),
                    event_name: LOG_EVENT.into(),
                    ..Default::default()
                }
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(self.scope()),
                    log_records: records,
                    schema_url: SCHEMA_URL.into(),
                }],
                schema_url: SCHEMA_URL.into(),
            }],
        }
    }

    fn resource(&self) -> OtlpResource {
        OtlpResource {
            attributes: self.resource.attributes.iter().map(|(k, v)| kv(k, Value::StringValue(v.clone()))).collect(),
            ..Default::default()
        }
    }

    fn scope(&self) -> InstrumentationScope {
        InstrumentationScope { name: SCOPE_NAME.into(), version: SCOPE_VERSION.into(), ..Default::default() }
    }

    pub fn span(&self, s: &SpanRecord) -> Span {
        self.span_with(s, &mut Scratch::default())
    }

    /// The semantic-convention view of a span, with this sidecar's
    /// redaction rules.
    pub(crate) fn view<'a>(&self, s: &'a SpanRecord, scratch: &'a mut Scratch) -> semconv::SpanView<'a> {
        semconv::view(s, &self.redact_query_keys, scratch)
    }

    fn span_with(&self, s: &SpanRecord, scratch: &mut Scratch) -> Span {
        let v = self.view(s, scratch);
        let attributes = v.attributes().iter().map(|&(k, value)| kv(k, any(value))).collect();
        Span {
            trace_id: s.trace_id.0.to_vec(),
            span_id: s.span_id.0.to_vec(),
            trace_state: v.trace_state.to_string(),
            parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
            flags: v.flags,
            name: v.name.to_string(),
            kind: v.kind as i32,
            start_time_unix_nano: v.start_nanos,
            end_time_unix_nano: v.end_nanos,
            attributes,
            links: v
                .links
                .iter()
                .map(|l| Link {
                    trace_id: l.trace_id.0.to_vec(),
                    span_id: l.span_id.0.to_vec(),
                    flags: semconv::link_flags(l),
                    ..Default::default()
                })
                .collect(),
            status: Some(Status { code: v.status as i32, message: String::new() }),
            ..Default::default()
        }
    }
}

fn any(value: AttrValue) -> Value {
    match value {
        AttrValue::Str(x) => Value::StringValue(x.into()),
        AttrValue::Int(i) => Value::IntValue(i),
        AttrValue::Bool(b) => Value::BoolValue(b),
        AttrValue::Strs(cs) => Value::ArrayValue(ArrayValue {
            values: cs
                .iter()
                .map(|c| AnyValue { value: Some(Value::StringValue(semconv::header_text(&c.value).into_owned())) })
                .collect(),
        }),
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::red::tests::span;
    use crate::vocab::Direction;

    #[test]
    fn a_log_records_body_is_one_line_without_raw_quotes_or_controls() {
        let enc = Encoder { resource: Resource::default(), redact_query_keys: Vec::new() };
        let s = span(Direction::Inbound, "GET", "/a%22b/caf%C3%A9", None);
        let mut weird = s.clone();
        weird.uri = http::Uri::from_maybe_shared(bytes::Bytes::from("/q\"x\\y\u{85}z\u{2028}")).unwrap();
        for s in [s, weird] {
            let req = enc.logs_request(std::slice::from_ref(&s));
            let record = &req.resource_logs[0].scope_logs[0].log_records[0];
            let Some(Value::StringValue(body)) = record.body.as_ref().and_then(|b| b.value.clone()) else {
                panic!("a string body")
            };
            assert!(body.is_ascii(), "{body}");
            assert!(!body.chars().any(|c| c.is_control() || c == '"' || c == '\\'), "{body}");
            assert!(body.starts_with("inbound GET /"), "{body}");
        }
    }
}
