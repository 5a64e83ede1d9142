//! The command line as users meet it: bad input gets one clear line and
//! exit code 2; SIGTERM drains in-flight requests and exits 0.

mod support;

use std::time::Duration;
use support::proxy::sidetrace;
use support::{Client, TestProxy, apps, wait};

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
        // Bind nothing real if parsing were to succeed by mistake.
        let argv: Vec<&str> = args.iter().copied().chain(["--admin", "off"]).collect();
        let mut run = sidetrace(&argv).limit(Duration::from_secs(2));
        for (k, v) in *env {
            run = run.env(k, v);
        }
        let out = run.output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: not one line:\n{stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr:?} does not name {names}");
    }
}

#[test]
fn a_port_in_use_is_an_error_with_several_workers_too() {
    let app = apps::refusing().to_string();
    let first = TestProxy::builder().flags(&["--app", &app, "--outbound", "off", "--admin", "off", "--workers", "2"]);
    let first = first.spawn();
    let inbound = first.inbound.unwrap().to_string();
    // Both would set SO_REUSEPORT; the second must not share the port.
    let args = ["run", "--inbound", &inbound, "--app", &app, "--outbound", "off", "--admin", "off", "--workers", "2"];
    let out = sidetrace(&args).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&inbound) && stderr.contains("--inbound"), "{stderr}");
    drop(first);
}

#[test]
fn help_lists_every_flag() {
    let out = sidetrace(&["run", "--help"]).output();
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
    let app = apps::echo().await;
    let flags = ["--outbound", "off", "--admin", "off", "--access-log", "json", "--drain-timeout", "10s"];
    let mut proxy = TestProxy::to(app.addr).flags(&flags).spawn();
    let inbound = proxy.inbound.unwrap();
    let url = format!("{}/slow/1500", proxy.inbound_url());
    let slow = tokio::spawn(async move { Client::http1().get(&url).send().await });
    // Signal once the request is in flight: the app has it.
    let in_flight = wait::until(Duration::from_secs(10), async || !app.seen.lock().unwrap().is_empty()).await;
    assert!(in_flight.is_some(), "the request never reached the app");
    proxy.process().signal(libc::SIGTERM);
    let r = slow.await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "slow hello\n"), "the in-flight request finished");
    let status = proxy.process().wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", proxy.output());
    // Its access log line was flushed before exit.
    let lines = proxy.process().stdout_lines();
    assert!(lines.iter().any(|l| l.contains("\"path\":\"/slow/1500\"") && l.contains("\"status\":200")), "{lines:?}");
    // And the listener is gone.
    assert!(tokio::net::TcpStream::connect(inbound).await.is_err());
}
