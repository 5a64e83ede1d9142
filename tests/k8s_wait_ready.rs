//! `sidetrace wait-ready`, the non-native sidecar's postStart hook: it
//! returns 0 once `/ready` answers 200 (not before: a 503 keeps it
//! waiting), and 1 with one line when the timeout passes first.

mod support;

use std::time::Duration;
use support::apps;
use support::proxy::sidetrace;

fn wait_ready(addr: &str, timeout: &str) -> std::process::Output {
    sidetrace(&["wait-ready", "--admin", addr, "--timeout", timeout]).limit(Duration::from_secs(20)).output()
}

#[test]
fn waits_for_a_200_from_ready() {
    // Two "not ready" answers, then ready.
    let server = apps::scripted(&["503 Service Unavailable", "503 Service Unavailable", "200 OK"]);
    let out = wait_ready(&server.addr.to_string(), "10s");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // It returned after the third answer, not before: all three were asked for.
    let asked = server.requests.lock().unwrap().len();
    assert_eq!(asked, 3, "wait-ready returned after {asked} answers");
    for request in server.join() {
        assert!(request.starts_with("GET /ready HTTP/1.1\r\n"), "{request:?}");
    }
}

#[test]
fn gives_up_at_the_timeout_with_one_line() {
    let out = wait_ready(&apps::refusing().to_string(), "500ms");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/ready"), "{stderr}");
}
