#!/usr/bin/env python3
"""The cost of `--spool-mode always`: CPU per request at a fixed rate.

For each mode (`overflow`, `always`), in `--reps` repetitions that
alternate which mode goes first: start the bench backend (as app and OTLP
sink) and sidetrace as in run.py's "sidetrace" path (tracing 100%, OTLP
export), with `--spool-dir` in a fresh directory and `--spool-mode MODE`;
warm up, then oha at `--rate` req/s for `--duration` s (16 connections,
as run.py's rate scenarios); CPU seconds of the proxy (user + system, so
the spool's writes and fsyncs count) per request.

Prints one JSON line per run and a Markdown table of medians with the
ratio. Reuses run.py's process, oha and /proc helpers; build first
(`cargo build --release` and bench/'s `cargo build --release`).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as h  # noqa: E402

MODES = ["overflow", "always"]


def one(mode, binary, bins, rate, duration, batch):
    backend = h.Proc(f"spool-backend-{mode}", [os.path.join(bins, "backend"), "--threads", "2"], stdout=subprocess.PIPE)
    port = int(backend.p.stdout.readline().decode().split(":")[-1])
    sink = h.Proc(f"spool-sink-{mode}", [os.path.join(bins, "backend"), "--threads", "1"], stdout=subprocess.PIPE)
    sink_port = int(sink.p.stdout.readline().decode().split(":")[-1])
    spool = tempfile.mkdtemp(prefix=f"sidetrace-bench-spool-{mode}-", dir=h.WORK)
    inbound, admin = h.free_port(), h.free_port()
    argv = [binary, "run", "--inbound", f"127.0.0.1:{inbound}", "--app", f"127.0.0.1:{port}", "--outbound", "off",
            "--admin", f"127.0.0.1:{admin}", "--access-log", "off", "--otlp-endpoint", f"http://127.0.0.1:{sink_port}",
            "--service-name", "bench", "--log", "warn", "--spool-dir", spool, "--spool-mode", mode]
    if batch:
        argv += ["--export-batch-size", str(batch)]
    proxy = h.Proc(f"spool-proxy-{mode}", argv)
    try:
        url = f"http://127.0.0.1:{inbound}/"
        h.wait_port(inbound, proxy)
        h.wait_http(url, proxy)
        h.oha(url, rate, 16, 2)  # warm-up
        time.sleep(1.5)
        c0 = h.cpu_seconds(proxy.pid)
        r = h.oha(url, rate, 16, duration)
        time.sleep(1.5)  # the last batches' export (and spool writes) included
        cpu_us = (h.cpu_seconds(proxy.pid) - c0) * 1e6 / max(r["requests"], 1)
        left = len([f for f in os.listdir(os.path.join(spool, "otlp_http")) if f.endswith(".batch")])
        return {"mode": mode, "requests": r["requests"], "errors": r["errors"], "cpu_us_per_req": cpu_us,
                "p50_us": r["p50_us"], "p99_us": r["p99_us"], "batches_left_in_spool": left}
    finally:
        proxy.stop()
        sink.stop()
        backend.stop()
        shutil.rmtree(spool, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=h.bin_path("sidetrace"))
    ap.add_argument("--bench-bins", default=os.path.join(h.BENCH, "target", "release"))
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=0, help="--export-batch-size (default: sidetrace's)")
    args = ap.parse_args()
    os.makedirs(h.WORK, exist_ok=True)
    runs = []
    try:
        for rep in range(args.reps):
            for mode in (MODES if rep % 2 == 0 else MODES[::-1]):
                r = one(mode, args.bin, args.bench_bins, args.rate, args.duration, args.batch)
                r["rep"] = rep
                print(json.dumps(r), flush=True)
                runs.append(r)
    finally:
        h.Proc.stop_all()
    med = {m: statistics.median(r["cpu_us_per_req"] for r in runs if r["mode"] == m) for m in MODES}
    p99 = {m: statistics.median(r["p99_us"] for r in runs if r["mode"] == m) for m in MODES}
    print(f"\n| --spool-mode | CPU µs/request at {args.rate}/s (median of {args.reps}) | p99 µs (median) |")
    print("|---|---:|---:|")
    for m in MODES:
        print(f"| {m} | {med[m]:.1f} | {p99[m]:.0f} |")
    print(f"\nratio always / overflow: {med['always'] / med['overflow']:.3f}")


if __name__ == "__main__":
    main()
