#!/usr/bin/env python3
"""What context stitching costs: CPU per request of one sidecar with
`--stitch single-flight` against `--stitch off`, at a fixed rate, in
alternating runs.

    python3 bench/stitch.py                 # 5 reps x 20 s per mode, ~5 min
    python3 bench/stitch.py --write-md      # also replaces its section of BENCHMARKS.md

The app behind the sidecar is the bench backend's `/call`: for each
request it makes one call to a downstream through the sidecar's outbound
listener (as `HTTP_PROXY` clients do) and copies no header, so every
request is one inbound span, one registry entry and one outbound lookup
(stitched when alone in flight). Tracing is on (100%, OTLP to the bench
sink) in both modes; only `--stitch` differs. The sidecar's CPU time
covers both of its sides. Traffic stays on 127.0.0.1; uses run.py's
helpers (oha, the backend, process handling).
"""

import argparse
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as h  # noqa: E402

MODES = ["single-flight", "off"]
BEGIN, END = "<!-- stitch.py begin -->", "<!-- stitch.py end -->"


def start(mode, down, sink):
    app_port, out_port, in_port, admin = h.free_port(), h.free_port(), h.free_port(), h.free_port()
    app = h.Proc(f"stitch-app-{mode}", [h.bin_path("backend"), "--threads", "1", "--listen", f"127.0.0.1:{app_port}",
                                        "--call-via", f"127.0.0.1:{out_port}", "--call", f"http://127.0.0.1:{down}/"],
                 stdout=h.subprocess.PIPE)
    app.p.stdout.readline()
    proxy = h.Proc(f"stitch-sidetrace-{mode}", [
        h.bin_path("sidetrace"), "run", "--inbound", f"127.0.0.1:{in_port}", "--app", f"127.0.0.1:{app_port}",
        "--outbound", f"127.0.0.1:{out_port}", "--admin", f"127.0.0.1:{admin}", "--access-log", "off",
        "--otlp-endpoint", f"http://127.0.0.1:{sink}", "--service-name", "bench", "--log", "warn",
        "--stitch", mode])
    h.wait_port(in_port, proxy)
    h.wait_http(f"http://127.0.0.1:{in_port}/call", proxy)
    proxy.admin = admin
    return app, proxy, f"http://127.0.0.1:{in_port}/call"


def stitched(admin):
    """Outbound spans recorded so far, from the sidecar's metrics."""
    text = h.http_get(f"http://127.0.0.1:{admin}/metrics")[1].decode()
    return sum(float(line.rsplit(None, 1)[1]) for line in text.splitlines()
               if re.match(r"http_client_request_duration_seconds_count\{", line))


def measure(mode, down, sink, rate, conns, duration, warmup):
    app, proxy, url = start(mode, down, sink)
    try:
        h.oha(url, rate, conns, warmup)
        time.sleep(1.5)
        c0, o0 = h.cpu_seconds(proxy.pid), stitched(proxy.admin)
        res = h.oha(url, rate, conns, duration)
        time.sleep(1.5)  # the batch of the last requests is exported inside the window
        c1, o1 = h.cpu_seconds(proxy.pid), stitched(proxy.admin)
        rss, _ = h.mem_kib(proxy.pid)
        n = res["requests"]
        res.update({"cpu_s": c1 - c0, "cpu_us_per_req": (c1 - c0) * 1e6 / max(n, 1), "outbound": o1 - o0,
                    "rss_kib": rss})
        return res
    finally:
        proxy.stop()
        app.stop()


def markdown(runs, args):
    by = {m: [r for r in runs if r["mode"] == m] for m in MODES}
    med = {m: {k: statistics.median(r[k] for r in by[m]) for k in
               ["cpu_us_per_req", "rps", "p50_us", "p99_us", "errors", "rss_kib"]} for m in MODES}
    on, off = med["single-flight"], med["off"]
    lines = [
        BEGIN,
        f"Measured by `python3 bench/stitch.py` ({args.reps} alternating runs of {args.duration:.0f} s per mode, "
        f"{args.rate} req/s over {args.conns} connections; medians). Each request is one inbound span and one "
        "outbound call from the app (the bench backend's `/call`), so it is one registry entry and one lookup.",
        "",
        "| `--stitch` | CPU µs per request (both sides) | req/s | p50 µs | p99 µs | errors | RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in MODES:
        x = med[m]
        lines.append(f"| `{m}` | {x['cpu_us_per_req']:.1f} | {x['rps']:.0f} | {x['p50_us']:.0f} | {x['p99_us']:.0f} | "
                     f"{x['errors']:.0f} | {x['rss_kib'] / 1024:.1f} |")
    per_run = ", ".join(f"{r['cpu_us_per_req']:.1f}" for r in by["single-flight"])
    per_run_off = ", ".join(f"{r['cpu_us_per_req']:.1f}" for r in by["off"])
    lines += [
        "",
        f"Ratio on/off: **{on['cpu_us_per_req'] / off['cpu_us_per_req']:.3f}** "
        f"(per run, on: {per_run}; off: {per_run_off}).",
        END,
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--write-md", action="store_true")
    args = ap.parse_args()
    os.makedirs(h.WORK, exist_ok=True)
    h.signal.signal(h.signal.SIGINT, h.on_signal)
    h.signal.signal(h.signal.SIGTERM, h.on_signal)
    try:
        if not h.oha_path():
            h.install()
        if not args.no_build:
            h.run(["cargo", "build", "--release", "--bin", "sidetrace"], cwd=h.ROOT)
            h.run(["cargo", "build", "--release", "--bin", "backend"], cwd=h.BENCH)
        down = h.Proc("stitch-down", [h.bin_path("backend"), "--threads", "1"], stdout=h.subprocess.PIPE)
        down.port = int(down.p.stdout.readline().decode().split(":")[-1])
        sink = h.Proc("stitch-sink", [h.bin_path("backend"), "--threads", "1"], stdout=h.subprocess.PIPE)
        sink.port = int(sink.p.stdout.readline().decode().split(":")[-1])
        runs = []
        for rep in range(args.reps):
            for mode in (MODES if rep % 2 == 0 else MODES[::-1]):
                r = measure(mode, down.port, sink.port, args.rate, args.conns, args.duration, args.warmup)
                r.update(mode=mode, rep=rep)
                runs.append(r)
                h.log(f"rep {rep} {mode:<14} cpu/req {r['cpu_us_per_req']:.1f} µs, {r['rps']:.0f} req/s, "
                      f"outbound {r['outbound']:.0f}, errors {r['errors']}")
        md = markdown(runs, args)
        print(md)
        if args.write_md:
            path = os.path.join(h.ROOT, "BENCHMARKS.md")
            text = open(path).read()
            if BEGIN in text:
                text = text[:text.index(BEGIN)] + md + text[text.index(END) + len(END):]
            else:
                text += "\n## Context stitching: CPU per request, on and off\n\n" + md + "\n"
            open(path, "w").write(text)
    finally:
        h.Proc.stop_all()


if __name__ == "__main__":
    main()
