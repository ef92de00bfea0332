#!/usr/bin/env bash
# Kovan KV versus Redis, measured side by side by the same generator (kovan-bench).
#
# Both servers run pinned to one core (SERVER_CORE, kovan-server with one worker thread,
# Redis single-threaded without persistence); kovan-bench runs pinned to another core
# (CLIENT_CORE) with one thread. For every workload and pipeline depth the two targets are
# run alternately, A B A B ..., RUNS times each; the script prints the median throughput,
# its min-max spread, the median p99 (from the intended send time), the ratio Kovan/Redis,
# the server CPU-seconds per run and the operations per server CPU-second, and the CPU
# used by other processes during the runs (a noisy-machine indicator).
#
# Everything is configurable through the environment; the defaults are short. The
# benchmarking rules (docs/BENCHMARKS.md) ask for DURATION >= 10 and RUNS >= 3:
#   DURATION=10 RUNS=3 bench/scripts/compare-redis.sh
#
# Traffic stays on 127.0.0.1; both servers are stopped by PID on exit.
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
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || true)}
[[ -n $REDIS_SERVER ]] || { echo "redis-server not found" >&2; exit 1; }

DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-50}
PIPELINES=${PIPELINES:-"1 16"}
WORKLOADS=${WORKLOADS:-"get set ycsb-a ycsb-b"}
RECORDS=${RECORDS:-100000}
VALUE_SIZE=${VALUE_SIZE:-100}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
OUT=${OUT:-$(mktemp -d /tmp/compare-redis.XXXXXX)}
mkdir -p "$OUT"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }          # utime + stime of a PID
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }  # all CPUs, busy
HZ=$(getconf CLK_TCK)

# --- servers -------------------------------------------------------------------------
REDIS_PORT=$(free_port)
taskset -c "$SERVER_CORE" "$REDIS_SERVER" --save '' --appendonly no --bind 127.0.0.1 \
  --port "$REDIS_PORT" >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
pids+=("$REDIS_PID")
taskset -c "$SERVER_CORE" "$KOVAN_SERVER" --listen 127.0.0.1:0 --threads 1 \
  >"$OUT/kovan-server.log" 2>&1 &
KOVAN_PID=$!
pids+=("$KOVAN_PID")
KOVAN_PORT=""
for _ in $(seq 100); do
  KOVAN_PORT=$(grep -o 'listening on [^ ]*' "$OUT/kovan-server.log" | sed 's/.*://' || true)
  [[ -n $KOVAN_PORT ]] && break
  sleep 0.1
done
[[ -n $KOVAN_PORT ]] || { echo "kovan-server did not start" >&2; cat "$OUT/kovan-server.log"; exit 1; }
for _ in $(seq 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done

declare -A TARGET=([kovan]="kovan://127.0.0.1:$KOVAN_PORT" [redis]="redis://127.0.0.1:$REDIS_PORT")
declare -A SPID=([kovan]=$KOVAN_PID [redis]=$REDIS_PID)

# Load the records once into each server.
for s in kovan redis; do
  taskset -c "$CLIENT_CORE" "$KOVAN_BENCH" run --target "${TARGET[$s]}" --workload get \
    --records "$RECORDS" --value-size "$VALUE_SIZE" --load --duration 0.2 --warmup 0 \
    --connections "$CONNECTIONS" --pipeline 16 --quiet --no-progress
done

echo "machine: $(nproc) CPUs, $(uname -r); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kovan-server $KOVAN_PID and redis-server $REDIS_PID on core $SERVER_CORE; kovan-bench on core $CLIENT_CORE"
echo "runs of ${DURATION}s (+${WARMUP}s warm-up), $RUNS per target, $CONNECTIONS connections, $RECORDS records of $VALUE_SIZE B; results in $OUT"

RESULTS=$OUT/runs.csv
echo "workload,pipeline,server,run,ops_per_s,p50_us,p99_us,errors,server_cpu_s,other_cpu_s" >"$RESULTS"
for wl in $WORKLOADS; do
  for pl in $PIPELINES; do
    for run in $(seq "$RUNS"); do
      for s in kovan redis; do  # A B A B ...
        json=$OUT/$wl-p$pl-$s-$run.json
        c0=$(cpu_ticks "${SPID[$s]}")
        b0=$(busy_ticks)
        /usr/bin/time -f '%U %S' -o "$OUT/time.txt" \
          taskset -c "$CLIENT_CORE" "$KOVAN_BENCH" run --target "${TARGET[$s]}" --workload "$wl" \
          --records "$RECORDS" --value-size "$VALUE_SIZE" --connections "$CONNECTIONS" \
          --pipeline "$pl" --duration "$DURATION" --warmup "$WARMUP" --seed "$run" \
          --json "$json" --quiet --no-progress
        c1=$(cpu_ticks "${SPID[$s]}")
        b1=$(busy_ticks)
        read -r bu bs <"$OUT/time.txt"
        server_cpu=$(echo "($c1 - $c0) / $HZ" | bc -l)
        other=$(echo "($b1 - $b0) / $HZ - $server_cpu - $bu - $bs" | bc -l)
        jq -r --arg w "$wl" --arg p "$pl" --arg s "$s" --arg r "$run" \
          --arg c "$server_cpu" --arg o "$other" \
          '[$w, $p, $s, $r, .throughput_ops_per_s, .latency_us.from_intended.p50,
            .latency_us.from_intended.p99, .errors_total, ($c|tonumber*100|round/100),
            ($o|tonumber*100|round/100)] | @csv' "$json" | tr -d '"' >>"$RESULTS"
      done
    done
  done
done

python3 - "$RESULTS" "$DURATION" "$WARMUP" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
measured = float(sys.argv[2]) + float(sys.argv[3])
groups = {}
for r in rows:
    groups.setdefault((r["workload"], r["pipeline"]), {}).setdefault(r["server"], []).append(r)
def med(rs, k): return statistics.median(float(r[k]) for r in rs)
print()
print("| workload | pipeline | Kovan ops/s (min-max) | Redis ops/s (min-max) | ratio | Kovan p99 us | Redis p99 us | Kovan ops/server-CPU-s | Redis ops/server-CPU-s | errors | other CPU-s/run |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (w, p), by in groups.items():
    k, r = by["kovan"], by["redis"]
    kt, rt = med(k, "ops_per_s"), med(r, "ops_per_s")
    def span(rs): return "%.0f-%.0f" % (min(float(x["ops_per_s"]) for x in rs), max(float(x["ops_per_s"]) for x in rs))
    # ops per server CPU-second: the ops of the whole run (warm-up included) over its CPU.
    def per_cpu(rs): return statistics.median(float(x["ops_per_s"]) * measured / max(float(x["server_cpu_s"]), 1e-9) for x in rs)
    errors = sum(int(float(x["errors"])) for x in k + r)
    other = statistics.median(float(x["other_cpu_s"]) for x in k + r)
    print(f"| {w} | {p} | {kt:,.0f} ({span(k)}) | {rt:,.0f} ({span(r)}) | {kt/rt:.2f} | "
          f"{med(k,'p99_us'):.0f} | {med(r,'p99_us'):.0f} | {per_cpu(k):,.0f} | {per_cpu(r):,.0f} | {errors} | {other:.2f} |")
EOF
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
