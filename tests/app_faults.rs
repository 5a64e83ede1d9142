//! The app failing under the proxy, as a process would: killed (SIGKILL)
//! mid-answer or before answering, not listening, frozen (SIGSTOP), or
//! closing a kept connection. Each fault gets its documented answer (README,
//! "Upstream failures are honest"), an error span the collector receives
//! with its `error.type`, and a count in the request-duration histogram
//! labelled with the same `error_type`; and the proxy keeps serving: a
//! healthy app through the same proxy at once, and the same app once it is
//! back on its port.
//!
//! The app that dies is `apps::killable`: this test binary run again with
//! only `killable_app` selected.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::apps::Close;
use support::client::Failure;
use support::collector::SidetraceCollector;
use support::{Client, Proto, TestProxy, apps};

/// Not a test: the killable app's process (`apps::killable`).
#[test]
#[ignore = "the killable app's process, started by the tests below"]
fn killable_app() {
    apps::killable_main();
}

fn killable(port: u16) -> apps::Killable {
    apps::killable("killable_app", port)
}

/// A sidecar in this process for `app`, exporting to `collector` as
/// `service`.
async fn proxy(app: std::net::SocketAddr, service: &str, collector: &SidetraceCollector, flags: &[&str]) -> TestProxy {
    let export = ["--otlp-endpoint", &collector.http_url(), "--export-delay", "50ms"];
    TestProxy::to(app).service(service).flags(&export).flags(flags).start().await
}

/// The one span of `service` for `path` that the collector received, once
/// it has; it must be an error span with `error_type` and `status`.
async fn error_span(collector: &SidetraceCollector, service: &str, path: &str, error_type: &str, status: u16) -> Value {
    let query = format!("/api/traces?service={service}&attr=url.path={path}");
    let found = support::wait::until(Duration::from_secs(10), async || {
        let list = collector.json(&query).await;
        let id = list["traces"].as_array()?.first()?["trace_id"].as_str()?.to_string();
        let trace = collector.json(&format!("/api/traces/{id}")).await;
        trace["spans"].as_array()?.first().cloned()
    })
    .await;
    let span = found.unwrap_or_else(|| panic!("no span of {service} for {path} reached the collector"));
    assert_eq!(span["status"]["code"], "ERROR", "{span:#}");
    assert_eq!(span["attributes"]["error.type"], error_type, "{span:#}");
    assert_eq!(span["attributes"]["http.response.status_code"], status, "{span:#}");
    span
}

/// Requests the proxy counted with `error_type` and `status` over `proto`.
async fn counted(proxy: &TestProxy, error_type: &str, status: &str, proto: Proto) -> f64 {
    let version = if proto == Proto::Http1 { "1.1" } else { "2" };
    let labels =
        [("error_type", error_type), ("http_response_status_code", status), ("network_protocol_version", version)];
    proxy.metrics().await.sum("http_server_request_duration_seconds_count", &labels)
}

/// The proxy still serves: a healthy app through its outbound side, and
/// its own app (back, or never gone) through its inbound side.
async fn still_serves(proxy: &TestProxy, proto: Proto) {
    let healthy = apps::echo().await;
    let r = Client::http1().get(&format!("{}/", healthy.url())).via(proxy.outbound.unwrap()).send().await;
    assert_eq!(r.status, 200, "a healthy app through the same proxy");
    let r = Client::new(proto).get(&format!("{}/", proxy.inbound_url())).send().await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "hello from the killable app\n"), "{proto}: app back");
}

fn expect_abort(r: Result<support::client::Response, Failure>, proto: Proto) -> Failure {
    let failure = r.expect_err("a body cut short is an error to the client, not a short success");
    assert_eq!(failure.status, Some(http::StatusCode::OK), "{proto}: {failure}");
    assert_eq!(failure.body_len, 1024, "{proto}: {failure}");
    failure
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_killed_mid_response_aborts_the_clients_stream() {
    let collector = SidetraceCollector::start("memory", &[]);
    let mut app = killable(0);
    let port = app.addr.port();
    let proxy = proxy(app.addr, "killed-mid-body", &collector, &[]).await;
    for (i, proto) in [Proto::Http1, Proto::Http2].into_iter().enumerate() {
        let path = format!("/partial-{i}");
        let url = format!("{}{path}", proxy.inbound_url());
        let call = tokio::spawn(async move { Client::new(proto).get(&url).try_send().await });
        app.wait_for("partial sent", 1);
        app.process.kill();
        expect_abort(call.await.unwrap(), proto);
        let span = error_span(&collector, "killed-mid-body", &path, "upstream_reset", 200).await;
        assert_eq!(span["attributes"]["http.response.body.size"], 1024, "{span:#}");
        assert_eq!(counted(&proxy, "upstream_reset", "200", proto).await, 1.0, "{proto}");
        app = killable(port);
        still_serves(&proxy, proto).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_killed_before_answering_is_502() {
    let collector = SidetraceCollector::start("memory", &[]);
    let mut app = killable(0);
    let port = app.addr.port();
    let proxy = proxy(app.addr, "killed-before-answer", &collector, &[]).await;
    for (i, proto) in [Proto::Http1, Proto::Http2].into_iter().enumerate() {
        let path = format!("/hold-{i}");
        let url = format!("{}{path}", proxy.inbound_url());
        let call = tokio::spawn(async move { Client::new(proto).get(&url).send().await });
        app.wait_for("held", 1);
        app.process.kill();
        assert_eq!(call.await.unwrap().status, 502, "{proto}");
        error_span(&collector, "killed-before-answer", &path, "upstream_reset", 502).await;
        assert_eq!(counted(&proxy, "upstream_reset", "502", proto).await, 1.0, "{proto}");
        app = killable(port);
        still_serves(&proxy, proto).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_not_listening_is_502_until_it_listens() {
    let collector = SidetraceCollector::start("memory", &[]);
    let port = apps::refusing();
    let proxy = proxy(port, "refused", &collector, &[]).await;
    for (i, proto) in [Proto::Http1, Proto::Http2].into_iter().enumerate() {
        let path = format!("/refused-{i}");
        let r = Client::new(proto).get(&format!("{}{path}", proxy.inbound_url())).send().await;
        assert_eq!(r.status, 502, "{proto}");
        error_span(&collector, "refused", &path, "connection_refused", 502).await;
        assert_eq!(counted(&proxy, "connection_refused", "502", proto).await, 1.0, "{proto}");
    }
    let _app = killable(port.port());
    for proto in [Proto::Http1, Proto::Http2] {
        still_serves(&proxy, proto).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_accepting_and_never_answering_is_504_after_the_response_timeout() {
    let collector = SidetraceCollector::start("memory", &[]);
    let app = killable(0);
    let proxy = proxy(app.addr, "frozen", &collector, &["--response-timeout", "300ms"]).await;
    for (i, proto) in [Proto::Http1, Proto::Http2].into_iter().enumerate() {
        // Frozen, its listening socket still completes handshakes: the
        // kernel accepts, the app never answers.
        app.process.signal(libc::SIGSTOP);
        let path = format!("/frozen-{i}");
        let mut conn = Client::new(proto).connect(proxy.inbound.unwrap()).await;
        let r = conn.get(&path).send().await;
        assert_eq!(r.status, 504, "{proto}");
        error_span(&collector, "frozen", &path, "timeout", 504).await;
        assert_eq!(counted(&proxy, "timeout", "504", proto).await, 1.0, "{proto}");
        app.process.signal(libc::SIGCONT);
        // The same client connection, whose app connection still holds the
        // request that timed out, is served once the app answers again.
        let r = conn.get("/after").send().await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "hello from the killable app\n"), "{proto}");
        still_serves(&proxy, proto).await;
    }
}

/// A kept connection to the app that the app closes, while idle or just
/// as the next request arrives (read and unanswered, or unread and reset),
/// costs the client nothing: a GET goes again on a new connection. Inbound (the client connection's own app
/// connection) and outbound (the worker's pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_app_closed_is_not_a_502() {
    for close in [Close::Idle, Close::Unanswered, Close::Reset] {
        let app = apps::keeps_then_closes(close).await;
        let proxy = TestProxy::to(app.addr).service("kept").flags(&["--workers", "1"]).start().await;
        let mut conn = Client::http1().connect(proxy.inbound.unwrap()).await;
        for n in 1..=3 {
            let r = conn.get(&format!("/inbound/{n}")).send().await;
            assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"), "inbound request {n}, {close:?}");
            // As long as a keep-alive timer waits: the proxy copies a
            // request only on a connection that has been quiet.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(app.connections(), 3, "one app connection per request ({close:?})");
        let outbound = proxy.outbound.unwrap();
        for n in 1..=3 {
            let r = Client::http1().get(&format!("{}/outbound/{n}", app.url())).via(outbound).send().await;
            assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"), "outbound request {n}, {close:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(app.connections(), 6, "one app connection per request ({close:?})");
        let errors: Vec<_> = proxy.spans().into_iter().filter(|s| s.error.is_some()).collect();
        assert!(errors.is_empty(), "{close:?}: {errors:#?}");
    }
}
