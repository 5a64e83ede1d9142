//! The test venv's Python (target/test-venv, made by scripts/test.sh with
//! the official OpenTelemetry protobufs, grpcio, PyYAML,
//! kubernetes-validate and helm-python-sdk), found under the rule of
//! `tools::require`.

use super::tools::{env_or_repo, require};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The venv's interpreter (`SIDETRACE_TEST_PYTHON`, else target/test-venv),
/// whether or not it exists.
pub fn venv_python() -> PathBuf {
    env_or_repo("SIDETRACE_TEST_PYTHON", "target/test-venv/bin/python")
}

/// The venv's python if it imports every one of `modules`; else the rule.
pub fn with(modules: &[&str]) -> Option<PathBuf> {
    let python = venv_python();
    let script = format!("import {}", modules.join(", "));
    let found = match Command::new(&python).args(["-c", &script]).output() {
        Ok(o) if o.status.success() => Ok(python.clone()),
        Ok(o) => Err(format!("{} cannot `{script}`: {}", python.display(), String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("{} does not run ({e})", python.display())),
    };
    require(&format!("the test venv's python with {} (run scripts/test.sh)", modules.join(", ")), found)
}

/// The venv's python, which the OTLP test collector needs: a missing venv
/// fails the test outright (every export test needs it, CI or not).
pub fn for_peers() -> PathBuf {
    let python = venv_python();
    assert!(python.exists(), "{} is missing: run scripts/test.sh, which creates it", python.display());
    python
}

/// Every document of a YAML text, as JSON values (null documents left
/// out), read by PyYAML.
pub fn yaml_docs(python: &Path, yaml: &str) -> Vec<Value> {
    use std::io::Write;
    let script = "import json, sys, yaml\njson.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)";
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not YAML:\n{}\n{yaml}", String::from_utf8_lossy(&out.stderr));
    let docs: Value = serde_json::from_slice(&out.stdout).unwrap();
    docs.as_array().unwrap().iter().filter(|d| !d.is_null()).cloned().collect()
}
