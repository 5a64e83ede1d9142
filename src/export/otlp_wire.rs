//! OTLP/protobuf written straight from span records into one reused
//! buffer. It makes the bytes `prost` makes of `Encoder::request`, without
//! the two dozen allocations per span that building the message structs
//! costs (every attribute key and value a `String`, every attribute a
//! struct in a `Vec`), which were most of what tracing cost at high
//! request rates. What a span says is still decided in one place,
//! `trace::semconv::view`; this module only writes it.
//!
//! Field numbers are those of opentelemetry-proto's trace.proto,
//! common.proto and resource.proto. Like prost, fields go in tag order
//! and proto3 defaults (empty strings, zeros) are left out, except inside
//! a oneof (`AnyValue`) and for message fields that are set (`status`).
//! The tests below hold the two encodings byte for byte equal.

use super::otlp::{Encoder, SCOPE_NAME, SCOPE_VERSION};
use crate::trace::SpanRecord;
use crate::trace::capture::Captured;
use crate::trace::semconv::{self, AttrValue, SCHEMA_URL, Scratch, SpanView};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

const MAX_VARINT: usize = 10;

/// Encodes batches of spans as `ExportTraceServiceRequest`s. One lives as
/// long as the export pipeline, so its buffers are allocated about once.
#[derive(Default)]
pub struct ProtoWriter {
    buf: BytesMut,
    scratch: Scratch,
    /// Bytes per span of the last batch, to size the next one's buffer.
    per_span: usize,
}

impl ProtoWriter {
    /// The encoded request, handed out without a copy. The memory goes
    /// back to the writer once every batch handed out from it is dropped.
    pub fn encode(&mut self, encoder: &Encoder, spans: &[SpanRecord]) -> Bytes {
        let start = self.write(encoder, spans);
        self.buf.advance(start);
        self.buf.split().freeze()
    }

    /// The encoded request, only lent: for a caller that compresses it.
    pub fn encode_borrowed(&mut self, encoder: &Encoder, spans: &[SpanRecord]) -> &[u8] {
        let start = self.write(encoder, spans);
        &self.buf[start..]
    }

    /// Writes the request into `buf` and returns where it starts. The
    /// lengths of the messages that enclose the spans are known only after
    /// the spans are written; room for their longest form is left in front
    /// and the header goes at the end of that room, so nothing is written
    /// twice.
    fn write(&mut self, encoder: &Encoder, spans: &[SpanRecord]) -> usize {
        let attributes = &encoder.resource.attributes;
        let resource_len: usize = attributes.iter().map(|(k, v)| field_len(kv_len(k, AttrValue::Str(v)))).sum();
        let scope_len = string_len(SCOPE_NAME) + string_len(SCOPE_VERSION);
        let (resource_field, scope_field) = (field_len(resource_len), field_len(scope_len));
        let room = 2 * (1 + MAX_VARINT) + resource_field + scope_field;
        self.buf.clear();
        self.buf.reserve(room + spans.len() * self.per_span + 2 * string_len(SCHEMA_URL));
        self.buf.put_bytes(0, room);
        for s in spans {
            let view = encoder.view(s, &mut self.scratch);
            put_span(&mut self.buf, s, &view);
        }
        let spans_len = self.buf.len() - room;
        put_string(&mut self.buf, 3, SCHEMA_URL); // ScopeSpans.schema_url
        put_string(&mut self.buf, 3, SCHEMA_URL); // ResourceSpans.schema_url
        if !spans.is_empty() {
            self.per_span = spans_len.div_ceil(spans.len());
        }

        let scope_spans_len = scope_field + spans_len + string_len(SCHEMA_URL);
        let resource_spans_len = resource_field + field_len(scope_spans_len) + string_len(SCHEMA_URL);
        let header = 1
            + encoded_len_varint(resource_spans_len as u64)
            + resource_field
            + 1
            + encoded_len_varint(scope_spans_len as u64)
            + scope_field;
        let start = room - header;
        let mut h = &mut self.buf[start..room];
        put_len(&mut h, 1, resource_spans_len); // ExportTraceServiceRequest.resource_spans
        put_len(&mut h, 1, resource_len); // ResourceSpans.resource
        for (k, v) in attributes {
            put_kv(&mut h, 1, k, AttrValue::Str(v)); // Resource.attributes
        }
        put_len(&mut h, 2, scope_spans_len); // ResourceSpans.scope_spans
        put_len(&mut h, 1, scope_len); // ScopeSpans.scope
        put_string(&mut h, 1, SCOPE_NAME); // InstrumentationScope.name
        put_string(&mut h, 2, SCOPE_VERSION); // InstrumentationScope.version
        debug_assert!(h.is_empty(), "header length computed wrong");
        start
    }
}

/// A length-delimited field holding `len` bytes: key, length, contents.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// A string or bytes field; proto3 leaves out an empty one.
fn string_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { field_len(s.len()) }
}

/// Nearly every key and length fits in one byte; prost's general loop
/// showed up in profiles, this test does not.
#[inline]
fn put_varint(buf: &mut impl BufMut, v: u64) {
    if v < 0x80 {
        buf.put_u8(v as u8);
    } else {
        encode_varint(v, buf);
    }
}

#[inline]
fn put_key(buf: &mut impl BufMut, tag: u32, wire_type: WireType) {
    if tag < 16 {
        buf.put_u8((tag << 3) as u8 | wire_type as u8);
    } else {
        encode_key(tag, wire_type, buf);
    }
}

fn put_len(buf: &mut impl BufMut, tag: u32, len: usize) {
    put_key(buf, tag, WireType::LengthDelimited);
    put_varint(buf, len as u64);
}

fn put_bytes(buf: &mut impl BufMut, tag: u32, b: &[u8]) {
    if !b.is_empty() {
        put_len(buf, tag, b.len());
        buf.put_slice(b);
    }
}

fn put_string(buf: &mut impl BufMut, tag: u32, s: &str) {
    put_bytes(buf, tag, s.as_bytes());
}

/// `AnyValue`: a oneof, so its field is written even when it is a default.
fn any_value_len(v: AttrValue) -> usize {
    match v {
        AttrValue::Str(s) => field_len(s.len()),
        AttrValue::Int(i) => 1 + encoded_len_varint(i as u64),
        AttrValue::Bool(_) => 2,
        AttrValue::Strs(cs) => field_len(array_len(cs)),
    }
}

/// `ArrayValue { repeated AnyValue values = 1 }` of strings.
fn array_len(cs: &[Captured]) -> usize {
    cs.iter().map(|c| field_len(field_len(semconv::header_text(&c.value).len()))).sum()
}

/// `KeyValue { key = 1; value = 2 }`, without its own key and length.
fn kv_len(key: &str, v: AttrValue) -> usize {
    string_len(key) + field_len(any_value_len(v))
}

fn put_kv(buf: &mut impl BufMut, tag: u32, key: &str, v: AttrValue) {
    put_len(buf, tag, kv_len(key, v));
    put_string(buf, 1, key);
    put_len(buf, 2, any_value_len(v));
    match v {
        AttrValue::Str(s) => {
            put_len(buf, 1, s.len());
            buf.put_slice(s.as_bytes());
        }
        AttrValue::Bool(b) => {
            put_key(buf, 2, WireType::Varint);
            put_varint(buf, u64::from(b));
        }
        AttrValue::Int(i) => {
            put_key(buf, 3, WireType::Varint);
            put_varint(buf, i as u64);
        }
        AttrValue::Strs(cs) => {
            put_len(buf, 5, array_len(cs));
            for c in cs {
                let text = semconv::header_text(&c.value);
                // A oneof: an empty string is still written.
                put_len(buf, 1, field_len(text.len()));
                put_len(buf, 1, text.len());
                buf.put_slice(text.as_bytes());
            }
        }
    }
}

/// `Status { message = 2; code = 3 }`; the message is always empty.
fn status_len(code: i32) -> usize {
    if code == 0 { 0 } else { 1 + encoded_len_varint(code as u64) }
}

fn span_len(s: &SpanRecord, v: &SpanView) -> usize {
    let varint = |x: u64| if x == 0 { 0 } else { 1 + encoded_len_varint(x) };
    let fixed64 = |x: u64| if x == 0 { 0 } else { 9 };
    field_len(s.trace_id.0.len())
        + field_len(s.span_id.0.len())
        + string_len(v.trace_state)
        + s.parent_span_id.map_or(0, |p| field_len(p.0.len()))
        + string_len(v.name)
        + varint(v.kind as i32 as u64)
        + fixed64(v.start_nanos)
        + fixed64(v.end_nanos)
        + v.attributes().iter().map(|&(k, a)| field_len(kv_len(k, a))).sum::<usize>()
        + v.links.len() * field_len(LINK_LEN)
        + field_len(status_len(v.status as i32))
        + if v.flags == 0 { 0 } else { key_len(16) + 4 }
}

/// A link to a span in this process: trace id, span id and flags, which
/// are never zero (they say "not remote").
const LINK_LEN: usize = 2 + 16 + 2 + 8 + 1 + 4;

/// `ScopeSpans.spans` (tag 2): one `Span`, fields in tag order.
fn put_span(buf: &mut BytesMut, s: &SpanRecord, v: &SpanView) {
    put_len(buf, 2, span_len(s, v));
    put_bytes(buf, 1, &s.trace_id.0);
    put_bytes(buf, 2, &s.span_id.0);
    put_string(buf, 3, v.trace_state);
    if let Some(p) = s.parent_span_id {
        put_bytes(buf, 4, &p.0);
    }
    put_string(buf, 5, v.name);
    if v.kind as i32 != 0 {
        put_key(buf, 6, WireType::Varint);
        put_varint(buf, v.kind as i32 as u64);
    }
    for (tag, t) in [(7, v.start_nanos), (8, v.end_nanos)] {
        if t != 0 {
            put_key(buf, tag, WireType::SixtyFourBit);
            buf.put_u64_le(t);
        }
    }
    for &(k, a) in v.attributes() {
        put_kv(buf, 9, k, a);
    }
    // `Span.links` (tag 13): `Link { trace_id = 1; span_id = 2; flags = 6 }`.
    for l in v.links {
        put_len(buf, 13, LINK_LEN);
        put_bytes(buf, 1, &l.trace_id.0);
        put_bytes(buf, 2, &l.span_id.0);
        encode_key(6, WireType::ThirtyTwoBit, buf);
        buf.put_u32_le(semconv::link_flags(l));
    }
    let code = v.status as i32;
    put_len(buf, 15, status_len(code));
    if code != 0 {
        put_key(buf, 3, WireType::Varint);
        put_varint(buf, code as u64);
    }
    if v.flags != 0 {
        encode_key(16, WireType::ThirtyTwoBit, buf);
        buf.put_u32_le(v.flags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Resource;
    use crate::trace::route::{RoutePattern, RouteTemplates};
    use crate::trace::semconv::plain_authority;
    use crate::trace::{SpanId, TraceId, Upstream};
    use crate::vocab::{Direction, ErrorType};
    use http::Version;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value::Value};
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
    use prost::Message;
    use std::net::SocketAddr;
    use std::time::{Duration, UNIX_EPOCH};

    /// Counts this thread's allocations, so tests running in parallel do
    /// not disturb each other's figures. It is the allocator of the whole
    /// lib test binary (there can be only one); outside these tests it
    /// costs a thread-local increment and changes nothing.
    struct Counting;
    thread_local! {
        static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    fn allocs() -> u64 {
        ALLOCS.with(|a| a.get())
    }
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
        }
    }
    #[global_allocator]
    static COUNTING: Counting = Counting;

    fn encoder() -> Encoder {
        let mut resource = Resource::default();
        resource.attributes.insert("service.name".into(), "orders".into());
        resource.attributes.insert("host.name".into(), "node-7".into());
        Encoder { resource, redact_query_keys: vec!["token".into()] }
    }

    fn base(i: u64) -> SpanRecord {
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + i * 1000);
        SpanRecord {
            trace_id: TraceId([i as u8 | 1; 16]),
            span_id: SpanId([i as u8 | 2; 8]),
            parent_span_id: None,
            sampled: true,
            tail: false,
            probe: false,
            tracestate: None,
            direction: Direction::Inbound,
            start,
            end: start + Duration::from_micros(1234 + i),
            method: http::Method::GET,
            uri: format!("/users/{i}/orders?page=2").parse().unwrap(),
            route: None,
            scheme_https: false,
            version: Version::HTTP_11,
            host: Some("orders.svc:8080".parse().unwrap()),
            upstream: Some(Upstream::Addr(SocketAddr::from(([10, 0, 0, 1], 8080)))),
            client: SocketAddr::from(([10, 1, 2, 3], 40000 + i as u16)),
            user_agent: Some("curl/8.5.0".parse().unwrap()),
            peer_service: None,
            stitching: Default::default(),
            status: Some(200),
            grpc_status: None,
            request_body_size: 0,
            response_body_size: 1000 + i,
            error: None,
            headers: Vec::new(),
        }
    }

    fn typical(n: usize) -> Vec<SpanRecord> {
        (0..n as u64)
            .map(|i| {
                let mut s = base(i);
                if i % 2 == 1 {
                    s.direction = Direction::Outbound;
                    s.parent_span_id = Some(SpanId([9; 8]));
                    s.host = Some("payments.svc".parse().unwrap());
                    s.uri = "/v1/charge".parse().unwrap();
                    s.method = http::Method::POST;
                    s.request_body_size = 300;
                }
                s.compact();
                routed(s, &RouteTemplates::default())
            })
            .collect()
    }

    /// The span with its route, as the request path sets it.
    fn routed(mut s: SpanRecord, templates: &RouteTemplates) -> SpanRecord {
        s.route = (s.method != http::Method::CONNECT).then(|| templates.route(s.uri.path()));
        s
    }

    /// One span for each way `trace::semconv::view` can decide an attribute.
    fn varied() -> Vec<SpanRecord> {
        let hv = |v: &str| Some(http::HeaderValue::from_str(v).unwrap());
        let mut out = Vec::new();
        let mut add = |i: u64, f: &dyn Fn(&mut SpanRecord)| {
            let mut s = base(i);
            f(&mut s);
            out.push(routed(s, &RouteTemplates::default()));
        };
        add(0, &|_| {});
        add(1, &|s| {
            s.direction = Direction::Outbound;
            s.parent_span_id = Some(SpanId([7; 8]));
            s.tracestate = hv("st=caller:orders,vendor=x");
            s.method = http::Method::POST;
            s.host = hv("api.example");
            s.scheme_https = true;
            s.status = Some(404);
        });
        add(2, &|s| {
            s.status = Some(503);
            s.error = Some(ErrorType::Status(503));
            s.uri = "/login?user=a&TOKEN=secret&x".parse().unwrap();
        });
        add(3, &|s| {
            // HTTP/2 gRPC with the authority still in the URI.
            s.direction = Direction::Outbound;
            s.version = Version::HTTP_2;
            s.method = http::Method::POST;
            s.uri = "http://grpc.svc:50051/pkg.Greeter/SayHello".parse().unwrap();
            s.host = None;
            s.grpc_status = Some(14);
            s.error = Some(ErrorType::Grpc(14));
        });
        add(4, &|s| {
            s.version = Version::HTTP_2;
            s.uri = "http://[fe80::1]:8443/x".parse().unwrap();
            s.host = None;
            s.grpc_status = Some(0);
            s.compact();
        });
        add(5, &|s| {
            s.method = http::Method::CONNECT;
            s.uri = "db.example:5432".parse().unwrap();
            s.host = None;
            s.direction = Direction::Outbound;
            s.upstream = Some(Upstream::Name("db.example:5432".parse().unwrap()));
            s.status = None;
            s.error = Some(ErrorType::ConnectionRefused);
        });
        add(6, &|s| {
            s.method = "PURGE".parse().unwrap();
            s.host = hv("[::1]:81");
            s.client = "[2001:db8::5]:61000".parse().unwrap();
        });
        add(7, &|s| {
            s.sampled = false;
            s.tail = true;
            s.status = None;
            s.error = Some(ErrorType::ResponseTimeout);
            s.host = hv("user@host.example:9");
        });
        add(8, &|s| {
            // Empty strings are still attributes; an empty trace state is not a field.
            s.tracestate = hv("");
            s.user_agent = hv("");
            s.uri = "/empty?".parse().unwrap();
            s.host = hv("");
        });
        add(9, &|s| {
            s.host = hv("bad host");
            s.direction = Direction::Outbound;
            s.upstream = Some(Upstream::Name("named.upstream".parse().unwrap()));
        });
        add(10, &|s| {
            s.host = Some(http::HeaderValue::from_bytes(b"caf\xc3\xa9.example").unwrap());
            s.upstream = None;
            s.user_agent = Some(http::HeaderValue::from_bytes(b"\xff").unwrap());
        });
        add(11, &|s| {
            s.host = None;
            s.upstream = None;
            s.direction = Direction::Outbound;
            s.version = Version::HTTP_10;
        });
        add(12, &|s| {
            s.start = UNIX_EPOCH;
            s.end = UNIX_EPOCH;
            s.request_body_size = u64::MAX;
            s.response_body_size = 0;
            s.version = Version::HTTP_3;
            s.host = hv(":8080");
        });
        add(13, &|s| {
            s.host = hv("host:99999");
            s.uri = "/static/css/a.css".parse().unwrap();
            s.method = http::Method::DELETE;
        });
        add(14, &|s| {
            s.host = hv("h:1:2");
            s.method = http::Method::OPTIONS;
            s.uri = "*".parse().unwrap();
        });
        add(15, &|s| {
            s.uri = format!("/a/{}", "x".repeat(300)).parse().unwrap();
            s.user_agent = Some(http::HeaderValue::from_str(&"ua".repeat(100)).unwrap());
            s.compact();
        });
        add(16, &|s| {
            s.direction = Direction::Outbound;
            s.parent_span_id = Some(SpanId([3; 8]));
            s.stitching = crate::trace::Stitching::Joined;
        });
        add(17, &|s| {
            s.direction = Direction::Outbound;
            let link = |n: u8| crate::trace::LinkedSpan {
                trace_id: TraceId([n; 16]),
                span_id: SpanId([n; 8]),
                sampled: n.is_multiple_of(2),
            };
            s.stitching = crate::trace::Stitching::Linked { links: (1..=8).map(link).collect(), candidates: 12 };
        });
        add(18, &|s| {
            // Captured headers: several values of one name, an empty one,
            // one that is not UTF-8, long ones, each name an array.
            let c = |key, v: &[u8]| Captured { key, value: http::HeaderValue::from_bytes(v).unwrap() };
            s.headers = vec![
                c("http.request.header.x-tenant", b"acme"),
                c("http.request.header.x-tenant", b""),
                c("http.request.header.x-raw", b"caf\xe9"),
                c("http.response.header.x-long", "v".repeat(200).as_bytes()),
            ];
        });
        out
    }

    fn assert_same(enc: &Encoder, spans: &[SpanRecord]) {
        let reference = enc.request(spans).encode_to_vec();
        let mut w = ProtoWriter::default();
        for round in 0..2 {
            assert_eq!(w.encode(enc, spans).as_ref(), reference.as_slice(), "round {round}");
            assert_eq!(w.encode_borrowed(enc, spans), reference.as_slice(), "borrowed, round {round}");
        }
    }

    #[test]
    fn direct_encoding_is_byte_identical_to_prost() {
        let mut enc = encoder();
        let spans = varied();
        for s in &spans {
            assert_same(&enc, std::slice::from_ref(s));
            let mut compacted = s.clone();
            compacted.compact();
            assert_same(&enc, std::slice::from_ref(&compacted));
        }
        assert_same(&enc, &spans);
        assert_same(&enc, &[]);
        // Long enough for multi-byte lengths at every level.
        assert_same(&enc, &typical(700));
        let patterns = RouteTemplates::new(vec![
            RoutePattern::parse("/users/{id}/orders").unwrap(),
            RoutePattern::parse("/static/*").unwrap(),
        ]);
        let spans: Vec<SpanRecord> = spans.into_iter().map(|s| routed(s, &patterns)).collect();
        assert_eq!(spans[13].route.as_deref(), Some("/static/*"));
        assert_same(&enc, &spans);
        enc.resource.attributes.insert("k8s.pod.name".into(), "p".repeat(200));
        enc.resource.attributes.insert("empty".into(), String::new());
        assert_same(&enc, &spans);
        enc.resource.attributes.clear();
        assert_same(&enc, &spans);
    }

    #[test]
    fn direct_encoding_decodes_to_the_spans() {
        let enc = encoder();
        let spans = varied();
        let bytes = ProtoWriter::default().encode(&enc, &spans);
        let req = ExportTraceServiceRequest::decode(bytes).unwrap();
        let rs = &req.resource_spans[0];
        let resource = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(resource.len(), 2);
        assert_eq!(resource[1].key, "service.name");
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "sidetrace");
        let got = &rs.scope_spans[0].spans;
        assert_eq!(got.len(), spans.len());
        let attr =
            |i: usize, k: &str| got[i].attributes.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.clone()?.value);
        let string = |v: &str| Some(Value::StringValue(v.into()));

        assert_eq!(got[0].name, "GET /users/{id}/orders");
        assert_eq!(got[0].trace_id, spans[0].trace_id.0);
        assert_eq!(got[0].kind, SpanKind::Server as i32);
        assert_eq!(got[0].flags, 0x101);
        assert_eq!(got[0].end_time_unix_nano - got[0].start_time_unix_nano, 1_234_000);
        assert_eq!(attr(0, "url.query"), string("page=2"));
        assert_eq!(attr(0, "server.address"), string("orders.svc"));
        assert_eq!(attr(0, "server.port"), Some(Value::IntValue(8080)));
        assert_eq!(attr(0, "client.address"), string("10.1.2.3"));
        assert_eq!(attr(0, "user_agent.original"), string("curl/8.5.0"));

        assert_eq!(got[1].kind, SpanKind::Client as i32);
        assert_eq!(got[1].parent_span_id, vec![7; 8]);
        assert_eq!(got[1].flags, 0x301);
        assert_eq!(got[1].trace_state, "st=caller:orders,vendor=x");
        assert_eq!(got[1].status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!(attr(1, "server.port"), Some(Value::IntValue(443)));
        assert_eq!(attr(1, "network.peer.address"), string("10.0.0.1"));

        assert_eq!(attr(2, "url.query"), string("user=a&TOKEN=REDACTED&x"));
        assert_eq!(attr(2, "error.type"), string("503"));
        assert_eq!(attr(3, "server.address"), string("grpc.svc"));
        assert_eq!(attr(3, "rpc.grpc.status_code"), Some(Value::IntValue(14)));
        assert_eq!(attr(3, "network.protocol.version"), string("2"));
        assert_eq!(attr(4, "server.address"), string("fe80::1"));
        assert_eq!(attr(4, "rpc.grpc.status_code"), Some(Value::IntValue(0)));
        assert_eq!(got[5].name, "CONNECT");
        assert_eq!(attr(5, "url.path"), None);
        assert_eq!(attr(5, "server.address"), string("db.example"));
        assert_eq!(got[6].name, "HTTP");
        assert_eq!(attr(6, "http.request.method_original"), string("PURGE"));
        assert_eq!(attr(6, "server.address"), string("::1"));
        assert_eq!(attr(6, "client.address"), string("2001:db8::5"));
        assert_eq!(got[7].flags, 0x100);
        assert_eq!(attr(7, "sidetrace.sampling.tail"), Some(Value::BoolValue(true)));
        assert_eq!(attr(7, "server.address"), string("host.example"));
        assert_eq!(attr(8, "user_agent.original"), string(""));
        assert_eq!(attr(8, "url.query"), string(""));
        assert_eq!(attr(9, "server.address"), string("named.upstream"));
        assert_eq!(attr(10, "server.address"), None);
        assert_eq!(attr(12, "http.request.body.size"), Some(Value::IntValue(-1)));
        assert_eq!(got[12].start_time_unix_nano, 0);
        assert_eq!(attr(12, "server.address"), string(""));
        assert_eq!(attr(13, "server.port"), Some(Value::IntValue(80)));
        let last = got.len() - 1;
        let strings = |v: &[&str]| {
            Some(Value::ArrayValue(ArrayValue {
                values: v.iter().map(|x| AnyValue { value: Some(Value::StringValue(x.to_string())) }).collect(),
            }))
        };
        assert_eq!(attr(last, "http.request.header.x-tenant"), strings(&["acme", ""]));
        assert_eq!(attr(last, "http.request.header.x-raw"), strings(&["caf\u{fffd}"]));
        assert_eq!(attr(last, "http.response.header.x-long"), strings(&[&"v".repeat(200)]));
    }

    #[test]
    fn plain_authorities_read_as_http_reads_them() {
        for a in ["h", "h.example:8080", ":80", ":", "h:", "h:99999", "h:0080", "a-b.c", "1.2.3.4:5", "-:-"] {
            let ours = plain_authority(a);
            let theirs = a.parse::<http::uri::Authority>().expect(a);
            assert_eq!(ours, Some((theirs.host(), theirs.port_u16())), "{a}");
        }
        for a in ["", "h:1:2", "[::1]:80", "u@h", "h h", "h%20", "h/x", "h?"] {
            assert_eq!(plain_authority(a), None, "{a}");
        }
    }

    #[test]
    fn direct_encoding_allocates_per_batch_not_per_span() {
        let enc = encoder();
        let spans = typical(512);
        let mut w = ProtoWriter::default();
        drop(w.encode(&enc, &spans));
        let before = allocs();
        for _ in 0..4 {
            drop(w.encode(&enc, &spans));
        }
        let held = w.encode(&enc, &spans);
        let borrowed = w.encode_borrowed(&enc, &spans).len();
        let n = allocs() - before;
        assert_eq!(held.len(), borrowed);
        assert!(n <= 6, "{n} allocations for 6 batches of 512 spans");
    }

    /// ns and allocations per span of OTLP/protobuf encoding in 512-span
    /// batches, through the message structs and written directly:
    /// `cargo test --release --lib otlp_encode_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn otlp_encode_cost() {
        let enc = encoder();
        let spans = typical(512);
        let rounds = 400;
        let per_span = |f: &mut dyn FnMut() -> usize| {
            let (a0, t0) = (allocs(), std::time::Instant::now());
            let bytes: usize = (0..rounds).map(|_| f()).sum();
            let n = (rounds * spans.len()) as f64;
            let ns = t0.elapsed().as_nanos() as f64 / n;
            (ns, (allocs() - a0) as f64 / n, bytes / rounds / spans.len())
        };
        let (ns, a, b) = per_span(&mut || enc.request(&spans).encode_to_vec().len());
        eprintln!("structs + prost: {ns:.0} ns/span, {a:.2} allocations/span, {b} bytes/span");
        let mut w = ProtoWriter::default();
        let (ns, a, b) = per_span(&mut || w.encode(&enc, &spans).len());
        eprintln!("direct:          {ns:.0} ns/span, {a:.3} allocations/span, {b} bytes/span");
        let (ns, a, b) = per_span(&mut || super::super::gzip(w.encode_borrowed(&enc, &spans)).len());
        eprintln!("direct + gzip:   {ns:.0} ns/span, {a:.3} allocations/span, {b} bytes/span");
        // For scale: what the pipeline spends per span before encoding.
        let raw: Vec<SpanRecord> =
            (0..spans.len() as u64).map(|i| routed(base(i), &RouteTemplates::default())).collect();
        let mut copies = raw.clone();
        let (ns, a, _) = per_span(&mut || {
            copies.clone_from_slice(&raw);
            copies.iter_mut().for_each(SpanRecord::compact);
            0
        });
        eprintln!("compact (+clone): {ns:.0} ns/span, {a:.2} allocations/span");
    }
}
