#!/usr/bin/env python3
"""The soak run (issue 13): an hour of mixed traffic with a fault a minute.

One sidecar (release build) in front of the bench backend, exporting spans
and access-log records over OTLP/HTTP to a `sidetrace collector`, with a
spool directory. For `--minutes` minutes it carries, at the same time:

- HTTP/1.1 at `--rate` requests/s (oha, 8 connections),
- HTTP/2 (h2c, prior knowledge) at `--rate` requests/s (oha, 4 connections),
- gRPC unary at `--rate / 2` requests/s (oha over h2c),

each as one 60-second oha run a minute, and injects one fault a minute,
in turn:

1. app restart: the backend is killed (SIGKILL) and started again on the
   same port 2 s later;
2. collector outage: the collector stops (SIGTERM) for 20 s and comes back
   on the same ports and storage;
3. hostile clients: request-smuggling shapes, garbage, half-sent headers
   held open (slowloris), an HTTP/2 rapid reset burst.

Every 5 s it samples the sidecar's RSS, open file descriptors, threads and
CPU seconds. "Every request answered" means oha saw no connection error
and no timeout (a 502 while the app restarts is an answer). At the end it
reads the sidecar's delivery counters and the collector's span count.

Writes `results/soak-<date>.json` and, with matplotlib (installed into
`bench/.venv` on first use), `results/soak-<date>.png`: RSS and fds over
time, faults marked. Not part of CI.
"""

import argparse
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as h  # noqa: E402

RESULTS = os.path.join(h.BENCH, "results")
FAULTS = ["app_restart", "collector_outage", "hostile_clients"]

SMUGGLING = [
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n",
    b"\x16\x03\x01\x00\xff garbage that is not TLS",
    b"G\x00T / HTTP/1.1\r\n\r\n",
]


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def rapid_reset(port, streams=2000):
    """Opens `streams` streams on one connection and resets each at once
    (CVE-2023-44487's shape); HPACK: `:method GET`, `:path /`,
    `:scheme http` from the static table, `:authority a` literal."""
    block = bytes([0x82, 0x84, 0x86, 0x41, 0x01]) + b"a"
    out = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", h2_frame(4, 0, 0)]
    for i in range(streams):
        sid = 2 * i + 1
        out.append(h2_frame(1, 0x4 | 0x1, sid, block))
        out.append(h2_frame(3, 0, sid, (8).to_bytes(4, "big")))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"".join(out))
            s.settimeout(2)
            while s.recv(65536):
                pass
    except OSError:
        pass


def hostile(port, seconds=20):
    """What an abusive client does for `seconds`; every socket is closed
    when it returns."""
    held = []
    try:
        for raw in SMUGGLING * 5:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(raw)
                s.settimeout(2)
                try:
                    s.recv(4096)
                except OSError:
                    pass
                s.close()
            except OSError:
                pass
        for _ in range(100):  # slowloris: half a header section, then nothing
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                held.append(s)
            except OSError:
                pass
        rapid_reset(port)
        time.sleep(seconds)
    finally:
        for s in held:
            s.close()


def sample(pid, t0):
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.split(":", 1) for line in f if ":" in line)
        return {"t": round(time.time() - t0, 1), "rss_kib": int(st["VmRSS"].split()[0]), "fds": fds,
                "threads": int(st["Threads"]), "cpu_s": h.cpu_seconds(pid)}
    except (OSError, KeyError, ValueError):
        return None


def metrics(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        return r.read().decode()


def metric_sum(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        ls = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(ls.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


class Peers:
    """The backend and the collector, each restartable on fixed ports."""

    def __init__(self, sidetrace, bins, work):
        self.sidetrace, self.bins, self.work = sidetrace, bins, work
        self.app_port = h.free_port()
        self.otlp_port, self.grpc_port, self.ui_port = h.free_port(), h.free_port(), h.free_port()
        self.app = self.collector = None
        self.start_app()
        self.start_collector()

    def start_app(self):
        self.app = h.Proc("soak-backend", [os.path.join(self.bins, "backend"), "--threads", "2", "--listen",
                                           f"127.0.0.1:{self.app_port}"], stdout=subprocess.PIPE)
        self.app.p.stdout.readline()

    def start_collector(self):
        self.collector = h.Proc("soak-collector", [
            self.sidetrace, "collector", "--otlp-http", f"127.0.0.1:{self.otlp_port}",
            "--otlp-grpc", f"127.0.0.1:{self.grpc_port}", "--ui", f"127.0.0.1:{self.ui_port}",
            "--storage", os.path.join(self.work, "collector"), "--log", "warn"])
        h.wait_port(self.otlp_port, self.collector)

    def fault(self, kind, inbound):
        if kind == "app_restart":
            os.killpg(self.app.pid, 9)
            self.app.stop()
            time.sleep(2)
            self.start_app()
        elif kind == "collector_outage":
            self.collector.stop()
            time.sleep(20)
            self.start_collector()
        else:
            hostile(inbound)


def load(url, rate, conns, seconds, http2=False, grpc_body=None):
    """One oha run; connection errors and timeouts are the failures."""
    argv = [h.oha_path(), "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-c", str(conns),
            "-q", str(rate), "-t", "10s"]
    if http2:
        argv += ["--http2", "-p", "1"]
    if grpc_body:
        argv += ["-m", "POST", "-H", "content-type: application/grpc", "-H", "te: trailers", "-D", grpc_body]
    r = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 60, env=h.child_env())
    j = json.loads(r.stdout)
    codes = {str(k): v for k, v in (j.get("statusCodeDistribution") or {}).items()}
    errors = {k: v for k, v in (j.get("errorDistribution") or {}).items() if "deadline" not in k}
    return {"codes": codes, "errors": errors}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--rate", type=int, default=100, help="HTTP/1.1 and HTTP/2 requests/s each; gRPC half")
    ap.add_argument("--sidetrace", default=os.path.join(h.ROOT, "target", "release", "sidetrace"))
    ap.add_argument("--bench-bins", default=os.path.join(h.BENCH, "target", "release"))
    args = ap.parse_args()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M")
    work = os.path.join(h.WORK, f"soak-{stamp}")
    os.makedirs(work, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    grpc_body = os.path.join(work, "grpc-request.bin")
    with open(grpc_body, "wb") as f:
        msg = b"\x0a\x05hello"
        f.write(b"\x00" + len(msg).to_bytes(4, "big") + msg)

    peers = Peers(args.sidetrace, args.bench_bins, work)
    inbound, admin = h.free_port(), h.free_port()
    proxy = h.Proc("soak-sidetrace", [
        args.sidetrace, "run", "--inbound", f"127.0.0.1:{inbound}", "--app", f"127.0.0.1:{peers.app_port}",
        "--outbound", "off", "--admin", f"127.0.0.1:{admin}", "--api", "off", "--access-log", "off",
        "--otlp-endpoint", f"http://127.0.0.1:{peers.otlp_port}", "--logs-exporter", "otlp",
        "--spool-dir", os.path.join(work, "spool"), "--service-name", "soak", "--log", "warn"])
    h.wait_port(inbound, proxy)
    h.wait_http(f"http://127.0.0.1:{inbound}/", proxy)
    t0 = time.time()
    samples, minutes, stop = [], [], threading.Event()

    def sampler():
        while not stop.is_set():
            s = sample(proxy.pid, t0)
            if s:
                samples.append(s)
            stop.wait(5)

    threading.Thread(target=sampler, daemon=True).start()
    base = f"http://127.0.0.1:{inbound}"
    try:
        for m in range(args.minutes):
            started = time.time() - t0
            results = {}
            loads = [
                ("http1", lambda: load(base + "/", args.rate, 8, 60)),
                ("http2", lambda: load(base + "/", args.rate, 4, 60, http2=True)),
                ("grpc", lambda: load(base + "/bench.Echo/Unary", max(args.rate // 2, 1), 4, 60, http2=True,
                                      grpc_body=grpc_body)),
            ]
            threads = [threading.Thread(target=lambda k=k, f=f: results.__setitem__(k, f())) for k, f in loads]
            for t in threads:
                t.start()
            time.sleep(20)
            kind = FAULTS[m % len(FAULTS)]
            fault_at = time.time() - t0
            peers.fault(kind, inbound)
            for t in threads:
                t.join()
            row = {"minute": m, "start_s": round(started, 1), "fault": kind, "fault_s": round(fault_at, 1), **results}
            minutes.append(row)
            h.log(f"minute {m}: {kind}; " + "; ".join(
                f"{k} {sum(v['codes'].values())} answered {v['codes']} errors {v['errors']}" for k, v in results.items()))
        time.sleep(15)  # the last batches leave
        text = metrics(admin)
        delivery = {
            "recorded": metric_sum(text, "sidetrace_spans_recorded_total"),
            "sampled_out": metric_sum(text, "sidetrace_spans_sampled_out_total"),
            "exported": metric_sum(text, "sidetrace_exporter_spans_exported_total"),
            "dropped": metric_sum(text, "sidetrace_spans_dropped_total"),
            "queued": metric_sum(text, "sidetrace_exporter_queue_spans"),
            "spool_bytes": metric_sum(text, "sidetrace_exporter_spool_bytes"),
            "lines": [x for x in text.splitlines() if re.match(r"sidetrace_(spans|exporter)_", x)],
        }
    finally:
        stop.set()
        h.Proc.stop_all()
    answered = {k: sum(sum(row[k]["codes"].values()) for row in minutes) for k in ("http1", "http2", "grpc")}
    failed = {k: sum(sum(row[k]["errors"].values()) for row in minutes) for k in ("http1", "http2", "grpc")}
    out = {"date": stamp, "minutes": args.minutes, "rate": args.rate, "samples": samples, "per_minute": minutes,
           "answered": answered, "failed": failed, "delivery": delivery}
    path = os.path.join(RESULTS, f"soak-{stamp}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    summary = summarize(out)
    print(json.dumps(summary, indent=1))
    plot(out, os.path.join(RESULTS, f"soak-{stamp}.png"))
    print(f"wrote {path}")


def summarize(out):
    """RSS and fds just before each minute's fault (the same point of
    every cycle), first minute against last, and the highest seen."""
    s = out["samples"]

    def before_fault(m):
        xs = [x for x in s if m["start_s"] + 5 <= x["t"] <= m["fault_s"]]
        return xs[-1] if xs else None

    steady = [x for x in (before_fault(m) for m in out["per_minute"][1:]) if x]
    first, last = steady[0] if steady else s[0], steady[-1] if steady else s[-1]
    return {
        "answered": out["answered"], "failed": out["failed"],
        "delivery": {k: v for k, v in out["delivery"].items() if k != "lines"},
        "rss_mib_minute_1": round(first["rss_kib"] / 1024, 1), "rss_mib_last_minute": round(last["rss_kib"] / 1024, 1),
        "rss_mib_max": round(max(x["rss_kib"] for x in s) / 1024, 1),
        "fds_minute_1": first["fds"], "fds_last_minute": last["fds"], "fds_max": max(x["fds"] for x in s),
        "threads_first": first["threads"], "threads_last": last["threads"],
        "cpu_s": round(s[-1]["cpu_s"] - s[0]["cpu_s"], 1),
    }


def plot(out, png):
    venv = os.path.join(h.BENCH, ".venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode != 0:
        subprocess.run([py, "-m", "pip", "install", "-q", "matplotlib"], check=True)
    code = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out = json.load(open(sys.argv[1]))
s = out["samples"]
t = [x["t"] / 60 for x in s]
fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
a.plot(t, [x["rss_kib"] / 1024 for x in s], color="#3b6ea8")
a.set_ylabel("RSS (MiB)")
a.set_ylim(bottom=0)
b.plot(t, [x["fds"] for x in s], color="#a8563b")
b.set_ylabel("open fds")
b.set_ylim(bottom=0)
b.set_xlabel("minutes")
colors = {"app_restart": "#999999", "collector_outage": "#d4a017", "hostile_clients": "#c0392b"}
for m in out["per_minute"]:
    for ax in (a, b):
        ax.axvline(m["fault_s"] / 60, color=colors[m["fault"]], alpha=0.35, lw=0.8)
from matplotlib.lines import Line2D
a.legend([Line2D([0], [0], color=c) for c in colors.values()], [k.replace("_", " ") for k in colors], loc="lower right", fontsize=8)
ans = out["answered"]
a.set_title(f"sidetrace soak: {out['minutes']} min, {sum(ans.values()):,} requests (HTTP/1.1, HTTP/2, gRPC), a fault a minute")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=90)
"""
    tmp = png + ".json"
    with open(tmp, "w") as f:
        json.dump(out, f)
    subprocess.run([py, "-c", code, tmp, png], check=True)
    os.remove(tmp)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
