"""Sends one trace (a SERVER span with a CLIENT child) and two log lines
inside it with the official OpenTelemetry Python SDK and its OTLP
exporters, as an instrumented app would.

argv: http|grpc ENDPOINT SERVICE. Prints the trace id (32 hex digits) and
exits 0 only if every export succeeded."""

import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

protocol, endpoint, service = sys.argv[1:4]
if protocol == "http":
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    span_exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
    log_exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")
else:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)

failures = []


class Checked:
    """Passes every export through and remembers the ones that failed."""

    def __init__(self, inner):
        self.inner = inner

    def export(self, batch):
        result = self.inner.export(batch)
        # The log result enum's class name differs across SDK versions.
        if result.name != "SUCCESS":
            failures.append(f"{type(self.inner).__name__}: {result}")
        return result

    def __getattr__(self, name):
        return getattr(self.inner, name)


resource = Resource.create({"service.name": service, "deployment.environment": "test"})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(Checked(span_exporter)))
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(Checked(log_exporter)))
log = logging.getLogger("sdk-test")
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))

tracer = tracer_provider.get_tracer("sdk-test")
with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
    root.set_attribute("http.route", "/checkout")
    root.set_attribute("http.response.status_code", 200)
    log.info("checkout started")
    with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT) as child:
        child.set_attribute("peer.service", "payments")
        child.set_status(Status(StatusCode.ERROR, "card declined"))
        log.warning("card declined")
    trace_id = format(root.get_span_context().trace_id, "032x")

tracer_provider.shutdown()
logger_provider.shutdown()
if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print(trace_id)
