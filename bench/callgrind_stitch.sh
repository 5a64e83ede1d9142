#!/bin/bash
# Instructions per request of one sidecar (both sides) serving the bench
# backend's /call (one outbound call per inbound request), with --stitch
# MODE, under valgrind's callgrind: deterministic where CPU time is noisy.
#   bench/callgrind_stitch.sh MODE N   -> total instructions for N requests
# Run it for N=200 and N=1200 and divide the difference by 1000 to leave
# start-up out. Needs valgrind and curl; builds nothing (run stitch.py once).
set -e
MODE=$1; N=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/bench/target/release/backend
BIN=${SIDETRACE_BIN:-$ROOT/target/release/sidetrace}
free() { python3 -c "import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])"; }
$B --threads 1 > $W/down.$MODE.out 2>&1 & DPID=$!
$B --threads 1 > $W/sink2.$MODE.out 2>&1 & SPID=$!
sleep 0.5
DPORT=$(head -1 $W/down.$MODE.out | sed 's/.*://'); SPORT=$(head -1 $W/sink2.$MODE.out | sed 's/.*://')
OUT=$(free); IN=$(free)
$B --threads 1 --call-via 127.0.0.1:$OUT --call http://127.0.0.1:$DPORT/ > $W/app.$MODE.out 2>&1 & APID=$!
sleep 0.5
APORT=$(head -1 $W/app.$MODE.out | sed 's/.*://')
valgrind --tool=callgrind --callgrind-out-file=$W/st.$MODE.$N $BIN run --inbound 127.0.0.1:$IN --app 127.0.0.1:$APORT \
  --outbound 127.0.0.1:$OUT --admin off --access-log off --workers 1 --otlp-endpoint http://127.0.0.1:$SPORT --service-name cg --log warn --stitch $MODE \
  > $W/stproxy.$MODE.log 2>&1 &
VPID=$!
for i in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:$IN/call && break; sleep 0.2; done
URLS=$(for i in $(seq 1 $N); do echo -n "http://127.0.0.1:$IN/call "; done)
curl -s $URLS > /dev/null
sleep 2
kill -INT $VPID; wait $VPID 2>/dev/null || true
kill $DPID $SPID $APID 2>/dev/null || true
callgrind_annotate $W/st.$MODE.$N 2>/dev/null | grep "PROGRAM TOTALS" | awk '{print $1}' | tr -d ','
