//! Trace context propagation: W3C Trace Context (`traceparent`,
//! `tracestate`) and Zipkin B3 (single `b3` header and `X-B3-*` headers).
//!
//! Extraction never fails a request: anything malformed is ignored and the
//! proxy starts a new trace. Injection rewrites every format the request
//! arrived with, plus W3C, so an app that forwards `b3` keeps getting `b3`.

use super::ids::{SpanId, TraceId};
use super::sampling::Sampler;
use super::span::LinkedSpan;
use super::tracestate;
use http::header::{HeaderMap, HeaderName, HeaderValue};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub static B3: HeaderName = HeaderName::from_static("b3");
pub static X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub static X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub static X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub static X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub static X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// Which propagation formats a request carried, so they can be written back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Formats {
    pub w3c: bool,
    pub b3_single: bool,
    pub b3_multi: bool,
    /// B3 with a 64-bit trace id is written back with 64 bits.
    pub b3_64bit: bool,
}

/// A valid parent context taken from a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` when the caller deferred the decision (B3 without a sampling
    /// state): the local sampler decides, by trace id.
    pub sampled: Option<bool>,
    pub tracestate: Option<HeaderValue>,
}

#[derive(Clone, Debug, Default)]
pub struct Extracted {
    pub parent: Option<Parent>,
    /// B3 may carry only a sampling decision, with no ids.
    pub sampled_hint: Option<bool>,
    pub formats: Formats,
}

/// A request's own span context: the trace it continues (or starts), the
/// span the proxy makes for it, and the sampling decision. Forwarded, the
/// proxy's span becomes the parent of the next hop.
#[derive(Clone, Debug)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub sampled: bool,
    pub tracestate: Option<HeaderValue>,
    /// The formats to write back.
    pub formats: Formats,
}

impl SpanContext {
    /// The context phase of a request: its parent's context if it carried a
    /// valid one, a new trace otherwise, and the head sampler's decision.
    pub fn start(headers: &HeaderMap, path: &str, sampler: &Sampler) -> SpanContext {
        SpanContext::start_with(headers, path, sampler, || None)
    }

    /// `start`, but a request that carries no context at all (no ids, no
    /// sampling decision) asks `local_parent` for one: a span in this
    /// process that it continues (stitching).
    pub fn start_with(
        headers: &HeaderMap,
        path: &str,
        sampler: &Sampler,
        local_parent: impl FnOnce() -> Option<LinkedSpan>,
    ) -> SpanContext {
        let ctx = extract(headers);
        let local = match (&ctx.parent, ctx.sampled_hint) {
            (None, None) => local_parent(),
            _ => None,
        };
        let (trace_id, parent_span_id, parent_sampled, tracestate) = match (ctx.parent, local) {
            (Some(p), _) => (p.trace_id, Some(p.span_id), p.sampled, p.tracestate),
            (None, Some(l)) => (l.trace_id, Some(l.span_id), Some(l.sampled), None),
            (None, None) => (TraceId::random(), None, ctx.sampled_hint, None),
        };
        SpanContext {
            trace_id,
            span_id: SpanId::random(),
            parent_span_id,
            sampled: sampler.decide(trace_id, parent_sampled, path),
            tracestate,
            formats: ctx.formats,
        }
    }
}

pub fn extract(headers: &HeaderMap) -> Extracted {
    let mut out = Extracted::default();
    let mut tp = headers.get_all(&TRACEPARENT).iter();
    if let Some(first) = tp.next() {
        out.formats.w3c = true;
        // Two traceparent headers are ambiguous: the spec treats them as invalid.
        if tp.next().is_none()
            && let Some((trace_id, span_id, sampled)) = parse_traceparent(first.as_bytes())
        {
            out.parent =
                Some(Parent { trace_id, span_id, sampled: Some(sampled), tracestate: valid_tracestate(headers) });
        }
    }
    if let Some(b3) = headers.get(&B3) {
        out.formats.b3_single = true;
        if out.parent.is_none() {
            match parse_b3_single(b3.as_bytes()) {
                Some(B3::Context(p, is64)) => {
                    out.formats.b3_64bit = is64;
                    out.parent = Some(p);
                }
                Some(B3::SamplingOnly(s)) => out.sampled_hint = Some(s),
                None => {}
            }
        }
    }
    if headers.contains_key(&X_B3_TRACEID) || headers.contains_key(&X_B3_SAMPLED) {
        out.formats.b3_multi = true;
        if out.parent.is_none() {
            match parse_b3_multi(headers) {
                Some(B3::Context(p, is64)) => {
                    out.formats.b3_64bit = is64;
                    out.parent = Some(p);
                }
                Some(B3::SamplingOnly(s)) => out.sampled_hint = Some(s),
                None => {}
            }
        }
    }
    out
}

/// Parses `version-traceid-parentid-flags` per W3C Trace Context level 1,
/// section 3.2: version `ff` is invalid, version `00` must be exactly 55
/// bytes, and a higher version may append `-`-separated fields we ignore.
pub fn parse_traceparent(v: &[u8]) -> Option<(TraceId, SpanId, bool)> {
    if v.len() < 55 {
        return None;
    }
    let version = &v[0..2];
    if version == b"ff" || !version.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)) {
        return None;
    }
    if version == b"00" && v.len() != 55 {
        return None;
    }
    if v.len() > 55 && v[55] != b'-' {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = TraceId::from_hex(&v[3..35], true).filter(TraceId::is_valid)?;
    let span_id = SpanId::from_hex(&v[36..52], true).filter(SpanId::is_valid)?;
    let mut flags = [0u8; 1];
    let f = &v[53..55];
    if !f.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)) {
        return None;
    }
    let digit = |c: u8| if c.is_ascii_digit() { c - b'0' } else { c - b'a' + 10 };
    flags[0] = (digit(f[0]) << 4) | digit(f[1]);
    Some((trace_id, span_id, flags[0] & 0x01 == 1))
}

/// Returns the tracestate to propagate, or none when it breaks the rules of
/// W3C Trace Context Level 2 section 3.3 (`trace::tracestate`). Several
/// headers are joined as one list.
fn valid_tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all(&TRACESTATE).iter();
    let first = all.next()?;
    let rest: Vec<&HeaderValue> = all.collect();
    let joined;
    let value = if rest.is_empty() {
        first.clone()
    } else {
        let mut s = first.as_bytes().to_vec();
        for v in rest {
            s.push(b',');
            s.extend_from_slice(v.as_bytes());
        }
        joined = HeaderValue::from_bytes(&s).ok()?;
        joined
    };
    tracestate::is_valid(value.as_bytes()).then_some(value)
}

enum B3 {
    Context(Parent, bool),
    SamplingOnly(bool),
}

fn b3_trace_id(s: &[u8]) -> Option<(TraceId, bool)> {
    match s.len() {
        32 => TraceId::from_hex(s, false).map(|t| (t, false)),
        16 => TraceId::from_hex_64(s).map(|t| (t, true)),
        _ => None,
    }
    .filter(|(t, _)| t.is_valid())
}

fn b3_sampling(s: &[u8]) -> Option<bool> {
    match s {
        b"1" | b"d" | b"true" => Some(true),
        b"0" | b"false" => Some(false),
        _ => None,
    }
}

/// `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]` or a lone
/// sampling state, per openzipkin/b3-propagation.
fn parse_b3_single(v: &[u8]) -> Option<B3> {
    let mut parts = v.split(|&c| c == b'-');
    let first = parts.next()?;
    if first.len() <= 1 {
        return b3_sampling(first).map(B3::SamplingOnly).filter(|_| parts.next().is_none());
    }
    let (trace_id, is64) = b3_trace_id(first)?;
    let span_id = SpanId::from_hex(parts.next()?, false).filter(SpanId::is_valid)?;
    let sampled = match parts.next() {
        None => None,
        Some(s) => Some(b3_sampling(s)?),
    };
    if let Some(parent) = parts.next() {
        SpanId::from_hex(parent, false)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(B3::Context(Parent { trace_id, span_id, sampled, tracestate: None }, is64))
}

fn parse_b3_multi(h: &HeaderMap) -> Option<B3> {
    let debug = h.get(&X_B3_FLAGS).is_some_and(|v| v.as_bytes() == b"1");
    let sampled = match h.get(&X_B3_SAMPLED) {
        Some(v) => Some(b3_sampling(v.as_bytes())?),
        None => None,
    };
    let sampled = if debug { Some(true) } else { sampled };
    let Some(trace) = h.get(&X_B3_TRACEID) else {
        return sampled.map(B3::SamplingOnly);
    };
    let (trace_id, is64) = b3_trace_id(trace.as_bytes())?;
    let span_id = SpanId::from_hex(h.get(&X_B3_SPANID)?.as_bytes(), false).filter(SpanId::is_valid)?;
    Some(B3::Context(Parent { trace_id, span_id, sampled, tracestate: None }, is64))
}

/// Writes the outgoing context in W3C form and in every B3 form the
/// request arrived with, replacing what was there.
pub fn inject(headers: &mut HeaderMap, ctx: &SpanContext) {
    let formats = ctx.formats;
    let trace_hex = ctx.trace_id.hex();
    let span_hex = ctx.span_id.hex();
    let mut tp = [0u8; 55];
    tp[0..3].copy_from_slice(b"00-");
    tp[3..35].copy_from_slice(&trace_hex);
    tp[35] = b'-';
    tp[36..52].copy_from_slice(&span_hex);
    tp[52..55].copy_from_slice(if ctx.sampled { b"-01" } else { b"-00" });
    insert(headers, &TRACEPARENT, &tp);
    headers.remove(&TRACESTATE);
    if let Some(ts) = &ctx.tracestate {
        headers.insert(TRACESTATE.clone(), ts.clone());
    }
    let trace_b3: &[u8] = if formats.b3_64bit { &trace_hex[16..] } else { &trace_hex };
    let sampled: &[u8] = if ctx.sampled { b"1" } else { b"0" };
    if formats.b3_single {
        let mut v = Vec::with_capacity(70);
        v.extend_from_slice(trace_b3);
        v.push(b'-');
        v.extend_from_slice(&span_hex);
        v.push(b'-');
        v.extend_from_slice(sampled);
        if let Some(p) = ctx.parent_span_id {
            v.push(b'-');
            v.extend_from_slice(&p.hex());
        }
        insert(headers, &B3, &v);
    }
    if formats.b3_multi {
        insert(headers, &X_B3_TRACEID, trace_b3);
        insert(headers, &X_B3_SPANID, &span_hex);
        match ctx.parent_span_id {
            Some(p) => insert(headers, &X_B3_PARENTSPANID, &p.hex()),
            None => {
                headers.remove(&X_B3_PARENTSPANID);
            }
        }
        insert(headers, &X_B3_SAMPLED, sampled);
        headers.remove(&X_B3_FLAGS);
    }
}

fn insert(headers: &mut HeaderMap, name: &HeaderName, value: &[u8]) {
    // Our values are hex and dashes only, always valid header bytes.
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert(name.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn valid_traceparent() {
        let e = extract(&headers(&[("traceparent", GOOD), ("tracestate", "congo=t61rcWkgMzE")]));
        let p = e.parent.unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(p.sampled, Some(true));
        assert_eq!(p.tracestate.unwrap(), "congo=t61rcWkgMzE");
    }

    #[test]
    fn future_version_with_extra_fields() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future";
        assert!(parse_traceparent(v.as_bytes()).is_some());
    }

    #[test]
    fn malformed_traceparents_are_rejected() {
        let bad = [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x",
        ];
        for b in bad {
            assert!(parse_traceparent(b.as_bytes()).is_none(), "accepted {b:?}");
        }
    }

    #[test]
    fn two_traceparents_are_invalid() {
        let e = extract(&headers(&[("traceparent", GOOD), ("traceparent", GOOD)]));
        assert!(e.parent.is_none());
    }

    #[test]
    fn b3_single_and_multi() {
        let e = extract(&headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")]));
        assert!(e.formats.b3_single);
        assert_eq!(e.parent.unwrap().span_id.to_string(), "e457b5a2e4d86bd1");
        let e = extract(&headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-sampled", "0"),
        ]));
        let p = e.parent.unwrap();
        assert!(e.formats.b3_64bit && p.sampled == Some(false));
        assert_eq!(extract(&headers(&[("b3", "0")])).sampled_hint, Some(false));
    }

    #[test]
    fn inject_writes_back_formats() {
        let mut h = HeaderMap::new();
        let ctx = SpanContext {
            trace_id: TraceId::from_hex_64(b"a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex(b"00f067aa0ba902b7", true).unwrap(),
            parent_span_id: None,
            sampled: true,
            tracestate: None,
            formats: Formats { w3c: false, b3_single: true, b3_multi: true, b3_64bit: true },
        };
        inject(&mut h, &ctx);
        assert_eq!(h["traceparent"], "00-0000000000000000a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(h["b3"], "a3ce929d0e0e4736-00f067aa0ba902b7-1");
        assert_eq!(h["x-b3-traceid"], "a3ce929d0e0e4736");
        assert_eq!(h["x-b3-sampled"], "1");
    }
}
