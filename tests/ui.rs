//! The web UI in a real browser (headless Chromium over WebDriver).
//!
//! `ui_against_the_contract` serves `ui::router()` beside fixture handlers
//! that answer the collector's API contract
//! (shared-notes/ui-api-contract.md) with three services, two three-hop
//! traces with log lines and a stitched span, and a trace of 10000 spans;
//! `ui_on_a_sidecar` opens a real sidecar's admin port, where the UI reads
//! the sidecar's own endpoints. Screenshots go to target/ui-screenshots/.
//! `ui_logic_in_node` runs the pure logic's cases (tests/ui_logic.mjs)
//! under Node's test runner.
//! No assertion is about time: each wait is bounded only so that a broken
//! page fails instead of hanging.

mod support;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};
use support::browser::Browser;
use support::{Client, TestProxy, apps, tools, wait};

const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T2: &str = "5c0a3e1f9b2d4c6e8a0b1c2d3e4f5061";
const BIG: &str = "b19b19b19b19b19b19b19b19b19b19b1";
const BIG_SPANS: usize = 10_000;

struct Fixture {
    traces: Vec<(String, Vec<Value>, Vec<Value>)>,
    /// Calls of /api/dependencies: the overview's auto-refresh asks again.
    graph_asked: AtomicUsize,
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// A span in the contract's shape; times in ms from `base`.
#[allow(clippy::too_many_arguments)]
fn span(
    trace: &str,
    id: &str,
    parent: Option<&str>,
    service: &str,
    kind: &str,
    name: &str,
    base: u128,
    ms: (f64, f64),
    attrs: Value,
) -> Value {
    let start = base + (ms.0 * 1e6) as u128;
    let end = base + (ms.1 * 1e6) as u128;
    let error = attrs["http.response.status_code"].as_u64().is_some_and(|c| c >= 500);
    json!({
        "trace_id": trace, "span_id": id, "parent_span_id": parent, "name": name, "kind": kind,
        "service": service, "start_unix_nano": start.to_string(), "end_unix_nano": end.to_string(),
        "duration_ns": (end - start) as u64,
        "status": {"code": if error { "ERROR" } else { "UNSET" }, "message": ""},
        "attributes": attrs, "resource": {"service.name": service}, "links": [], "events": [],
    })
}

fn log(trace: &str, span: &Value, body: &str) -> Value {
    json!({"time_unix_nano": span["end_unix_nano"], "trace_id": trace, "span_id": span["span_id"],
           "service": span["service"], "severity": "INFO", "body": body, "attributes": {}})
}

/// producer → consumer → store; `store_ms` is how long the store takes, and
/// `tier` goes on the store's span for the attribute search.
fn three_hops(trace: &str, base: u128, store_ms: f64, tier: &str) -> (Vec<Value>, Vec<Value>) {
    let end = 12.0 + store_ms;
    let ids = |n: u8| format!("{}{n:02}", &trace[..14]);
    let spans = vec![
        span(
            trace,
            &ids(1),
            None,
            "producer",
            "SERVER",
            "GET /orders/{id}",
            base,
            (0.0, end + 4.0),
            json!({"http.route": "/orders/{id}", "http.request.method": "GET", "http.response.status_code": 200}),
        ),
        span(
            trace,
            &ids(2),
            Some(&ids(1)),
            "producer",
            "CLIENT",
            "GET",
            base,
            (1.0, end + 3.0),
            json!({"http.route": "/items", "http.request.method": "GET", "peer.service": "consumer", "http.response.status_code": 200}),
        ),
        span(
            trace,
            &ids(3),
            Some(&ids(2)),
            "consumer",
            "SERVER",
            "GET /items",
            base,
            (2.0, end + 2.0),
            json!({"http.route": "/items", "http.response.status_code": 200, "sidetrace.stitched": true, "sidetrace.stitch.candidates": 1}),
        ),
        span(
            trace,
            &ids(4),
            Some(&ids(3)),
            "consumer",
            "CLIENT",
            "GET",
            base,
            (10.5, 14.0),
            json!({"http.route": "/rows/{id}", "peer.service": "store", "http.response.status_code": 200}),
        ),
        span(
            trace,
            &ids(5),
            Some(&ids(3)),
            "consumer",
            "CLIENT",
            "GET",
            base,
            (10.0, end + 1.0),
            json!({"http.route": "/rows/{id}", "peer.service": "store", "http.response.status_code": 200}),
        ),
        span(
            trace,
            &ids(6),
            Some(&ids(5)),
            "store",
            "SERVER",
            "GET /rows/{id}",
            base,
            (11.0, end),
            json!({"http.route": "/rows/{id}", "customer.tier": tier, "http.response.status_code": 200}),
        ),
    ];
    let logs = vec![
        log(trace, &spans[0], "GET /orders/42 200 producer"),
        log(trace, &spans[2], "GET /items 200 consumer"),
        log(trace, &spans[5], &format!("GET /rows/7 200 store took {store_ms}ms")),
    ];
    (spans, logs)
}

/// A 4-ary tree of 10000 spans over the three services.
fn big_trace(base: u128) -> Vec<Value> {
    let services = ["producer", "consumer", "store"];
    (0..BIG_SPANS)
        .map(|i| {
            let parent = (i > 0).then(|| format!("{:016x}", (i - 1) / 4 + 1));
            let depth = (usize::BITS - (3 * i + 1).leading_zeros()) as f64 / 2.0;
            let start = depth * 3.0 + (i % 4) as f64 * 0.5;
            span(
                BIG,
                &format!("{:016x}", i + 1),
                parent.as_deref(),
                services[i % 3],
                if i % 2 == 0 { "SERVER" } else { "CLIENT" },
                &format!("op-{i}"),
                base,
                (start, 200.0 - depth * 2.0),
                json!({"n": i}),
            )
        })
        .collect()
}

impl Fixture {
    fn new() -> Fixture {
        let base = now_ns() - 60_000_000_000;
        let (s1, l1) = three_hops(T1, base, 20.0, "gold");
        let (s2, l2) = three_hops(T2, base + 5_000_000_000, 70.0, "silver");
        Fixture {
            traces: vec![
                (T1.into(), s1, l1),
                (T2.into(), s2, l2),
                (BIG.into(), big_trace(base - 1_000_000_000), vec![]),
            ],
            graph_asked: AtomicUsize::new(0),
        }
    }

    fn summary(&self, spans: &[Value]) -> Value {
        let root = &spans[0];
        let mut services: Vec<&str> = spans.iter().filter_map(|s| s["service"].as_str()).collect();
        services.sort();
        services.dedup();
        json!({
            "trace_id": root["trace_id"],
            "root": {"service": root["service"], "name": root["name"], "route": root["attributes"]["http.route"],
                     "status_code": root["attributes"]["http.response.status_code"]},
            "start_unix_nano": root["start_unix_nano"], "duration_ns": root["duration_ns"],
            "spans": spans.len(), "errors": spans.iter().filter(|s| s["status"]["code"] == "ERROR").count(),
            "services": services, "stitched": spans.iter().any(|s| s["attributes"]["sidetrace.stitched"] == true),
        })
    }
}

/// The span filters of the contract's `/api/traces`.
fn span_matches(s: &Value, q: &[(String, String)]) -> bool {
    q.iter().all(|(k, v)| match k.as_str() {
        "service" => s["service"] == v.as_str(),
        "route" => s["attributes"]["http.route"] == v.as_str(),
        "attr" => {
            let (key, want) = v.split_once('=').unwrap_or((v, ""));
            let have = &s["attributes"][key];
            match have {
                Value::String(x) => x == want,
                Value::Null => false,
                other => serde_json::from_str::<Value>(want).is_ok_and(|w| &w == other),
            }
        }
        _ => true,
    })
}

async fn traces(State(f): State<Arc<Fixture>>, Query(q): Query<Vec<(String, String)>>) -> Json<Value> {
    let list: Vec<Value> = f
        .traces
        .iter()
        .filter(|(_, spans, _)| spans.iter().any(|s| span_matches(s, &q)))
        .map(|(_, spans, _)| f.summary(spans))
        .collect();
    Json(json!({"traces": list, "limit": 20}))
}

async fn trace(State(f): State<Arc<Fixture>>, Path(id): Path<String>) -> Response {
    match f.traces.iter().find(|(t, _, _)| *t == id) {
        Some((t, spans, logs)) => Json(json!({"trace_id": t, "spans": spans, "logs": logs})).into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, Json(json!({"error": "no such trace"}))).into_response(),
    }
}

fn route_stats(service: &str, direction: &str, route: &str, count: u64, p99: f64) -> Value {
    json!({"service": service, "direction": direction, "route": route, "count": count, "errors": count / 20,
           "tps": count as f64 / 3600.0, "mean_ms": p99 / 3.0, "p50_ms": p99 / 4.0, "p90_ms": p99 / 2.0, "p99_ms": p99, "max_ms": p99 * 1.5})
}

fn contract(fixture: Arc<Fixture>) -> Router {
    let edge = |client: &str, server: &str, requests: u64, errors: u64| {
        json!({"client": client, "server": server, "requests": requests, "errors": errors,
               "error_rate": errors as f64 / requests as f64, "rate": requests as f64 / 3600.0,
               "p50_ms": 12.0, "p90_ms": 30.0, "p99_ms": 75.5})
    };
    let deps = json!({
        "nodes": [{"name": "producer", "requests": 120, "errors": 0}, {"name": "consumer", "requests": 120, "errors": 6},
                  {"name": "store", "requests": 240, "errors": 0}],
        "edges": [edge("producer", "consumer", 120, 6), edge("consumer", "store", 240, 0)],
    });
    let stats = json!({"window_seconds": 3600, "routes": [
        route_stats("producer", "inbound", "/orders/{id}", 120, 90.0),
        route_stats("producer", "outbound", "/items", 120, 80.0),
        route_stats("consumer", "inbound", "/items", 120, 78.0),
        route_stats("consumer", "outbound", "/rows/{id}", 240, 60.0),
        route_stats("store", "inbound", "/rows/{id}", 240, 55.0),
    ]});
    let services = json!({"services": [{"name": "consumer", "spans": 3}, {"name": "producer", "spans": 2}, {"name": "store", "spans": 1}]});
    let config = json!({"mode": "collector", "refresh_seconds": 1,
                        "log_link_template": "https://logs.example/?q={trace_id}&from={start_ms}&to={end_ms}&svc={service}"});
    let logs = {
        let f = fixture.clone();
        move |Query(q): Query<HashMap<String, String>>| async move {
            let logs: Vec<&Value> =
                f.traces.iter().filter(|(t, _, _)| Some(t) == q.get("trace_id")).flat_map(|(_, _, l)| l).collect();
            Json(json!({"logs": logs}))
        }
    };
    Router::new()
        .route("/api/ui-config", get(move || async move { Json(config) }))
        .route("/api/services", get(move || async move { Json(services) }))
        .route(
            "/api/dependencies",
            get(move |State(f): State<Arc<Fixture>>| async move {
                f.graph_asked.fetch_add(1, Ordering::Relaxed);
                Json(deps)
            }),
        )
        .route("/api/stats", get(move || async move { Json(stats) }))
        .route("/api/traces", get(traces))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/logs", get(logs))
        .with_state(fixture)
        .merge(sidetrace::ui::router())
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sidetrace::web::serve(listener, app, None));
    format!("http://{addr}")
}

fn count(selector: &str) -> String {
    format!("return document.querySelectorAll({selector:?}).length")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_against_the_contract() {
    let Some(browser) = Browser::start("contract").await else { return };
    let fixture = Arc::new(Fixture::new());
    let base = serve(contract(fixture.clone())).await;

    // The overview: three services, two calls with their figures.
    browser.goto(&format!("{base}/ui/")).await;
    browser.wait_for("three services in the graph", &format!("{} === 3", count(".graph .node"))).await;
    let names =
        browser.eval("return [...document.querySelectorAll('.graph .node')].map(n => n.dataset.service).sort()").await;
    assert_eq!(names, json!(["consumer", "producer", "store"]));
    let edges = browser.eval("return [...document.querySelectorAll('.graph .edge')].map(e => e.dataset.client + '>' + e.dataset.server).sort()").await;
    assert_eq!(edges, json!(["consumer>store", "producer>consumer"]));
    let labels = browser.eval("return [...document.querySelectorAll('.edge-label')].map(l => l.textContent)").await;
    assert!(labels.as_array().unwrap().iter().all(|l| l.as_str().unwrap().contains("p99 75.5 ms")), "{labels}");
    assert!(labels.to_string().contains("5.0% err"), "the erring call shows its rate: {labels}");
    browser.wait_for("the routes table", &format!("{} === 5", count(".routes tbody tr[tabindex]"))).await;
    browser.screenshot("overview").await;
    // Auto-refresh (every second in this fixture's /api/ui-config).
    let asked = fixture.graph_asked.load(Ordering::Relaxed);
    let again =
        wait::until(Duration::from_secs(20), async || fixture.graph_asked.load(Ordering::Relaxed) > asked).await;
    assert!(again.is_some(), "the overview never refreshed itself");

    // A click on a call filters the table to both ends, and leads to its traces.
    browser
        .eval("document.querySelector('.edge[data-client=producer][data-server=consumer]').dispatchEvent(new MouseEvent('click', {bubbles: true}))")
        .await;
    browser.wait_for("the table filtered to the call", &format!("{} === 2", count(".routes tbody tr[tabindex]"))).await;
    let traces_link = browser.eval("return document.querySelector('[data-edge-traces]').getAttribute('href')").await;
    assert_eq!(traces_link, "#/traces?service=consumer&with=producer");

    // A click on a node filters the table; Esc clears the filter.
    browser.eval("document.querySelector('.node[data-service=store]').dispatchEvent(new MouseEvent('click', {bubbles: true}))").await;
    browser.wait_for("the table filtered to store", &format!("{} === 1", count(".routes tbody tr[tabindex]"))).await;
    assert!(browser.eval("return !document.getElementById('filter-bar').hidden").await.as_bool().unwrap());
    browser.screenshot("overview-filtered").await;
    browser.keys("\u{E00C}").await;
    browser.wait_for("the filter cleared", &format!("{} === 5", count(".routes tbody tr[tabindex]"))).await;
    // `/` focuses the view's search box.
    browser.keys("/").await;
    let focused = browser.eval("return document.activeElement.className").await;
    assert_eq!(focused, "table-filter");
    // Enter on a route's row finds the traces behind it.
    browser.eval("document.querySelector('.routes tbody tr').focus()").await;
    browser.keys("\u{E007}").await;
    browser
        .wait_for("the route's traces", "return location.hash.startsWith('#/traces?service=consumer&route=%2Frows')")
        .await;
    browser.wait_for("the route's two traces", &format!("{} === 2", count(".traces tbody tr"))).await;

    // Search by an attribute: only the trace whose store span has it.
    browser.goto(&format!("{base}/ui/#/traces")).await;
    browser.wait_for("the search form", "return document.querySelector('.search-form textarea[name=attr]')").await;
    let form = browser.eval("return document.querySelector('.search-form').innerText").await;
    let form = form.as_str().unwrap();
    assert!(form.contains("Span filters") && form.contains("Trace filters"), "{form}");
    browser
        .eval("document.querySelector('textarea[name=attr]').value = 'customer.tier=gold'; document.querySelector('.search-form button[type=submit]').click()")
        .await;
    browser.wait_for("the search in the URL", "return location.hash.includes('attr=customer.tier%3Dgold')").await;
    let found = browser
        .wait_for("one trace found", "const r = [...document.querySelectorAll('.traces tbody tr')]; return r.length === 1 && r[0].dataset.traceId")
        .await;
    assert_eq!(found, T1);
    browser.screenshot("search").await;

    // Enter on the focused row opens its waterfall.
    browser.eval("document.querySelector('.traces tbody tr').focus()").await;
    browser.keys("\u{E007}").await;
    browser.wait_for("the trace's waterfall", &format!("{} === 6", count(".wf-row.span"))).await;
    assert_eq!(browser.eval("return location.hash").await, format!("#/traces/{T1}"));
    let logs = browser.eval("return [...document.querySelectorAll('.wf-row.log')].map(r => r.innerText)").await;
    assert_eq!(logs.as_array().unwrap().len(), 3, "{logs}");
    assert!(logs.to_string().contains("store took 20ms"), "{logs}");
    // The critical path: root → producer client → consumer server → the
    // longer consumer call → store, not the short call made beside it.
    let critical =
        browser.eval("return [...document.querySelectorAll('.wf-row.span.critical')].map(r => r.dataset.spanId)").await;
    let id = |n: u8| format!("{}{n:02}", &T1[..14]);
    assert_eq!(critical, json!([id(1), id(2), id(3), id(5), id(6)]));
    assert!(browser.eval(&format!("{} > 0", count(".wf-crit"))).await.as_bool().unwrap());
    assert_eq!(browser.eval(&count(".wf-row .badge.stitched")).await, 1);
    let link = browser.eval("return document.querySelector('[data-log-link]').href").await;
    let link = link.as_str().unwrap();
    assert!(
        link.starts_with(&format!("https://logs.example/?q={T1}&from=")) && link.ends_with("&svc=producer"),
        "{link}"
    );
    // The keyboard: ↓ selects the next span, ← folds it, → opens it again.
    browser.eval("document.querySelector('.wf-scroll').focus()").await;
    browser.keys("\u{E015}").await;
    browser.wait_for("the second span selected", &format!("return location.hash.endsWith('span={}')", id(2))).await;
    browser.keys("\u{E012}").await;
    browser.wait_for("its subtree folded", &format!("{} === 2", count(".wf-row.span"))).await;
    browser.keys("\u{E014}").await;
    browser.wait_for("its subtree open again", &format!("{} === 6", count(".wf-row.span"))).await;
    // Selecting a span shows its attributes and its own log line.
    browser.eval(&format!("document.querySelector('.wf-row[data-span-id=\"{}\"]').click()", id(6))).await;
    let detail = browser
        .wait_for(
            "the store span's details",
            "const d = document.querySelector('.wf-detail').innerText; return d.includes('customer.tier') && d",
        )
        .await;
    assert!(detail.as_str().unwrap().contains("store took 20ms"), "{detail}");
    browser.screenshot("trace").await;

    // Two traces side by side: the store span, 50 ms slower, first.
    browser.goto(&format!("{base}/ui/#/compare/{T1}/{T2}")).await;
    browser.wait_for("the comparison", &format!("{} === 6", count(".cmp-row:not(.cmp-head)"))).await;
    let first = browser.eval("return document.querySelector('.differ tbody tr').innerText").await;
    let first = first.as_str().unwrap();
    assert!(first.contains("store") && first.contains("+50.0 ms"), "{first}");
    browser.screenshot("compare").await;

    // 10000 spans: the DOM holds only the rows in view, at the top and
    // after a scroll to the end, and the span filter finds one span.
    browser.goto(&format!("{base}/ui/#/traces/{BIG}")).await;
    browser
        .wait_for(
            "the big trace",
            "const c = document.querySelector('.span-count'); return c && c.innerText === '10,000 spans'",
        )
        .await;
    let rows = browser.eval(&count(".wf-row")).await.as_u64().unwrap();
    assert!((1..200).contains(&rows), "{rows} rows in the DOM");
    browser.eval("const s = document.querySelector('.wf-scroll'); s.scrollTop = s.scrollHeight").await;
    let last_rows = "const t = document.querySelector('.wf-rows').style.transform; return Number(/translateY\\((\\d+)px/.exec(t)?.[1]) > 9000 * 26";
    browser.wait_for("the last rows after scrolling", last_rows).await;
    let height = browser.eval("return document.querySelector('.wf-spacer').offsetHeight").await.as_u64().unwrap();
    assert_eq!(height, BIG_SPANS as u64 * 26, "the list is as tall as every span");
    let rows = browser.eval(&count(".wf-row")).await.as_u64().unwrap();
    assert!((1..200).contains(&rows), "{rows} rows in the DOM after scrolling");
    browser.screenshot("big-trace").await;
    browser
        .eval(
            "const f = document.querySelector('.span-filter'); f.value = 'n=9999'; f.dispatchEvent(new Event('input'))",
        )
        .await;
    let info = browser
        .wait_for(
            "one span matching",
            "const m = document.querySelector('.match-info').innerText; return m.startsWith('1 of') && m",
        )
        .await;
    assert_eq!(info, "1 of 10,000 spans match");
    assert!(browser.eval("return document.body.innerText.includes('op-9999')").await.as_bool().unwrap());
    browser.close().await;
}

/// The sidecar's admin port serves the UI, which reads the sidecar's own
/// spans and stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_on_a_sidecar() {
    let app = apps::echo().await;
    let proxy = TestProxy::to(app.addr).service("checkout").start().await;
    let admin = proxy.admin_url();
    let client = Client::http1();
    let page = client.get(&format!("{admin}/ui")).send().await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text().contains("<title>sidetrace</title>"));
    let config: Value =
        serde_json::from_slice(&client.get(&format!("{admin}/api/ui-config")).send().await.body).unwrap();
    assert_eq!(config["mode"], "sidecar");
    assert_eq!(config["service"], "checkout");

    for path in ["/pay/1", "/pay/2", "/cart"] {
        assert_eq!(client.get(&format!("{}{path}", proxy.inbound_url())).send().await.status, 200);
    }
    proxy.wait_for_spans(3).await;
    let Some(browser) = Browser::start("sidecar").await else { return };
    browser.goto(&format!("{admin}/ui/")).await;
    browser
        .wait_for("the sidecar's service in the graph", "return document.querySelector('.node[data-service=checkout]')")
        .await;
    browser.wait_for("its routes", &format!("{} >= 2", count(".routes tbody tr[tabindex]"))).await;
    browser.screenshot("sidecar-overview").await;
    browser.goto(&format!("{admin}/ui/#/traces?service=checkout")).await;
    browser.wait_for("its three traces", &format!("{} === 3", count(".traces tbody tr"))).await;
    browser.eval("document.querySelector('.traces tbody tr').click()").await;
    browser.wait_for("a waterfall of one span", &format!("{} === 1", count(".wf-row.span"))).await;
    browser.screenshot("sidecar-trace").await;
    browser.close().await;
}

/// The critical path, self times, the comparison's matching, the graph's
/// layout, the span filter and the OTLP/JSON reading, case by case.
#[test]
fn ui_logic_in_node() {
    let what = "Node.js for tests/ui_logic.mjs (part of the machine's image, as for scripts/setup/observe.sh)";
    let Some(()) = tools::require(what, tools::runs(std::path::Path::new("node"), "--version")) else { return };
    // A copy marked as ES modules: src/ui/ has no package.json, and the
    // browser needs none.
    let dir = tools::scratch_dir("ui-logic");
    for entry in std::fs::read_dir(tools::repo("src/ui")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "js") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(tools::repo("tests/ui_logic.mjs"), dir.join("ui_logic.mjs")).unwrap();
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).unwrap();
    tools::run_ok(std::process::Command::new("node").args(["--test", "ui_logic.mjs"]).current_dir(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}
