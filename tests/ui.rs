//! The web UI in a real browser (headless Chromium over WebDriver).
//!
//! `ui_against_the_contract` serves `ui::router()` beside fixture handlers
//! that answer the collector's API contract
//! (shared-notes/ui-api-contract.md) with three services, two three-hop
//! traces with log lines and a stitched span, and a trace of 10000 spans;
//! `ui_on_a_sidecar` opens a real sidecar's admin port, where the UI reads
//! the sidecar's own endpoints; `ui_on_the_running_demo` opens the UI of a
//! running `sidetrace demo` (real sidecars, the real collector) with a
//! stored 10000-span trace beside the demo's traffic. Screenshots go to
//! target/ui-screenshots/.
//! `ui_logic_in_node` runs the pure logic's cases (tests/ui/logic.mjs)
//! under Node's test runner.
//! No assertion is about time: each wait is bounded only so that a broken
//! page fails instead of hanging.

#[path = "ui/contract.rs"]
mod contract;
mod support;

use axum::Router;
use contract::{BIG, BIG_SPANS, Fixture, T1, T2};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::browser::Browser;
use support::{Client, TestProxy, apps, tools, wait};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sidetrace::web::serve(listener, app, None));
    format!("http://{addr}")
}

fn count(selector: &str) -> String {
    format!("return document.querySelectorAll({selector:?}).length")
}

/// Opens a trace of `BIG_SPANS` spans at `url`: the DOM holds only the
/// rows in view, at the top and after a scroll to the end, the list is as
/// tall as every span, and `filter` matches exactly one span.
async fn big_trace(browser: &Browser, url: &str, screenshot: &str, filter: &str) {
    browser.goto(url).await;
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
    browser.screenshot(screenshot).await;
    let set = format!(
        "const f = document.querySelector('.span-filter'); f.value = {}; f.dispatchEvent(new Event('input'))",
        serde_json::Value::from(filter)
    );
    browser.eval(&set).await;
    let info = browser
        .wait_for(
            "one span matching",
            "const m = document.querySelector('.match-info').innerText; return m.startsWith('1 of') && m",
        )
        .await;
    assert_eq!(info, "1 of 10,000 spans match");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_against_the_contract() {
    let Some(browser) = Browser::start("contract").await else { return };
    let fixture = Arc::new(Fixture::new());
    let base = serve(contract::router(fixture.clone())).await;

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
    assert_eq!(browser.eval(&count(".wf-row .badge.linked")).await, 1);
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
    assert!(detail.as_str().unwrap().contains(&format!("span {}", id(4))), "its link: {detail}");
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
    big_trace(&browser, &format!("{base}/ui/#/traces/{BIG}"), "big-trace", "n=9999").await;
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
    let what = "Node.js for tests/ui/logic.mjs (part of the machine's image, as for scripts/setup/observe.sh)";
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
    std::fs::copy(tools::repo("tests/ui/logic.mjs"), dir.join("logic.mjs")).unwrap();
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).unwrap();
    tools::run_ok(std::process::Command::new("node").args(["--test", "logic.mjs"]).current_dir(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sidetrace demo`'s address lines: (the collector's OTLP/HTTP address, the UI's URL).
fn demo_addresses(lines: &[String]) -> Option<(String, String)> {
    let otlp = lines.iter().find_map(|l| l.trim_start().strip_prefix("collector"))?;
    let otlp = otlp.trim_start().strip_prefix("OTLP ")?.split(',').next()?.to_string();
    let ui = lines.iter().find_map(|l| l.strip_prefix("the UI, while the demo runs:"))?.trim().to_string();
    Some((otlp, ui))
}

const DEMO_BIG: &str = "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";

/// One trace of `BIG_SPANS` spans: a SERVER root in a service of its own
/// (`bulk-import`, no calls to or from the demo's services) and a 4-ary
/// tree of INTERNAL spans beneath it.
fn big_demo_trace() -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use support::collector::{request, span, string};
    let trace: Vec<u8> = (0..16).map(|_| 0xd1).collect();
    let base = support::collector::now_ns() - 2_000_000_000;
    let spans: Vec<_> = (0..BIG_SPANS as u64)
        .map(|i| {
            let depth = (i as f64 * 3.0 + 1.0).log(4.0).floor() as u64;
            let start = base + i * 1_000 + depth * 10_000;
            let parent = (i > 0).then(|| (i - 1) / 4 + 1);
            let (kind, name) = if i == 0 { (2, "POST /import") } else { (1, "import row") };
            let attrs = vec![string("bulk.row", &format!("n={i}"))];
            span(
                "bulk-import",
                &trace,
                i + 1,
                parent,
                name,
                kind,
                start,
                Duration::from_millis(1_000 - depth * 50),
                attrs,
            )
        })
        .collect();
    request(&spans)
}

/// The real thing: `sidetrace demo` runs producer → consumer → store behind
/// sidecars that export to its in-process collector, and the collector's
/// UI shows what a user opening the printed address would look at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_on_the_running_demo() {
    let Some(browser) = Browser::start("demo").await else { return };
    let mut demo = support::process::Process::spawn(
        "sidetrace demo",
        &mut support::proxy::command(&["demo", "--ui", "127.0.0.1:0"]),
    );
    let started = wait::until_sync(Duration::from_secs(30), || {
        demo.assert_running();
        let lines = demo.stdout_lines();
        lines.iter().any(|l| l.starts_with("calling GET")).then(|| demo_addresses(&lines)).flatten()
    });
    let (otlp, ui) = started.unwrap_or_else(|| panic!("the demo did not start:\n{}", demo.output()));
    let api = ui.trim_end_matches("/ui").to_string();
    let client = Client::http1();
    let get = async |path: &str| -> Value {
        let r = client.get(&format!("{api}{path}")).send().await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    };

    // A few seconds of traffic, and one stored trace of 10000 spans.
    tokio::time::sleep(Duration::from_secs(3)).await;
    use prost::Message;
    let big = big_demo_trace().encode_to_vec();
    let r = client
        .post(&format!("http://{otlp}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(big)
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The graph: the three services and both calls; the big trace's
    // service stands alone, calling nobody.
    browser.goto(&format!("{ui}/")).await;
    browser.wait_for("the demo's services in the graph", &format!("{} >= 3", count(".graph .node"))).await;
    let names: Vec<String> = serde_json::from_value(
        browser.eval("return [...document.querySelectorAll('.graph .node')].map(n => n.dataset.service).sort()").await,
    )
    .unwrap();
    for name in ["producer", "consumer", "store"] {
        assert!(names.iter().any(|n| n == name), "{name} missing from the graph: {names:?}");
    }
    let edges = browser.eval("return [...document.querySelectorAll('.graph .edge')].map(e => e.dataset.client + '>' + e.dataset.server).sort()").await;
    assert_eq!(edges, json!(["consumer>store", "producer>consumer"]), "the calls a user made, and no others");
    // Each call's label: its rate while the demo ran, not spread over an hour.
    let deps = get("/api/dependencies").await;
    let calls = deps["edges"].as_array().unwrap();
    assert!(calls.iter().all(|e| e["rate"].as_f64().unwrap() > 1.0), "the demo calls many times a second: {deps}");
    let producer =
        browser.eval("return document.querySelector('.node[data-service=producer] .node-sub').textContent").await;
    assert!(producer.as_str().unwrap().contains("calls out"), "the producer calls, it is not idle: {producer}");
    browser.wait_for("the routes table", &format!("{} >= 4", count(".routes tbody tr[tabindex]"))).await;
    browser.screenshot("demo-overview").await;

    // Search by an attribute: only traces with a span of that route.
    browser.goto(&format!("{ui}/#/traces")).await;
    browser.wait_for("the search form", "return document.querySelector('.search-form textarea[name=attr]')").await;
    // The unfiltered list stays until the search's own answer replaces it.
    browser.wait_for("the first list", "return document.querySelector('.traces tbody tr')").await;
    browser
        .eval("document.querySelector('.results').dataset.stale = 'yes'; document.querySelector('textarea[name=attr]').value = 'http.route=/stock/{id}'; document.querySelector('.search-form button[type=submit]').click()")
        .await;
    browser
        .wait_for("the search in the URL", "return location.hash.includes('attr=http.route%3D%2Fstock%2F%7Bid%7D')")
        .await;
    let found = browser
        .wait_for("traces found", "const r = [...document.querySelectorAll('.results:not([data-stale]) .traces tbody tr')]; return r.length > 1 && r.map(t => [t.dataset.traceId, t.cells[4].innerText.split('\\n')[0], t.cells[2].innerText])")
        .await;
    let found: Vec<(String, String, String)> = serde_json::from_value(found).unwrap();
    for (id, _, _) in &found {
        let t = get(&format!("/api/traces/{id}")).await;
        let has = t["spans"].as_array().unwrap().iter().any(|s| s["attributes"]["http.route"] == "/stock/{id}");
        assert!(has, "trace {id} has no span of /stock/{{id}}: {t}");
    }
    browser.screenshot("demo-search").await;
    // Two whole traces of the same call: four spans each.
    let whole: Vec<&(String, String, String)> =
        found.iter().filter(|(_, spans, root)| spans == "4" && root.contains("GET /orders/{id}")).collect();
    assert!(whole.len() >= 2, "two whole three-hop traces among {found:?}");
    let (a, b) = (whole[0].0.clone(), whole[1].0.clone());
    // Ticked in the list and compared side by side.
    for id in [&a, &b] {
        browser
            .eval(&format!(
                "document.querySelector('.traces tbody tr[data-trace-id=\"{id}\"] input[type=checkbox]').click()"
            ))
            .await;
    }
    let compare =
        browser.eval("const b = document.querySelector('.compare-button'); return !b.disabled && b.textContent").await;
    assert_eq!(compare, "Compare the two selected");

    browser.eval("document.querySelector('.compare-button').click()").await;
    browser.wait_for("both traces compared", &format!("return location.hash === '#/compare/{a}/{b}'")).await;
    browser.wait_for("the comparison", &format!("{} === 4", count(".cmp-row:not(.cmp-head)"))).await;
    let summary = browser.eval("return document.querySelector('.compare > p.muted').innerText").await;
    assert!(summary.as_str().unwrap().contains("4 in both, 0 only in A, 0 only in B"), "{summary}");
    browser.screenshot("demo-compare").await;

    // One three-hop trace: 4 spans across 3 services, each with its
    // access-log line, the stitched call marked, the critical path drawn.
    // From the comparison, A's link opens it.
    browser.eval("document.querySelector('.compare-side a').click()").await;
    browser.wait_for("the trace's waterfall", &format!("{} === 4", count(".wf-row.span"))).await;
    assert_eq!(browser.eval("return location.hash").await, format!("#/traces/{a}"));
    assert_eq!(browser.eval("return document.querySelector('.span-count').innerText").await, "4 spans");
    let services = browser
        .eval("return [...new Set([...document.querySelectorAll('.wf-row.span .svc')].map(s => s.textContent))].sort()")
        .await;
    assert_eq!(services, json!(["consumer", "producer", "store"]));
    let spans = browser.eval("return [...document.querySelectorAll('.wf-row.span')].map(r => r.dataset.spanId)").await;
    let logs = browser
        .eval("return [...document.querySelectorAll('.wf-row.log')].map(r => [r.dataset.spanId, r.innerText])")
        .await;
    let logs: Vec<(String, String)> = serde_json::from_value(logs).unwrap();
    assert_eq!(logs.len(), 4, "one access-log line per span: {logs:?}");
    for (span, line) in &logs {
        assert!(spans.as_array().unwrap().iter().any(|s| s == span), "{line} names no span of the trace");
        assert!(line.contains("HTTP/1.1"), "an access-log line: {line}");
    }
    let stitched = browser.eval("return [...document.querySelectorAll('.wf-row.span')].filter(r => r.querySelector('.badge.stitched')).map(r => r.querySelector('.svc').textContent + ' ' + r.querySelector('.op').textContent)").await;
    assert_eq!(
        stitched,
        json!(["consumer GET /stock/{id}"]),
        "the consumer's call to the store, joined by its sidecar"
    );
    // A chain of four calls, each waiting for the next: all on the path.
    assert_eq!(browser.eval(&count(".wf-row.span.critical")).await, 4);
    assert!(browser.eval(&format!("{} >= 4", count(".wf-crit"))).await.as_bool().unwrap());
    browser.screenshot("demo-trace").await;

    // The stored 10000-span trace: only the rows in view are in the DOM,
    // and the span filter finds one row among them by its attribute.
    big_trace(&browser, &format!("{ui}/#/traces/{DEMO_BIG}"), "demo-big-trace", "bulk.row=n=9999").await;
    browser.close().await;

    demo.signal(libc::SIGINT);
    let status = demo.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", demo.output());
}
