//! An app that serves one connection at a time (Python's `http.server`
//! with HTTP/1.1 keep-alive, as many small services and dev servers are)
//! keeps working behind sidetrace with several workers: the app sees the
//! connections its clients make, not idle ones of the proxy's own.

mod support;

use support::{Client, TestProxy, apps};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_serving_one_connection_at_a_time_answers_every_request() {
    let (_app, app_addr) = apps::one_connection();
    let flags = ["--workers", "2", "--response-timeout", "5s"];
    let proxy = TestProxy::to(app_addr).service("one-connection").flags(&flags).start().await;
    let inbound = proxy.inbound.unwrap();
    let client = Client::http1();

    let mut statuses = Vec::new();
    for i in 0..200 {
        let mut fresh = client.connect(inbound).await;
        statuses.push(fresh.get(&format!("/fresh/{i}")).send().await.status);
    }
    assert!(statuses.iter().all(|s| *s == 200), "fresh connections: {statuses:?}");

    let mut kept = client.connect(inbound).await;
    let mut statuses = Vec::new();
    for i in 0..200 {
        statuses.push(kept.get(&format!("/kept/{i}")).send().await.status);
    }
    assert!(statuses.iter().all(|s| *s == 200), "one keep-alive connection: {statuses:?}");
    proxy.wait_for_spans(400).await;
}
