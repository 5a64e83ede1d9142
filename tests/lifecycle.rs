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

/// An address of this machine that is not loopback (the first global
/// IPv4 address `ip` lists).
fn non_loopback_address() -> Result<std::net::IpAddr, String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let addr = text.split_whitespace().skip_while(|w| *w != "inet").nth(1);
    let addr = addr.and_then(|a| a.split('/').next()).ok_or("no global IPv4 address")?;
    addr.parse().map_err(|e| format!("{addr}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shutdown_from_a_non_loopback_address_is_forbidden() {
    // 127.0.0.0/8 is all loopback (127.0.0.2 too), so the caller must come
    // from one of the machine's other addresses: the admin port listens on
    // every address, and a connection to the machine's own global address
    // comes from that address.
    let Some(ip) = support::tools::require("a non-loopback caller", non_loopback_address()) else { return };
    let app = apps::echo().await;
    let mut proxy = TestProxy::to(app.addr)
        .flags(&["--outbound", "off", "--access-log", "off", "--admin", "0.0.0.0:0", "--api", "off"])
        .spawn();
    let port = proxy.admin.unwrap().port();
    let client = Client::http1();
    let r = client.post(&format!("http://{ip}:{port}/shutdown")).send().await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("loopback"), "{}", r.text());
    // Still serving, and /ready from there too (probes come from the node).
    assert_eq!(client.get(&format!("http://{ip}:{port}/ready")).send().await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(proxy.process().exited().is_none(), "a forbidden POST stopped the proxy");
    assert_eq!(client.post(&format!("http://127.0.0.1:{port}/shutdown")).send().await.status, 202);
    assert_eq!(proxy.process().wait_exit(Duration::from_secs(10)).code(), Some(0));
}
