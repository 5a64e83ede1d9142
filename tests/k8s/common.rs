//! What the Kubernetes tests share: running `sidetrace inject`, the golden
//! inputs, and finding the Python tools `scripts/setup/k8s.sh` installs.
//! A missing tool fails the test under CI=true and skips it (with a line
//! saying so) elsewhere.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidetrace"));
    cmd.args(["inject", "--image", TEST_IMAGE]).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SIDETRACE_INJECT_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A command that fails on its flags exits before reading stdin.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
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

/// The test venv's python (`SIDETRACE_TEST_PYTHON`, set by scripts/test.sh,
/// else target/test-venv).
pub fn venv_bin(tool: &str) -> PathBuf {
    let python = std::env::var_os("SIDETRACE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/test-venv/bin/python"));
    python.parent().unwrap_or(Path::new(".")).join(tool)
}

/// The tool, or `None` (and a line on stderr) when it is missing outside CI.
pub fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!("{what} is not installed at {} (bash scripts/test.sh installs it)", path.display());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// Runs a Python snippet with the test venv's interpreter.
pub fn python(script: &str, args: &[&str]) -> Option<Output> {
    let py = require(venv_bin("python"), "the test venv's python")?;
    Some(Command::new(py).arg("-c").arg(script).args(args).output().unwrap())
}
