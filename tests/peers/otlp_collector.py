"""A test collector that decodes with the official OpenTelemetry protobufs.

Receives OTLP/HTTP (protobuf and JSON, gzip or not) on /v1/traces and
/v1/logs, OTLP/gRPC (TraceService/Export, LogsService/Export) and Zipkin v2 JSON on /api/v2/spans. Every batch is
decoded with `opentelemetry-proto` (the Python package) and kept; the test
reads them back with GET /received. POST /control changes how the collector
answers, to play a failing or stalled backend.

Prints "READY http=PORT grpc=PORT" once both servers listen.
"""

import argparse
import base64
import gzip
import json
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

LOCK = threading.Lock()
RECEIVED = []  # {"transport": ..., "request": <OTLP JSON dict with hex ids>} or zipkin spans
# mode: "ok", or "fail" (answer `status` with `retry_after` until `until`), or "stall" (never answer),
# or "slow" (take each OTLP/HTTP export, after `delay` seconds, until `until`)
CONTROL = {"mode": "ok", "status": 503, "retry_after": None, "until": 0.0, "grpc_code": "UNAVAILABLE", "reject": 0,
           "delay": 0.0}
ATTEMPTS = {"failed": 0}


def items(doc):
    """Every span or log record of an OTLP request (as a dict)."""
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            yield from ss.get("spans", [])
    for rl in doc.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            yield from sl.get("logRecords", [])


def hexify(request_dict):
    """OTLP/JSON carries ids as hex; MessageToDict gives base64. Make them hex."""
    for item in items(request_dict):
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in item:
                item[key] = base64.b64decode(item[key]).hex()
        for link in item.get("links", []):
            for key in ("traceId", "spanId"):
                if key in link:
                    link[key] = base64.b64decode(link[key]).hex()
    return request_dict


def otlp_json_to_proto3_json(body):
    """OTLP/JSON differs from the protobuf JSON mapping in one place that
    matters here: trace and span ids are hex, not base64. Convert them, and
    refuse ids that are not the hex the OTLP specification requires."""
    doc = json.loads(body)
    logs = "resourceLogs" in doc
    for item in items(doc):
        for key, size in (("traceId", 32), ("spanId", 16), ("parentSpanId", 16)):
            value = item.get(key)
            if value in (None, "") and (key == "parentSpanId" or logs):
                continue
            if not isinstance(value, str) or len(value) != size or value != value.lower():
                raise ValueError(f"{key} {value!r} is not {size} lowercase hex digits")
            item[key] = base64.b64encode(bytes.fromhex(value)).decode()
        for link in item.get("links", []):
            for key in ("traceId", "spanId"):
                link[key] = base64.b64encode(bytes.fromhex(link[key])).decode()
    return json.dumps(doc)


def failing():
    c = CONTROL
    if c["mode"] == "stall":
        return "stall"
    if c["mode"] == "fail" and time.time() < c["until"]:
        return "fail"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        return data

    def answer(self, status, body=b"", content_type="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/received":
            with LOCK:
                body = json.dumps(RECEIVED).encode()
            self.answer(200, body)
        elif self.path == "/attempts":
            with LOCK:
                body = json.dumps(ATTEMPTS).encode()
            self.answer(200, body)
        else:
            self.answer(404)

    def do_POST(self):
        if self.path == "/control":
            update = json.loads(self.body() or b"{}")
            with LOCK:
                CONTROL.update(update)
            self.answer(200, b"{}")
            return
        state = failing()
        if state == "stall":
            self.body()
            time.sleep(3600)
            return
        if state == "fail":
            self.body()
            with LOCK:
                ATTEMPTS["failed"] += 1
            extra = {"Retry-After": CONTROL["retry_after"]} if CONTROL["retry_after"] else {}
            self.answer(CONTROL["status"], b"{}", extra=extra)
            return
        if CONTROL["mode"] == "slow" and time.time() < CONTROL["until"]:
            time.sleep(CONTROL["delay"])
        if self.path in ("/v1/traces", "/v1/logs"):
            data = self.body()
            ctype = self.headers.get("Content-Type", "")
            logs = self.path == "/v1/logs"
            pb = logs_service_pb2 if logs else trace_service_pb2
            req = pb.ExportLogsServiceRequest() if logs else pb.ExportTraceServiceRequest()
            if ctype.startswith("application/x-protobuf"):
                req.ParseFromString(data)
                transport = "http/protobuf"
            elif ctype.startswith("application/json"):
                try:
                    json_format.Parse(otlp_json_to_proto3_json(data), req)
                except Exception as e:  # a malformed body is the sender's fault: 400, as collectors answer
                    self.answer(400, json.dumps({"error": str(e)}).encode())
                    return
                transport = "http/json"
            else:
                self.answer(415)
                return
            if self.headers.get("Content-Encoding") == "gzip":
                transport += "+gzip"
            with LOCK:
                RECEIVED.append({"transport": transport, "signal": "logs" if logs else "traces",
                                 "request": hexify(json_format.MessageToDict(req)),
                                 "headers": {k.lower(): v for k, v in self.headers.items()}})
            resp = pb.ExportLogsServiceResponse() if logs else pb.ExportTraceServiceResponse()
            if CONTROL["reject"] and not logs:
                resp.partial_success.rejected_spans = CONTROL["reject"]
                resp.partial_success.error_message = "the test collector refuses some spans"
            if ctype.startswith("application/json"):
                self.answer(200, json_format.MessageToJson(resp).encode())
            else:
                self.answer(200, resp.SerializeToString(), "application/x-protobuf")
        elif self.path == "/api/v2/spans":
            spans = json.loads(self.body())
            with LOCK:
                RECEIVED.append({"transport": "zipkin", "spans": spans})
            self.answer(202)
        else:
            self.answer(404)


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        state = failing()
        if state == "stall":
            time.sleep(3600)
        if state == "fail":
            with LOCK:
                ATTEMPTS["failed"] += 1
            context.abort(getattr(grpc.StatusCode, CONTROL["grpc_code"]), "the test collector is failing on purpose")
        metadata = {k: v for k, v in context.invocation_metadata()}
        with LOCK:
            RECEIVED.append({"transport": "grpc", "signal": "traces",
                             "request": hexify(json_format.MessageToDict(request)), "headers": metadata})
        return trace_service_pb2.ExportTraceServiceResponse()


class LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def Export(self, request, context):
        metadata = {k: v for k, v in context.invocation_metadata()}
        with LOCK:
            RECEIVED.append({"transport": "grpc", "signal": "logs",
                             "request": hexify(json_format.MessageToDict(request)), "headers": metadata})
        return logs_service_pb2.ExportLogsServiceResponse()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--grpc-port", type=int, default=0)
    ap.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca", help="require client certificates signed by this CA (mTLS)")
    args = ap.parse_args()
    http = ThreadingHTTPServer(("127.0.0.1", args.http_port), Handler)
    http.daemon_threads = True
    if args.tls_cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        http.socket = ctx.wrap_socket(http.socket, server_side=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogsService(), server)
    grpc_port = server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    server.start()
    print(f"READY http={http.server_address[1]} grpc={grpc_port}", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    main()
