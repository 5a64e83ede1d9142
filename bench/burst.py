#!/usr/bin/env python3
"""Memory after a burst (issue 13): does sidetrace give memory back?

For each sidetrace binary given (`--bin LABEL=PATH`, repeatable; runs
alternate between them), in `--reps` repetitions:

1. start the bench backend (as app and OTLP sink) and sidetrace as in
   run.py's "sidetrace" path (tracing 100%, OTLP export);
2. idle RSS, after one request and a settle;
3. `idle-conns --conns N --parallel N`: N client connections opened at
   once through the inbound side, one request each, then held; RSS and
   peak while held;
4. all N closed at once; RSS 1 s, 5 s, 20 s and 60 s later;
5. CPU seconds the proxy spent on the burst.

Prints one JSON line per run and a Markdown table of medians. Extra
environment for the proxy with `--env LABEL:KEY=VALUE` (e.g. glibc's
`MALLOC_ARENA_MAX`). Reuses run.py's process and /proc helpers.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as h  # noqa: E402

AFTER = [1, 5, 20, 60]


def gdb_trim(pid):
    """glibc's malloc_trim(0) called in the process from outside (gdb),
    to see what trimming would give back without building it in."""
    subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (int) malloc_trim(0)"],
                   capture_output=True, timeout=60)
    time.sleep(1)
    return h.mem_kib(pid)[0]


def cpu_per_request(pid, url, rate, seconds):
    """CPU microseconds per request at a fixed rate (oha, 50
    connections), the batched export of its spans included."""
    h.oha(url, rate, 50, 2)  # warm-up
    time.sleep(2)
    c0 = h.cpu_seconds(pid)
    r = h.oha(url, rate, 50, seconds)
    time.sleep(2)
    return (h.cpu_seconds(pid) - c0) * 1e6 / max(r["requests"], 1), r["p99_us"]


def one(label, binary, env, conns, bins, trim, rate):
    backend = h.Proc(f"burst-backend-{label}", [os.path.join(bins, "backend"), "--threads", "2"], stdout=subprocess.PIPE)
    port = int(backend.p.stdout.readline().decode().split(":")[-1])
    sink = h.Proc(f"burst-sink-{label}", [os.path.join(bins, "backend"), "--threads", "1"], stdout=subprocess.PIPE)
    sink_port = int(sink.p.stdout.readline().decode().split(":")[-1])
    inbound, admin = h.free_port(), h.free_port()
    argv = [binary, "run", "--inbound", f"127.0.0.1:{inbound}", "--app", f"127.0.0.1:{port}",
            "--outbound", "off", "--admin", f"127.0.0.1:{admin}", "--access-log", "off",
            "--otlp-endpoint", f"http://127.0.0.1:{sink_port}", "--service-name", "bench", "--log", "warn"]
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        proxy = h.Proc(f"burst-sidetrace-{label}", argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        h.wait_port(inbound, proxy)
        h.wait_http(f"http://127.0.0.1:{inbound}/", proxy)
        time.sleep(2)
        idle = h.mem_kib(proxy.pid)[0]
        cpu_us, p99_us = cpu_per_request(proxy.pid, f"http://127.0.0.1:{inbound}/", rate, 8) if rate else (None, None)
        steady = h.mem_kib(proxy.pid)[0]
        h.reset_peak(proxy.pid)
        cpu0 = h.cpu_seconds(proxy.pid)
        c = h.Proc(f"burst-clients-{label}", [os.path.join(bins, "idle-conns"), "--target", f"127.0.0.1:{inbound}",
                                              "--conns", str(conns), "--parallel", str(conns), "--hold", "120"],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = c.p.stdout.readline().decode().split()
        if not line or line[0] != "open":
            raise RuntimeError(f"idle-conns: {line}; see {c.log_path}")
        held, peak = h.mem_kib(proxy.pid)
        c.p.stdin.write(b"done\n")
        c.p.stdin.flush()
        c.p.wait(30)
        c.stop()
        closed_at = time.time()
        cpu = h.cpu_seconds(proxy.pid) - cpu0
        after = {}
        for s in AFTER:
            time.sleep(max(0, closed_at + s - time.time()))
            after[s] = h.mem_kib(proxy.pid)[0]
        trimmed = {"trimmed_kib": gdb_trim(proxy.pid)} if trim else {}
        return {**trimmed, "cpu_us_per_req": cpu_us, "p99_us": p99_us, "steady_kib": steady, "label": label, "conns": conns, "opened": int(line[1]), "failed": int(line[2]),
                "open_s": float(line[3]), "idle_kib": idle, "held_kib": held, "peak_kib": peak,
                "cpu_s": cpu, **{f"after_{s}s_kib": v for s, v in after.items()}}
    finally:
        proxy.stop()
        backend.stop()
        sink.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", action="append", required=True, metavar="LABEL=PATH")
    ap.add_argument("--env", action="append", default=[], metavar="LABEL:KEY=VALUE")
    ap.add_argument("--conns", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=int, default=0, help="before the burst, CPU per request at this rate (oha, 8 s)")
    ap.add_argument("--gdb-trim", action="store_true", help="after the last sample, call malloc_trim(0) through gdb and measure again")
    ap.add_argument("--bench-bins", default=os.path.join(h.BENCH, "target", "release"),
                    help="where backend and idle-conns are (cargo build --release in bench/)")
    args = ap.parse_args()
    os.makedirs(h.WORK, exist_ok=True)
    bins = dict(b.split("=", 1) for b in args.bin)
    envs = {label: {} for label in bins}
    for e in args.env:
        label, kv = e.split(":", 1)
        k, v = kv.split("=", 1)
        envs[label][k] = v
    rows = []
    try:
        for rep in range(args.reps):
            order = list(bins) if rep % 2 == 0 else list(reversed(bins))
            for label in order:
                r = one(label, bins[label], envs[label], args.conns, args.bench_bins, args.gdb_trim, args.rate)
                r["rep"] = rep
                print(json.dumps(r), flush=True)
                rows.append(r)
    finally:
        h.Proc.stop_all()
    mib = lambda k: f"{k / 1024:.1f}"  # noqa: E731
    cols = ["idle_kib", "held_kib", "peak_kib"] + [f"after_{s}s_kib" for s in AFTER]
    if args.gdb_trim:
        cols.append("trimmed_kib")
    print(f"\n{args.conns} connections at once, one request each, then closed; RSS in MiB, medians of {args.reps}\n")
    trim_col = " | after malloc_trim (gdb)" if args.gdb_trim else ""
    rate_col = f" | CPU µs/request at {args.rate}/s" if args.rate else ""
    print("| build | idle | held | peak | " + " | ".join(f"{s} s after" for s in AFTER) + trim_col
          + " | CPU s for the burst" + rate_col + " |")
    print("|---|" + "---:|" * (len(cols) + 1 + bool(args.rate)))
    for label in bins:
        mine = [r for r in rows if r["label"] == label]
        med = {c: statistics.median(r[c] for r in mine) for c in cols + ["cpu_s"]}
        rate = f" | {statistics.median(r['cpu_us_per_req'] for r in mine):.1f}" if args.rate else ""
        print(f"| {label} | " + " | ".join(mib(med[c]) for c in cols) + f" | {med['cpu_s']:.2f}{rate} |")


if __name__ == "__main__":
    main()
