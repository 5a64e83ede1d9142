# Sourced by scripts/test.sh once the test venv ($venv) exists: the
# Kubernetes tests' tools (tests/k8s_manifests.rs, tests/k8s_webhook.rs).
#
# - kubernetes-validate: the Kubernetes 1.30 API schemas (strict);
# - helm-python-sdk: Helm's Go SDK behind a Python API (no helm binary is
#   packaged for Debian): renders, lints and schema-checks the chart.
# openssl (the webhook test's PKI) and curl come from scripts/test.sh's apt list.
#
# Idempotent: when both import, nothing is installed and the network is not used.
if ! "$venv/bin/python" -c "import kubernetes_validate, helm_python, yaml" >/dev/null 2>&1; then
    echo "==> adding kubernetes-validate and helm-python-sdk to $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate helm-python-sdk pyyaml
fi
