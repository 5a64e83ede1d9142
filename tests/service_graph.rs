//! Service-graph metrics from sidecars alone: A → B → C, each app behind
//! its own sidecar, none forwarding a header. Every SERVER span names its
//! caller (`peer.service`), and a real Prometheus scraping the three
//! sidecars sees exactly the edges user → A, A → B and B → C in
//! `traces_service_graph_request_total`, each counted once, with the
//! failed counter following the 5xx answers C was told to give.

mod support;

use sidetrace::vocab::Direction;
use support::prometheus::Prometheus;
use support::{Client, TestProxy, apps, tools};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_services_make_two_edges_in_prometheus() {
    if tools::require("prometheus", tools::prometheus().ok_or("prometheus is not installed".to_string())).is_none() {
        return;
    }
    let c_app = apps::sleeper().await;
    let c = TestProxy::to(c_app).service("store").start().await;
    let b_app = apps::relay(c.inbound.unwrap(), 4).await;
    let b = TestProxy::to(b_app.addr).service("consumer").start().await;
    b_app.through(b.outbound.unwrap());
    let a_app = apps::relay(b.inbound.unwrap(), 4).await;
    let a = TestProxy::to(a_app.addr).service("producer").start().await;
    a_app.through(a.outbound.unwrap());

    const OK: usize = 9;
    const FAILED: usize = 3;
    for i in 0..OK + FAILED {
        let status = if i < OK { 200 } else { 503 };
        let url = format!("http://{}/once/{i}?status={status}", a.inbound.unwrap());
        assert_eq!(Client::http1().get(&url).send().await.status, status);
    }
    let total = OK + FAILED;
    // Every SERVER span names its caller; A's callers have no sidecar.
    for (proxy, caller) in [(&a, None), (&b, Some("producer")), (&c, Some("consumer"))] {
        let spans = proxy.wait_for_spans(if caller == Some("consumer") { total } else { 2 * total }).await;
        for s in spans.iter().filter(|s| s.direction == Direction::Inbound) {
            assert_eq!(s.peer_service(), caller, "{}", s.uri);
        }
    }

    let targets = [a.admin.unwrap(), b.admin.unwrap(), c.admin.unwrap()];
    let prom = Prometheus::scraping("service-graph", &targets, &[]).await;
    let edges = support::wait::until(std::time::Duration::from_secs(30), async || {
        let v = prom.instant("sum by (client, server, connection_type) (traces_service_graph_request_total)").await;
        (v.len() >= 3).then_some(v)
    })
    .await
    .unwrap_or_else(|| panic!("no service-graph edges in Prometheus:\n{}", prom.log()));
    let mut seen: Vec<(String, String, String, f64)> = edges
        .iter()
        .map(|e| {
            let m = &e["metric"];
            let label = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (
                label("client"),
                label("server"),
                label("connection_type"),
                e["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    seen.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    let n = total as f64;
    assert_eq!(
        seen,
        vec![
            ("consumer".into(), "store".into(), "".into(), n),
            ("producer".into(), "consumer".into(), "".into(), n),
            ("user".into(), "producer".into(), "virtual_node".into(), n),
        ],
    );
    for (client, server) in [("producer", "consumer"), ("consumer", "store"), ("user", "producer")] {
        let q = format!("sum(traces_service_graph_request_failed_total{{client=\"{client}\",server=\"{server}\"}})");
        assert_eq!(prom.value(&q).await, Some(FAILED as f64), "{client} → {server}");
        let q = format!(
            "sum(traces_service_graph_request_server_seconds_count{{client=\"{client}\",server=\"{server}\"}})"
        );
        assert_eq!(prom.value(&q).await, Some(n), "server side of {client} → {server}");
    }
    // The client side of each edge between sidecars, measured by the caller.
    for (client, server) in [("producer", "consumer"), ("consumer", "store")] {
        let q = format!(
            "sum(traces_service_graph_request_client_seconds_count{{client=\"{client}\",server=\"{server}\"}})"
        );
        assert_eq!(prom.value(&q).await, Some(n), "client side of {client} → {server}");
    }
    // error_type on the request-duration histograms, for the failed requests only.
    let q = "sum(http_server_request_duration_seconds_count{error_type=\"503\"})";
    assert_eq!(prom.value(q).await, Some(3.0 * FAILED as f64));
    let q = "sum(http_server_request_duration_seconds_count{error_type=\"\"})";
    assert_eq!(prom.value(q).await, Some(3.0 * OK as f64));
}
