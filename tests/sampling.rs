//! Head sampling is parent-based and consistent across sidecars; errors
//! and slow requests are kept even when the head sampler skipped them.

mod support;

use sidetrace::config::{Config, RunArgs};
use std::collections::BTreeSet;
use std::time::Duration;
use support::collectors::Collector;
use support::{Client, TestProxy, apps};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratio_zero_still_exports_errors_and_slow_requests() {
    let collector = Collector::start();
    let app = apps::echo().await;
    let endpoint = collector.http_url();
    let flags = [
        "--sampling-ratio",
        "0",
        "--keep-slower-than",
        "200ms",
        "--otlp-endpoint",
        &endpoint,
        "--export-delay",
        "100ms",
    ];
    let proxy = TestProxy::to(app.addr).service("sampling").flags(&flags).start().await;
    let url = proxy.inbound_url();
    for (path, status) in [("/status/200", 200), ("/status/500", 500), ("/slow/400", 200), ("/status/404", 404)] {
        assert_eq!(Client::http1().get(&format!("{url}{path}")).send().await.status, status, "{path}");
        // The head decision travels on: the app is told the trace is not sampled.
        assert!(app.last().headers["traceparent"].to_str().unwrap().ends_with("-00"));
    }
    let kept = proxy.wait_for_spans(2).await;
    let paths: BTreeSet<&str> = kept.iter().map(|s| s.uri.path()).collect();
    assert_eq!(paths, BTreeSet::from(["/status/500", "/slow/400"]), "only the error and the slow request are kept");
    assert!(kept.iter().all(|s| s.tail && !s.sampled));
    // Exported, marked as kept by the tail rule.
    let received = collector.wait_for_spans(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2);
    for (span, _) in &received {
        let tail = span["attributes"].as_array().unwrap().iter().find(|a| a["key"] == "sidetrace.sampling.tail");
        assert_eq!(tail.expect("tail attribute")["value"]["boolValue"], true);
    }
    let sampled_out = proxy.sidecar().stats.sampled_out.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sampled_out, 2, "the fast successes were counted as sampled out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_parent_is_respected() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).start().await;
    let url = proxy.inbound_url();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let call = async |path: &str, flags: &str| {
        let traceparent = format!("00-{trace}-00f067aa0ba902b7-{flags}");
        let r = Client::http1().get(&format!("{url}{path}")).header("traceparent", &traceparent).send().await;
        assert_eq!(r.status, 200, "{path}");
    };
    call("/quiet", "00").await;
    let tp = app.last().headers["traceparent"].to_str().unwrap().to_string();
    assert!(tp.starts_with(&format!("00-{trace}-")) && tp.ends_with("-00"), "{tp}");
    call("/loud", "01").await;
    let recorded = proxy.wait_for_spans(1).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].uri.path(), "/loud", "the unsampled request left no span");
}

/// Trace ids chosen by the test, so both sidecars see the same ones.
fn trace_ids() -> Vec<String> {
    (0..200u64).map(|i| format!("{:016x}{:016x}", 0x1000 + i * 7919, i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect()
}

/// The trace ids a sidecar with `config` records of 200 requests, each
/// carrying the context `headers` gives for its trace id.
async fn recorded_traces(config: Config, headers: impl Fn(&str) -> Vec<(&'static str, String)>) -> BTreeSet<String> {
    let app = apps::echo().await;
    let mut config = config;
    config.app = app.addr;
    let proxy = TestProxy::start(config).await;
    let url = proxy.inbound_url();
    let client = Client::http1();
    for t in trace_ids() {
        let mut call = client.get(&format!("{url}/t/{t}"));
        for (name, value) in headers(&t) {
            call = call.header(name, &value);
        }
        assert_eq!(call.send().await.status, 200);
    }
    // Let the last spans reach the ring (no exporter: they go straight in).
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.spans().iter().map(|s| s.trace_id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_decide_alike_for_the_same_trace_id() {
    let local = |env: &'static [(&'static str, &'static str)], flags: &[&str]| {
        let mut argv = vec![
            "run",
            "--access-log",
            "off",
            "--inbound",
            "127.0.0.1:0",
            "--outbound",
            "off",
            "--admin",
            "off",
            "--api",
            "off",
        ];
        argv.extend_from_slice(&["--export-delay", "50ms"]);
        argv.extend_from_slice(flags);
        let args = RunArgs::parse_from_env_free(argv);
        Config::from_args(&args, &|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap()
    };
    // B3 without a sampling state defers the decision to the receiver.
    let deferred = |t: &str| vec![("b3", format!("{t}-00f067aa0ba902b7"))];
    let a = recorded_traces(local(&[], &["--sampling-ratio", "0.5"]), deferred).await;
    let b = recorded_traces(local(&[], &["--sampling-ratio", "0.5"]), deferred).await;
    assert_eq!(a, b, "the same trace ids were sampled by both sidecars");
    assert!((60..=140).contains(&a.len()), "about half of 200 sampled: {}", a.len());

    // OTEL_TRACES_SAMPLER=traceidratio ignores the parent's flag: the trace id decides.
    const ENV: &[(&str, &str)] = &[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.5")];
    let sampled_parent = |t: &str| vec![("traceparent", format!("00-{t}-00f067aa0ba902b7-01"))];
    let c = recorded_traces(local(ENV, &[]), sampled_parent).await;
    let d = recorded_traces(local(ENV, &[]), sampled_parent).await;
    assert_eq!(c, d);
    assert_eq!(a, c, "one rule for every sidecar: the trace id's low 64 bits against the ratio");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_rules_set_the_ratio_by_route() {
    let app = apps::echo().await;
    let flags = ["--sampling-rule", "/health=0,/api/quiet/*=0", "--keep-slower-than", "0s"];
    let proxy = TestProxy::to(app.addr).service("rules").flags(&flags).start().await;
    let url = proxy.inbound_url();
    for (path, status) in [
        ("/health", 200),
        ("/api/quiet/1", 200),
        ("/api/loud/1", 200),
        ("/health", 200),
        ("/other", 200),
        ("/status/500", 500),
    ] {
        assert_eq!(Client::http1().get(&format!("{url}{path}")).send().await.status, status, "{path}");
    }
    let kept = proxy.wait_for_spans(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paths: BTreeSet<String> = proxy.spans().iter().map(|s| s.uri.path().to_string()).collect();
    assert_eq!(paths, BTreeSet::from(["/api/loud/1", "/other", "/status/500"].map(String::from)), "{kept:#?}");
    let sampled_out = proxy.sidecar().stats.sampled_out.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sampled_out, 3, "the routes sampled at 0 were counted as sampled out");
}
