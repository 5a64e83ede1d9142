//! Every manifest sidetrace ships or makes, against the real tools: each
//! `sidetrace inject` golden output and the Helm chart rendered with its
//! defaults and with every option on (`ci/all-on-values.yaml`) validate
//! against the Kubernetes 1.30 schemas (PyPI kubernetes-validate, strict:
//! unknown fields fail; the Prometheus Operator and cert-manager custom
//! resources have no schema there and are reported unchecked); the chart
//! is rendered and linted by the Helm SDK (PyPI helm-python-sdk), and its
//! values.schema.json accepts both values files and rejects bad ones.

mod support;

#[path = "k8s/common.rs"]
mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use support::proxy::sidetrace;

fn chart_dir() -> PathBuf {
    repo().join("deploy/helm/sidetrace")
}

/// What each script imports.
fn run_python(script: &str, args: &[&str]) -> Option<String> {
    let modules: &[&str] = match script {
        "validate.py" => &["kubernetes_validate", "yaml"],
        _ => &["helm_python", "yaml"],
    };
    run_script(script, modules, args)
}

fn validate(files: &[&Path]) -> Option<String> {
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    run_python("validate.py", &args)
}

fn render(values: Option<&Path>) -> Option<(PathBuf, Vec<Value>)> {
    let out = std::env::temp_dir().join(format!(
        "sidetrace-chart-{}-{}.yaml",
        std::process::id(),
        values.map_or("defaults".into(), |v| v.file_stem().unwrap().to_string_lossy().to_string())
    ));
    let chart = chart_dir();
    let mut args = vec!["render", chart.to_str().unwrap(), out.to_str().unwrap()];
    if let Some(v) = values {
        args.push(v.to_str().unwrap());
    }
    run_python("chart.py", &args)?;
    let text = std::fs::read_to_string(&out).unwrap();
    let docs = serde_norway::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    Some((out, docs))
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

#[test]
fn every_inject_output_is_valid_kubernetes_1_30() {
    let outputs: Vec<PathBuf> = golden_inputs().iter().map(|(stem, _, _)| expected_output(stem)).collect();
    let refs: Vec<&Path> = outputs.iter().map(PathBuf::as_path).collect();
    let Some(report) = validate(&refs) else { return };
    assert!(report.contains(" 0 failed"), "{report}");
    // The List's items are validated one by one, not skipped.
    assert!(report.contains("list.out.yaml: Deployment/api"), "{report}");
}

#[test]
fn the_chart_with_its_defaults_is_valid_and_never_blocks_pods() {
    let Some((file, docs)) = render(None) else { return };
    let report = validate(&[&file]).unwrap();
    assert!(report.contains(" 0 failed"), "{report}");
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "Secret",
    ] {
        assert!(report.contains(&format!(": {kind}/")), "{kind} was not rendered or not checked:\n{report}");
    }
    let hook = &find(&docs, "MutatingWebhookConfiguration").unwrap()["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Ignore");
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
    assert_eq!(hook["namespaceSelector"]["matchLabels"]["sidetrace.io/inject"], "enabled");
    assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate");
    let deployment = find(&docs, "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["template"]["metadata"]["labels"]["sidetrace.io/inject"], "disabled");
    // RBAC, least privilege: get on namespaces (the pod's Namespace, for
    // its sidetrace.io/* annotations), bound to the webhook's account only.
    assert!(find(&docs, "Role").is_none() && find(&docs, "RoleBinding").is_none());
    let roles: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ClusterRole").collect();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(
        roles[0]["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}]),
        "the webhook may get namespaces and nothing else"
    );
    let binding = find(&docs, "ClusterRoleBinding").unwrap();
    assert_eq!(binding["roleRef"]["name"], roles[0]["metadata"]["name"]);
    let account = find(&docs, "ServiceAccount").unwrap();
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "sidetrace"}])
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], true, "the webhook needs its token to read namespaces");
    // Two replicas kept apart and kept up: anti-affinity on the node, and a
    // PodDisruptionBudget that leaves one serving through a drain.
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let anti = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(anti.as_array().map(Vec::len), Some(1), "{anti}");
    assert_eq!(anti[0]["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(&anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"], selector);
    let pdb = find(&docs, "PodDisruptionBudget").unwrap();
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);

    // The certificate Helm generated (genCA/genSignedCert) verifies
    // against the caBundle the API server is given, for the Service's name.
    let dir = std::env::temp_dir().join(format!("sidetrace-chart-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let b64 = |s: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(s.as_str().unwrap()).unwrap()
    };
    let secret = find(&docs, "Secret").unwrap();
    std::fs::write(dir.join("ca.pem"), b64(&hook["clientConfig"]["caBundle"])).unwrap();
    std::fs::write(dir.join("tls.pem"), b64(&secret["data"]["tls.crt"])).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["verify", "-verify_hostname", "sidetrace-webhook.sidetrace.svc", "-CAfile"])
        .arg(dir.join("ca.pem"))
        .arg(dir.join("tls.pem"))
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_chart_with_every_option_on_is_valid() {
    let values = chart_dir().join("ci/all-on-values.yaml");
    let Some((file, docs)) = render(Some(&values)) else { return };
    let report = validate(&[&file]).unwrap();
    assert!(report.contains(" 0 failed"), "{report}");
    for crd in ["PodMonitor", "PrometheusRule", "Certificate", "Issuer"] {
        assert!(find(&docs, crd).is_some(), "{crd} missing");
        assert!(
            report.contains(&format!(
                "unchecked (custom resource, no schema in kubernetes-validate) {}: {crd}/",
                file.display()
            )),
            "{report}"
        );
    }
    let hook = find(&docs, "MutatingWebhookConfiguration").unwrap();
    assert_eq!(hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"], "sidetrace/sidetrace-webhook");
    assert!(hook["webhooks"][0]["clientConfig"].get("caBundle").is_none());
    // The PrometheusRule carries deploy/prometheus/rules.yaml's groups.
    let rules: Value =
        serde_norway::from_str(&std::fs::read_to_string(repo().join("deploy/prometheus/rules.yaml")).unwrap()).unwrap();
    assert_eq!(find(&docs, "PrometheusRule").unwrap()["spec"]["groups"], rules["groups"]);
    // The injected defaults reach the webhook as SIDETRACE_INJECT_* variables.
    let env = &find(&docs, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]["env"];
    let var = |name: &str| env.as_array().unwrap().iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
    assert_eq!(var("SIDETRACE_INJECT_INTERCEPTION"), Some("ports".into()));
    assert_eq!(var("SIDETRACE_INJECT_NATIVE_SIDECAR"), Some("false".into()));
    assert_eq!(var("SIDETRACE_INJECT_SAMPLING"), Some("0.2".into()));
    assert_eq!(var("SIDETRACE_INJECT_IMAGE"), Some("registry.example/sidetrace-proxy:0.1.0".into()));
    assert_eq!(var("SIDETRACE_INJECT_SKIP_OUTBOUND_CIDRS"), Some("169.254.169.254/32,fd00:ec2::254/128".into()));
    assert_eq!(find(&docs, "PodDisruptionBudget").unwrap()["spec"]["minAvailable"], 2);

    // The PodMonitor gives every series the `service` label the rules and
    // the dashboard group by, with the very rules of the example scrape
    // config (tests/deploy_dashboard.rs runs those in a real Prometheus).
    let endpoint = &find(&docs, "PodMonitor").unwrap()["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "sidetrace-admin");
    let relabelings = endpoint["relabelings"].as_array().expect("the PodMonitor has relabelings");
    let scrape: Value = serde_norway::from_str(
        &std::fs::read_to_string(repo().join("deploy/examples/prometheus/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let service_rules: Vec<Value> = scrape["scrape_configs"][0]["relabel_configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target_label"] == "service")
        .map(|r| serde_json::json!({"sourceLabels": r["source_labels"], "regex": r["regex"], "targetLabel": "service"}))
        .collect();
    assert_eq!(service_rules.len(), 5, "{service_rules:?}");
    assert_eq!(relabelings, &service_rules);
    // Highest precedence last: the annotation that overrides service.name,
    // then app.kubernetes.io/name.
    let sources: Vec<&Value> = relabelings.iter().map(|r| &r["sourceLabels"][0]).collect();
    assert_eq!(sources[4], "__meta_kubernetes_pod_annotation_sidetrace_io_service_name");
    assert_eq!(sources[3], "__meta_kubernetes_pod_label_app_kubernetes_io_name");
}

#[test]
fn values_schema_accepts_both_values_files_rejects_bad_ones_and_lint_is_clean() {
    let chart = chart_dir();
    let all_on = chart.join("ci/all-on-values.yaml");
    let bad = repo().join("tests/k8s/bad-values.yaml");
    let Some(report) = run_python(
        "chart.py",
        &["schema", chart.to_str().unwrap(), all_on.to_str().unwrap(), "--", bad.to_str().unwrap()],
    ) else {
        return;
    };
    assert_eq!(report.matches("rejected as it should be").count(), 11, "{report}");
    run_python("chart.py", &["lint", chart.to_str().unwrap(), all_on.to_str().unwrap()]);
}

#[test]
fn the_webhook_flags_the_chart_sets_are_flags_sidetrace_has() {
    // Every SIDETRACE_INJECT_* variable the chart sets is one the binary
    // reads (a renamed flag would otherwise be ignored in silence).
    let help = sidetrace(&["webhook", "--help"]).output();
    let help = String::from_utf8_lossy(&help.stdout);
    let template = std::fs::read_to_string(chart_dir().join("templates/deployment.yaml")).unwrap();
    let vars: Vec<&str> = template
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("SIDETRACE_"))
        .collect();
    assert!(vars.len() >= 10, "{vars:?}");
    for var in vars {
        assert!(help.contains(&format!("env: {var}=")), "{var} is not a variable of sidetrace webhook");
    }
}
