#!/usr/bin/env bash
# Instructions per request of kovan-server, from callgrind: a deterministic proxy for its
# CPU cost per request that a loaded machine does not disturb (docs/BENCHMARKS.md, "Server
# per core: where the time goes").
#
#   bench/scripts/server-ir.sh [WORKLOAD [PIPELINE]]       # default: get 16
#   BUILD=build/rel DURATION=3 bench/scripts/server-ir.sh set 1
#
# Starts kovan-server (--threads 1) under callgrind, loads RECORDS records with kovan-bench,
# zeroes the counters, drives WORKLOAD at PIPELINE for DURATION seconds with CONNECTIONS
# connections, and divides the instructions by the requests the server counted in that
# span (kv_requests_total on its metrics port). It prints the total and the worker thread's
# share (asio's scheduler::run: the sweeper thread's fixed cost left out). The callgrind
# file stays in OUT for callgrind_annotate.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
WL=${1:-get}
PL=${2:-16}
DURATION=${DURATION:-3}
RECORDS=${RECORDS:-20000}
CONNECTIONS=${CONNECTIONS:-50}
OUT=${OUT:-$(mktemp -d /tmp/server-ir.XXXXXX)}
SERVER=$BUILD/server/kovan-server
BENCH=$BUILD/bench/load/kovan-bench
[[ -x $SERVER && -x $BENCH ]] || { echo "missing kovan-server or kovan-bench under $BUILD (set BUILD=...)" >&2; exit 1; }

valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$SERVER" \
  --listen 127.0.0.1:0 --threads 1 --summary-interval 0 --metrics-listen 127.0.0.1:0 \
  >"$OUT/server.log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null || true; wait $SP 2>/dev/null || true' EXIT
PORT=""
for _ in $(seq 300); do
  PORT=$(grep -o 'kovan-server listening on [0-9.:]*' "$OUT/server.log" | sed 's/.*://' || true)
  [[ -n $PORT ]] && break
  sleep 0.2
done
[[ -n $PORT ]] || { echo "kovan-server did not start" >&2; cat "$OUT/server.log" >&2; exit 1; }
MPORT=$(grep -o 'metrics on port [0-9]*' "$OUT/server.log" | head -1 | sed 's/.* //')
requests() {
  curl -s "http://127.0.0.1:$MPORT/metrics" | awk '/^kv_requests_total/{s+=$2} END{printf "%d\n", s}'
}
"$BENCH" run --target "kovan://127.0.0.1:$PORT" --workload get --records "$RECORDS" \
  --value-size 100 --load --duration 0.1 --warmup 0 --connections "$CONNECTIONS" \
  --pipeline 16 --quiet --no-progress
r0=$(requests)
callgrind_control -z "$SP" >/dev/null 2>&1
"$BENCH" run --target "kovan://127.0.0.1:$PORT" --workload "$WL" --records "$RECORDS" \
  --value-size 100 --connections "$CONNECTIONS" --pipeline "$PL" --duration "$DURATION" \
  --warmup 0 --quiet --no-progress
callgrind_control -d "$SP" >/dev/null 2>&1
r1=$(requests)
n=$((r1 - r0))
f=$(ls -t "$OUT"/callgrind.out.* | head -1)
total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
worker=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
  awk '/scheduler::run/ && !done {gsub(",","",$1); print $1; done = 1}')
echo "$WL pipeline $PL: $n requests, $((total / n)) Ir/request ($((worker / n)) in the worker thread); $f"
