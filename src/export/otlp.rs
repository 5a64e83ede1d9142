//! Span records as OTLP messages (types from `opentelemetry-proto`),
//! named and attributed per the OpenTelemetry HTTP semantic conventions.
//! This is where the costly parts of a span are made: the route
//! template, the name and the attribute strings, off the request path.

use crate::config::Resource;
use crate::listen::Direction;
use crate::metrics::route::RouteTemplates;
use crate::trace::SpanRecord;
use crate::trace::redact::redact_query;
use http::{Method, Version};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};
use std::time::UNIX_EPOCH;

/// What the conversion needs besides the spans.
pub struct Encoder {
    pub resource: Resource,
    pub routes: std::sync::Arc<RouteTemplates>,
    pub redact_query_keys: Vec<String>,
}

const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";
/// OTLP span flags: bits 0-7 are the W3C trace flags; bit 8 says whether
/// bit 9 (parent is remote) is known.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

impl Encoder {
    pub fn request(&self, spans: &[SpanRecord]) -> ExportTraceServiceRequest {
        let resource = OtlpResource {
            attributes: self.resource.attributes.iter().map(|(k, v)| kv(k, Value::StringValue(v.clone()))).collect(),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "sidetrace".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: spans.iter().map(|s| self.span(s)).collect(),
                    schema_url: SCHEMA_URL.into(),
                }],
                schema_url: SCHEMA_URL.into(),
            }],
        }
    }

    pub fn route(&self, s: &SpanRecord) -> String {
        self.routes.template(s.uri.path()).into_owned()
    }

    pub fn span(&self, s: &SpanRecord) -> Span {
        let method = method_attr(&s.method);
        let connect = s.method == Method::CONNECT;
        let route = (!connect).then(|| self.route(s));
        let name = match (&route, method) {
            (_, "_OTHER") => "HTTP".to_string(),
            (Some(r), m) => format!("{m} {r}"),
            (None, m) => m.to_string(),
        };
        let mut attrs = Vec::with_capacity(16);
        attrs.push(kv("http.request.method", Value::StringValue(method.into())));
        if method == "_OTHER" {
            attrs.push(kv("http.request.method_original", Value::StringValue(s.method.as_str().into())));
        }
        if !connect {
            attrs.push(kv("url.path", Value::StringValue(s.uri.path().into())));
            if let Some(q) = s.uri.query() {
                attrs.push(kv("url.query", Value::StringValue(redact_query(q, &self.redact_query_keys).into_owned())));
            }
            attrs.push(kv("url.scheme", Value::StringValue(if s.scheme_https { "https" } else { "http" }.into())));
        }
        if let Some(r) = route {
            attrs.push(kv("http.route", Value::StringValue(r)));
        }
        if let Some(code) = s.status {
            attrs.push(kv("http.response.status_code", Value::IntValue(code.into())));
        }
        let (host, port) = server_address(s);
        if let Some(h) = host {
            attrs.push(kv("server.address", Value::StringValue(h)));
        }
        if let Some(p) = port {
            attrs.push(kv("server.port", Value::IntValue(p.into())));
        }
        match s.direction {
            Direction::Inbound => {
                attrs.push(kv("client.address", Value::StringValue(s.client.ip().to_string())));
                attrs.push(kv("client.port", Value::IntValue(s.client.port().into())));
            }
            Direction::Outbound => {
                if let Some(crate::trace::Upstream::Addr(a)) = &s.upstream {
                    attrs.push(kv("network.peer.address", Value::StringValue(a.ip().to_string())));
                    attrs.push(kv("network.peer.port", Value::IntValue(a.port().into())));
                }
            }
        }
        attrs.push(kv("network.protocol.version", Value::StringValue(protocol_version(s.version).into())));
        if let Some(ua) = s.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
            attrs.push(kv("user_agent.original", Value::StringValue(ua.into())));
        }
        attrs.push(kv("http.request.body.size", Value::IntValue(s.request_body_size as i64)));
        attrs.push(kv("http.response.body.size", Value::IntValue(s.response_body_size as i64)));
        if let Some(code) = s.grpc_status {
            attrs.push(kv("rpc.grpc.status_code", Value::IntValue(code.into())));
        }
        if let Some(e) = &s.error {
            attrs.push(kv("error.type", Value::StringValue(e.as_str().into_owned())));
        }
        if s.tail {
            attrs.push(kv("sidetrace.sampling.tail", Value::BoolValue(true)));
        }
        let nanos = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Span {
            trace_id: s.trace_id.0.to_vec(),
            span_id: s.span_id.0.to_vec(),
            trace_state: s.tracestate.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default().to_string(),
            parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
            flags: u32::from(s.sampled) | HAS_IS_REMOTE | if s.parent_span_id.is_some() { IS_REMOTE } else { 0 },
            name,
            kind: match s.direction {
                Direction::Inbound => SpanKind::Server,
                Direction::Outbound => SpanKind::Client,
            } as i32,
            start_time_unix_nano: nanos(s.start),
            end_time_unix_nano: nanos(s.end),
            attributes: attrs,
            status: Some(if s.is_error() {
                Status { code: StatusCode::Error as i32, message: String::new() }
            } else {
                Status::default()
            }),
            ..Default::default()
        }
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// Known methods keep their name; anything else is `_OTHER`, which keeps
/// span names and metric labels bounded.
pub fn method_attr(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

pub fn protocol_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "unknown",
    }
}

/// `server.address`/`server.port`: the authority the client asked for
/// (Host or `:authority`), else the upstream it went to.
fn server_address(s: &SpanRecord) -> (Option<String>, Option<u16>) {
    let asked = match &s.host {
        Some(h) => h.to_str().ok().and_then(|h| h.parse::<http::uri::Authority>().ok()),
        None => s.uri.authority().cloned(),
    };
    if let Some(auth) = asked {
        let default = if s.scheme_https { 443 } else { 80 };
        return (
            Some(auth.host().trim_start_matches('[').trim_end_matches(']').to_string()),
            Some(auth.port_u16().unwrap_or(default)),
        );
    }
    match &s.upstream {
        Some(crate::trace::Upstream::Addr(a)) => (Some(a.ip().to_string()), Some(a.port())),
        Some(crate::trace::Upstream::Name(n)) => (Some(n.host().to_string()), n.port_u16()),
        None => (None, None),
    }
}
