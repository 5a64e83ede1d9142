//! The sidecar's life as Kubernetes sees it: `/ready` turns 503 as soon as
//! a drain begins, so no new traffic is routed while in-flight requests
//! finish; a Job's command stops the proxy with `POST /shutdown`, which is
//! only answered on loopback.

mod support;

use std::time::Duration;
use support::{Client, TestProxy, apps, wait};

fn spawn(app: std::net::SocketAddr) -> TestProxy {
    TestProxy::to(app).flags(&["--outbound", "off", "--access-log", "off", "--drain-timeout", "10s"]).spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_while_draining_and_in_flight_requests_finish() {
    let app = apps::echo().await;
    let mut proxy = spawn(app.addr);
    let client = Client::http1();
    let ready = format!("{}/ready", proxy.admin_url());
    assert_eq!(client.get(&ready).send().await.status, 200);
    let url = format!("{}/slow/1500", proxy.inbound_url());
    let slow = tokio::spawn(async move { Client::http1().get(&url).send().await });
    // Signal once the request is in flight: the app has it.
    let in_flight = wait::until(Duration::from_secs(10), async || !app.seen.lock().unwrap().is_empty()).await;
    assert!(in_flight.is_some(), "the request never reached the app");
    proxy.process().signal(libc::SIGTERM);
    let draining = wait::until(Duration::from_secs(1), async || {
        client.get(&ready).try_send().await.is_ok_and(|r| r.status == 503)
    })
    .await;
    assert!(draining.is_some(), "/ready did not turn 503 while the drain ran");
    let r = slow.await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "slow hello\n"), "the in-flight request finished");
    assert_eq!(proxy.process().wait_exit(Duration::from_secs(10)).code(), Some(0), "{}", proxy.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shutdown_on_loopback_stops_the_sidecar() {
    let app = apps::echo().await;
    let mut proxy = spawn(app.addr);
    let client = Client::http1();
    let url = format!("{}/shutdown", proxy.admin_url());
    assert_eq!(client.get(&url).send().await.status, 405, "only POST stops the proxy");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(proxy.process().exited().is_none(), "a GET stopped the proxy");
    assert_eq!(client.post(&url).send().await.status, 202);
    let status = proxy.process().wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "the sidecar exits as after SIGTERM");
}
