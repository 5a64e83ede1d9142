//! The kubelet's probes are not traffic: forwarded to the app as always,
//! but no span, no request metrics, only a count of their own, unless
//! `--trace-probes` says otherwise.

mod support;

use sidetrace::config::Config;
use support::*;

async fn metrics(admin: std::net::SocketAddr) -> String {
    let out = curl(&[&format!("http://{admin}/metrics")]);
    String::from_utf8(out.stdout).unwrap()
}

fn get(url: &str, user_agent: &str) -> String {
    String::from_utf8(curl(&["-s", "-A", user_agent, "-w", "%{http_code}", "-o", "/dev/null", url]).stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_forwarded_and_counted_but_not_traced() {
    let app = echo_app().await;
    let (proxy, url) = inbound_for(&app).await;
    for _ in 0..3 {
        assert_eq!(get(&format!("{url}/healthz"), "kube-probe/1.30"), "200");
    }
    assert_eq!(get(&format!("{url}/status/503"), "kube-probe/1.30"), "503");
    assert_eq!(app.seen.lock().unwrap().len(), 4, "the app answered every probe");
    assert_eq!(get(&format!("{url}/real"), "curl/8"), "200");
    spans(&proxy, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let recorded: Vec<String> = proxy.ring.newest(100).iter().map(|s| s.uri.path().to_string()).collect();
    assert_eq!(recorded, ["/real"], "only the real request left a span");
    let text = metrics(proxy.admin.unwrap()).await;
    assert!(text.contains(r#"sidetrace_probe_requests_total{direction="inbound",outcome="success"} 3"#), "{text}");
    assert!(text.contains(r#"sidetrace_probe_requests_total{direction="inbound",outcome="failure"} 1"#), "{text}");
    assert!(!text.contains("healthz") && !text.contains(r#"http_route="/status/{id}""#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_probes_records_them_like_any_request() {
    let app = echo_app().await;
    let proxy = proxy_with(Config::local_with(app.addr, "probes", &["--trace-probes"])).await;
    let url = format!("http://{}", proxy.inbound.unwrap());
    assert_eq!(get(&format!("{url}/healthz"), "kube-probe/1.30"), "200");
    let recorded = spans(&proxy, 1).await;
    assert_eq!(recorded[0].uri.path(), "/healthz");
    assert!(metrics(proxy.admin.unwrap()).await.contains(r#"http_route="/healthz""#));
}
