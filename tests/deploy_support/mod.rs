//! What the deploy/ checks (tests/deploy_*.rs) share: where the repo's files
//! are, the external tools they run (promtool, kubernetes-validate, tsc) and
//! how a missing one is reported, and YAML read through PyYAML in the test
//! venv (the crate has no YAML parser of its own; scripts/setup/observe.sh
//! installs PyYAML with kubernetes-validate).
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether CI runs us: then a missing tool fails the test (`.ci/run`
/// installs every one), elsewhere it skips with a line saying how to get it.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// `Some(path)` when the tool at `path` runs; else fails in CI, or prints a
/// SKIPPED line naming `install` and returns `None`.
pub fn tool(path: PathBuf, version_arg: &str, install: &str) -> Option<PathBuf> {
    let ok = Command::new(&path).arg(version_arg).output().is_ok_and(|o| o.status.success());
    if ok {
        return Some(path);
    }
    assert!(!in_ci(), "{} is missing; {install}", path.display());
    eprintln!("SKIPPED: {} is missing; {install}", path.display());
    None
}

/// An environment variable naming a path, else a default inside the repo.
fn env_or_repo(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| repo(default))
}

pub fn promtool() -> Option<PathBuf> {
    tool("promtool".into(), "--version", "scripts/test.sh installs it (apt-get install -y prometheus)")
}

pub fn prometheus() -> Option<PathBuf> {
    tool("prometheus".into(), "--version", "scripts/test.sh installs it (apt-get install -y prometheus)")
}

pub fn kubernetes_validate() -> Option<PathBuf> {
    let path = env_or_repo("SIDETRACE_TEST_KUBERNETES_VALIDATE", "target/test-venv/bin/kubernetes-validate");
    tool(path, "--version", "run scripts/test.sh, or source scripts/setup/observe.sh after it made target/test-venv")
}

/// The test venv's Python, with PyYAML.
pub fn python_with_yaml() -> Option<PathBuf> {
    let path = env_or_repo("SIDETRACE_TEST_PYTHON", "target/test-venv/bin/python");
    let ok = Command::new(&path).args(["-c", "import yaml"]).output().is_ok_and(|o| o.status.success());
    if ok {
        return Some(path);
    }
    let install = "run scripts/test.sh, or source scripts/setup/observe.sh (it installs PyYAML into target/test-venv)";
    assert!(!in_ci(), "{} cannot import yaml; {install}", path.display());
    eprintln!("SKIPPED: {} cannot import yaml; {install}", path.display());
    None
}

/// The TypeScript compiler of target/test-npm, run by `node`.
pub fn tsc() -> Option<PathBuf> {
    let dir = env_or_repo("SIDETRACE_TEST_NPM_DIR", "target/test-npm");
    let install = "run scripts/test.sh, or source scripts/setup/observe.sh (npm ci of deploy/grafana/check)";
    let tsc = dir.join("node_modules/typescript/bin/tsc");
    let schema = dir.join("node_modules/@grafana/schema/package.json");
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if node && tsc.exists() && schema.exists() {
        return Some(tsc);
    }
    let what = if node { format!("{} or {}", tsc.display(), schema.display()) } else { "node".to_string() };
    assert!(!in_ci(), "{what} is missing; {install}");
    eprintln!("SKIPPED: {what} is missing; {install}");
    None
}

/// Runs a command to its end; panics with its output unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} exited with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every document of a YAML file (or string), as JSON values.
pub fn yaml_docs(python: &Path, yaml: &str) -> Vec<Value> {
    use std::io::Write;
    let script = "import json, sys, yaml\njson.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)";
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not YAML:\n{}\n{yaml}", String::from_utf8_lossy(&out.stderr));
    let docs: Value = serde_json::from_slice(&out.stdout).unwrap();
    docs.as_array().unwrap().iter().filter(|d| !d.is_null()).cloned().collect()
}
