#!/usr/bin/env python3
"""Ingest benchmark of `sidetrace collector` with its durable store (issue 12).

Starts the collector on a fresh storage directory, sends OTLP/HTTP protobuf
batches from keep-alive connections for a while, and reports the spans
acknowledged per second (every 200 means the batch was committed and
synced), 429 answers, the collector's CPU and peak RSS, the disk bytes per
span, then the latency of trace-by-id and search queries on what was
stored. Python stdlib only: the protobuf is written by hand below, so the
sender stays cheap next to the collector on the same two cores.

    python3 bench/collector.py [--binary target/release/sidetrace]
        [--duration 20] [--connections 8] [--spans-per-request 1000]
"""

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- protobuf, by hand: just what ExportTraceServiceRequest needs ---------


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def field_varint(num, n):
    return varint(num << 3) + varint(n)


def field_fixed64(num, n):
    return varint(num << 3 | 1) + struct.pack("<Q", n)


def kv_str(key, value):
    any_value = field_bytes(1, value.encode())
    return field_bytes(1, key.encode()) + field_bytes(2, any_value)


def kv_int(key, value):
    any_value = field_varint(3, value)
    return field_bytes(1, key.encode()) + field_bytes(2, any_value)


def span(trace_id, span_id, parent, start_ns, duration_ns, i):
    """A SERVER span with the attributes a sidecar records."""
    route = f"/orders/{{id}}" if i % 2 else "/items/{sku}"
    attrs = [
        kv_str("http.request.method", "GET"),
        kv_str("url.path", route.replace("{id}", str(i)).replace("{sku}", f"sku-{i}")),
        kv_str("url.scheme", "http"),
        kv_str("http.route", route),
        kv_int("http.response.status_code", 500 if i % 97 == 0 else 200),
        kv_str("server.address", "consumer"),
        kv_int("server.port", 8080),
        kv_str("network.peer.address", "10.0.0.7"),
        kv_str("user_agent.original", "bench/1.0"),
    ]
    body = field_bytes(1, trace_id) + field_bytes(2, span_id)
    if parent:
        body += field_bytes(4, parent)
    body += field_bytes(5, f"GET {route}".encode()) + field_varint(6, 2)
    body += field_fixed64(7, start_ns) + field_fixed64(8, start_ns + duration_ns)
    for a in attrs:
        body += field_bytes(9, a)
    return body


def request_body(n_spans, seed):
    rng = random.Random(seed)
    now = time.time_ns()
    spans = b""
    for i in range(n_spans):
        # Traces of 5 spans: a root and four children.
        if i % 5 == 0:
            trace_id = rng.randbytes(16)
            root = rng.randbytes(8)
            spans += field_bytes(2, span(trace_id, root, None, now + i, 5_000_000, i))
        else:
            spans += field_bytes(2, span(trace_id, rng.randbytes(8), root, now + i, 1_000_000 + i, i))
    resource = field_bytes(1, kv_str("service.name", f"bench-{seed % 4}"))
    scope_spans = spans
    resource_spans = field_bytes(1, resource) + field_bytes(2, scope_spans)
    return field_bytes(1, resource_spans)


# --- the collector ----------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


async def sender(port, bodies, deadline, counts):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    while time.monotonic() < deadline:
        body, spans = bodies[i % len(bodies)]
        i += 1
        writer.write(
            b"POST /v1/traces HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        await reader.readexactly(length)
        if status == 200:
            counts["spans"] += spans
            counts["requests"] += 1
        elif status == 429:
            counts["busy"] += 1
            await asyncio.sleep(0.05)
        else:
            counts["other"] += 1
    writer.close()


def get_ms(url):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        r.read()
    return (time.perf_counter() - t0) * 1000


def percentile(values, p):
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(round(p * len(values) + 0.5)) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/sidetrace"))
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--spans-per-request", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--peer", choices=["sidetrace", "rotel"], default="sidetrace",
                    help="who receives: sidetrace collector (stores durably, then answers), or rotel "
                         "(PyPI rotel's rotel-agent with the blackhole exporter: receives, stores nothing)")
    ap.add_argument("--rotel", default=None, help="the rotel-agent binary (default: found in bench/.venv)")
    args = ap.parse_args()
    if args.peer == "rotel":
        return rotel(args)

    bodies = [(request_body(args.spans_per_request, seed), args.spans_per_request) for seed in range(16)]
    storage = tempfile.mkdtemp(prefix="sidetrace-bench-collector-")
    http, grpc, ui = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [args.binary, "collector", "--otlp-http", f"127.0.0.1:{http}", "--otlp-grpc", f"127.0.0.1:{grpc}",
         "--ui", f"127.0.0.1:{ui}", "--storage", storage, "--max-bytes", "100GiB", "--log", "warn"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ui}/live").read()
                break
            except OSError:
                time.sleep(0.05)
        counts = {"spans": 0, "requests": 0, "busy": 0, "other": 0}
        cpu0, t0 = proc_cpu_seconds(proc.pid), time.monotonic()

        async def run():
            deadline = time.monotonic() + args.duration
            await asyncio.gather(*(sender(http, bodies, deadline, counts) for _ in range(args.connections)))

        asyncio.run(run())
        elapsed = time.monotonic() - t0
        cpu = proc_cpu_seconds(proc.pid) - cpu0
        stored = counts["spans"]
        # Once the WAL is checkpointed (every 250 ms), the database file
        # holds everything.
        time.sleep(2)
        database = os.path.getsize(os.path.join(storage, "spans.db"))
        disk = dir_bytes(storage)
        # Queries on what is stored: a trace by id, and searches.
        traces = json.load(urllib.request.urlopen(f"http://127.0.0.1:{ui}/api/traces?limit=1000&start=0"))["traces"]
        ids = [t["trace_id"] for t in traces] or ["0" * 32]
        by_id = [get_ms(f"http://127.0.0.1:{ui}/api/traces/{ids[i % len(ids)]}") for i in range(args.queries)]
        searches = [
            "/api/traces?service=bench-1&limit=20",
            "/api/traces?status=500&limit=20",
            "/api/traces?attr=url.path=/orders/1&start=0",
        ]
        search = {q: [get_ms(f"http://127.0.0.1:{ui}{q}") for _ in range(max(5, args.queries // 20))] for q in searches}
        result = {
            "spans_acknowledged": stored,
            "seconds": round(elapsed, 2),
            "spans_per_second": round(stored / elapsed),
            "requests": counts["requests"],
            "answers_429": counts["busy"],
            "answers_other": counts["other"],
            "collector_cpu_seconds": round(cpu, 2),
            "collector_cpu_us_per_span": round(cpu / max(stored, 1) * 1e6, 2),
            "collector_peak_rss_mib": round(proc_hwm_kib(proc.pid) / 1024, 1),
            "database_bytes_per_span": round(database / max(stored, 1)),
            "disk_bytes_per_span_with_wal": round(disk / max(stored, 1)),
            "trace_by_id_ms": {"p50": round(percentile(by_id, 0.5), 2), "p99": round(percentile(by_id, 0.99), 2)},
            "search_ms": {q: {"p50": round(percentile(v, 0.5), 1), "p99": round(percentile(v, 0.99), 1)} for q, v in search.items()},
            "connections": args.connections,
            "spans_per_request": args.spans_per_request,
        }
        print(json.dumps(result, indent=2))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(storage, ignore_errors=True)


def send_for(args, port, bodies):
    """The same load as against the collector: spans acknowledged, CPU of `pid` read around it."""
    counts = {"spans": 0, "requests": 0, "busy": 0, "other": 0}

    async def run():
        deadline = time.monotonic() + args.duration
        await asyncio.gather(*(sender(port, bodies, deadline, counts) for _ in range(args.connections)))

    t0 = time.monotonic()
    asyncio.run(run())
    return counts, time.monotonic() - t0


def rotel(args):
    """The peer: the Rust OTLP collector rotel receiving the same batches
    over OTLP/HTTP and throwing them away (blackhole exporter), so its
    figure is the cost of receiving alone, without storage."""
    agent = args.rotel or next(
        (os.path.join(r, "rotel-agent") for r, _, f in os.walk(os.path.join(ROOT, "bench", ".venv")) if "rotel-agent" in f),
        None)
    if not agent:
        print("rotel-agent not found: bench/.venv/bin/pip install rotel", file=sys.stderr)
        return 2
    bodies = [(request_body(args.spans_per_request, seed), args.spans_per_request) for seed in range(16)]
    http, grpc = free_port(), free_port()
    proc = subprocess.Popen(
        [agent, "start", "--otlp-http-endpoint", f"127.0.0.1:{http}", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}",
         "--exporter", "blackhole"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", http), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        cpu0 = proc_cpu_seconds(proc.pid)
        counts, elapsed = send_for(args, http, bodies)
        cpu = proc_cpu_seconds(proc.pid) - cpu0
        print(json.dumps({
            "peer": "rotel (blackhole exporter, nothing stored)",
            "spans_acknowledged": counts["spans"],
            "seconds": round(elapsed, 2),
            "spans_per_second": round(counts["spans"] / elapsed),
            "answers_429": counts["busy"],
            "answers_other": counts["other"],
            "cpu_us_per_span": round(cpu / max(counts["spans"], 1) * 1e6, 2),
            "peak_rss_mib": round(proc_hwm_kib(proc.pid) / 1024, 1),
        }, indent=2))
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
