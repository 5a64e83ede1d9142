//! The collector's query API (shared-notes/ui-api-contract.md) over fixed
//! data, for the UI's browser test until the collector serves it: three
//! services and their two calls, two three-hop traces (producer → consumer
//! → store) with log lines, a stitched span and a short call in parallel,
//! and a trace of 10000 spans. The span filters of `/api/traces` follow
//! the contract; the rest answers the same whatever is asked.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const T2: &str = "5c0a3e1f9b2d4c6e8a0b1c2d3e4f5061";
pub const BIG: &str = "b19b19b19b19b19b19b19b19b19b19b1";
pub const BIG_SPANS: usize = 10_000;

pub struct Fixture {
    traces: Vec<(String, Vec<Value>, Vec<Value>)>,
    /// Calls of /api/dependencies: the overview's auto-refresh asks again.
    pub graph_asked: AtomicUsize,
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
    let mut spans = vec![
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
    // The store's span also names the short call beside it, as an
    // ambiguous stitch does.
    spans[5]["links"] = json!([{"trace_id": trace, "span_id": ids(4), "attributes": {"sidetrace.link": "candidate"}}]);
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
    pub fn new() -> Fixture {
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

/// The contract's endpoints over `fixture`, beside the UI.
pub fn router(fixture: Arc<Fixture>) -> Router {
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
