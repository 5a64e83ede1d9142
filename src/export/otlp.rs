//! Span records as OTLP messages (types from `opentelemetry-proto`),
//! named and attributed per the OpenTelemetry HTTP semantic conventions.
//! This is where what a span says is decided (`Encoder::view`: route
//! template, name, attributes), off the request path. The message structs
//! serve OTLP/JSON, Zipkin and `/api/traces`; OTLP/protobuf is written
//! from the same view without them (`otlp_wire`).

use crate::config::Resource;
use crate::listen::Direction;
use crate::metrics::route::RouteTemplates;
use crate::trace::ErrorType;
use crate::trace::SpanRecord;
use crate::trace::redact::redact_query;
use http::{Method, Version};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};
use std::borrow::Cow;
use std::time::UNIX_EPOCH;

/// What the conversion needs besides the spans.
pub struct Encoder {
    pub resource: Resource,
    pub routes: std::sync::Arc<RouteTemplates>,
    pub redact_query_keys: Vec<String>,
}

pub(crate) const SCOPE_NAME: &str = "sidetrace";
pub(crate) const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");
pub(crate) const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";
/// OTLP span flags: bits 0-7 are the W3C trace flags; bit 8 says whether
/// bit 9 (parent is remote) is known.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

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
            status: Some(Status { code: v.status as i32, message: String::new() }),
            ..Default::default()
        }
    }

    /// Everything a span's OTLP form says beyond its ids, decided once for
    /// both encodings: the message structs (`span`) and the protobuf
    /// written directly (`otlp_wire`). Strings it has to make go into
    /// `scratch`, which the caller reuses from span to span.
    pub(crate) fn view<'a>(&self, s: &'a SpanRecord, scratch: &'a mut Scratch) -> SpanView<'a> {
        scratch.text.clear();
        let method = method_attr(&s.method);
        let connect = s.method == Method::CONNECT;
        if !connect {
            self.routes.write_template(s.uri.path(), &mut scratch.route);
        }
        let name = match (connect, method) {
            (_, "_OTHER") => Text::Str("HTTP"),
            (true, m) => Text::Str(m),
            (false, m) => {
                let at = scratch.text.len();
                scratch.text.push_str(m);
                scratch.text.push(' ');
                scratch.text.push_str(&scratch.route);
                Text::At(at, scratch.text.len())
            }
        };
        let query = match s.uri.query() {
            Some(q) if !connect => Some(match redact_query(q, &self.redact_query_keys) {
                Cow::Borrowed(q) => Text::Str(q),
                Cow::Owned(q) => scratch.push(&q),
            }),
            _ => None,
        };
        let (host, port) = server_address(s, scratch);
        let peer = match (s.direction, &s.upstream) {
            (Direction::Inbound, _) => Some(("client.address", "client.port", s.client)),
            (Direction::Outbound, Some(crate::trace::Upstream::Addr(a))) => {
                Some(("network.peer.address", "network.peer.port", *a))
            }
            (Direction::Outbound, _) => None,
        };
        let peer = peer.map(|(k, kp, a)| (k, kp, scratch.push_ip(a.ip()), a.port()));
        let error = s.error.map(|e| match e {
            ErrorType::Status(code) => scratch.push_display(code),
            e => match e.as_str() {
                Cow::Borrowed(x) => Text::Str(x),
                Cow::Owned(x) => scratch.push(&x),
            },
        });

        let scratch: &'a Scratch = scratch;
        let mut v = SpanView {
            name: scratch.get(name),
            trace_state: s.tracestate.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default(),
            flags: u32::from(s.sampled) | HAS_IS_REMOTE | if s.parent_span_id.is_some() { IS_REMOTE } else { 0 },
            kind: match s.direction {
                Direction::Inbound => SpanKind::Server,
                Direction::Outbound => SpanKind::Client,
            },
            start_nanos: nanos(s.start),
            end_nanos: nanos(s.end),
            status: if s.is_error() { StatusCode::Error } else { StatusCode::Unset },
            attrs: [("", AttrValue::Bool(false)); MAX_ATTRS],
            len: 0,
        };
        v.push("http.request.method", AttrValue::Str(method));
        if method == "_OTHER" {
            v.push("http.request.method_original", AttrValue::Str(s.method.as_str()));
        }
        if !connect {
            v.push("url.path", AttrValue::Str(s.uri.path()));
            if let Some(q) = query {
                v.push("url.query", AttrValue::Str(scratch.get(q)));
            }
            v.push("url.scheme", AttrValue::Str(if s.scheme_https { "https" } else { "http" }));
            v.push("http.route", AttrValue::Str(&scratch.route));
        }
        if let Some(code) = s.status {
            v.push("http.response.status_code", AttrValue::Int(code.into()));
        }
        if let Some(h) = host {
            v.push("server.address", AttrValue::Str(scratch.get(h)));
        }
        if let Some(p) = port {
            v.push("server.port", AttrValue::Int(p.into()));
        }
        if let Some((k, kp, ip, port)) = peer {
            v.push(k, AttrValue::Str(scratch.get(ip)));
            v.push(kp, AttrValue::Int(port.into()));
        }
        v.push("network.protocol.version", AttrValue::Str(protocol_version(s.version)));
        if let Some(ua) = s.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
            v.push("user_agent.original", AttrValue::Str(ua));
        }
        v.push("http.request.body.size", AttrValue::Int(s.request_body_size as i64));
        v.push("http.response.body.size", AttrValue::Int(s.response_body_size as i64));
        if let Some(code) = s.grpc_status {
            v.push("rpc.grpc.status_code", AttrValue::Int(code.into()));
        }
        if let Some(e) = error {
            v.push("error.type", AttrValue::Str(scratch.get(e)));
        }
        if s.tail {
            v.push("sidetrace.sampling.tail", AttrValue::Bool(true));
        }
        v
    }
}

fn nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The most attributes `Encoder::view` ever sets on one span.
const MAX_ATTRS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum AttrValue<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

/// A span's name, status and attributes, borrowed from the record and
/// from a `Scratch`, so that neither encoding allocates to decide them.
pub(crate) struct SpanView<'a> {
    pub name: &'a str,
    pub trace_state: &'a str,
    pub flags: u32,
    pub kind: SpanKind,
    pub start_nanos: u64,
    pub end_nanos: u64,
    pub status: StatusCode,
    attrs: [(&'static str, AttrValue<'a>); MAX_ATTRS],
    len: usize,
}

impl<'a> SpanView<'a> {
    fn push(&mut self, key: &'static str, value: AttrValue<'a>) {
        self.attrs[self.len] = (key, value);
        self.len += 1;
    }

    pub fn attributes(&self) -> &[(&'static str, AttrValue<'a>)] {
        &self.attrs[..self.len]
    }
}

/// The strings a span's attributes need that its record does not hold
/// (route, name, formatted addresses), kept between spans so their
/// buffers are allocated once rather than once per span.
#[derive(Default)]
pub(crate) struct Scratch {
    route: String,
    text: String,
}

/// A string in the record (or static), or a range of `Scratch::text`:
/// ranges stay valid while more text is appended, references would not.
#[derive(Clone, Copy)]
enum Text<'a> {
    Str(&'a str),
    At(usize, usize),
}

impl Scratch {
    fn push(&mut self, s: &str) -> Text<'static> {
        let at = self.text.len();
        self.text.push_str(s);
        Text::At(at, self.text.len())
    }

    fn push_display(&mut self, v: impl std::fmt::Display) -> Text<'static> {
        use std::fmt::Write;
        let at = self.text.len();
        let _ = write!(self.text, "{v}");
        Text::At(at, self.text.len())
    }

    /// IPv4 addresses written digit by digit: formatting them through
    /// `Display` took a tenth of the direct encoder's time.
    fn push_ip(&mut self, ip: std::net::IpAddr) -> Text<'static> {
        let std::net::IpAddr::V4(v4) = ip else { return self.push_display(ip) };
        let at = self.text.len();
        for (i, o) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                self.text.push('.');
            }
            if o >= 100 {
                self.text.push(char::from(b'0' + o / 100));
            }
            if o >= 10 {
                self.text.push(char::from(b'0' + o / 10 % 10));
            }
            self.text.push(char::from(b'0' + o % 10));
        }
        Text::At(at, self.text.len())
    }

    fn get<'a>(&'a self, t: Text<'a>) -> &'a str {
        match t {
            Text::Str(s) => s,
            Text::At(a, b) => &self.text[a..b],
        }
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// Known methods keep their name; anything else is `_OTHER`, which keeps
/// span names and metric labels bounded.
/// `http.request.method` values; anything else is `_OTHER`.
pub const METHODS: [&str; 10] =
    ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "_OTHER"];

/// The position of a method in `METHODS`.
pub fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::HEAD => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

pub fn method_attr(m: &Method) -> &'static str {
    METHODS[method_index(m)]
}

/// `network.protocol.version` values.
pub const VERSIONS: [&str; 6] = ["0.9", "1.0", "1.1", "2", "3", "unknown"];

/// The position of a version in `VERSIONS`.
pub fn version_index(v: Version) -> usize {
    match v {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_11 => 2,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 5,
    }
}

pub fn protocol_version(v: Version) -> &'static str {
    VERSIONS[version_index(v)]
}

/// `server.address`/`server.port`: the authority the client asked for
/// (Host or `:authority`), else the upstream it went to.
fn server_address<'a>(s: &'a SpanRecord, scratch: &mut Scratch) -> (Option<Text<'a>>, Option<u16>) {
    let default = if s.scheme_https { 443 } else { 80 };
    if let Some(a) = s.requested_authority() {
        if let Some((host, port)) = plain_authority(a) {
            return (Some(Text::Str(host)), Some(port.unwrap_or(default)));
        }
        // Unusual authorities (userinfo, IPv6 literals, bad bytes) take
        // http's own parser, which decides what is valid.
        if let Ok(auth) = a.parse::<http::uri::Authority>() {
            let host = scratch.push(auth.host().trim_start_matches('[').trim_end_matches(']'));
            return (Some(host), Some(auth.port_u16().unwrap_or(default)));
        }
    }
    match &s.upstream {
        Some(crate::trace::Upstream::Addr(a)) => (Some(scratch.push_ip(a.ip())), Some(a.port())),
        Some(crate::trace::Upstream::Name(n)) => (Some(Text::Str(n.host())), n.port_u16()),
        None => (None, None),
    }
}

/// Host and port of an authority made only of letters, digits, dots,
/// dashes and at most one colon, the common case, read without the
/// allocation `http::uri::Authority` parsing makes. Anything else is
/// `None`, for the full parser. Such an authority is always valid to
/// `http`, and its host and port are found the same way.
pub(crate) fn plain_authority(a: &str) -> Option<(&str, Option<u16>)> {
    let b = a.as_bytes();
    let plain = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':');
    if b.is_empty() || !b.iter().all(plain) || b.iter().filter(|c| **c == b':').count() > 1 {
        return None;
    }
    match a.split_once(':') {
        Some((host, port)) => Some((host, port.parse().ok())),
        None => Some((a, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_written_as_display_writes_them() {
        let mut scratch = Scratch::default();
        for ip in ["0.0.0.0", "10.1.2.3", "192.168.100.255", "99.100.9.10", "::1", "2001:db8::5", "::ffff:1.2.3.4"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let t = scratch.push_ip(ip);
            assert_eq!(scratch.get(t), ip.to_string());
        }
    }
}
