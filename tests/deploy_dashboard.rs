//! deploy/grafana/sidetrace.json, deploy/examples/prometheus/prometheus.yml
//! and deploy/prometheus/rules.yaml against real peers.
//!
//! - The dashboard type-checks against Grafana's published schema (npm
//!   `@grafana/schema`, `tsc --noEmit --strict`): the JSON is pasted into a
//!   `.ts` file as a `Dashboard`, each panel passed through a function typed
//!   `Panel` or `RowPanel` (so a misspelt panel field is an error too), and
//!   the few fields the schema types as string enums (`color.mode`,
//!   `thresholds.mode`) through a function that accepts only the enum's
//!   values.
//! - Two real sidecars (`target/debug/sidetrace run`) carry the demo's
//!   traffic: the demo's own producer (examples/apps/producer.rs) calls the
//!   demo's consumer (examples/apps/consumer.rs, which fails a fixed few ids
//!   with 500) through the producer's outbound side and the consumer's
//!   inbound side, plus routes past `--max-routes` and calls to a closed
//!   port. The consumer's exporter points at a closed port (retries, drops),
//!   the producer's at a stub that accepts everything.
//! - A real Prometheus scrapes them with the example scrape config's own
//!   relabeling rules: Debian's build lacks kubernetes_sd_configs, so the
//!   pod discovery is replaced by a file_sd target list that carries the
//!   `__meta_kubernetes_*` labels Kubernetes would give two injected pods
//!   (and a pod without the annotation, and a finished one, which must not
//!   be scraped). `promtool check config` checks that file.
//! - Every template variable is resolved from Prometheus as Grafana would
//!   (label_values → /api/v1/label/…/values), and every panel's every query,
//!   with the variables substituted twice (all their real values as a
//!   multi-value regex; then "All"), returns data: a non-empty result with a
//!   finite value over the traffic's time range.
//! - The rules loaded into that Prometheus evaluate without errors, every
//!   recording rule yields series, every metric name in the rules and the
//!   dashboard exists, and the alerts this traffic should raise (5xx budget
//!   burn, spans dropped, export failing and stalled, route overflow,
//!   refused upstream connects) are pending or firing with the labels the
//!   scrape gave.

mod support;

#[allow(dead_code)]
#[path = "../examples/apps/consumer.rs"]
mod consumer;
#[allow(dead_code)]
#[path = "../examples/apps/producer.rs"]
mod producer;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::prometheus::Prometheus;
use support::tools::{prometheus, promtool, read, repo, run_ok, tsc};
use support::{Client, TestProxy, apps, collectors, wait};

const DASHBOARD: &str = "deploy/grafana/sidetrace.json";
const SCRAPE_CONFIG: &str = "deploy/examples/prometheus/prometheus.yml";
const RULES: &str = "deploy/prometheus/rules.yaml";

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included (rows themselves left out).
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// 1. The Grafana schema.

/// The dashboard as a TypeScript expression (see the module doc).
fn typescript(v: &Value, parent: Option<&str>, key: Option<&str>, in_field_config: bool, out: &mut String) {
    match v {
        Value::Object(map) => {
            out.push('{');
            for (i, (k, x)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                typescript(x, key, Some(k), in_field_config || k == "fieldConfig", out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if key == Some("panels") {
                    out.push_str(if x["type"] == "row" { "row(" } else { "panel(" });
                    typescript(x, None, None, in_field_config, out);
                    out.push(')');
                } else {
                    typescript(x, parent, key, in_field_config, out);
                }
            }
            out.push(']');
        }
        Value::String(s)
            if in_field_config && key == Some("mode") && matches!(parent, Some("color" | "thresholds")) =>
        {
            let check = if parent == Some("color") { "colorMode" } else { "thresholdsMode" };
            out.push_str(&format!("{check}({})", serde_json::to_string(s).unwrap()));
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

const TS_PRELUDE: &str = "import type { Dashboard, Panel, RowPanel } from '@grafana/schema';
import { FieldColorModeId, ThresholdsMode } from '@grafana/schema';
// JSON strings where the schema has a string enum: one of the enum's values.
function colorMode(v: `${FieldColorModeId}`): FieldColorModeId { return v as FieldColorModeId; }
function thresholdsMode(v: `${ThresholdsMode}`): ThresholdsMode { return v as ThresholdsMode; }
function panel(p: Panel): Panel { return p; }
function row(r: RowPanel): RowPanel { return r; }
export const dashboard: Dashboard = ";

#[test]
fn dashboard_type_checks_against_grafana_schema() {
    let Some(tsc) = tsc() else { return };
    let mut source = TS_PRELUDE.to_string();
    typescript(&dashboard(), None, None, false, &mut source);
    source.push_str(";\n");
    // Next to node_modules, so that '@grafana/schema' resolves.
    let dir = tsc.ancestors().nth(3).unwrap().to_path_buf();
    let file = dir.join(format!("sidetrace-dashboard-check-{}.ts", std::process::id()));
    std::fs::write(&file, &source).unwrap();
    let out = Command::new("node")
        .arg(&tsc)
        .args(["--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext"])
        .arg(&file)
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "tsc rejects the dashboard:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// 2. The dashboard's own consistency.

#[test]
fn dashboard_panels_and_variables_are_consistent() {
    let d = dashboard();
    let vars: Vec<&str> =
        d["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(vars, ["datasource", "namespace", "service", "route", "pod"]);
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        for p in std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()) {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id {} twice", p["id"]);
        }
    }
    let all = panels(&d);
    assert!(all.len() >= 30, "{} panels", all.len());
    for p in all {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}: panel datasource");
        assert!(p["description"].as_str().is_some_and(|s| !s.is_empty()), "{title}: no description");
        let g = &p["gridPos"];
        assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24, "{title}: wider than the grid");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().unwrap()), "{title}: refId twice");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}: query datasource");
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split('$').skip(1) {
                let name: String = word.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                assert!(
                    vars.contains(&name.as_str()) || name == "__rate_interval",
                    "{title}: ${name} is not a variable of the dashboard"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Live: sidecars, traffic, Prometheus, every query.

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The file_sd target list standing in for Kubernetes pod discovery: what
/// role `pod` gives for two injected pods (one target per declared
/// container port, or the bare pod IP for a pod without ports), a pod
/// without the scrape annotation and one that has finished.
fn pod_targets(consumer_admin: u16, consumer_app: u16, producer_admin: u16) -> Value {
    let pod = |name: &str, rs: &str, phase: &str, annotated: Option<u16>, labels: &[(&str, &str)]| {
        let mut m = BTreeMap::from([
            ("__meta_kubernetes_namespace".to_string(), "shop".to_string()),
            ("__meta_kubernetes_pod_name".to_string(), name.to_string()),
            ("__meta_kubernetes_pod_ip".to_string(), "127.0.0.1".to_string()),
            ("__meta_kubernetes_pod_phase".to_string(), phase.to_string()),
            ("__meta_kubernetes_pod_controller_kind".to_string(), "ReplicaSet".to_string()),
            ("__meta_kubernetes_pod_controller_name".to_string(), rs.to_string()),
            ("__meta_kubernetes_pod_label_pod_template_hash".to_string(), rs.rsplit('-').next().unwrap().to_string()),
        ]);
        if let Some(port) = annotated {
            m.insert("__meta_kubernetes_pod_annotation_prometheus_io_scrape".into(), "true".into());
            m.insert("__meta_kubernetes_pod_annotation_prometheus_io_port".into(), port.to_string());
            m.insert("__meta_kubernetes_pod_annotation_prometheus_io_path".into(), "/metrics".into());
        }
        for (k, v) in labels {
            m.insert(format!("__meta_kubernetes_pod_label_{k}"), v.to_string());
        }
        m
    };
    let with_port = |mut labels: BTreeMap<String, String>, port: u16, name: &str| {
        labels.insert("__meta_kubernetes_pod_container_port_number".into(), port.to_string());
        labels.insert("__meta_kubernetes_pod_container_port_name".into(), name.into());
        json!({"targets": [format!("127.0.0.1:{port}")], "labels": labels})
    };
    // app.kubernetes.io/name wins over app, which wins over the workload.
    let consumer = pod(
        "consumer-7d9f8b6c5-x2kqz",
        "consumer-7d9f8b6c5",
        "Running",
        Some(consumer_admin),
        &[("app_kubernetes_io_name", "consumer"), ("app", "orders-legacy")],
    );
    // No app labels: the Deployment's name, from its ReplicaSet's.
    let producer = pod("producer-5c4d8f7b9-q8wzl", "producer-5c4d8f7b9", "Running", Some(producer_admin), &[]);
    let unannotated = pod("other-6b7c9d-abcde", "other-6b7c9d", "Running", None, &[("app", "other")]);
    let finished = pod("batch-1-zzzzz", "batch-1", "Succeeded", Some(producer_admin), &[("app", "batch")]);
    json!([
        with_port(consumer.clone(), consumer_app, "http"),
        with_port(consumer, consumer_admin, "sidetrace-admin"),
        {"targets": ["127.0.0.1"], "labels": producer},
        with_port(unannotated, apps::refusing().port(), "http"),
        with_port(finished, apps::refusing().port(), "http"),
    ])
}

/// The example scrape config with the pod discovery swapped for `targets`
/// (a file_sd file), the rules file from the repo, and 1 s intervals.
fn test_scrape_config(targets: &std::path::Path) -> String {
    let mut config = read(SCRAPE_CONFIG);
    let swaps = [
        (
            "    kubernetes_sd_configs:\n      - role: pod\n",
            format!("    file_sd_configs:\n      - files: ['{}']\n", targets.display()),
        ),
        ("  - /etc/prometheus/rules/sidetrace.yaml\n", format!("  - '{}'\n", repo(RULES).display())),
        ("  scrape_interval: 15s\n", "  scrape_interval: 1s\n".to_string()),
        ("  evaluation_interval: 30s\n", "  evaluation_interval: 1s\n".to_string()),
    ];
    for (from, to) in swaps {
        assert!(config.contains(from), "{SCRAPE_CONFIG} no longer has {from:?}");
        config = config.replace(from, &to);
    }
    config
}

/// One GET through an HTTP proxy (absolute-form) or straight to a server
/// (origin-form); the status, or None when the call failed.
async fn one_get(to: SocketAddr, uri: &str) -> Option<u16> {
    let client = Client::http1();
    let call = match uri.starts_with("http") {
        true => client.get(uri).via(to),
        false => client.get(&format!("http://{to}{uri}")),
    };
    let r = call.header("host", "consumer").try_send().await.ok()?;
    Some(r.status.as_u16())
}

/// Grafana's formatting of a multi-value variable inside a `=~"..."`
/// matcher: each value regex-escaped (with the backslash doubled for the
/// PromQL string), alternatives in parentheses.
fn multi_value(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            let mut s = String::new();
            for c in v.chars() {
                if "\\^$.|?*+()[]{}'".contains(c) {
                    s.push_str("\\\\");
                }
                s.push(c);
            }
            s
        })
        .collect();
    format!("({})", escaped.join("|"))
}

/// `label_values(selector, label)` or `label_values(label)`.
fn parse_label_values(query: &str) -> (Option<&str>, &str) {
    let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect(query);
    match inner.rsplit_once(',') {
        Some((selector, label)) => (Some(selector.trim()), label.trim()),
        None => (None, inner.trim()),
    }
}

fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = expr.replace("$__rate_interval", "5s");
    // Longest names first, so that no name is replaced inside another.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${{{name}}}"), &vars[name]).replace(&format!("${name}"), &vars[name]);
    }
    assert!(!out.contains('$'), "a variable is left in {out}");
    out
}

/// Metric names a PromQL expression mentions (sidetrace's families and the
/// process ones; recorded series are level:metric:operations).
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            ["sidetrace_", "http_server_", "http_client_", "process_"].iter().any(|p| w.starts_with(p))
                || (w.matches(':').count() == 2 && !w.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(str::to_string)
        .collect()
}

/// A series' values as numbers (a range result's `values`, an instant
/// result's `value`).
fn finite_values(series: &Value) -> Vec<f64> {
    let points: Vec<&Value> = match series.get("values") {
        Some(vs) => vs.as_array().unwrap().iter().collect(),
        None => vec![&series["value"]],
    };
    points.iter().filter_map(|p| p[1].as_str()?.parse::<f64>().ok()).filter(|v| v.is_finite()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_returns_data_from_a_real_prometheus() {
    let (Some(promtool), Some(_)) = (promtool(), prometheus()) else { return };
    let dir = support::tools::scratch_dir("deploy-dashboard");

    // The demo's consumer app, an accepting collector for the producer's
    // exporter, and a closed port for the consumer's.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    tokio::spawn(consumer::run(listener));
    let collector = collectors::ok().await;
    let closed = apps::refusing();

    let common = ["--access-log", "off", "--workers", "1", "--export-delay", "200ms"];
    let consumer_otlp = format!("http://{closed}");
    let consumer_sidecar = TestProxy::to(app)
        .service("consumer")
        .flags(&["--outbound", "off", "--max-routes", "2", "--otlp-endpoint", &consumer_otlp])
        .flags(&["--retry-initial", "100ms", "--retry-max", "200ms", "--retry-max-elapsed", "1s"])
        .flags(&common)
        .spawn();
    let producer_otlp = format!("http://{collector}");
    let producer_sidecar = TestProxy::builder()
        .service("producer")
        .flags(&["--inbound", "off", "--otlp-endpoint", &producer_otlp])
        .flags(&common)
        .spawn();
    let (c_in_addr, c_admin) = (consumer_sidecar.inbound.unwrap(), consumer_sidecar.admin.unwrap().port());
    let (p_out_addr, p_admin) = (producer_sidecar.outbound.unwrap(), producer_sidecar.admin.unwrap().port());

    // Prometheus, through the example's relabeling, with the rules.
    let targets = dir.join("pods.json");
    std::fs::write(&targets, pod_targets(c_admin, app.port(), p_admin).to_string()).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, test_scrape_config(&targets)).unwrap();
    let checked = run_ok(Command::new(&promtool).args(["check", "config"]).arg(&config));
    assert!(String::from_utf8_lossy(&checked.stdout).contains("SUCCESS"));
    let prom = Prometheus::start(&dir, &config, &[]).await;
    let both_up = wait::until(Duration::from_secs(30), async || prom.instant("up == 1").await.len() == 2).await;
    assert!(both_up.is_some(), "targets: {}\n{}", prom.api("targets", &[]).await, prom.log());

    // Exactly the two annotated, running pods, once each, labelled as the
    // README says (service by app.kubernetes.io/name, else the workload).
    let active = prom.api("targets", &[]).await["activeTargets"].as_array().unwrap().clone();
    let mut seen: Vec<(String, String, String, String)> = active
        .iter()
        .map(|t| {
            let l = &t["labels"];
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("service"), s("namespace"), s("pod"), s("instance"))
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("consumer".into(), "shop".into(), "consumer-7d9f8b6c5-x2kqz".into(), format!("127.0.0.1:{c_admin}")),
            ("producer".into(), "shop".into(), "producer-5c4d8f7b9-q8wzl".into(), format!("127.0.0.1:{p_admin}")),
        ]
    );

    // Traffic: the demo's producer through both sidecars for 3 s (bounded
    // by time and by its 5 ms interval), routes past --max-routes, and
    // calls to a closed port.
    let started = now();
    // A first failure of each kind, scraped before the rest: such a series
    // appears with its first failure, and rate() counts only what follows.
    let refused = format!("http://{closed}/orders/1");
    let first = [
        one_get(c_in_addr, "/orders/1003").await,
        one_get(c_in_addr, "/inventory/5005").await,
        one_get(p_out_addr, &refused).await,
    ];
    assert_eq!(first, [Some(500), Some(500), Some(502)], "the consumer fails ids 1003 and 5005");
    let scraped = wait::until(Duration::from_secs(30), async || {
        prom.instant(r#"http_server_request_duration_seconds_count{http_response_status_code="500"}"#).await.len() == 2
            && prom
                .instant(r#"sidetrace_upstream_connect_duration_seconds_count{outcome="connection_refused"}"#)
                .await
                .len()
                == 1
    })
    .await;
    assert!(scraped.is_some(), "the first failures were not scraped:\n{}", prom.log());
    let tally = producer::run(p_out_addr, c_in_addr, Duration::from_millis(5), Duration::from_secs(3)).await;
    assert!(tally.ok > 50 && tally.server_errors > 0, "{tally:?}");
    let mut overflow = Vec::new();
    for word in ["alpha", "beta", "gamma", "delta", "epsilon"] {
        overflow.push(one_get(c_in_addr, &format!("/nope/{word}")).await);
    }
    for _ in 0..3 {
        overflow.push(one_get(p_out_addr, &refused).await);
    }
    assert_eq!(overflow, [404, 404, 404, 404, 404, 502, 502, 502].map(Some), "consumer 404s, refused 502s");
    let traffic_end = now();

    // Wait until Prometheus holds the whole traffic and the export outcomes.
    let answered = (tally.answered() + 7) as f64;
    let settled = wait::until(Duration::from_secs(60), async || {
        let value = async |q: &str| prom.value(q).await.unwrap_or(0.0);
        value(r#"sum(http_server_request_duration_seconds_count{service="consumer"})"#).await >= answered
            && value(r#"sum(sidetrace_spans_dropped_total{service="consumer"})"#).await > 0.0
            && value(r#"sum(sidetrace_exporter_batches_total{service="producer", outcome="ok"})"#).await > 0.0
    })
    .await;
    assert!(settled.is_some(), "prometheus did not see the traffic and exports:\n{}", prom.log());
    let end = now() + 1.0;

    // Variables, resolved in order as Grafana would.
    let d = dashboard();
    let mut all_values: BTreeMap<String, String> = BTreeMap::new();
    let mut all_all: BTreeMap<String, String> = BTreeMap::new();
    for v in d["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_string();
        if v["type"] == "datasource" {
            continue;
        }
        let query = substitute(v["query"].as_str().unwrap(), &all_values);
        let (selector, label) = parse_label_values(&query);
        let mut params = vec![("start", format!("{started:.3}")), ("end", format!("{end:.3}"))];
        if let Some(s) = selector {
            params.push(("match[]", s.to_string()));
        }
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let values: Vec<String> = prom
            .api(&format!("label/{label}/values"), &params)
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert!(!values.is_empty(), "variable {name} ({query}) has no values");
        match name.as_str() {
            "namespace" => assert_eq!(values, ["shop"]),
            "service" => assert_eq!(values, ["consumer", "producer"]),
            "route" => {
                for r in ["/orders/{id}", "/inventory/{id}", "_other"] {
                    assert!(values.contains(&r.to_string()), "route {r} not in {values:?}");
                }
            }
            _ => {}
        }
        all_values.insert(name.clone(), multi_value(&values));
        all_all.insert(name, v["allValue"].as_str().unwrap_or(".*").to_string());
    }

    // Every query of every panel, both ways.
    let mut names = BTreeSet::new();
    let mut failures = Vec::new();
    let mut queries = 0;
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap();
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            names.extend(metric_names(expr));
            for (how, vars) in [("each value", &all_values), ("All", &all_all)] {
                let q = substitute(expr, vars);
                queries += 1;
                let (start, end) = (format!("{started:.3}"), format!("{end:.3}"));
                let params = [("query", q.as_str()), ("start", &start), ("end", &end), ("step", "1")];
                let range = prom.api("query_range", &params).await;
                let result = range["result"].as_array().unwrap();
                if !result.iter().any(|s| !finite_values(s).is_empty()) {
                    failures.push(format!("{title} [{}] ({how}): no data from\n{q}\n{range}", t["refId"]));
                }
                if t["instant"] == true {
                    let at = format!("{traffic_end:.3}");
                    let result = prom.api("query", &[("query", &q), ("time", &at)]).await["result"].clone();
                    if !result.as_array().unwrap().iter().any(|s| !finite_values(s).is_empty()) {
                        failures.push(format!("{title} [{}] ({how}): no data at {at} from\n{q}", t["refId"]));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {queries} queries returned no data:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );

    // The rules: evaluated without error, recording rules yield series.
    let rules_ok = wait::until(Duration::from_secs(30), async || {
        let groups = prom.api("rules", &[]).await;
        for r in groups["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()) {
            if r["health"] != "ok" {
                return false;
            }
            if r["type"] == "recording"
                && prom.instant(&format!("count({})", r["name"].as_str().unwrap())).await.is_empty()
            {
                return false;
            }
        }
        true
    })
    .await;
    let groups = prom.api("rules", &[]).await;
    let rules: Vec<&Value> =
        groups["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert!(rules.len() >= 20, "rules not loaded: {groups}");
    assert!(rules_ok.is_some(), "rules unhealthy or recording rules without series: {groups}");
    for r in &rules {
        names.extend(metric_names(r["query"].as_str().unwrap()));
    }

    // Every metric name the dashboard and the rules use exists.
    let known: BTreeSet<String> = prom
        .api("label/__name__/values", &[])
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let unknown: Vec<&String> = names.iter().filter(|n| !known.contains(*n)).collect();
    assert!(unknown.is_empty(), "metric names no sidecar exposes (nor a rule records): {unknown:?}");

    // The alerts this traffic must raise (pending: their `for` has not
    // passed yet), with the labels the scrape gave.
    let expected: [(&str, &[(&str, &str)]); 6] = [
        ("SidetraceErrorBudgetBurnFast", &[("service", "consumer"), ("http_route", "/orders/{id}")]),
        ("SidetraceSpansDropped", &[("service", "consumer"), ("reason", "retries_exhausted")]),
        ("SidetraceExportFailing", &[("service", "consumer"), ("exporter", "otlp_http")]),
        ("SidetraceExportStalled", &[("service", "consumer"), ("exporter", "otlp_http")]),
        ("SidetraceRouteOverflow", &[("service", "consumer"), ("direction", "inbound")]),
        ("SidetraceUpstreamConnectFailures", &[("service", "producer"), ("direction", "outbound")]),
    ];
    let raised = |alerts: &Value, name: &str, labels: &[(&str, &str)]| {
        alerts["alerts"].as_array().unwrap().iter().any(|a| {
            a["labels"]["alertname"] == name
                && a["labels"]["namespace"] == "shop"
                && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
        })
    };
    let all_raised = wait::until(Duration::from_secs(30), async || {
        let alerts = prom.api("alerts", &[]).await;
        expected.iter().all(|(n, l)| raised(&alerts, n, l))
    })
    .await;
    let alerts = prom.api("alerts", &[]).await;
    let missing: Vec<&str> = expected.iter().filter(|(n, l)| !raised(&alerts, n, l)).map(|(n, _)| *n).collect();
    assert!(all_raised.is_some(), "alerts not raised: {missing:?}\n{alerts}");
    drop(prom);
    drop(consumer_sidecar);
    drop(producer_sidecar);
    let _ = std::fs::remove_dir_all(&dir);
}
