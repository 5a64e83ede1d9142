//! The chart's custom resources — the Prometheus Operator's `PodMonitor`
//! and `PrometheusRule`, cert-manager's `Certificate` and `Issuer` — which
//! kubernetes-validate has no schema for, checked against models generated
//! from their CRDs (npm `@kubernetes-models/prometheus-operator` and
//! `@kubernetes-models/cert-manager`), both ways those models check:
//!
//! - `tsc --noEmit --strict`: each resource, rendered by the Helm SDK with
//!   the chart's defaults and with every option on, is pasted into a `.ts`
//!   file as an object literal typed by its model's interface, so a
//!   misspelt or unknown field is an excess-property error and a wrong type
//!   a type error;
//! - at run time, the model's `validate()` (the CRD's OpenAPI schema
//!   compiled with ajv): required fields, enums and formats.

mod support;

#[path = "k8s/common.rs"]
mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::tools::{repo, tsc};

/// Kind → the model's module, class and interface.
const MODELS: &[(&str, &str, &str)] = &[
    ("PodMonitor", "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor", "IPodMonitor"),
    (
        "PrometheusRule",
        "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
        "IPrometheusRule",
    ),
    ("Certificate", "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate", "ICertificate"),
    ("Issuer", "@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer", "IIssuer"),
];

/// The chart rendered with `values` (its defaults when `None`), as objects.
fn render(values: Option<&Path>) -> Option<Vec<Value>> {
    let out = support::tools::scratch_dir("crds-render").join("chart.yaml");
    let chart = repo("deploy/helm/sidetrace");
    let mut args = vec!["render", chart.to_str().unwrap(), out.to_str().unwrap()];
    if let Some(v) = values {
        args.push(v.to_str().unwrap());
    }
    common::run_script("chart.py", &["helm_python", "yaml"], &args)?;
    let text = std::fs::read_to_string(&out).unwrap();
    Some(
        serde_norway::Deserializer::from_str(&text)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect(),
    )
}

/// A TypeScript module that types each resource by its model and
/// validates it at run time; it prints one line per resource.
fn program(resources: &[(String, Value)]) -> String {
    let mut ts = String::new();
    for (kind, module, iface) in MODELS {
        ts.push_str(&format!("import {{ {kind}, type {iface} }} from \"{module}\";\n"));
    }
    ts.push_str("declare const process: { exitCode?: number };\n");
    ts.push_str("const checks: Array<[string, () => void]> = [];\n");
    for (i, (name, doc)) in resources.iter().enumerate() {
        let kind = doc["kind"].as_str().unwrap();
        let (_, _, iface) = MODELS.iter().find(|(k, _, _)| *k == kind).unwrap();
        let json = serde_json::to_string_pretty(doc).unwrap();
        ts.push_str(&format!("const r{i}: {iface} = {json};\n"));
        ts.push_str(&format!("checks.push([{name:?}, () => new {kind}(r{i}).validate()]);\n"));
    }
    ts.push_str(
        "let failed = 0;\n\
         for (const [name, check] of checks) {\n\
         \x20 try { check(); console.log(`valid ${name}`); }\n\
         \x20 catch (e) { failed++; console.log(`INVALID ${name}: ${(e as Error).message}`); }\n\
         }\n\
         process.exitCode = failed ? 1 : 0;\n",
    );
    ts
}

/// Type-checks and runs the program in `dir`; the combined output, and
/// whether both steps passed.
fn check(npm: &Path, tsc: &Path, resources: &[(String, Value)]) -> (bool, String) {
    let dir = npm.join("crd-check");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("crds.mts"), program(resources)).unwrap();
    let compiled = Command::new("node")
        .arg(tsc)
        .args(["--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext"])
        .args(["--lib", "es2022,dom", "--skipLibCheck", "--outDir", "out", "crds.mts"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&compiled.stdout).to_string();
    if !compiled.status.success() {
        return (false, text);
    }
    let ran = Command::new("node").arg("out/crds.mjs").current_dir(&dir).output().unwrap();
    text.push_str(&String::from_utf8_lossy(&ran.stdout));
    text.push_str(&String::from_utf8_lossy(&ran.stderr));
    (ran.status.success(), text)
}

fn custom_resources(label: &str, docs: &[Value]) -> Vec<(String, Value)> {
    docs.iter()
        .filter(|d| MODELS.iter().any(|(k, _, _)| d["kind"] == *k))
        .map(|d| (format!("{label} {} {}", d["kind"].as_str().unwrap(), d["metadata"]["name"]), d.clone()))
        .collect()
}

#[test]
fn the_charts_custom_resources_match_their_crds() {
    let Some(tsc) = tsc() else { return };
    let npm = tsc.ancestors().nth(4).unwrap().to_path_buf();
    let Some(defaults) = render(None) else { return };
    let all_on = render(Some(&repo("deploy/helm/sidetrace/ci/all-on-values.yaml"))).unwrap();
    let mut resources = custom_resources("defaults", &defaults);
    resources.extend(custom_resources("all-on", &all_on));
    let kinds: std::collections::BTreeSet<&str> = resources.iter().map(|(_, d)| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), MODELS.len(), "every modelled kind is rendered by some values: {kinds:?}");

    let (ok, out) = check(&npm, &tsc, &resources);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("valid ")).count(), resources.len(), "{out}");

    // The check can fail: an unknown field, and a value of the wrong type.
    let mut bad = resources[0].1.clone();
    bad["spec"]["sidetraceBogus"] = Value::Bool(true);
    let (ok, out) = check(&npm, &tsc, &[("unknown field".into(), bad)]);
    assert!(!ok && out.contains("sidetraceBogus"), "{out}");
    let monitor = resources.iter().find(|(_, d)| d["kind"] == "PodMonitor").unwrap().1.clone();
    let mut bad = monitor;
    bad["spec"]["podMetricsEndpoints"] = Value::String("admin".into());
    let (ok, out) = check(&npm, &tsc, &[("wrong type".into(), bad)]);
    assert!(!ok, "{out}");
}
