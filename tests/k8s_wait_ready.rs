//! `sidetrace wait-ready`, the non-native sidecar's postStart hook: it
//! returns 0 once `/ready` answers 200 (not before: a 503 keeps it
//! waiting), and 1 with one line when the timeout passes first.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

fn wait_ready(addr: &str, timeout: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sidetrace"))
        .args(["wait-ready", "--admin", addr, "--timeout", timeout])
        .output()
        .unwrap()
}

#[test]
fn waits_for_a_200_from_ready() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Two "not ready" answers, then ready.
    let server = std::thread::spawn(move || {
        for status in ["503 Service Unavailable", "503 Service Unavailable", "200 OK"] {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            assert!(request.starts_with(b"GET /ready HTTP/1.1\r\n"));
            let _ = write!(s, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let started = Instant::now();
    let out = wait_ready(&addr, "10s");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() >= Duration::from_millis(300), "returned before the third answer");
    server.join().unwrap();
}

#[test]
fn gives_up_at_the_timeout_with_one_line() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = wait_ready(&format!("127.0.0.1:{port}"), "500ms");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/ready"), "{stderr}");
}
