//! The dependency policy of deny.toml holds: every crate's license is on
//! the allow list, no wildcard versions, every source is crates.io
//! (`cargo deny check licenses bans sources`, which needs no network; the
//! advisory database does, so advisories are checked where it can be
//! fetched).

mod support;

use std::process::Command;
use support::tools;

fn deny(cargo_deny: &std::path::Path, config: &std::path::Path) -> std::process::Output {
    Command::new(cargo_deny)
        .args(["--manifest-path", tools::repo("Cargo.toml").to_str().unwrap(), "--config"])
        .arg(config)
        .args(["check", "licenses", "bans", "sources"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", cargo_deny.display()))
}

#[test]
fn dependencies_keep_the_license_ban_and_source_policy() {
    let Some(cargo_deny) = tools::cargo_deny() else { return };
    let out = deny(&cargo_deny, &tools::repo("deny.toml"));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo deny check licenses bans sources:\n{text}");

    // The check can fail: with no license allowed, every crate is refused.
    let strict = std::env::temp_dir().join(format!("sidetrace-deny-{}.toml", std::process::id()));
    std::fs::write(&strict, "[licenses]\nallow = []\n").unwrap();
    let refused = deny(&cargo_deny, &strict);
    std::fs::remove_file(&strict).unwrap();
    assert!(!refused.status.success(), "cargo deny passed with no license allowed");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("rejected"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
