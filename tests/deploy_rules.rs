//! deploy/prometheus/rules.yaml: promtool accepts it, its unit tests
//! (rules_test.yaml, synthetic series that must fire each alert and
//! neighbours that must not) pass, and every alert is labelled, annotated
//! and covered by a firing case. Whether the rules' metric names and labels
//! match what a sidecar really exposes, tests/deploy_dashboard.rs checks
//! against a live Prometheus.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use support::python::yaml_docs;
use support::tools::{promtool, read, repo, run_ok};

const RULES: &str = "deploy/prometheus/rules.yaml";
const RULES_TEST: &str = "deploy/prometheus/rules_test.yaml";

#[test]
fn promtool_checks_the_rules() {
    let Some(promtool) = promtool() else { return };
    let out = run_ok(Command::new(promtool).args(["check", "rules"]).arg(repo(RULES)));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn promtool_unit_tests_pass() {
    let Some(promtool) = promtool() else { return };
    // Relative paths in the test file (rule_files) are the test file's own.
    let out = run_ok(Command::new(promtool).args(["test", "rules"]).arg(repo(RULES_TEST)));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("SUCCESS") && !report.contains("FAILED"), "{report}");
}

#[test]
fn every_alert_is_labelled_annotated_and_fired_by_a_test() {
    let Some(python) = support::python::with(&["yaml"]) else { return };
    let rules = yaml_docs(&python, &read(RULES));
    assert_eq!(rules.len(), 1, "one document");
    // A plain rule file (the Helm chart wraps this same file in a PrometheusRule).
    let keys: Vec<&String> = rules[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["groups"], "a Prometheus rule file has only `groups` at the top");

    let all: Vec<&Value> =
        rules[0]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    let alerts: Vec<&Value> = all.iter().copied().filter(|r| r.get("alert").is_some()).collect();
    assert!(alerts.len() >= 8, "{} alerts", alerts.len());
    let mut names = BTreeSet::new();
    for a in &alerts {
        let name = a["alert"].as_str().unwrap();
        assert!(names.insert(name), "{name} twice");
        let severity = a["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning", "info"].contains(&severity), "{name}: severity {severity:?}");
        for key in ["summary", "description"] {
            let text = a["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: annotation {key} is {text:?}");
        }
    }
    for r in all.iter().filter(|r| r.get("record").is_some()) {
        let name = r["record"].as_str().unwrap();
        // level:metric:operations, as Prometheus' naming guide asks.
        assert_eq!(name.split(':').count(), 3, "recording rule {name}");
    }

    // Each alert has a case where it fires (and since promtool compares the
    // whole set of firing alerts, its silent neighbours in that case are
    // checked too).
    let tests = yaml_docs(&python, &read(RULES_TEST));
    let fired: BTreeSet<&str> = tests[0]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|c| c["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()))
        .map(|c| c["alertname"].as_str().unwrap())
        .collect();
    let untested: Vec<&&str> = names.iter().filter(|n| !fired.contains(**n)).collect();
    assert!(untested.is_empty(), "alerts no test fires: {untested:?}");
}
