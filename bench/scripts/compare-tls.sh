#!/usr/bin/env bash
# Cost of TLS: Kovan KV and Redis with TLS on versus off, measured by the same generator
# (kovan-bench), pipeline depths 1 and 16 by default.
#
# Targets, run alternately (A B C D A B C D ...) RUNS times each for every workload and
# pipeline depth:
#   kovan       kovan-server, plain TCP
#   kovan-tls   kovan-server with --tls-cert/--tls-key (kovans://)
#   redis       redis-server --port (plain)
#   redis-tls   the same redis-server's --tls-port (rediss://), when redis-server was built
#               with TLS (Debian 12's is; the script says so and skips Redis otherwise)
#   kovan-base  optional: BASELINE_SERVER=/path/to/an/older/kovan-server, plain TCP, to check
#               that plain TCP did not get slower
# Each server runs pinned to SERVER_CORE (kovan-server with one worker thread, Redis
# without persistence); kovan-bench runs pinned to CLIENT_CORE with one thread. Only one
# target is driven at a time. The script prints, per workload and pipeline depth, the
# median throughput (min-max), the median p99 from the intended send time, and the TLS/plain
# ratios. TARGETS="kovan kovan-base" (for example) drives only the targets named.
#
# The certificates are a throwaway CA and a server certificate for 127.0.0.1, made with the
# openssl command in OUT (never reused). TLS 1.3 is what both servers negotiate.
#
# Short defaults; for figures worth keeping (docs/BENCHMARKS.md):
#   DURATION=10 RUNS=3 bench/scripts/compare-tls.sh
# Traffic stays on 127.0.0.1; the servers are stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}  # where `make` builds
find_bin() {  # find_bin <relative path>: in BUILD, or in BUILD/main (wrapper builds)
  for p in "$BUILD/$1" "$BUILD/main/$1"; do
    [[ -x $p ]] && { echo "$p"; return; }
  done
  echo "missing $1 under $BUILD (set BUILD=...)" >&2
  exit 1
}
KOVAN_SERVER=${KOVAN_SERVER:-$(find_bin server/kovan-server)}
KOVAN_BENCH=${KOVAN_BENCH:-$(find_bin bench/load/kovan-bench)}
BASELINE_SERVER=${BASELINE_SERVER:-}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || true)}

DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-50}
PIPELINES=${PIPELINES:-"1 16"}
WORKLOADS=${WORKLOADS:-"get set"}
RECORDS=${RECORDS:-100000}
VALUE_SIZE=${VALUE_SIZE:-100}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
OUT=${OUT:-$(mktemp -d /tmp/compare-tls.XXXXXX)}
mkdir -p "$OUT"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- throwaway PKI ---------------------------------------------------------------------
PKI=$OUT/pki
mkdir -p "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=compare-tls-ca -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$PKI/server.key" -out "$PKI/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$PKI/server.ext"
openssl x509 -req -days 2 -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
  -CAcreateserial -out "$PKI/server.pem" -extfile "$PKI/server.ext" 2>/dev/null

# --- servers -------------------------------------------------------------------------
start_kovan() {  # start_kovan <name> <binary> [flags...]: sets PORT_<name>, PID_<name>
  local name=$1 bin=$2
  shift 2
  taskset -c "$SERVER_CORE" "$bin" --listen 127.0.0.1:0 --threads 1 --summary-interval 0 "$@" \
    >"$OUT/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local port=""
  for _ in $(seq 100); do
    port=$(grep -o 'listening on [^ ]*' "$OUT/$name.log" | sed 's/.*://' || true)
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || { echo "$name did not start" >&2; cat "$OUT/$name.log"; exit 1; }
  PORTS[$name]=$port
}

declare -A TARGET PORTS
SERVERS=()
start_kovan kovan "$KOVAN_SERVER"
TARGET[kovan]="kovan://127.0.0.1:${PORTS[kovan]}"
SERVERS+=(kovan)
start_kovan kovan-tls "$KOVAN_SERVER" --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key"
TARGET[kovan-tls]="kovans://127.0.0.1:${PORTS[kovan-tls]}"
SERVERS+=(kovan-tls)
if [[ -n $BASELINE_SERVER ]]; then
  start_kovan kovan-base "$BASELINE_SERVER"
  TARGET[kovan-base]="kovan://127.0.0.1:${PORTS[kovan-base]}"
  SERVERS+=(kovan-base)
fi

REDIS_NOTE=""
if [[ -z $REDIS_SERVER ]]; then
  REDIS_NOTE="redis-server not found: Redis skipped"
else
  REDIS_PORT=$(free_port)
  REDIS_TLS_PORT=$(free_port)
  taskset -c "$SERVER_CORE" "$REDIS_SERVER" --save '' --appendonly no --bind 127.0.0.1 \
    --port "$REDIS_PORT" --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$PKI/server.pem" \
    --tls-key-file "$PKI/server.key" --tls-ca-cert-file "$PKI/ca.pem" --tls-auth-clients no \
    >"$OUT/redis.log" 2>&1 &
  pids+=("$!")
  sleep 0.5
  if ! kill -0 "${pids[-1]}" 2>/dev/null; then
    # Built without TLS: it refuses the --tls-* options. Run it plain only.
    REDIS_NOTE="redis-server has no TLS support (it refused --tls-port): Redis TLS skipped"
    taskset -c "$SERVER_CORE" "$REDIS_SERVER" --save '' --appendonly no --bind 127.0.0.1 \
      --port "$REDIS_PORT" >"$OUT/redis.log" 2>&1 &
    pids+=("$!")
  fi
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  TARGET[redis]="redis://127.0.0.1:$REDIS_PORT"
  SERVERS+=(redis)
  if [[ -z $REDIS_NOTE ]]; then
    TARGET[redis-tls]="rediss://127.0.0.1:$REDIS_TLS_PORT"
    SERVERS+=(redis-tls)
  fi
fi

# TARGETS="kovan kovan-base": drive only these (the others stay idle).
if [[ -n ${TARGETS:-} ]]; then
  SERVERS=($TARGETS)
fi

tls_args() {  # the CA for the TLS targets
  case $1 in *-tls) echo "--tls-ca $PKI/ca.pem" ;; esac
}

# Load the records once into each server (the TLS targets of Redis share its data).
for s in "${SERVERS[@]}"; do
  [[ $s == redis-tls ]] && continue
  # shellcheck disable=SC2046
  taskset -c "$CLIENT_CORE" "$KOVAN_BENCH" run --target "${TARGET[$s]}" $(tls_args "$s") \
    --workload get --records "$RECORDS" --value-size "$VALUE_SIZE" --load --duration 0.2 \
    --warmup 0 --connections "$CONNECTIONS" --pipeline 16 --quiet --no-progress
done

echo "machine: $(nproc) CPUs, $(uname -r); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "targets: ${SERVERS[*]}; servers on core $SERVER_CORE, kovan-bench on core $CLIENT_CORE"
[[ -n $REDIS_NOTE ]] && echo "$REDIS_NOTE"
echo "runs of ${DURATION}s (+${WARMUP}s warm-up), $RUNS per target, $CONNECTIONS connections, $RECORDS records of $VALUE_SIZE B; results in $OUT"

RESULTS=$OUT/runs.csv
echo "workload,pipeline,server,run,ops_per_s,p50_us,p99_us,errors" >"$RESULTS"
for wl in $WORKLOADS; do
  for pl in $PIPELINES; do
    for run in $(seq "$RUNS"); do
      for s in "${SERVERS[@]}"; do  # A B C D ...
        json=$OUT/$wl-p$pl-$s-$run.json
        # shellcheck disable=SC2046
        taskset -c "$CLIENT_CORE" "$KOVAN_BENCH" run --target "${TARGET[$s]}" $(tls_args "$s") \
          --workload "$wl" --records "$RECORDS" --value-size "$VALUE_SIZE" \
          --connections "$CONNECTIONS" --pipeline "$pl" --duration "$DURATION" \
          --warmup "$WARMUP" --seed "$run" --json "$json" --quiet --no-progress
        jq -r --arg w "$wl" --arg p "$pl" --arg s "$s" --arg r "$run" \
          '[$w, $p, $s, $r, .throughput_ops_per_s, .latency_us.from_intended.p50,
            .latency_us.from_intended.p99, .errors_total] | @csv' "$json" | tr -d '"' >>"$RESULTS"
      done
    done
  done
done

python3 - "$RESULTS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
groups = {}
for r in rows:
    groups.setdefault((r["workload"], r["pipeline"]), {}).setdefault(r["server"], []).append(r)
def med(rs, k): return statistics.median(float(r[k]) for r in rs)
def span(rs): return "%.0f-%.0f" % (min(float(x["ops_per_s"]) for x in rs), max(float(x["ops_per_s"]) for x in rs))
print()
print("| workload | pipeline | target | ops/s median (min-max) | p99 us | vs plain: ops/s | vs plain: p99 | errors |")
print("|---|---|---|---|---|---|---|---|")
for (w, p), by in groups.items():
    for s, rs in by.items():
        base = by.get(s[:-4]) if s.endswith("-tls") else by.get("kovan") if s == "kovan-base" else None
        ratio = f"{med(rs, 'ops_per_s') / med(base, 'ops_per_s'):.2f}" if base else ""
        p99r = f"{med(rs, 'p99_us') / max(med(base, 'p99_us'), 1e-9):.2f}" if base else ""
        errors = sum(int(float(x["errors"])) for x in rs)
        print(f"| {w} | {p} | {s} | {med(rs, 'ops_per_s'):,.0f} ({span(rs)}) | {med(rs, 'p99_us'):.0f} | {ratio} | {p99r} | {errors} |")
EOF
echo "(kovan-base's ratios are against kovan: the old server's plain TCP over the new one's)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
