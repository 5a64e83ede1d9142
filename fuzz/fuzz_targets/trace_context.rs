//! Trace context: `trace::context::extract` on headers built from the
//! input, `inject` and extract again, and the `trace::tracestate` helpers.
//!
//! Input: lines; each line's first byte picks the header (its value mod 8
//! indexes `NAMES`, so `0`..`7` in a seed), the rest is the value. Lines
//! whose value is not a valid header value are skipped, as hyper would
//! never hand them over.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sidetrace::trace::context::{self, SpanContext};
use sidetrace::trace::{SpanId, tracestate};

const NAMES: [&str; 8] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&which, value)) = line.split_first() else { continue };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(NAMES[which as usize % NAMES.len()]), v);
        }
    }
    let extracted = context::extract(&headers);

    // The proxy's tracestate entry, with a service name from the input.
    let service = String::from_utf8_lossy(data);
    let value = tracestate::as_value(&service);
    assert!(tracestate::value_ok(value.as_bytes()), "as_value gave an invalid value {value:?}");
    let entry = HeaderValue::from_str(&format!("{}={value}", tracestate::KEY)).expect("an entry is a header value");
    for ts in headers.get_all(&context::TRACESTATE) {
        let valid = tracestate::is_valid(ts.as_bytes());
        let _ = tracestate::own_entry(ts.as_bytes());
        if let Some(out) = tracestate::with_own_entry(Some(ts), &entry) {
            if valid {
                assert!(tracestate::is_valid(out.as_bytes()), "{ts:?} + own entry = invalid {out:?}");
                assert_eq!(tracestate::own_entry(out.as_bytes()), Some(value.as_str()));
                let members = out.as_bytes().split(|&b| b == b',').count();
                assert!(members <= tracestate::MAX_MEMBERS, "{members} members");
            }
        }
    }

    let Some(parent) = extracted.parent.clone() else {
        return;
    };
    assert!(parent.trace_id.is_valid() && parent.span_id.is_valid());
    if let Some(ts) = &parent.tracestate {
        assert!(tracestate::is_valid(ts.as_bytes()), "an invalid tracestate was kept: {ts:?}");
    }
    // Forward as the proxy does: the parent's ids (a fixed child span id
    // for the parent) in every format the request arrived with, over what
    // it carried.
    let sampled = parent.sampled.unwrap_or(false);
    let ctx = SpanContext {
        trace_id: parent.trace_id,
        span_id: parent.span_id,
        parent_span_id: Some(SpanId(*b"\x01\x02\x03\x04\x05\x06\x07\x08")),
        sampled,
        tracestate: parent.tracestate.clone(),
        formats: extracted.formats,
    };
    let mut out = headers.clone();
    context::inject(&mut out, &ctx);
    let again = context::extract(&out);
    let p = again.parent.unwrap_or_else(|| panic!("injected headers do not parse: {out:?}"));
    assert_eq!((p.trace_id, p.span_id, p.sampled), (ctx.trace_id, ctx.span_id, Some(sampled)), "{out:?}");
    assert_eq!(p.tracestate, ctx.tracestate);
    assert!(again.formats.w3c);

    // Each B3 form written back parses alone to the same ids.
    let alone = |names: &[&HeaderName]| {
        let mut h = HeaderMap::new();
        for name in names {
            for v in out.get_all(*name) {
                h.append((*name).clone(), v.clone());
            }
        }
        context::extract(&h)
    };
    if extracted.formats.b3_single {
        let e = alone(&[&context::B3]);
        let p = e.parent.unwrap_or_else(|| panic!("b3 written back does not parse: {:?}", out.get(&context::B3)));
        assert_eq!((p.trace_id, p.span_id, p.sampled), (ctx.trace_id, ctx.span_id, Some(sampled)));
    }
    if extracted.formats.b3_multi {
        let e = alone(&[&context::X_B3_TRACEID, &context::X_B3_SPANID, &context::X_B3_SAMPLED, &context::X_B3_FLAGS]);
        let p = e.parent.unwrap_or_else(|| panic!("X-B3-* written back do not parse: {out:?}"));
        assert_eq!((p.trace_id, p.span_id, p.sampled), (ctx.trace_id, ctx.span_id, Some(sampled)));
    }
});
