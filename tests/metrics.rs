//! Metrics against real peers: `promtool check metrics` on the classic
//! output, a real Prometheus server scraping the admin port (OpenMetrics,
//! with exemplar storage) and answering PromQL about the traffic we made,
//! exemplars that lead to spans, the route cap under 100000 random paths,
//! and `/api/stats` percentiles against the client's own measurements.
//! Native histograms and the protobuf format: `tests/metrics_native.rs`.
//!
//! The app is `apps::sleeper`: each request's query says how long it
//! waits upstream and what it answers.

mod support;

use http::{Method, StatusCode};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::client::Call;
use support::metrics::{Labels, Metrics};
use support::prometheus::Prometheus;
use support::{Client, TestProxy, apps, tools, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `call` and returns its status and the time from sending it to
/// the body's end, as this client saw it.
async fn timed(call: Call<'_>) -> (StatusCode, Duration) {
    let started = Instant::now();
    let r = call.send().await;
    (r.status, started.elapsed())
}

// ---------------------------------------------------------------------------
// 1. promtool accepts the classic output, with every family present.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_output_passes_promtool_and_has_every_family() {
    let app = apps::sleeper().await;
    let sidecar = TestProxy::to(app).service("metrics-test").start().await;
    let inbound = sidecar.inbound.unwrap();
    let mut c = Client::http1().connect(inbound).await;
    for uri in ["/users/42?ms=1", "/users/43", "/health", "/fail?status=503", "/missing?status=404"] {
        c.get(uri).send().await;
    }
    // An unknown method becomes _OTHER.
    let purge = Method::from_bytes(b"PURGE").unwrap();
    Client::http1().request(purge, &format!("{}/cache", sidecar.inbound_url())).send().await;
    // Outbound, as the app's HTTP proxy: a client metric with the server.
    let r = Client::http1().get(&format!("http://{app}/orders/7")).via(sidecar.outbound.unwrap()).send().await;
    assert_eq!(r.status, 200);
    // Opaque TCP: bytes that are not HTTP are relayed to the app as they are.
    let mut sink = Vec::new();
    let mut opaque = TcpStream::connect(inbound).await.unwrap();
    opaque.write_all(b"\x00\x01hello opaque\r\n").await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), opaque.read_to_end(&mut sink)).await;
    drop(opaque);

    let m = sidecar.metrics().await;
    assert!(!m.text.contains(" # {"), "no exemplars in the classic format");
    assert!(!m.text.contains("# EOF"));
    for family in [
        "http_server_request_duration_seconds_bucket",
        "http_server_request_body_size_bytes_count",
        "http_server_response_body_size_bytes_sum",
        "http_server_active_requests",
        "http_client_request_duration_seconds_count",
        "sidetrace_proxy_overhead_seconds_count",
        "sidetrace_upstream_connect_duration_seconds_count",
        "sidetrace_tcp_smoothed_rtt_seconds_count",
        "sidetrace_protocol_detections_total",
        "sidetrace_tcp_connections_opened_total",
        "sidetrace_tcp_read_bytes_total",
        "sidetrace_route_overflow_total",
        "sidetrace_spans_recorded_total",
        "sidetrace_spans_dropped_total",
        "sidetrace_rejected_requests_total",
        "sidetrace_refused_connections_total",
        "sidetrace_http2_connection_errors_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
        "sidetrace_build_info",
    ] {
        assert!(m.has(family), "no {family} in:\n{}", m.text);
    }
    // Labels exactly as the conventions name them.
    let labels = |name: &str| -> Vec<String> { m.matching(name, &[]).next().unwrap().labels.keys().cloned().collect() };
    let server = ["http_request_method", "http_response_status_code", "http_route", "network_protocol_version"];
    let mut want: Vec<String> = server.iter().chain(&["url_scheme"]).map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(labels("http_server_request_duration_seconds_count"), want);
    want.extend(["server_address".to_string(), "server_port".to_string()]);
    want.sort();
    assert_eq!(labels("http_client_request_duration_seconds_count"), want);
    let v = |name: &str, labels: &[(&str, &str)]| m.value(name, labels);
    let count = "http_server_request_duration_seconds_count";
    assert_eq!(v(count, &[("http_route", "/users/{id}"), ("http_response_status_code", "200")]), Some(2.0));
    assert_eq!(v(count, &[("http_route", "/fail"), ("http_response_status_code", "503")]), Some(1.0));
    assert_eq!(v(count, &[("http_request_method", "_OTHER"), ("http_route", "/cache")]), Some(1.0));
    let port = app.port().to_string();
    let client = [("server_address", "127.0.0.1"), ("server_port", port.as_str()), ("http_route", "/orders/{id}")];
    assert_eq!(v("http_client_request_duration_seconds_count", &client), Some(1.0));
    assert_eq!(v("sidetrace_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert_eq!(v("http_server_active_requests", &[("http_request_method", "GET")]), Some(0.0));
    let detections = [("direction", "inbound"), ("protocol", "opaque"), ("outcome", "detected")];
    assert_eq!(v("sidetrace_protocol_detections_total", &detections), Some(1.0));
    let opaque = [("direction", "inbound"), ("protocol", "opaque"), ("peer", "client")];
    assert_eq!(v("sidetrace_tcp_read_bytes_total", &opaque), Some(16.0));
    // Every request that reached the upstream had its overhead measured.
    assert_eq!(v("sidetrace_proxy_overhead_seconds_count", &[("direction", "inbound")]), Some(6.0));

    let Some(promtool) = tools::promtool() else { return };
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // promtool reads all of stdin before it writes; closing it ends the input.
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), m.text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}\n\n{}", m.text);
}

// ---------------------------------------------------------------------------
// 2. A real Prometheus scrapes the sidecar and answers PromQL.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_answers_rate_and_p99() {
    if tools::prometheus().is_none() {
        return;
    }
    let app = apps::sleeper().await;
    let sidecar = TestProxy::to(app).service("metrics-test").start().await;
    // A second sidecar with an exporter (to a closed port) and opaque TCP,
    // so that every family goes through Prometheus' OpenMetrics parser.
    let endpoint = format!("http://{}", apps::refusing());
    let other = TestProxy::to(app).service("metrics-test-2").flags(&["--otlp-endpoint", &endpoint]).start().await;
    let mut opaque = TcpStream::connect(other.inbound.unwrap()).await.unwrap();
    opaque.write_all(b"\x00\x01hello opaque\r\n").await.unwrap();
    Client::http1().get(&format!("{}/other", other.inbound_url())).send().await;
    let targets = [sidecar.admin.unwrap(), other.admin.unwrap()];
    let prom = Prometheus::scraping("metrics-rate-p99", &targets, &["exemplar-storage"]).await;
    // Queries about the first sidecar only.
    let this = format!("instance=\"{}\"", sidecar.admin.unwrap());
    let count = &format!("sum(http_server_request_duration_seconds_count{{{this}}})");

    // One request first, so the series exists (count 1) before the traffic
    // whose rate we ask for; then 180 fast and 20 slow (350 ms) requests
    // on the same route, 20 at a time.
    let inbound = sidecar.inbound.unwrap();
    Client::http1().get(&format!("{}/work", sidecar.inbound_url())).send().await;
    let seen = wait::until(Duration::from_secs(30), async || prom.value(count).await == Some(1.0)).await;
    assert!(seen.is_some(), "prometheus never scraped the first request:\n{}", prom.log());
    let first_scrape = Instant::now();
    let workers: Vec<_> = (0..20)
        .map(|w| {
            tokio::spawn(async move {
                let mut c = Client::http1().connect(inbound).await;
                let mut seen = Vec::new();
                for i in 0..10 {
                    let uri = if i == 0 { "/work?ms=350" } else { "/work" };
                    let (status, took) = timed(c.get(uri)).await;
                    assert_eq!(status, 200, "worker {w}");
                    seen.push((i == 0, took));
                }
                seen
            })
        })
        .collect();
    let mut client = Vec::new();
    for w in workers {
        client.extend(w.await.unwrap());
    }
    let all = wait::until(Duration::from_secs(30), async || prom.value(count).await == Some(201.0)).await;
    assert!(all.is_some(), "prometheus never saw all 201 requests");

    // Evaluate at the newest scrape, so nothing is extrapolated past it.
    let at =
        prom.value(&format!("max(timestamp(http_server_request_duration_seconds_count{{{this}}}))")).await.unwrap();
    let rate = prom
        .value_at(&format!("sum(rate(http_server_request_duration_seconds_count{{{this}}}[1m]))"), at)
        .await
        .unwrap();
    // The counter went from 1 to 201 inside the window: an increase of 200.
    // Prometheus extrapolates the window's start back to where the counter
    // would have been zero (here: by one request), never further, and
    // divides by the 60 s range.
    // (Provided the count-1 sample is inside the window: on a machine so
    // slow that over 50 s passed since it, the window may start between
    // samples, and Prometheus extrapolates up to ~1.1 scrape intervals.)
    if first_scrape.elapsed() < Duration::from_secs(50) {
        assert!((200.0 / 60.0 - 1e-9..=201.0 / 60.0 + 1e-9).contains(&rate), "rate {rate}, want 200/60 to 201/60");
    } else {
        assert!((200.0 / 60.0 * 0.9..=201.0 / 60.0 * 1.1).contains(&rate), "rate {rate}, want about 200/60");
    }

    let q = &format!(
        "histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{{{this}}}[1m])))"
    );
    let p99 = prom.value_at(q, at).await.unwrap();
    // Every bucket's rate is its final count over 60 s (see above), so the
    // quantile is that of the final counts: 181 fast requests below 0.25 s
    // and 20 slow ones in (0.25, 0.5]. Rank 0.99 × 201 = 198.99 lies
    // 17.99/20 into that bucket: 0.25 + 0.25 × 17.99 / 20. The slow ones
    // took at least their 350 ms upstream; whether the fast ones stayed
    // under 250 ms and the slow ones under 500 ms, the client's own clock
    // tells (an upper bound of what the proxy saw).
    let fast_ok = client.iter().filter(|(slow, _)| !slow).all(|(_, t)| *t < Duration::from_millis(250));
    let slow_ok = client.iter().filter(|(slow, _)| *slow).all(|(_, t)| *t < Duration::from_millis(500));
    if fast_ok && slow_ok {
        let want = 0.25 + 0.25 * (0.99 * 201.0 - 181.0) / 20.0;
        assert!((p99 - want).abs() < 1e-6, "p99 {p99}, want {want}");
    } else {
        eprintln!(
            "this machine was slow (a fast request over 250 ms or a slow one over 500 ms): checking p99's range only"
        );
        assert!((0.25..=10.0).contains(&p99), "p99 {p99}");
    }

    // Prometheus scraped OpenMetrics and kept exemplars: they name spans.
    let (start, end) = (format!("{:.3}", at - 120.0), format!("{:.3}", at + 1.0));
    let buckets = format!("http_server_request_duration_seconds_bucket{{{this}}}");
    let ex = prom.api("query_exemplars", &[("query", &buckets), ("start", &start), ("end", &end)]).await;
    let trace_ids: Vec<String> = ex
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["exemplars"].as_array().unwrap().iter())
        .map(|e| e["labels"]["trace_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!trace_ids.is_empty(), "no exemplars stored: {ex}");
    let r = Client::http1().get(&format!("{}/api/traces/{}", sidecar.admin_url(), trace_ids[0])).send().await;
    assert_eq!(r.status, 200, "exemplar trace {} is not in /api/traces", trace_ids[0]);
    // The second target's scrapes parse too: its exporter and TCP series are in.
    let up = format!("up{{instance=\"{}\"}}", other.admin.unwrap());
    assert_eq!(prom.value(&up).await, Some(1.0), "the second sidecar's OpenMetrics did not parse:\n{}", prom.log());
    for q in ["sidetrace_exporter_batches_total", "sidetrace_tcp_read_bytes_total", "process_cpu_seconds_total"] {
        let n = prom.value(&format!("count({q})")).await;
        assert!(n.is_some_and(|n| n >= 1.0), "{q} not scraped");
    }
    drop(opaque);
    drop(prom);
}

// ---------------------------------------------------------------------------
// 3. Exemplars in OpenMetrics lead to spans.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_exemplars_carry_trace_ids_of_spans() {
    let app = apps::sleeper().await;
    let sidecar = TestProxy::to(app).service("metrics-test").start().await;
    let mut c = Client::http1().connect(sidecar.inbound.unwrap()).await;
    for i in 0..20 {
        c.get(&format!("/items/{i}?ms={}", i % 3)).send().await;
    }
    let r = sidecar.scrape("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5").await;
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/openmetrics-text; version=1.0.0"), "{ct}");
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE http_server_request_duration_seconds histogram\n"));
    assert!(text.contains("# UNIT http_server_request_duration_seconds seconds\n"));
    assert!(text.contains("# TYPE sidetrace_route_overflow counter\n"));
    let m = Metrics::parse(&text);
    let exemplars: Vec<&Labels> = m
        .matching("http_server_request_duration_seconds_bucket", &[])
        .filter_map(|s| s.exemplar.as_ref().map(|(labels, _)| labels))
        .collect();
    assert!(!exemplars.is_empty(), "no exemplars:\n{text}");
    let spans = sidecar.wait_for_spans(20).await;
    for e in &exemplars {
        let (trace_id, span_id) = (&e["trace_id"], &e["span_id"]);
        let r = Client::http1().get(&format!("{}/api/traces/{trace_id}", sidecar.admin_url())).send().await;
        assert_eq!(r.status, 200, "exemplar trace {trace_id} not in /api/traces");
        assert!(r.text().contains(span_id.as_str()), "span {span_id} not in trace {trace_id}");
        assert!(spans.iter().any(|s| s.trace_id.to_string() == *trace_id && s.sampled));
    }
}

// ---------------------------------------------------------------------------
// 4. 100000 distinct random paths: series stay under the cap.

/// A path segment that route templating keeps as it is (letters only,
/// short), distinct for each `i`, with a random tail.
fn random_path(i: usize, rng: &mut fastrand::Rng) -> String {
    let mut seg = String::new();
    let mut n = i;
    loop {
        seg.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    let tail: String = (0..6).map(|_| rng.lowercase()).collect();
    format!("/r/{seg}-{tail}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_keep_series_under_the_cap() {
    const REQUESTS: usize = 100_000;
    const MAX_ROUTES: usize = 200; // the default
    let app = apps::sleeper().await;
    let sidecar = TestProxy::to(app).service("metrics-test").start().await;
    let inbound = sidecar.inbound.unwrap();
    let started = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(w as u64);
                let mut c = Client::http1().connect(inbound).await;
                for i in (w..REQUESTS).step_by(8) {
                    let r = c.get(&random_path(i, &mut rng)).send().await;
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    eprintln!("{REQUESTS} requests in {:?}", started.elapsed());
    let m = sidecar.metrics().await;
    let series = |name: &str| m.matching(name, &[]).count();
    // One series per route (all GET, 200, HTTP/1.1), plus _other.
    assert_eq!(series("http_server_request_duration_seconds_count"), MAX_ROUTES + 1);
    let other = m.value("http_server_request_duration_seconds_count", &[("http_route", "_other")]);
    assert_eq!(other, Some((REQUESTS - MAX_ROUTES) as f64));
    assert_eq!(
        m.value("sidetrace_route_overflow_total", &[("direction", "inbound")]),
        Some((REQUESTS - MAX_ROUTES) as f64)
    );
    assert_eq!(m.value("sidetrace_routes", &[("direction", "inbound")]), Some(MAX_ROUTES as f64));
    assert_eq!(m.sum("http_server_request_duration_seconds_count", &[]), REQUESTS as f64);
    // The whole exposition stays small: bounded by the cap, not the paths.
    assert!(m.samples.len() < (MAX_ROUTES + 1) * 60 + 500, "{} samples", m.samples.len());
    let stats = sidecar.stats().await;
    assert_eq!(stats["routes"].as_array().unwrap().len(), MAX_ROUTES + 1);
}

// ---------------------------------------------------------------------------
// 5. /api/stats percentiles agree with what the client measured.

/// Upstream milliseconds of the i-th request to a route.
type Sleep = fn(usize) -> u64;

/// Nearest-rank percentile, as `/api/stats` defines it.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_stats_percentiles_match_the_clients_measurements() {
    let app = apps::sleeper().await;
    let sidecar = TestProxy::to(app).service("metrics-test").start().await;
    let inbound = sidecar.inbound.unwrap();
    // Three routes, each with its own spread of upstream sleeps. Each
    // request carries a traceparent of its own, so the proxy's span of it
    // can be matched with the client's measurement.
    let routes: [(&str, Sleep); 3] = [
        ("/fast", |i| (i % 5) as u64),
        ("/medium", |i| 10 + 5 * (i % 10) as u64),
        ("/slow", |i| 40 + 20 * (i % 5) as u64),
    ];
    let mut measured: BTreeMap<&str, Vec<(String, Duration)>> = BTreeMap::new();
    for (route, sleep) in routes {
        let workers: Vec<_> = (0..5)
            .map(|w| {
                tokio::spawn(async move {
                    let mut c = Client::http1().connect(inbound).await;
                    let mut took = Vec::new();
                    for i in (w..100).step_by(5) {
                        let status = if i % 25 == 0 { 500 } else { 200 };
                        let uri = format!("{route}?ms={}&status={status}", sleep(i));
                        let trace_id = format!("{:032x}", fastrand::u128(1..));
                        let traceparent = format!("00-{trace_id}-{:016x}-01", fastrand::u64(1..));
                        let (_, t) = timed(c.get(&uri).header("traceparent", &traceparent)).await;
                        took.push((trace_id, t));
                    }
                    took
                })
            })
            .collect();
        for w in workers {
            measured.entry(route).or_default().extend(w.await.unwrap());
        }
    }
    let stats = sidecar.stats().await;
    let spans: BTreeMap<String, Duration> = sidecar
        .wait_for_spans(300)
        .await
        .iter()
        .map(|s| (s.trace_id.to_string(), Duration::from_nanos(s.duration_nanos())))
        .collect();
    let uptime = stats["uptime_seconds"].as_f64().unwrap();
    for (route, requests) in measured {
        let row = stats["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == route && r["direction"] == "inbound")
            .unwrap_or_else(|| panic!("{route} not in {stats}"));
        assert_eq!(row["count"], 100, "{row}");
        assert_eq!(row["errors"], 4, "{row}");
        if uptime < 59.0 {
            // Every request ended within the last minute, which is shorter
            // than the sidecar's life: the rate is count over uptime.
            let tps = row["tps"].as_f64().unwrap();
            assert!((tps * uptime - 100.0).abs() < 1e-6, "tps {tps} over {uptime} s");
        }
        let mut client: Vec<Duration> = requests.iter().map(|(_, t)| *t).collect();
        let mut proxy: Vec<Duration> = requests.iter().map(|(id, _)| spans[id]).collect();
        // The client's clock starts before the proxy's and stops after it:
        // per request, client = proxy + the loopback hops. The largest such
        // gap bounds how far the client's percentiles may sit above ours.
        let gap = requests.iter().map(|(id, t)| t.saturating_sub(spans[id])).max().unwrap();
        assert!(requests.iter().all(|(id, t)| spans[id] <= *t), "a span outlasted its client request");
        client.sort();
        proxy.sort();
        let gap_ms = gap.as_secs_f64() * 1000.0;
        for (key, p) in [("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("max_ms", 100.0)] {
            let ours = row[key].as_f64().unwrap();
            // Against the proxy's own spans: the histogram knows a value
            // within 1/128 of it, in whole microseconds.
            let exact = percentile(&proxy, p);
            assert!((ours - exact).abs() <= exact / 128.0 + 0.001, "{route} {key}: {ours} vs spans' {exact}");
            // Against the client: within that resolution, and no lower than
            // the client's number less the largest gap.
            let theirs = percentile(&client, p);
            assert!(
                ours <= theirs * (1.0 + 1.0 / 128.0) + 0.001 && ours >= theirs * (1.0 - 1.0 / 128.0) - gap_ms - 0.001,
                "{route} {key}: /api/stats says {ours:.3} ms, the client measured {theirs:.3} ms (gap up to {gap_ms:.3} ms)"
            );
        }
        let mean = |v: &[Duration]| v.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / v.len() as f64;
        let ours = row["mean_ms"].as_f64().unwrap();
        assert!((ours - mean(&proxy)).abs() <= 0.001, "{route} mean {ours} vs spans' {}", mean(&proxy));
        let theirs = mean(&client);
        assert!(ours <= theirs && ours >= theirs - gap_ms - 0.001, "{route} mean {ours} vs client {theirs}");
        eprintln!("{route}: mean {ours:.3} ms (client {theirs:.3} ms), largest client-proxy gap {gap_ms:.3} ms");
    }
}
