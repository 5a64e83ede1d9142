//! The access log: `access_log::format_line` for a span whose request
//! target, method, user agent and host come from the input. The JSON form is
//! one line of JSON that gives the path back; the text form is one line of
//! space-separated fields with no CR, LF or other control character, so no
//! request can forge or split a log line.
//!
//! Input: `target NUL user-agent NUL host NUL method`. A target or method
//! that `http` refuses is skipped (hyper refuses it before any span); the
//! other fields are kept when they are valid header values.
#![no_main]

use http::{HeaderValue, Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use sidetrace::access_log::format_line;
use sidetrace::config::AccessLogFormat;
use sidetrace::trace::{SpanId, SpanRecord, Stitching, TraceId};
use sidetrace::vocab::Direction;
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == 0);
    let Ok(uri) = Uri::try_from(parts.next().unwrap_or_default()) else { return };
    let user_agent = parts.next().and_then(|v| HeaderValue::from_bytes(v).ok());
    let host = parts.next().and_then(|v| HeaderValue::from_bytes(v).ok());
    let method = match parts.next() {
        Some(m) => match Method::from_bytes(m) {
            Ok(m) => m,
            Err(_) => return,
        },
        None => Method::GET,
    };
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_633_600);
    let span = SpanRecord {
        trace_id: TraceId(*b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36"),
        span_id: SpanId(*b"\x00\xf0\x67\xaa\x0b\xa9\x02\xb7"),
        parent_span_id: None,
        sampled: true,
        tail: false,
        probe: false,
        tracestate: None,
        direction: if data.len() % 2 == 0 { Direction::Inbound } else { Direction::Outbound },
        start,
        end: start + Duration::from_micros(1234),
        method,
        uri,
        route: None,
        scheme_https: false,
        version: Version::HTTP_11,
        host,
        upstream: None,
        client: "127.0.0.1:40000".parse().unwrap(),
        user_agent,
        peer_service: None,
        stitching: Stitching::None,
        status: Some(200),
        grpc_status: None,
        request_body_size: 0,
        response_body_size: 0,
        error: None,
        headers: Vec::new(),
    };
    let mut spans = vec![span.clone()];
    let mut compacted = span;
    compacted.compact();
    spans.push(compacted);
    for span in &spans {
        let mut json = String::new();
        format_line(span, AccessLogFormat::Json, &mut json);
        let body = json.strip_suffix('\n').unwrap_or_else(|| panic!("no final newline: {json:?}"));
        assert!(!body.contains(['\n', '\r']), "more than one JSON line: {json:?}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {json:?}"));
        assert_eq!(v["path"], span.uri.path());
        assert_eq!(v["method"], span.method.as_str());

        let mut text = String::new();
        format_line(span, AccessLogFormat::Text, &mut text);
        let body = text.strip_suffix('\n').unwrap_or_else(|| panic!("no final newline: {text:?}"));
        assert!(
            !body.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
            "a control character or line separator in a text line: {text:?}"
        );
        // Fields: time, direction, method, path, protocol, status, duration,
        // then key=value pairs; a path or method can add none.
        let fields: Vec<&str> = body.split(' ').collect();
        assert_eq!(fields.len(), 13, "{text:?}");
        assert_eq!(fields[2], span.method.as_str());
        for kv in &fields[7..] {
            assert!(kv.contains('='), "{kv:?} in {text:?}");
        }
    }
});
