#!/usr/bin/env bash
# What a stall costs Kovan KV in memory, measured with `kovan-bench stall`:
#   1. stalled client transactions (TXNS idle snapshots) under an update load, once with
#      interval GC (the default) and once with watermark GC (--gc-policy watermark);
#   2. a stalled server thread (one worker parked inside a reclaimer guard through the
#      FAULT request; the server runs with --enable-fault-injection).
# Each run writes a CSV and, when gnuplot is installed, a PNG into OUT (docs/img by
# default): stall-txn-interval.*, stall-txn-watermark.*, stall-thread.*
#
# Defaults are short; the figures in docs/BENCHMARKS.md name the settings they used, e.g.
#   DURATION=60 RATE=50000 bench/scripts/stall-demo.sh
# Traffic stays on 127.0.0.1; each server is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}  # where `make` builds
find_bin() {
  for p in "$BUILD/$1" "$BUILD/main/$1"; do
    [[ -x $p ]] && { echo "$p"; return; }
  done
  echo "missing $1 under $BUILD (set BUILD=...)" >&2
  exit 1
}
KOVAN_SERVER=${KOVAN_SERVER:-$(find_bin server/kovan-server)}
KOVAN_BENCH=${KOVAN_BENCH:-$(find_bin bench/load/kovan-bench)}

DURATION=${DURATION:-10}
RATE=${RATE:-20000}
KEYS=${KEYS:-10000}
TXNS=${TXNS:-4}
READS=${READS:-1000}
INTERVAL=${INTERVAL:-1}
SERVER_THREADS=${SERVER_THREADS:-2}
OUT=${OUT:-$ROOT/docs/img}
LOGS=$(mktemp -d /tmp/stall-demo.XXXXXX)
mkdir -p "$OUT"

SERVER_PID=""
stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT

start_server() {  # start_server <log> <flags...>; sets SERVER_PID and PORT
  local log=$1
  shift
  "$KOVAN_SERVER" --listen 127.0.0.1:0 --threads "$SERVER_THREADS" "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 100); do
    PORT=$(grep -o 'listening on [^ ]*' "$log" | sed 's/.*://' || true)
    [[ -n $PORT ]] && return
    sleep 0.1
  done
  echo "kovan-server did not start:" >&2
  cat "$log" >&2
  exit 1
}

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); logs in $LOGS"
for policy in interval watermark; do
  # The transaction age limit is raised above the run so that the stall lasts.
  # The stalled transactions all come from this one address: let it hold them.
  start_server "$LOGS/server-$policy.log" --gc-policy "$policy" --txn-timeout "$((DURATION + 60))s" \
    --max-txns-per-peer "$((TXNS + 64))"
  echo "== stalled transactions, --gc-policy $policy"
  "$KOVAN_BENCH" stall --target "kovan://127.0.0.1:$PORT" --mode txn --txns "$TXNS" \
    --reads-per-txn "$READS" --keys "$KEYS" --rate "$RATE" --duration "$DURATION" \
    --interval "$INTERVAL" --server-pid "$SERVER_PID" --csv "$OUT/stall-txn-$policy.csv" \
    --png "$OUT/stall-txn-$policy.png" \
    --title "$TXNS stalled transactions, $RATE updates/s over $KEYS keys, $policy GC"
  stop_server
done

start_server "$LOGS/server-thread.log" --enable-fault-injection --max-fault-stall 600s
echo "== stalled server thread"
"$KOVAN_BENCH" stall --target "kovan://127.0.0.1:$PORT" --mode thread \
  --server-threads "$SERVER_THREADS" --keys "$KEYS" --rate "$RATE" --duration "$DURATION" \
  --interval "$INTERVAL" --server-pid "$SERVER_PID" --csv "$OUT/stall-thread.csv" \
  --png "$OUT/stall-thread.png" \
  --title "one server thread parked in a reclaimer guard, $RATE updates/s over $KEYS keys"
stop_server
