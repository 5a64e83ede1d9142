//! OTLP messages become rows: the columns the store indexes and searches,
//! and the span or log as the query API serves it (JSON, rendered once at
//! ingest so a read only concatenates). Spans and log records with ids that
//! break the OTLP rules are rejected here and counted, for the
//! `partial_success` answer; the rest of their request is kept.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::Serialize;
use serde_json::Value;

/// Span kinds as OTLP numbers them.
pub const KIND_SERVER: i64 = 2;
pub const KIND_CLIENT: i64 = 3;
pub const KIND_PRODUCER: i64 = 4;
pub const KIND_CONSUMER: i64 = 5;
/// `Status.code` ERROR.
pub const STATUS_ERROR: i64 = StatusCode::Error as i64;

#[derive(Debug, Clone)]
pub struct SpanRow {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: i64,
    pub start: i64,
    pub end: i64,
    pub status: i64,
    pub http_status: Option<i64>,
    pub route: Option<String>,
    pub peer_service: Option<String>,
    pub stitched: bool,
    /// The span as `/api/traces/{id}` serves it; `attr=key=value` searches
    /// look for `"key":value` in it (`attr_needles`).
    pub doc: String,
}

#[derive(Debug, Clone)]
pub struct LogRow {
    pub time: i64,
    pub trace_id: Option<String>,
    pub service: String,
    pub doc: String,
}

/// What one export request holds after the checks.
#[derive(Debug, Default)]
pub struct Batch {
    pub spans: Vec<SpanRow>,
    pub logs: Vec<LogRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.logs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.spans.len() + self.logs.len()
    }
}

/// Items refused, and the first reason, for `partial_success`.
#[derive(Debug, Default, PartialEq)]
pub struct Rejected {
    pub count: i64,
    pub first_reason: Option<String>,
}

impl Rejected {
    fn add(&mut self, reason: String) {
        self.count += 1;
        self.first_reason.get_or_insert(reason);
    }

    pub fn message(&self) -> String {
        match &self.first_reason {
            Some(r) if self.count > 1 => format!("{} rejected; the first: {r}", self.count),
            Some(r) => r.clone(),
            None => String::new(),
        }
    }
}

pub fn spans(req: &ExportTraceServiceRequest) -> (Vec<SpanRow>, Rejected) {
    let mut rows = Vec::new();
    let mut rejected = Rejected::default();
    for rs in &req.resource_spans {
        let resource = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        let service = service_name(resource);
        for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            match span_row(span, &service, resource) {
                Ok(row) => rows.push(row),
                Err(reason) => rejected.add(reason),
            }
        }
    }
    (rows, rejected)
}

pub fn logs(req: &ExportLogsServiceRequest) -> (Vec<LogRow>, Rejected) {
    let mut rows = Vec::new();
    let mut rejected = Rejected::default();
    for rl in &req.resource_logs {
        let resource = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        let service = service_name(resource);
        for record in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
            match log_row(record, &service) {
                Ok(row) => rows.push(row),
                Err(reason) => rejected.add(reason),
            }
        }
    }
    (rows, rejected)
}

fn service_name(resource: &[KeyValue]) -> String {
    resource
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        // The SDKs' own default when the resource names no service.
        .unwrap_or_else(|| "unknown_service".to_string())
}

/// A trace id: 16 bytes, not all zero (OTLP and W3C Trace Context).
fn trace_id(bytes: &[u8]) -> Result<String, String> {
    if bytes.len() != 16 || bytes.iter().all(|b| *b == 0) {
        return Err(format!("invalid trace_id {:?}: 16 bytes, not all zero", hex(bytes)));
    }
    Ok(hex(bytes))
}

fn span_id(bytes: &[u8], what: &str) -> Result<String, String> {
    if bytes.len() != 8 || bytes.iter().all(|b| *b == 0) {
        return Err(format!("invalid {what} {:?}: 8 bytes, not all zero", hex(bytes)));
    }
    Ok(hex(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn span_row(span: &Span, service: &str, resource: &[KeyValue]) -> Result<SpanRow, String> {
    let trace = trace_id(&span.trace_id)?;
    let id = span_id(&span.span_id, "span_id")?;
    let parent = match span.parent_span_id.as_slice() {
        [] => None,
        p => Some(span_id(p, "parent_span_id")?),
    };
    // Nanoseconds past 2262 do not fit SQLite's integers; no clock sends them.
    let start = i64::try_from(span.start_time_unix_nano).map_err(|_| "start_time_unix_nano out of range")?;
    let end = i64::try_from(span.end_time_unix_nano).map_err(|_| "end_time_unix_nano out of range")?.max(start);
    let attrs = span.attributes.as_slice();
    let status = span.status.as_ref();
    let http_status = ["http.response.status_code", "http.status_code"].iter().find_map(|k| match find(attrs, k)? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    });
    let text = |key: &str| match find(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    };
    let doc = SpanDoc {
        trace_id: &trace,
        span_id: &id,
        parent_span_id: parent.as_deref(),
        name: &span.name,
        kind: kind_name(span.kind),
        service,
        start_unix_nano: start,
        end_unix_nano: end,
        duration_ns: end - start,
        status: StatusDoc {
            code: status_name(status.map(|s| s.code).unwrap_or_default()),
            message: status.map(|s| s.message.as_str()).unwrap_or_default(),
        },
        attributes: Attrs(attrs),
        resource: Attrs(resource),
        links: span
            .links
            .iter()
            .map(|l| LinkDoc { trace_id: hex(&l.trace_id), span_id: hex(&l.span_id), attributes: Attrs(&l.attributes) })
            .collect(),
        events: span
            .events
            .iter()
            .map(|e| EventDoc { time_unix_nano: e.time_unix_nano, name: &e.name, attributes: Attrs(&e.attributes) })
            .collect(),
    };
    Ok(SpanRow {
        route: text("http.route"),
        peer_service: text("peer.service"),
        stitched: matches!(find(attrs, "sidetrace.stitched"), Some(any_value::Value::BoolValue(true))),
        doc: serde_json::to_string(&doc).map_err(|e| format!("span {id}: {e}"))?,
        trace_id: trace,
        span_id: id,
        parent_span_id: parent,
        service: service.to_string(),
        name: span.name.clone(),
        kind: i64::from(span.kind),
        start,
        end,
        status: i64::from(status.map(|s| s.code).unwrap_or_default()),
        http_status,
    })
}

/// An attribute's value; the last of a repeated key, as in the document.
fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs.iter().rev().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
}

/// A span as the API serves it, written straight from the OTLP message
/// (no intermediate JSON tree: this runs for every span received).
#[derive(Serialize)]
struct SpanDoc<'a> {
    trace_id: &'a str,
    span_id: &'a str,
    parent_span_id: Option<&'a str>,
    name: &'a str,
    kind: &'static str,
    service: &'a str,
    #[serde(serialize_with = "as_text")]
    start_unix_nano: i64,
    #[serde(serialize_with = "as_text")]
    end_unix_nano: i64,
    duration_ns: i64,
    status: StatusDoc<'a>,
    attributes: Attrs<'a>,
    resource: Attrs<'a>,
    links: Vec<LinkDoc<'a>>,
    events: Vec<EventDoc<'a>>,
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct LinkDoc<'a> {
    trace_id: String,
    span_id: String,
    attributes: Attrs<'a>,
}

#[derive(Serialize)]
struct EventDoc<'a> {
    #[serde(serialize_with = "as_text")]
    time_unix_nano: u64,
    name: &'a str,
    attributes: Attrs<'a>,
}

/// Unix nanoseconds as a JSON string: a u64 does not fit a JS number.
fn as_text<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Attributes as a JSON object (a repeated key is written twice; JSON
/// readers keep the last, as `find` does).
struct Attrs<'a>(&'a [KeyValue]);

impl Serialize for Attrs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for kv in self.0 {
            map.serialize_entry(&kv.key, &Any(kv.value.as_ref()))?;
        }
        map.end()
    }
}

struct Any<'a>(Option<&'a AnyValue>);

impl Serialize for Any<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        match self.0.and_then(|v| v.value.as_ref()) {
            // `StringValueStrindex` points into a profiles string table,
            // which traces and logs do not have.
            None | Some(any_value::Value::StringValueStrindex(_)) => s.serialize_unit(),
            Some(any_value::Value::StringValue(v)) => s.serialize_str(v),
            Some(any_value::Value::BoolValue(b)) => s.serialize_bool(*b),
            Some(any_value::Value::IntValue(i)) => s.serialize_i64(*i),
            Some(any_value::Value::DoubleValue(d)) if d.is_finite() => s.serialize_f64(*d),
            Some(any_value::Value::DoubleValue(_)) => s.serialize_unit(),
            Some(any_value::Value::ArrayValue(a)) => s.collect_seq(a.values.iter().map(|v| Any(Some(v)))),
            Some(any_value::Value::KvlistValue(kv)) => Attrs(&kv.values).serialize(s),
            // OTLP/JSON writes bytes as base64; so does the API.
            Some(any_value::Value::BytesValue(b)) => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
            }
        }
    }
}

fn log_row(record: &LogRecord, service: &str) -> Result<LogRow, String> {
    let trace = match record.trace_id.as_slice() {
        [] => None,
        t => Some(trace_id(t)?),
    };
    let span = match record.span_id.as_slice() {
        [] => None,
        s => Some(span_id(s, "span_id")?),
    };
    // OTLP: when the event's time is unknown, the time it was observed.
    let time = if record.time_unix_nano != 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
    let time = i64::try_from(time).map_err(|_| "time_unix_nano out of range")?;
    let severity = if record.severity_text.is_empty() {
        severity_name(record.severity_number)
    } else {
        record.severity_text.as_str()
    };
    // The API's body is text: a string as it is, anything else as JSON.
    let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => serde_json::to_string(&Any(record.body.as_ref())).map_err(|e| e.to_string())?,
        None => String::new(),
    };
    let doc = LogDoc {
        time_unix_nano: time,
        trace_id: trace.as_deref(),
        span_id: span.as_deref(),
        service,
        severity,
        body: &body,
        attributes: Attrs(&record.attributes),
    };
    let doc = serde_json::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(LogRow { time, trace_id: trace, service: service.to_string(), doc })
}

#[derive(Serialize)]
struct LogDoc<'a> {
    #[serde(serialize_with = "as_text")]
    time_unix_nano: i64,
    trace_id: Option<&'a str>,
    span_id: Option<&'a str>,
    service: &'a str,
    severity: &'a str,
    body: &'a str,
    attributes: Attrs<'a>,
}

/// OTLP's SeverityNumber ranges, by their short names.
fn severity_name(n: i32) -> &'static str {
    match n {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "UNSPECIFIED",
    }
}

pub fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "INTERNAL",
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

fn status_name(code: i32) -> &'static str {
    match code {
        1 => "OK",
        2 => "ERROR",
        _ => "UNSET",
    }
}

/// What `attr=key=value` looks for in a span's document: the attribute as
/// its JSON object holds it, `"key":"value"` for a string, and, when the
/// value reads as a number or a bool, `"key":value` followed by `,` or `}`
/// (so `200` does not match `2001`). The document's own fields (`name`,
/// `service`, `kind`, `code`, `message`) are written the same way, so an
/// attribute named like one of them can also match the field: the price of
/// searching the stored JSON instead of a second copy of every attribute.
pub fn attr_needles(key: &str, value: &str) -> Vec<String> {
    let key = Value::String(key.to_string()).to_string();
    let mut needles = vec![format!("{key}:{}", Value::String(value.to_string()))];
    let scalar = value.parse::<i64>().is_ok()
        || value.parse::<f64>().is_ok_and(f64::is_finite)
        || value == "true"
        || value == "false";
    if scalar {
        needles.push(format!("{key}:{value},"));
        needles.push(format!("{key}:{value}}}"));
    }
    needles
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: vec![kv("service.name", any_value::Value::StringValue("shop".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn bad_ids_are_rejected_and_the_rest_kept() {
        let good = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /x".into(),
            kind: 2,
            start_time_unix_nano: 10,
            end_time_unix_nano: 30,
            attributes: vec![kv("http.response.status_code", any_value::Value::IntValue(503))],
            ..Default::default()
        };
        let short = Span { trace_id: vec![1; 15], ..good.clone() };
        let zero = Span { span_id: vec![0; 8], ..good.clone() };
        let (rows, rejected) = spans(&request(vec![good, short, zero]));
        assert_eq!(rows.len(), 1);
        assert_eq!(rejected.count, 2);
        assert!(rejected.message().contains("invalid trace_id"), "{}", rejected.message());
        let row = &rows[0];
        assert_eq!((row.service.as_str(), row.http_status, row.end - row.start), ("shop", Some(503), 20));
        let found = |k, v| attr_needles(k, v).iter().any(|n| row.doc.contains(n.as_str()));
        assert!(found("http.response.status_code", "503"));
        assert!(!found("http.response.status_code", "50"));
        assert!(found("service.name", "shop"));
        assert!(!found("service.name", "sho"));
        let doc: Value = serde_json::from_str(&row.doc).unwrap();
        assert_eq!(doc["kind"], "SERVER");
        assert_eq!(doc["start_unix_nano"], "10");
        assert_eq!(doc["attributes"]["http.response.status_code"], 503);
    }
}
