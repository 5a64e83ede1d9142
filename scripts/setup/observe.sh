# shellcheck shell=bash
# Sourced by scripts/test.sh after the test venv exists: installs what the
# deploy/ checks (tests/deploy_*.rs) need beyond the base set.
#
# - kubernetes-validate (PyPI, with PyYAML) into target/test-venv: the
#   Kubernetes 1.30 schemas for every manifest under deploy/examples;
# - @grafana/schema and typescript@5 (npm, pinned by
#   deploy/grafana/check/package-lock.json) into target/test-npm: the
#   dashboard's type check; with @kubernetes-models/prometheus-operator and
#   cert-manager, the chart's custom resources' check;
# - promtool and prometheus come from Debian's package, which scripts/test.sh
#   installs already.
#
# Idempotent and offline when everything is present: pip and npm run only
# when an import fails or the committed lock file differs from the installed
# copy. Exports where the tests find each tool; a test whose tool is missing
# fails when CI=true and says what to run otherwise.

observe_venv=target/test-venv
if ! "$observe_venv/bin/python" -c "import kubernetes_validate, yaml" >/dev/null 2>&1; then
    echo "==> installing kubernetes-validate into $observe_venv"
    "$observe_venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0" pyyaml
fi
export SIDETRACE_TEST_KUBERNETES_VALIDATE="$PWD/$observe_venv/bin/kubernetes-validate"

observe_npm=target/test-npm
observe_lock=deploy/grafana/check/package-lock.json
if ! cmp -s "$observe_lock" "$observe_npm/package-lock.json" \
    || [[ ! -x $observe_npm/node_modules/typescript/bin/tsc || ! -d $observe_npm/node_modules/@grafana/schema ]] \
    || [[ ! -d $observe_npm/node_modules/@kubernetes-models/prometheus-operator ]]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "scripts/setup/observe.sh: npm is missing (Node.js 20 with npm is part of this machine's image; else apt-get install -y nodejs npm)" >&2
        return 1
    fi
    echo "==> installing @grafana/schema, @kubernetes-models and typescript into $observe_npm"
    rm -rf "$observe_npm"
    mkdir -p "$observe_npm"
    cp deploy/grafana/check/package.json "$observe_lock" "$observe_npm/"
    (cd "$observe_npm" && npm ci --no-audit --no-fund --loglevel=error)
fi
export SIDETRACE_TEST_NPM_DIR="$PWD/$observe_npm"

unset observe_venv observe_npm observe_lock
