//! Zipkin v2 JSON, mapped from the OTLP form of each span the way the
//! OpenTelemetry Zipkin exporter specification does it: kind, the service
//! as `localEndpoint.serviceName`, the peer as `remoteEndpoint`,
//! attributes as string tags, `otel.status_code` and `error` for errors.

use super::otlp::Encoder;
use crate::trace::SpanRecord;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinSpan {
    trace_id: String,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
    name: String,
    kind: &'static str,
    timestamp: u64,
    duration: u64,
    local_endpoint: Endpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_endpoint: Option<Endpoint>,
    tags: BTreeMap<String, String>,
}

#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn value_string(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        // The OpenTelemetry Zipkin mapping: an array is its JSON text.
        Some(Value::ArrayValue(a)) => {
            serde_json::to_string(&a.values.iter().map(|v| value_string(&Some(v.clone()))).collect::<Vec<_>>())
                .unwrap_or_default()
        }
        _ => String::new(),
    }
}

fn endpoint(addr: Option<String>, port: Option<u16>) -> Option<Endpoint> {
    let addr = addr?;
    let mut e = Endpoint { port, ..Default::default() };
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => e.ipv4 = Some(v4.to_string()),
        Ok(IpAddr::V6(v6)) => e.ipv6 = Some(v6.to_string()),
        // A host name is the peer's service, as Zipkin names endpoints.
        Err(_) => e.service_name = Some(addr),
    }
    Some(e)
}

pub fn encode(encoder: &Encoder, spans: &[SpanRecord]) -> Vec<ZipkinSpan> {
    spans.iter().map(|s| convert(encoder, &encoder.span(s))).collect()
}

fn convert(encoder: &Encoder, s: &Span) -> ZipkinSpan {
    let mut tags: BTreeMap<String, String> =
        s.attributes.iter().map(|kv| (kv.key.clone(), value_string(&kv.value))).collect();
    let tag = |k: &str| tags.get(k).cloned();
    let port = |k: &str| tags.get(k).and_then(|p| p.parse::<u16>().ok());
    let mut remote = if s.kind == SpanKind::Client as i32 {
        endpoint(
            tag("network.peer.address").or_else(|| tag("server.address")),
            port("network.peer.port").or(port("server.port")),
        )
    } else {
        endpoint(tag("client.address"), port("client.port"))
    };
    // Zipkin names the remote service on the endpoint, as peer.service does.
    if let (Some(r), Some(peer)) = (remote.as_mut(), tag("peer.service")) {
        r.service_name = Some(peer);
    }
    if let Some(status) = &s.status
        && status.code == StatusCode::Error as i32
    {
        let error = tag("error.type").unwrap_or_default();
        tags.insert("otel.status_code".into(), "ERROR".into());
        tags.insert("error".into(), error);
    }
    tags.insert("otel.scope.name".into(), "sidetrace".into());
    ZipkinSpan {
        trace_id: hex(&s.trace_id),
        id: hex(&s.span_id),
        parent_id: (!s.parent_span_id.is_empty()).then(|| hex(&s.parent_span_id)),
        name: s.name.clone(),
        kind: if s.kind == SpanKind::Client as i32 { "CLIENT" } else { "SERVER" },
        timestamp: s.start_time_unix_nano / 1000,
        duration: (s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) / 1000).max(1),
        local_endpoint: Endpoint {
            service_name: Some(encoder.resource.service_name().to_string()),
            ..Default::default()
        },
        remote_endpoint: remote,
        tags,
    }
}
