# shellcheck shell=bash
# Sourced by scripts/test.sh after the test venv exists: installs what the
# collector's tests (tests/collector_*.rs) need beyond the base set.
#
# - the official OpenTelemetry Python SDK with its OTLP/HTTP and OTLP/gRPC
#   exporters: an instrumented app sending traces and logs
#   (tests/peers/otel_sdk_send.py);
# - jsonschema and openapi-spec-validator: the query API's answers checked
#   against docs/api/openapi.yaml (tests/peers/openapi_check.py; PyYAML
#   comes from observe.sh).
#
# Idempotent and offline when everything imports already.

collector_venv=target/test-venv
if ! "$collector_venv/bin/python" -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc, jsonschema, openapi_spec_validator" >/dev/null 2>&1; then
    echo "==> installing the OpenTelemetry SDK and exporters, jsonschema, openapi-spec-validator into $collector_venv"
    "$collector_venv/bin/pip" install --quiet --disable-pip-version-check \
        "opentelemetry-sdk==1.45.2" \
        "opentelemetry-exporter-otlp-proto-http==1.45.2" \
        "opentelemetry-exporter-otlp-proto-grpc==1.45.2" \
        "jsonschema==4.26.0" \
        "openapi-spec-validator==0.9.0"
fi
unset collector_venv
