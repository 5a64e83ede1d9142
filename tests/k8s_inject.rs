//! `sidetrace inject` against committed expectations: every kind it knows,
//! the pods it must leave alone (with the reason on stderr), injecting its
//! own output again (nothing changes), and malformed input (exit 2, one
//! line naming the document, nothing on stdout).
//!
//! `SIDETRACE_BLESS=1 cargo test --test k8s_inject` rewrites the expected
//! files from the current output; review the diff before committing it.

mod support;

#[path = "k8s/common.rs"]
mod common;

use common::*;
use support::proxy::sidetrace;

fn bless() -> bool {
    std::env::var("SIDETRACE_BLESS").is_ok_and(|v| v == "1")
}

#[test]
fn golden_outputs() {
    let mut failures = Vec::new();
    let cases = golden_inputs();
    assert!(cases.len() >= 17, "golden inputs went missing: {cases:?}");
    for (stem, input, flags) in cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = inject(&flags, &std::fs::read(&input).unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stem}: {stderr}");
        for (path, got) in [
            (expected_output(&stem), out.stdout.clone()),
            (golden_dir().join(format!("{stem}.stderr")), out.stderr.clone()),
        ] {
            if bless() {
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let want = std::fs::read(&path).unwrap_or_default();
            if want != got {
                failures.push(format!("{} differs; got:\n{}", path.display(), String::from_utf8_lossy(&got)));
            }
        }
    }
    assert!(failures.is_empty(), "{}\n(SIDETRACE_BLESS=1 rewrites the expected files)", failures.join("\n"));
}

#[test]
fn injecting_the_output_again_changes_nothing() {
    for (stem, _, flags) in golden_inputs() {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let once = std::fs::read(expected_output(&stem)).unwrap();
        let out = inject(&flags, &once);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stem}: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&once),
            "{stem}: a second pass changed it"
        );
        assert!(!stderr.contains(": injected"), "{stem}: injected twice:\n{stderr}");
    }
}

#[test]
fn skipped_objects_say_why_on_stderr() {
    let cases = [
        ("already-injected", "document 1 (Pod/twice): skipped: already injected"),
        ("host-network", "document 1 (DaemonSet/node-exporter): skipped: hostNetwork pods"),
        ("opted-out", "document 1 (Deployment/legacy): skipped: sidetrace.io/inject is disabled"),
        ("istio", "document 1 (Pod/meshed): skipped: it carries another mesh's sidecar (istio-init)"),
        ("list", "document 1 (List), item 3 (Pod/debug): skipped: sidetrace.io/inject is disabled"),
        ("ports", "the Service must target port 15006"),
    ];
    for (stem, line) in cases {
        let input = golden_inputs().into_iter().find(|(s, _, _)| s == stem).unwrap().1;
        let out = inject(&[], &std::fs::read(&input).unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.lines().any(|l| l.contains(line)), "{stem}: no line with {line:?} in:\n{stderr}");
        if stem != "ports" && stem != "list" {
            let input_docs: serde_json::Value = serde_norway::from_slice(&std::fs::read(&input).unwrap()).unwrap();
            let output_docs: serde_json::Value = serde_norway::from_slice(&out.stdout).unwrap();
            assert_eq!(input_docs, output_docs, "{stem}: a skipped object changed");
        }
    }
}

#[test]
fn malformed_input_is_one_line_exit_2_and_no_output() {
    let dir = repo().join("tests/k8s/malformed");
    let cases = [
        ("not-yaml.yaml", "document 1: not YAML"),
        ("scalar.yaml", "document 1: not a Kubernetes object"),
        ("not-an-object.yaml", "document 2: not a Kubernetes object (no apiVersion)"),
        ("list-bad-item.yaml", "document 1 (List), item 2 (Pod/nameless): not a Kubernetes object (no apiVersion)"),
        ("bad-template.yaml", "document 1 (Deployment/broken): not a valid pod template"),
        ("truncated.json", "document 1: not JSON"),
    ];
    for (file, want) in cases {
        let out = inject(&[], &std::fs::read(dir.join(file)).unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert!(out.stdout.is_empty(), "{file}: wrote {:?}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(stderr.lines().count(), 1, "{file}: not one line:\n{stderr}");
        assert!(stderr.contains(want), "{file}: {stderr:?} does not say {want:?}");
    }
    // Bad flags and a missing file are bad input too.
    let out = inject(&["--sampling", "2"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sampling"));
    let out = inject(&["-f", "/nonexistent/manifests.yaml"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn flags_have_environment_variables() {
    let out = sidetrace(&["inject", "-f", golden_dir().join("pod.yaml").to_str().unwrap()])
        .env("SIDETRACE_INJECT_IMAGE", "registry.example/sidetrace:9")
        .env("SIDETRACE_INJECT_INTERCEPTION", "ports")
        .env("SIDETRACE_INJECT_OTLP_ENDPOINT", "http://env-collector:4318")
        .output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("image: registry.example/sidetrace:9"), "{yaml}");
    assert!(yaml.contains("http://env-collector:4318"), "{yaml}");
    assert!(!yaml.contains("sidetrace-init"), "ports interception came from the variable: {yaml}");
}
