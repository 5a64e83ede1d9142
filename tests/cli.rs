//! The command line as users meet it: bad input gets one clear line and
//! exit code 2; SIGTERM drains in-flight requests and exits 0.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn sidetrace(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidetrace"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Bind nothing real if parsing were to succeed by mistake.
    cmd.args(["--admin", "off"]).stdin(Stdio::null());
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("sidetrace {args:?} kept running: bad input must exit");
}

/// Arguments, environment, and what the error line must name.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let cases: &[Case] = &[
        (&["run", "--inbound", "nope"], &[], "--inbound"),
        (&["run", "--app", "localhost"], &[], "--app"),
        (&["run", "--access-log", "xml"], &[], "--access-log"),
        (&["run", "--opaque-ports", "25,http"], &[], "--opaque-ports"),
        (&["run", "--drain-timeout", "soon"], &[], "--drain-timeout"),
        (&["run", "--route", "users/{id}"], &[], "--route"),
        (&["run", "--trace-buffer", "0"], &[], "--trace-buffer"),
        (&["run", "--no-such-flag"], &[], "--no-such-flag"),
        (&["run"], &[("SIDETRACE_ACCESS_LOG", "xml")], "--access-log"),
        (&["run"], &[("OTEL_RESOURCE_ATTRIBUTES", "justakey")], "OTEL_RESOURCE_ATTRIBUTES"),
        (&["run", "--log", "info,[[["], &[], "--log"),
        (&["run", "--inbound", "127.0.0.1:8080"], &[], "--inbound"),
        (&["frobnicate"], &[], "frobnicate"),
    ];
    for (args, env, names) in cases {
        let out = sidetrace(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: not one line:\n{stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr:?} does not name {names}");
    }
}

#[test]
fn a_port_in_use_is_an_error_with_several_workers_too() {
    let port = closed_port().port();
    let inbound = format!("127.0.0.1:{port}");
    let app = closed_port().to_string();
    let args = ["run", "--inbound", &inbound, "--app", &app, "--outbound", "off", "--workers", "2"];
    let first = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_sidetrace"))
            .args(args)
            .args(["--admin", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_port(port), "the first sidetrace did not start");
    // Both would set SO_REUSEPORT; the second must not share the port.
    let out = sidetrace(&args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&inbound) && stderr.contains("--inbound"), "{stderr}");
    drop(first);
}

#[test]
fn help_lists_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_sidetrace")).args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap_or_default();
    for flag in [
        "--inbound",
        "--app",
        "--outbound",
        "--admin",
        "--service-name",
        "--access-log",
        "--opaque-ports",
        "--detect-timeout",
        "--drain-timeout",
        "--connect-timeout",
        "--response-timeout",
        "--route",
        "--redact-query-keys",
        "--trace-buffer",
        "--queue-size",
        "--max-routes",
        "--log",
        "--workers",
        "--otlp-endpoint",
        "--otlp-protocol",
        "--otlp-header",
        "--otlp-compression",
        "--otlp-timeout",
        "--otlp-ca",
        "--otlp-client-cert",
        "--otlp-client-key",
        "--zipkin-endpoint",
        "--export-batch-size",
        "--export-delay",
        "--export-concurrency",
        "--retry-initial",
        "--retry-max",
        "--retry-max-elapsed",
        "--spool-dir",
        "--spool-max-bytes",
        "--sampling-ratio",
        "--sampling-rate-limit",
        "--keep-slower-than",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(readme.contains(flag), "README lacks {flag}");
        let env = format!("SIDETRACE_{}", flag.trim_start_matches("--").replace('-', "_").to_uppercase());
        let env = match flag {
            "--route" => "SIDETRACE_ROUTES".to_string(),
            "--otlp-header" => "SIDETRACE_OTLP_HEADERS".to_string(),
            _ => env,
        };
        assert!(help.contains(&env), "--help lacks {env}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let app = echo_app().await;
    let port = closed_port().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sidetrace"))
        .args(["run", "--inbound", &format!("127.0.0.1:{port}"), "--app", &app.addr.to_string()])
        .args(["--outbound", "off", "--admin", "off", "--access-log", "json", "--drain-timeout", "10s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(tokio::task::spawn_blocking(move || wait_for_port(port)).await.unwrap(), "proxy did not start");
    let url = format!("http://127.0.0.1:{port}/slow/1500");
    let slow = tokio::task::spawn_blocking(move || curl(&["-w", " %{http_code}", &url]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // SAFETY: kill(2) with a pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = slow.await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "slow hello\n 200", "the in-flight request finished");
    let status = tokio::task::spawn_blocking(move || {
        let stdout = child.stdout.take().unwrap();
        let lines: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).collect();
        (child.wait().unwrap(), lines)
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0));
    // Its access log line was flushed before exit.
    assert!(
        status.1.iter().any(|l| l.contains("\"path\":\"/slow/1500\"") && l.contains("\"status\":200")),
        "{:?}",
        status.1
    );
    // And the listener is gone.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
