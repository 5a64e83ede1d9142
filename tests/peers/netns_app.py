"""A plain HTTP server with no tracing code, in two roles, for the
network-namespace tests (started by tests/support/netns.rs:
`World::calling_app` and `World::recording_service`).

  netns_app.py app PORT BODY
      The pod's app, on [::]:PORT (IPv4 too). `GET /call?url=URL` fetches
      URL itself, with no proxy configured (so only redirect rules can send
      the call through sidetrace), or through `&proxy=PROXY` when given (as
      an app with HTTP_PROXY set does), and answers with what came back;
      any other GET answers BODY.

  netns_app.py service BIND PORT BODY RECORD
      The service outside the pod. Answers BODY to a GET (an empty 200 to a
      POST, as an OTLP/HTTP collector does) and, before answering, appends a
      JSON line to RECORD: the method, the path, the client's address and
      every `traceparent` and `tracestate` received.
"""

import http.server
import json
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request


class DualStackServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def app(port, body):
    # No proxy from the environment: the app knows nothing of sidetrace.
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            status, out = 200, body
            if url.path == "/call":
                query = urllib.parse.parse_qs(url.query)
                target, proxy = query["url"][0], query.get("proxy", [None])[0]
                opener = direct
                if proxy:
                    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
                try:
                    with opener.open(target, timeout=10) as resp:
                        out = resp.read()
                except urllib.error.HTTPError as e:
                    status, out = 502, f"upstream answered {e.code}\n".encode()
                except OSError as e:
                    status, out = 502, f"upstream failed: {e}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    DualStackServer(("::", port), Handler).serve_forever()


def service(bind, port, body, record):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.answer(body)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.answer(b"")

        def answer(self, out):
            seen = {
                "method": self.command,
                "path": self.path,
                "client": self.client_address[0],
                "traceparent": self.headers.get_all("traceparent", []),
                "tracestate": self.headers.get_all("tracestate", []),
            }
            with open(record, "a") as f:
                f.write(json.dumps(seen) + "\n")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain" if out else "application/x-protobuf")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = http.server.ThreadingHTTPServer
    if ":" in bind:
        server = type("V6Server", (server,), {"address_family": socket.AF_INET6})
    server((bind, port), Handler).serve_forever()


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "app":
        app(int(sys.argv[2]), sys.argv[3].encode())
    else:
        service(sys.argv[2], int(sys.argv[3]), sys.argv[4].encode(), sys.argv[5])
