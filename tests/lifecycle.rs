//! The sidecar's life as Kubernetes sees it: `/ready` turns 503 as soon as
//! a drain begins, so no new traffic is routed while in-flight requests
//! finish; a Job's command stops the proxy with `POST /shutdown`, which is
//! only answered on loopback.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn spawn(app: std::net::SocketAddr) -> (KillOnDrop, u16, u16) {
    let (inbound, admin) = (closed_port().port(), closed_port().port());
    let child = Command::new(env!("CARGO_BIN_EXE_sidetrace"))
        .args(["run", "--inbound", &format!("127.0.0.1:{inbound}"), "--app", &app.to_string()])
        .args(["--outbound", "off", "--admin", &format!("127.0.0.1:{admin}"), "--access-log", "off"])
        .args(["--drain-timeout", "10s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_port(inbound) && wait_for_port(admin), "sidetrace did not start");
    (KillOnDrop(child), inbound, admin)
}

fn status(url: &str, method: &str) -> String {
    String::from_utf8_lossy(&curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, url]).stdout)
        .to_string()
}

fn exited(child: &mut KillOnDrop, within: Duration) -> Option<std::process::ExitStatus> {
    let end = std::time::Instant::now() + within;
    while std::time::Instant::now() < end {
        if let Some(s) = child.0.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_while_draining_and_in_flight_requests_finish() {
    let app = echo_app().await;
    let (mut child, inbound, admin) = spawn(app.addr);
    let ready = format!("http://127.0.0.1:{admin}/ready");
    assert_eq!(status(&ready, "GET"), "200");
    let url = format!("http://127.0.0.1:{inbound}/slow/1500");
    let slow = tokio::task::spawn_blocking(move || curl(&["-w", " %{http_code}", &url]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: kill(2) with a pid we own.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let draining =
        tokio::task::spawn_blocking(move || until_sync(Duration::from_secs(1), || status(&ready, "GET") == "503"));
    assert!(draining.await.unwrap(), "/ready did not turn 503 while the drain ran");
    let out = slow.await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "slow hello\n 200", "the in-flight request finished");
    let code = tokio::task::spawn_blocking(move || exited(&mut child, Duration::from_secs(10)).and_then(|s| s.code()));
    assert_eq!(code.await.unwrap(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shutdown_on_loopback_stops_the_sidecar() {
    let app = echo_app().await;
    let (mut child, _, admin) = spawn(app.addr);
    let url = format!("http://127.0.0.1:{admin}/shutdown");
    assert_eq!(status(&url, "GET"), "405", "only POST stops the proxy");
    assert!(exited(&mut child, Duration::from_millis(300)).is_none());
    assert_eq!(status(&url, "POST"), "202");
    let code = tokio::task::spawn_blocking(move || exited(&mut child, Duration::from_secs(10)).and_then(|s| s.code()));
    assert_eq!(code.await.unwrap(), Some(0), "the sidecar exits as after SIGTERM");
}

fn until_sync(limit: Duration, done: impl Fn() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while !done() {
        if std::time::Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
