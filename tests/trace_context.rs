//! Trace context through the proxy: the span joins the caller's trace, the
//! app receives the proxy's span as its parent, malformed headers start a
//! new trace without failing the request, and B3 comes back as B3.

mod support;

use sidetrace::trace::context::parse_traceparent;
use sidetrace::vocab::Direction;
use support::{Client, TestProxy, apps};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_traceparent_joins_the_trace() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let url = proxy.inbound_url();
    let r = Client::http1()
        .get(&format!("{url}/users/42?token=s3cret&page=2"))
        .header("traceparent", &format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        .send()
        .await;
    assert_eq!(r.status, 200);
    let span = proxy.wait_for_spans(1).await.remove(0);
    assert_eq!(span.trace_id.to_string(), TRACE);
    assert_eq!(span.parent_span_id.unwrap().to_string(), PARENT);
    assert!(span.sampled);
    assert_eq!(span.direction, Direction::Inbound);

    // The app's traceparent: same trace, parent-id = the span just recorded.
    let seen = app.last();
    let tp = seen.headers["traceparent"].to_str().unwrap().to_string();
    let (trace, parent, sampled) = parse_traceparent(tp.as_bytes()).expect("valid traceparent forwarded");
    assert_eq!(trace.to_string(), TRACE);
    assert_eq!(parent, span.span_id);
    assert!(sampled);
    assert_eq!(seen.headers["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");

    // What /api/traces shows for it, as OTLP/JSON.
    let r = Client::http1().get(&format!("{}/api/traces/{TRACE}", proxy.admin_url())).send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let s = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(s["traceId"], TRACE);
    assert_eq!(s["parentSpanId"], PARENT);
    assert_eq!(s["spanId"], span.span_id.to_string());
    assert_eq!(s["name"], "GET /users/{id}");
    assert_eq!(s["kind"], 2, "SERVER");
    let attr = |k: &str| s["attributes"].as_array().unwrap().iter().find(|a| a["key"] == k).map(|a| a["value"].clone());
    assert_eq!(attr("url.query").unwrap()["stringValue"], "token=REDACTED&page=2");
    assert_eq!(attr("http.route").unwrap()["stringValue"], "/users/{id}");
    let resource = &json["resourceSpans"][0]["resource"]["attributes"];
    assert!(
        resource
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "test-service")
    );
}

/// At least twenty malformed contexts: each request succeeds, starts a new
/// trace (no parent), and the app gets a fresh valid traceparent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_context_starts_a_new_trace() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let url = proxy.inbound_url();
    let t = TRACE;
    let p = PARENT;
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![("traceparent", String::new())],
        vec![("traceparent", "garbage".into())],
        vec![("traceparent", format!("ff-{t}-{p}-01"))],
        vec![("traceparent", format!("00-{}-{p}-01", "0".repeat(32)))],
        vec![("traceparent", format!("00-{t}-{}-01", "0".repeat(16)))],
        vec![("traceparent", format!("00-{}-{p}-01", t.to_uppercase()))],
        vec![("traceparent", format!("00-{t}-{}-01", p.to_uppercase()))],
        vec![("traceparent", format!("00-{t}-{p}-01-extra"))],
        vec![("traceparent", format!("00-{}-{p}-01", &t[1..]))],
        vec![("traceparent", format!("00-{t}-{}-01", &p[1..]))],
        vec![("traceparent", format!("00-{t}-{p}-1"))],
        vec![("traceparent", format!("00-{t}-{p}-0x"))],
        vec![("traceparent", format!("0-{t}-{p}-01"))],
        vec![("traceparent", format!("00_{t}_{p}_01"))],
        vec![("traceparent", format!("00-{t}-{p}01"))],
        vec![("traceparent", format!("zz-{t}-{p}-01"))],
        vec![("traceparent", format!("cc-{t}-{p}-01.what"))],
        vec![("traceparent", format!("00-{}-{p}-01", "g".repeat(32)))],
        vec![("traceparent", format!("00-{t}-{p}-01,00-{t}-{p}-01"))],
        vec![("traceparent", format!("00-{t}-{p}-01")), ("traceparent", format!("00-{t}-{p}-01"))],
        vec![("b3", format!("{t}-{}", "0".repeat(16)))],
        vec![("b3", format!("{}-{p}-1", "0".repeat(32)))],
        vec![("b3", format!("{t}-{p}-x"))],
        vec![("b3", t.to_string())],
        vec![("x-b3-traceid", "nothex".into()), ("x-b3-spanid", p.into())],
        vec![("x-b3-traceid", t.into())],
    ];
    assert!(cases.len() >= 20);
    for (i, headers) in cases.iter().enumerate() {
        let mut call = Client::http1().get(&format!("{url}/case/{i}"));
        for (k, v) in headers {
            call = call.header(k, v);
        }
        assert_eq!(call.send().await.status, 200, "case {i} {headers:?} failed the request");
        let span = proxy.wait_for_spans(i + 1).await.pop().unwrap();
        assert_eq!(span.uri.path(), format!("/case/{i}"));
        assert!(span.parent_span_id.is_none(), "case {i} {headers:?} kept a parent");
        assert_ne!(span.trace_id.to_string(), TRACE, "case {i} {headers:?} kept the trace id");
        let tp = app.last().headers["traceparent"].to_str().unwrap().to_string();
        let (trace, parent, _) =
            parse_traceparent(tp.as_bytes()).unwrap_or_else(|| panic!("case {i}: bad traceparent sent {tp}"));
        assert_eq!((trace, parent), (span.trace_id, span.span_id), "case {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_in_b3_out() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let url = proxy.inbound_url();
    // Single header, 128-bit, not sampled: forwarded as such, and not
    // recorded (the caller decided against sampling this trace).
    let get = async |path: &str, headers: &[(&str, String)]| {
        let mut call = Client::http1().get(&format!("{url}{path}"));
        for (k, v) in headers {
            call = call.header(k, v);
        }
        assert_eq!(call.send().await.status, 200, "{path} {headers:?}");
    };
    get("/single", &[("b3", format!("{TRACE}-{PARENT}-0"))]).await;
    let seen = app.last();
    let b3 = seen.headers["b3"].to_str().unwrap().to_string();
    let parts: Vec<&str> = b3.split('-').collect();
    assert_eq!((parts[0], parts[2], parts[3]), (TRACE, "0", PARENT), "{b3}");
    assert_eq!(seen.headers["traceparent"], format!("00-{TRACE}-{}-00", parts[1]));
    assert!(!seen.headers.contains_key("x-b3-traceid"), "no multi headers were sent, none come back");
    // Sampled: recorded, and the app's b3 names the recorded span.
    get("/single", &[("b3", format!("{TRACE}-{PARENT}-1"))]).await;
    let span = proxy.wait_for_spans(1).await.pop().unwrap();
    assert_eq!(span.trace_id.to_string(), TRACE);
    assert!(span.sampled);
    assert_eq!(app.last().headers["b3"], format!("{TRACE}-{}-1-{PARENT}", span.span_id));
    assert_eq!(proxy.sidecar().ring.len(), 1, "the unsampled request left no span");

    // Multi headers, 64-bit trace id, sampled: written back as 64-bit multi headers.
    let multi = [
        ("X-B3-TraceId", "a3ce929d0e0e4736".to_string()),
        ("X-B3-SpanId", PARENT.to_string()),
        ("X-B3-Sampled", "1".to_string()),
    ];
    get("/multi", &multi).await;
    let span = proxy.wait_for_spans(2).await.pop().unwrap();
    assert_eq!(span.trace_id.to_string(), "0000000000000000a3ce929d0e0e4736");
    assert_eq!(span.parent_span_id.unwrap().to_string(), PARENT);
    let seen = app.last();
    assert_eq!(seen.headers["x-b3-traceid"], "a3ce929d0e0e4736");
    assert_eq!(seen.headers["x-b3-spanid"], span.span_id.to_string());
    assert_eq!(seen.headers["x-b3-parentspanid"], PARENT);
    assert_eq!(seen.headers["x-b3-sampled"], "1");
    assert!(!seen.headers.contains_key("b3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_context_starts_a_trace_and_outbound_makes_client_spans() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(apps::refusing()).start().await;
    let outbound = proxy.outbound.unwrap();
    // HTTP_PROXY style: absolute-form URI to the outbound listener.
    let r = Client::http1().get(&format!("http://{}/orders/7", app.addr)).via(outbound).send().await;
    assert_eq!(r.text(), "hello from the app\n");
    let span = proxy.wait_for_spans(1).await.pop().unwrap();
    assert_eq!(span.direction, Direction::Outbound);
    assert!(span.parent_span_id.is_none() && span.sampled);
    let seen = app.last();
    assert_eq!(seen.uri, "/orders/7", "the origin gets origin-form");
    assert_eq!(seen.headers["host"], app.addr.to_string());
    let (trace, parent, _) = parse_traceparent(seen.headers["traceparent"].as_bytes()).unwrap();
    assert_eq!((trace, parent), (span.trace_id, span.span_id));
    let otlp = proxy.sidecar().encoder.span(&span);
    assert_eq!(otlp.kind, 3, "CLIENT");
    assert_eq!(otlp.name, "GET /orders/{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_spans_or_logs() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let url = proxy.inbound_url();
    let r = Client::http1()
        .get(&format!("{url}/status/200?api_key=topsecret-3"))
        .header("authorization", "Bearer topsecret-1")
        .header("cookie", "session=topsecret-2")
        .send()
        .await;
    assert_eq!(r.status, 200);
    let span = proxy.wait_for_spans(1).await.pop().unwrap();
    let otlp = serde_json::to_string(&proxy.sidecar().encoder.request(std::slice::from_ref(&span))).unwrap();
    let mut line = String::new();
    sidetrace::access_log::format_line(&span, sidetrace::config::AccessLogFormat::Json, &mut line);
    sidetrace::access_log::format_line(&span, sidetrace::config::AccessLogFormat::Text, &mut line);
    for secret in ["topsecret-1", "topsecret-2", "topsecret-3"] {
        assert!(!otlp.contains(secret), "{secret} in span: {otlp}");
        assert!(!line.contains(secret), "{secret} in access log: {line}");
    }
    // The app still gets its credentials: the proxy only keeps them out of telemetry.
    assert_eq!(app.last().headers["authorization"], "Bearer topsecret-1");
}
