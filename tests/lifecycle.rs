//! The sidecar's life as Kubernetes sees it: on SIGTERM `/ready` turns 503
//! and the listeners close at once, so no new traffic comes while in-flight
//! requests finish (told `Connection: close`), their spans exported before
//! the process exits 0; requests still running at `--drain-timeout` are cut
//! and recorded as `drain_timeout`. A Job's command stops the proxy with
//! `POST /shutdown`, which is only answered on loopback.

mod support;

use std::time::Duration;
use support::client::{Failure, Response};
use support::collector::SidetraceCollector;
use support::{Client, TestProxy, apps, wait};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

fn spawn(app: std::net::SocketAddr, service: &str, flags: &[&str]) -> TestProxy {
    TestProxy::to(app).service(service).flags(&["--outbound", "off", "--access-log", "off"]).flags(flags).spawn()
}

/// Four requests the app answers after 2 s, in flight when SIGTERM comes.
async fn four_in_flight(app: &apps::App, proxy: &TestProxy, ms: u64) -> Vec<JoinHandle<Result<Response, Failure>>> {
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let url = format!("{}/slow/{ms}?n={i}", proxy.inbound_url());
            tokio::spawn(async move { Client::http1().get(&url).timeout(Duration::from_secs(60)).try_send().await })
        })
        .collect();
    let in_flight = wait::until(Duration::from_secs(10), async || app.seen.lock().unwrap().len() == 4).await;
    assert!(in_flight.is_some(), "the requests never all reached the app");
    calls
}

/// After SIGTERM: `/ready` answers 503 and new connections are refused,
/// both while every one of `calls` is still in flight.
async fn draining_while_in_flight(proxy: &TestProxy, calls: &[JoinHandle<Result<Response, Failure>>]) {
    let client = Client::http1();
    let ready = format!("{}/ready", proxy.admin_url());
    let draining = wait::until(Duration::from_secs(1), async || {
        client.get(&ready).try_send().await.is_ok_and(|r| r.status == 503)
    })
    .await;
    assert!(draining.is_some(), "/ready did not turn 503 when the drain began");
    let inbound = proxy.inbound.unwrap();
    let refused = wait::until(Duration::from_secs(1), async || TcpStream::connect(inbound).await.is_err()).await;
    assert!(refused.is_some(), "the inbound listener still accepts during the drain");
    assert!(calls.iter().all(|c| !c.is_finished()), "a request ended before the drain was seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_ready_503_and_in_flight_requests_finish() {
    let collector = SidetraceCollector::start("memory", &[]);
    let app = apps::echo().await;
    let otlp = collector.http_url();
    let flags = ["--drain-timeout", "10s", "--otlp-endpoint", &otlp, "--export-delay", "50ms"];
    let mut proxy = spawn(app.addr, "drained", &flags);
    let client = Client::http1();
    assert_eq!(client.get(&format!("{}/ready", proxy.admin_url())).send().await.status, 200);
    let calls = four_in_flight(&app, &proxy, 2000).await;
    proxy.process().signal(libc::SIGTERM);
    draining_while_in_flight(&proxy, &calls).await;
    for call in calls {
        let r = call.await.unwrap().expect("an in-flight request finishes");
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "slow hello\n"), "the in-flight request finished");
        assert_eq!(r.header("connection"), Some("close"), "the client is told the connection ends");
    }
    assert_eq!(proxy.process().wait_exit(Duration::from_secs(10)).code(), Some(0), "{}", proxy.output());
    // Their spans were exported before the exit.
    let found = collector.json("/api/traces?service=drained&status=200").await;
    assert_eq!(found["traces"].as_array().unwrap().len(), 4, "{found:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_drain_timeout_are_cut_and_recorded() {
    let collector = SidetraceCollector::start("memory", &[]);
    let app = apps::echo().await;
    let otlp = collector.http_url();
    let flags = ["--drain-timeout", "1s", "--otlp-endpoint", &otlp, "--export-delay", "50ms"];
    let mut proxy = spawn(app.addr, "cut", &flags);
    let calls = four_in_flight(&app, &proxy, 30_000).await;
    proxy.process().signal(libc::SIGTERM);
    draining_while_in_flight(&proxy, &calls).await;
    for call in calls {
        let failure = call.await.unwrap().expect_err("a request past the drain timeout is cut");
        assert_eq!(failure.status, None, "cut before its answer: {failure}");
    }
    // Cut at the timeout, the process exits as after a drain that
    // finished, once the cut requests' spans are out.
    assert_eq!(proxy.process().wait_exit(Duration::from_secs(3)).code(), Some(0), "{}", proxy.output());
    let found = collector.json("/api/traces?service=cut&status=error&attr=error.type=drain_timeout").await;
    assert_eq!(found["traces"].as_array().unwrap().len(), 4, "the cut requests' spans were exported: {found:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shutdown_on_loopback_stops_the_sidecar() {
    let app = apps::echo().await;
    let mut proxy = spawn(app.addr, "shut", &["--drain-timeout", "10s"]);
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
