#!/bin/bash
# Instructions per request of one sidecar's inbound side (HTTP/1.1
# keep-alive, curl, the bench backend as the app, spans exported over
# OTLP) under valgrind's callgrind: deterministic where CPU time is noisy.
#   SIDETRACE_BIN=... bench/callgrind_hardening.sh N   -> total instructions
#   H2=1 sends the N requests over HTTP/2 (h2load, one connection) instead.
# Run it for N=200 and N=1200 and divide the difference by 1000 to leave
# start-up out (issue 13: the HTTP/1 framing checks and the limits' layers).
# SIDETRACE_FLAGS adds flags to the sidecar (e.g. "--spool-dir D --spool-mode
# always"); callgrind counts user-space instructions only, not the kernel's
# work for a write or an fsync.
set -e
N=$1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${BENCH_BACKEND:-$ROOT/bench/target/release/backend}
BIN=${SIDETRACE_BIN:-$ROOT/target/release/sidetrace}
free() { python3 -c "import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])"; }
$B --threads 1 > $W/app.out 2>&1 & APID=$!
$B --threads 1 > $W/sink.out 2>&1 & SPID=$!
sleep 0.5
APORT=$(head -1 $W/app.out | sed 's/.*://'); SPORT=$(head -1 $W/sink.out | sed 's/.*://')
IN=$(free)
EXTRA=(${SIDETRACE_FLAGS:-})
API=(); if $BIN run --help | grep -q -- '--api '; then API=(--api off); fi
valgrind --tool=callgrind --callgrind-out-file=$W/cg.$N $BIN run --inbound 127.0.0.1:$IN --app 127.0.0.1:$APORT \
  --outbound off --admin off "${API[@]}" --access-log off --workers 1 --otlp-endpoint http://127.0.0.1:$SPORT \
  --service-name cg --log warn "${EXTRA[@]}" > $W/proxy.log 2>&1 &
VPID=$!
for i in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:$IN/ && break; sleep 0.2; done
URLS=$(for i in $(seq 1 $N); do echo -n "http://127.0.0.1:$IN/ "; done)
if [ "${H2:-0}" = 1 ]; then
  # HTTP/2 (h2c prior knowledge), one stream at a time on one connection.
  h2load -n $N -c 1 -m 1 http://127.0.0.1:$IN/ > $W/h2load.out
else
  curl -s $URLS > /dev/null
fi
sleep 2
kill -INT $VPID; wait $VPID 2>/dev/null || true
kill $APID $SPID 2>/dev/null || true
callgrind_annotate $W/cg.$N 2>/dev/null | grep "PROGRAM TOTALS" | awk '{print $1}' | tr -d ','
