//! deploy/examples: every Kubernetes manifest validates against the
//! Kubernetes 1.30 schemas (`kubernetes-validate --strict`, which rejects
//! unknown fields), and the pieces fit together: the demo's namespace asks
//! for injection and sends spans to the collector's gateway Service, and
//! its three apps (the sidetrace image running `sidetrace demo --only`)
//! call each other through their Services; the
//! gateway's loadbalancing exporter routes by trace id to the sampler
//! Service's pods on the port their receiver listens on; every collector
//! pipeline names components that are defined, and every defined component
//! is used. (No OpenTelemetry Collector binary is available here to load
//! the configs; these checks are what its config validation does first.)
//! The Prometheus scrape config is checked and used for real in
//! tests/deploy_dashboard.rs.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use support::python::yaml_docs;
use support::tools::{kubernetes_validate, repo};

const EXAMPLES: &str = "deploy/examples";

/// Every `.yaml` file under deploy/examples: all Kubernetes manifests
/// (prometheus.yml, a Prometheus config, ends in `.yml`).
fn manifests() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![repo(EXAMPLES)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every document of every manifest.
fn objects(python: &std::path::Path) -> Vec<Value> {
    manifests().iter().flat_map(|f| yaml_docs(python, &std::fs::read_to_string(f).unwrap())).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, namespace: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
            o["kind"] == kind && o["metadata"]["name"] == name && ns == namespace
        })
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} in {EXAMPLES}"))
}

#[test]
fn every_manifest_validates_against_kubernetes_1_30() {
    let Some(validate) = kubernetes_validate() else { return };
    let files = manifests();
    assert!(files.len() >= 7, "{files:?}");
    let out = Command::new(validate).args(["--strict", "-k", "1.30.0"]).args(&files).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate:\n{report}");
    // One `passed` line per document: nothing was skipped as unknown.
    let Some(python) = support::python::with(&["yaml"]) else { return };
    let documents = objects(&python).len();
    let passed = report.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(passed, documents, "{report}");
}

/// A demo container's `sidetrace demo` flags, as `--name` → value.
fn demo_flags(deployment: &Value) -> std::collections::BTreeMap<String, String> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"], serde_json::json!(["/usr/local/bin/sidetrace"]), "{container}");
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "demo", "{args:?}");
    args[1..]
        .iter()
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or_else(|| panic!("{a}: flags are written --name=value"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_demo_namespace_is_injected_and_its_services_fit() {
    let Some(python) = support::python::with(&["yaml"]) else { return };
    let all = objects(&python);
    let ns = find(&all, "Namespace", "", "sidetrace-demo");
    assert_eq!(ns["metadata"]["labels"]["sidetrace.io/inject"], "enabled");
    // The webhook reads these from the Namespace (tests/k8s_webhook.rs).
    let collector = find(&all, "Service", "observability", "otel-collector");
    let http = collector["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "otlp-http").unwrap();
    assert_eq!(
        ns["metadata"]["annotations"]["sidetrace.io/otlp-endpoint"],
        format!("http://otel-collector.observability:{}", http["port"])
    );
    let chart: Value = serde_norway::from_str(&support::tools::read("deploy/helm/sidetrace/Chart.yaml")).unwrap();
    let image = format!("sidetrace:{}", chart["appVersion"].as_str().unwrap());
    // producer → consumer → store, as `sidetrace demo` runs them, each app
    // the sidetrace image running `sidetrace demo --only APP`.
    let mut downstream_of = std::collections::BTreeMap::new();
    for app in ["producer", "consumer", "store"] {
        let d = find(&all, "Deployment", "sidetrace-demo", app);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["image"], image.as_str(), "{app}: the demo runs the sidetrace image");
        // Not the proxy's UID, which the redirect rules leave alone.
        assert!(pod["securityContext"]["runAsUser"].as_u64().is_some_and(|u| u != 2102), "{app}");
        // The injector names service.name from this label.
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], app);
        let flags = demo_flags(d);
        assert_eq!(flags.get("--only").map(String::as_str), Some(app), "{flags:?}");
        if let Some(url) = flags.get("--downstream") {
            downstream_of.insert(app, url.clone());
        }
        if app == "producer" {
            continue;
        }
        let service = find(&all, "Service", "sidetrace-demo", app);
        let selector = service["spec"]["selector"].as_object().unwrap();
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        assert!(selector.iter().all(|(k, v)| &labels[k] == v), "the Service selects the {app}'s pods");
        let port = &service["spec"]["ports"][0];
        let container_ports = pod["containers"][0]["ports"].as_array().unwrap();
        let target = container_ports.iter().find(|p| p["name"] == port["targetPort"]).unwrap();
        assert_eq!(flags.get("--listen").cloned(), Some(format!("0.0.0.0:{}", target["containerPort"])), "{app}");
        let called_by = if app == "consumer" { "producer" } else { "consumer" };
        assert_eq!(
            downstream_of.get(called_by),
            Some(&format!("http://{app}.sidetrace-demo.svc:{}", port["port"])),
            "the {called_by} calls the {app} Service"
        );
    }
}

/// A collector config from its ConfigMap.
fn collector_config(python: &std::path::Path, all: &[Value], name: &str) -> Value {
    let cm = find(all, "ConfigMap", "observability", name);
    let mut docs = yaml_docs(python, cm["data"]["config.yaml"].as_str().unwrap());
    assert_eq!(docs.len(), 1);
    let config = docs.remove(0);
    // What the collector checks first: pipelines name defined components,
    // and (stricter than the collector) nothing defined goes unused.
    let mut used = BTreeSet::new();
    for (pipeline, p) in config["service"]["pipelines"].as_object().unwrap() {
        for section in ["receivers", "processors", "exporters"] {
            for c in p[section].as_array().into_iter().flatten() {
                let c = c.as_str().unwrap();
                assert!(config[section].get(c).is_some(), "{name}: pipeline {pipeline} names undefined {section} {c}");
                used.insert((section, c.to_string()));
            }
        }
    }
    for section in ["receivers", "processors", "exporters"] {
        for c in config[section].as_object().unwrap().keys() {
            assert!(used.contains(&(section, c.clone())), "{name}: {section} {c} is defined but not used");
        }
    }
    for e in config["service"]["extensions"].as_array().into_iter().flatten() {
        assert!(config["extensions"].get(e.as_str().unwrap()).is_some(), "{name}: extension {e}");
    }
    config
}

fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap()
}

#[test]
fn the_collector_tiers_route_whole_traces_to_the_samplers() {
    let Some(python) = support::python::with(&["yaml"]) else { return };
    let all = objects(&python);
    let gateway = collector_config(&python, &all, "otel-gateway");
    let sampler = collector_config(&python, &all, "otel-sampler");

    // Tier 1 routes by trace id to the sampler Service's pods.
    let lb = &gateway["exporters"]["loadbalancing"];
    assert_eq!(lb["routing_key"], "traceID");
    let k8s = &lb["resolver"]["k8s"];
    let (svc_name, svc_ns) = k8s["service"].as_str().unwrap().split_once('.').unwrap();
    let svc = find(&all, "Service", svc_ns, svc_name);
    let lb_port = k8s["ports"][0].as_u64().unwrap();
    let svc_port = svc["spec"]["ports"].as_array().unwrap().iter().find(|p| p["port"] == lb_port).expect("port");
    // The sampler's receiver listens there, in the pods the Service selects.
    assert_eq!(
        port_of(sampler["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].as_str().unwrap()) as u64,
        lb_port
    );
    let sampler_pods = find(&all, "Deployment", "observability", "otel-sampler");
    let labels = &sampler_pods["spec"]["template"]["metadata"]["labels"];
    assert!(svc["spec"]["selector"].as_object().unwrap().iter().all(|(k, v)| &labels[k] == v));
    let ports = sampler_pods["spec"]["template"]["spec"]["containers"][0]["ports"].as_array().unwrap();
    assert!(ports.iter().any(|p| p["name"] == svc_port["targetPort"] && p["containerPort"] == lb_port));
    // The resolver reads EndpointSlices: the gateway's service account may.
    let gateway_pods = find(&all, "Deployment", "observability", "otel-gateway");
    let account = gateway_pods["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap();
    let binding = all
        .iter()
        .find(|o| o["kind"] == "RoleBinding" && o["subjects"].as_array().unwrap().iter().any(|s| s["name"] == account))
        .expect("a RoleBinding for the gateway's service account");
    let role = find(&all, "Role", svc_ns, binding["roleRef"]["name"].as_str().unwrap());
    assert!(role["rules"].as_array().unwrap().iter().any(|r| {
        r["resources"].as_array().unwrap().contains(&"endpointslices".into())
            && ["list", "watch"].iter().all(|v| r["verbs"].as_array().unwrap().contains(&(*v).into()))
    }));

    // Tier 2 samples whole traces and exports the kept ones.
    let processors: Vec<&str> = sampler["service"]["pipelines"]["traces"]["processors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(processors.contains(&"tail_sampling"), "{processors:?}");
    assert_eq!(processors.first(), Some(&"memory_limiter"), "memory_limiter comes first");

    // The demo's sidecars export to the gateway's OTLP/HTTP port, which
    // its receiver serves.
    let ns = find(&all, "Namespace", "", "sidetrace-demo");
    let endpoint = ns["metadata"]["annotations"]["sidetrace.io/otlp-endpoint"].as_str().unwrap();
    let host = endpoint.strip_prefix("http://").unwrap().split(':').next().unwrap();
    let (name, namespace) = host.split_once('.').unwrap();
    let collector = find(&all, "Service", namespace, name);
    let http = port_of(gateway["receivers"]["otlp"]["protocols"]["http"]["endpoint"].as_str().unwrap());
    assert_eq!(port_of(endpoint), http);
    assert!(collector["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == http));
}
