//! The OpenTelemetry semantic-convention view of a span record: its name,
//! kind, status and HTTP attributes (conventions v1.26, HTTP stable since
//! v1.23), decided once here and written by every encoding (`export::otlp`
//! message structs, `export::otlp_wire` protobuf, Zipkin, `/api/traces`).
//!
//! The view borrows from the record and from a reusable `Scratch`, so
//! deciding what a span says allocates nothing per span.

use super::SpanRecord;
use super::capture::{Captured, MAX_NAMES};
use super::redact::redact_query;
use super::span::{LinkedSpan, Stitching, Upstream};
use crate::vocab::{Direction, ErrorType, method_attr, protocol_version};
use http::Method;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use std::borrow::Cow;
use std::time::UNIX_EPOCH;

/// The semantic-conventions version the attributes follow.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";
/// OTLP span flags: bits 0-7 are the W3C trace flags; bit 8 says whether
/// bit 9 (parent is remote) is known.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Everything a span's OTLP form says beyond its ids, decided once for
/// every encoding: OTLP message structs, OTLP/protobuf written directly,
/// Zipkin. Strings it has to make go into `scratch`, which the caller
/// reuses from span to span; `redact_query_keys` are lowercase.
pub fn view<'a>(s: &'a SpanRecord, redact_query_keys: &[String], scratch: &'a mut Scratch) -> SpanView<'a> {
    scratch.text.clear();
    let method = method_attr(&s.method);
    let connect = s.method == Method::CONNECT;
    let route = s.route.as_deref().filter(|_| !connect);
    let name = match (route, method) {
        (_, "_OTHER") => Text::Str("HTTP"),
        (None, m) => Text::Str(m),
        (Some(r), m) => {
            let at = scratch.text.len();
            scratch.text.push_str(m);
            scratch.text.push(' ');
            scratch.text.push_str(r);
            Text::At(at, scratch.text.len())
        }
    };
    let query = match s.uri.query() {
        Some(q) if !connect => Some(match redact_query(q, redact_query_keys) {
            Cow::Borrowed(q) => Text::Str(q),
            Cow::Owned(q) => scratch.push(&q),
        }),
        _ => None,
    };
    let (host, port) = server_address(s, scratch);
    let peer = match (s.direction, &s.upstream) {
        (Direction::Inbound, _) => Some(("client.address", "client.port", s.client)),
        (Direction::Outbound, Some(Upstream::Addr(a))) => Some(("network.peer.address", "network.peer.port", *a)),
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
        // A stitched span's parent is the inbound span in this process.
        flags: u32::from(s.sampled)
            | HAS_IS_REMOTE
            | if s.parent_span_id.is_some() && s.stitching != Stitching::Joined { IS_REMOTE } else { 0 },
        kind: match s.direction {
            Direction::Inbound => SpanKind::Server,
            Direction::Outbound => SpanKind::Client,
        },
        start_nanos: nanos(s.start),
        end_nanos: nanos(s.end),
        status: if s.is_error() { StatusCode::Error } else { StatusCode::Unset },
        attrs: [("", AttrValue::Bool(false)); MAX_ATTRS],
        len: 0,
        links: match &s.stitching {
            Stitching::Linked { links, .. } => links,
            _ => &[],
        },
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
        if let Some(r) = route {
            v.push("http.route", AttrValue::Str(r));
        }
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
    if let Some(peer) = s.peer_service() {
        v.push("peer.service", AttrValue::Str(peer));
    }
    match &s.stitching {
        Stitching::None => {}
        Stitching::Joined => v.push("sidetrace.stitched", AttrValue::Bool(true)),
        Stitching::Linked { candidates, .. } => {
            v.push("sidetrace.stitch.candidates", AttrValue::Int((*candidates).into()))
        }
    }
    if s.tail {
        v.push("sidetrace.sampling.tail", AttrValue::Bool(true));
    }
    // A name's values lie together in the record: one array each.
    let mut rest = &s.headers[..];
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|c| c.key == first.key).count();
        if v.len < MAX_ATTRS {
            v.push(first.key, AttrValue::Strs(&rest[..n]));
        }
        rest = &rest[n..];
    }
    v
}

/// A header value as an attribute's text: header values are bytes, and
/// the rare one that is not UTF-8 is written with replacement characters.
pub fn header_text(v: &http::HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(v.as_bytes())
}

/// OTLP flags of a link to a span in this process: its W3C flags, and
/// "not remote".
pub fn link_flags(l: &LinkedSpan) -> u32 {
    u32::from(l.sampled) | HAS_IS_REMOTE
}

fn nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The most attributes `view` ever sets on one span: its own, and one per
/// captured header name.
const MAX_ATTRS: usize = 24 + 2 * MAX_NAMES;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttrValue<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    /// A captured header's values, as a string array.
    Strs(&'a [Captured]),
}

/// A span's name, status and attributes, borrowed from the record and
/// from a `Scratch`, so that neither encoding allocates to decide them.
pub struct SpanView<'a> {
    pub name: &'a str,
    pub trace_state: &'a str,
    pub flags: u32,
    pub kind: SpanKind,
    pub start_nanos: u64,
    pub end_nanos: u64,
    pub status: StatusCode,
    /// The inbound spans an unstitched outbound call links to.
    pub links: &'a [LinkedSpan],
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
/// (name, formatted addresses), kept between spans so their
/// buffers are allocated once rather than once per span.
#[derive(Default)]
pub struct Scratch {
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
        Some(Upstream::Addr(a)) => (Some(scratch.push_ip(a.ip())), Some(a.port())),
        Some(Upstream::Name(n)) => (Some(Text::Str(n.host())), n.port_u16()),
        None => (None, None),
    }
}

/// Host and port of an authority made only of letters, digits, dots,
/// dashes and at most one colon, the common case, read without the
/// allocation `http::uri::Authority` parsing makes. Anything else is
/// `None`, for the full parser. Such an authority is always valid to
/// `http`, and its host and port are found the same way.
pub fn plain_authority(a: &str) -> Option<(&str, Option<u16>)> {
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
