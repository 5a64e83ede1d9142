//! Span records as OTLP messages (types from `opentelemetry-proto`). What
//! a span says is decided by `trace::semconv::view`; this builds the
//! message structs from it, which serve OTLP/JSON, Zipkin and
//! `/api/traces`. OTLP/protobuf is written from the same view without
//! them (`otlp_wire`).

use crate::config::Resource;
use crate::trace::SpanRecord;
use crate::trace::semconv::{self, AttrValue, SCHEMA_URL, Scratch};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Link};

/// What the conversion needs besides the spans.
pub struct Encoder {
    pub resource: Resource,
    pub redact_query_keys: Vec<String>,
}

pub(crate) const SCOPE_NAME: &str = "sidetrace";
pub(crate) const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

impl Encoder {
    pub fn request(&self, spans: &[SpanRecord]) -> ExportTraceServiceRequest {
        let mut scratch = Scratch::default();
        let resource = OtlpResource {
            attributes: self.resource.attributes.iter().map(|(k, v)| kv(k, Value::StringValue(v.clone()))).collect(),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.into(),
                        version: SCOPE_VERSION.into(),
                        ..Default::default()
                    }),
                    spans: spans.iter().map(|s| self.span_with(s, &mut scratch)).collect(),
                    schema_url: SCHEMA_URL.into(),
                }],
                schema_url: SCHEMA_URL.into(),
            }],
        }
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
        let attributes = v
            .attributes()
            .iter()
            .map(|&(k, value)| {
                kv(
                    k,
                    match value {
                        AttrValue::Str(x) => Value::StringValue(x.into()),
                        AttrValue::Int(i) => Value::IntValue(i),
                        AttrValue::Bool(b) => Value::BoolValue(b),
                    },
                )
            })
            .collect();
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

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}
