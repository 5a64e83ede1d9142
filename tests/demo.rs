//! The README's first command, `sidetrace demo`: producer → consumer → store, each
//! behind its own sidecar, none with tracing code or header forwarding.
//! Bounded by `--duration` it exits 0 and its summary shows whole
//! three-hop traces; without it, it runs until Ctrl-C and then stops
//! cleanly with the same summary.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::process::Process;

/// `sidetrace demo ARGS`, in a clean environment.
fn demo(args: &[&str]) -> Command {
    // Tests run side by side: the UI on a port of its own.
    let mut all = vec!["demo", "--ui", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut cmd = support::proxy::command(&all);
    cmd.stdin(Stdio::null());
    cmd
}

/// "three-hop traces: N/M producer calls …": (N, M).
fn whole_traces(out: &str) -> (u64, u64) {
    let line = out.lines().find(|l| l.starts_with("three-hop traces:")).unwrap_or_else(|| panic!("no summary:\n{out}"));
    let counts = line.split_whitespace().nth(2).unwrap();
    let (n, m) = counts.split_once('/').unwrap();
    (n.parse().unwrap(), m.parse().unwrap())
}

#[test]
fn bounded_by_duration_it_exits_0_with_whole_three_hop_traces() {
    let out = demo(&["--duration", "3s"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{text}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let (whole, calls) = whole_traces(&text);
    assert!(calls > 0, "{text}");
    assert_eq!(whole, calls, "every call one trace across the three services:\n{text}");
    for route in ["/orders/{id}", "/inventory/{id}", "/stock/{id}"] {
        assert!(text.contains(route), "{route} missing from the per-route tables:\n{text}");
    }
    assert!(text.contains("shut down: every sidecar drained"), "{text}");
    let collector = text.lines().find(|l| l.starts_with("collector:")).unwrap_or_else(|| panic!("{text}"));
    assert!(collector.contains("services consumer, producer, store"), "{collector}");
}

#[test]
fn without_duration_it_runs_until_ctrl_c_and_stops_cleanly() {
    let mut p = Process::spawn("the demo", &mut demo(&[]));
    let started = support::wait::until_sync(Duration::from_secs(30), || {
        p.stdout.lock().unwrap().iter().any(|l| l.starts_with("calling GET")).then_some(())
    });
    assert!(started.is_some(), "the demo did not start:\n{}", p.output());
    // While it runs, the collector's UI and API answer at the address printed.
    let lines = p.stdout_lines();
    let ui = lines.iter().find_map(|l| l.strip_prefix("the UI, while the demo runs:")).expect("the UI's address");
    let ui = ui.trim().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let page = runtime.block_on(support::Client::http1().get(&ui).send());
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<html"), "{}", page.text());
    // Every service's spans reach the collector within a bounded wait.
    let api = ui.replace("/ui", "/api/services");
    let services = || runtime.block_on(support::Client::http1().get(&api).send()).text();
    let all = ["producer", "consumer", "store"];
    let found = support::wait::until_sync(Duration::from_secs(10), || all.iter().all(|n| services().contains(n)));
    if found.is_none() {
        let services = services();
        for name in all {
            assert!(services.contains(name), "{name} not in the collector: {services}");
        }
    }
    p.signal(libc::SIGINT);
    let status = p.wait_exit(Duration::from_secs(20));
    let text = p.stdout_lines().join("\n");
    assert_eq!(status.code(), Some(0), "{}", p.output());
    let (whole, calls) = whole_traces(&text);
    assert!(calls > 0 && whole == calls, "{text}");
}

#[test]
fn a_bad_flag_is_one_clear_error_and_exit_2() {
    let out = demo(&["--duration", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--duration") && err.contains("soon"), "{err}");
}

/// `sidetrace demo --only APP`, as deploy/examples/demo runs each app in
/// its own pod: the store, the consumer asking it, the producer calling
/// the consumer, each its own process, chained by --listen and
/// --downstream. (In a pod, each call goes through the sidecar by the
/// redirect rules; here they go directly.)
#[test]
fn only_runs_one_app_and_the_three_chain_as_in_the_cluster() {
    let serving = |p: &mut Process, what: &str| {
        let up = support::wait::until_sync(Duration::from_secs(30), || {
            p.stdout.lock().unwrap().iter().any(|l| l.contains("serving")).then_some(())
        });
        assert!(up.is_some(), "the {what} did not start:\n{}", p.output());
    };
    let store_port = support::apps::refusing().port();
    let mut store =
        Process::spawn("the store", &mut demo(&["--only", "store", "--listen", &format!("127.0.0.1:{store_port}")]));
    serving(&mut store, "store");
    let consumer_port = support::apps::refusing().port();
    let mut consumer = Process::spawn(
        "the consumer",
        &mut demo(&[
            "--only",
            "consumer",
            "--listen",
            &format!("127.0.0.1:{consumer_port}"),
            "--downstream",
            &format!("http://127.0.0.1:{store_port}"),
        ]),
    );
    serving(&mut consumer, "consumer");
    let out = demo(&[
        "--only",
        "producer",
        "--downstream",
        &format!("http://127.0.0.1:{consumer_port}"),
        "--duration",
        "2s",
        "--interval-ms",
        "20",
    ])
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // "producer: N calls answered (OK ok, E with 5xx), F failed …"
    let line = text.lines().find(|l| l.starts_with("producer:")).unwrap_or_else(|| panic!("{text}"));
    let numbers: Vec<u64> = line.split_whitespace().filter_map(|w| w.trim_start_matches('(').parse().ok()).collect();
    let [answered, ok, _, failed] = numbers[..] else { panic!("{line}") };
    assert!(answered >= 20 && failed == 0, "{line}");
    // The consumer answers 200 only when the store did (502 otherwise);
    // a fixed few ids fail with 5xx in either.
    assert!(ok * 10 >= answered * 7, "most calls should pass through the store: {line}");
    // No sidecar, no collector: one app per process.
    assert!(!text.contains("collector"), "{text}");
    for (p, what) in [(&mut consumer, "consumer"), (&mut store, "store")] {
        p.assert_running();
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(0), "the {what}: {}", p.output());
    }
    let out = demo(&["--only", "producer"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--only producer without --downstream");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--downstream"));
    let out = demo(&["--only", "consumer", "--downstream", "https://store:8080"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
