//! What the Kubernetes tests share: running `sidetrace inject`, the golden
//! inputs, and the Python scripts beside this file, run by the test venv's
//! python (`scripts/setup/k8s.sh` installs what they import; a missing
//! module follows `support::tools::require`: a failure under CI, a skip
//! with a line saying so elsewhere).

#![allow(dead_code)]

use crate::support;
use std::path::PathBuf;
use std::process::Output;

pub const TEST_IMAGE: &str = "sidetrace:test";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn golden_dir() -> PathBuf {
    repo().join("tests/k8s/golden")
}

/// `sidetrace inject --image sidetrace:test ARGS` with `input` on stdin,
/// without any SIDETRACE_INJECT_* variable of the caller's.
pub fn inject(args: &[&str], input: &[u8]) -> Output {
    let argv: Vec<&str> = ["inject", "--image", TEST_IMAGE].iter().chain(args).copied().collect();
    support::proxy::sidetrace(&argv).stdin(input).output()
}

/// The golden inputs: `(name, input path, extra flags)`. A first line
/// `# sidetrace-inject-flags: …` gives the flags.
pub fn golden_inputs() -> Vec<(String, PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".out.yaml") || name.ends_with(".stderr") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let flags = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# sidetrace-inject-flags:"))
            .map(|f| f.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let stem = name.rsplit_once('.').unwrap().0.to_string();
        out.push((stem, path, flags));
    }
    out.sort();
    out
}

pub fn expected_output(stem: &str) -> PathBuf {
    golden_dir().join(format!("{stem}.out.yaml"))
}

/// Runs tests/k8s/SCRIPT with the test venv's python, once it imports
/// `modules`: its output (stdout and stderr), which must say it succeeded;
/// `None` when the venv lacks them outside CI.
pub fn run_script(script: &str, modules: &[&str], args: &[&str]) -> Option<String> {
    let python = support::python::with(modules)?;
    let out =
        std::process::Command::new(python).arg(repo().join("tests/k8s").join(script)).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    Some(text)
}
