#!/usr/bin/env bash
# The benchmark harness (see BENCHMARKS.md): `bash bench/run.sh [--quick] [flags of run.py]`.
set -euo pipefail
exec python3 "$(dirname "$0")/run.py" "$@"
