//! The kubelet's probes are not traffic: forwarded to the app as always,
//! but no span, no request metrics, only a count of their own, unless
//! `--trace-probes` says otherwise.

mod support;

use support::metrics::Metrics;
use support::{Client, TestProxy, apps};

async fn get(url: &str, user_agent: &str) -> u16 {
    Client::http1().get(url).header("user-agent", user_agent).send().await.status.as_u16()
}

/// Whether any series has the label `http_route` equal to `route`.
fn has_route(m: &Metrics, route: &str) -> bool {
    m.samples.iter().any(|s| s.labels.get("http_route").is_some_and(|r| r == route))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_forwarded_and_counted_but_not_traced() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let url = proxy.inbound_url();
    for _ in 0..3 {
        assert_eq!(get(&format!("{url}/healthz"), "kube-probe/1.30").await, 200);
    }
    assert_eq!(get(&format!("{url}/status/503"), "kube-probe/1.30").await, 503);
    assert_eq!(app.seen.lock().unwrap().len(), 4, "the app answered every probe");
    assert_eq!(get(&format!("{url}/real"), "curl/8").await, 200);
    proxy.wait_for_spans(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let recorded: Vec<String> = proxy.spans().iter().map(|s| s.uri.path().to_string()).collect();
    assert_eq!(recorded, ["/real"], "only the real request left a span");
    let m = proxy.metrics().await;
    let probes = |outcome| m.value("sidetrace_probe_requests_total", &[("direction", "inbound"), ("outcome", outcome)]);
    assert_eq!(probes("success"), Some(3.0), "{}", m.text);
    assert_eq!(probes("failure"), Some(1.0), "{}", m.text);
    assert!(!m.text.contains("healthz") && !has_route(&m, "/status/{id}"), "{}", m.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_probes_records_them_like_any_request() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).service("probes").flags(&["--trace-probes"]).start().await;
    assert_eq!(get(&format!("{}/healthz", proxy.inbound_url()), "kube-probe/1.30").await, 200);
    let recorded = proxy.wait_for_spans(1).await;
    assert_eq!(recorded[0].uri.path(), "/healthz");
    assert!(has_route(&proxy.metrics().await, "/healthz"));
}
