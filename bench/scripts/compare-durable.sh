#!/usr/bin/env bash
# Durable Kovan KV versus Redis with persistence, measured side by side (docs/BENCHMARKS.md,
# "Durability").
#
# 1. Put throughput and p99 (kovan-bench `set`, pipeline 1 and 16), targets run alternately
#    RUNS times each:
#      kovan-always   --data-dir --fsync always      redis-always   appendonly yes, appendfsync always
#      kovan-everysec --data-dir --fsync everysec    redis-everysec appendonly yes, appendfsync everysec
#      kovan-mem      no --data-dir (in memory)
# 2. Recovery time for RECOVERY_KEYS keys of VALUE_SIZE bytes: Kovan from a checkpoint plus
#    the log written after it (the same keys overwritten for UPDATE_SECONDS), from the start
#    of the process to "listening"; Redis loading its AOF, and its RDB, from the start to
#    `INFO persistence` loading:0.
# 3. Checkpoint cost under write load: Kovan `kovan-cli checkpoint` while kovan-bench writes
#    (duration; VmHWM above the RSS before) versus Redis BGSAVE under the same load (duration,
#    parent VmHWM above its RSS before, the child's peak RSS, and rdb_last_cow_size).
#
# Servers run pinned to SERVER_CORE (kovan-server with KOVAN_THREADS worker threads, default
# 1; with --fsync always its writes wait for the log on commit threads, so the connections of
# one worker share fsyncs; its log flusher, commit and checkpoint threads share that core),
# kovan-bench to CLIENT_CORE. Data directories
# live under DATA (default: a fresh directory in /tmp; put it on the disk you want to
# measure). The defaults are small, to check that the script works; measurements need
# e.g. DURATION=10 RUNS=3 RECOVERY_KEYS=1000000 (docs/BENCHMARKS.md).
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
KOVAN_CLI=${KOVAN_CLI:-$(find_bin client/kovan-cli)}
KOVAN_BENCH=${KOVAN_BENCH:-$(find_bin bench/load/kovan-bench)}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || true)}
[[ -n $REDIS_SERVER ]] || { echo "redis-server not found" >&2; exit 1; }

DURATION=${DURATION:-2}
WARMUP=${WARMUP:-1}
RUNS=${RUNS:-1}
CONNECTIONS=${CONNECTIONS:-50}
PIPELINES=${PIPELINES:-"1 16"}
TARGETS=${TARGETS:-"kovan-always redis-always kovan-everysec redis-everysec kovan-mem"}
RECORDS=${RECORDS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
RECOVERY_KEYS=${RECOVERY_KEYS:-20000}
UPDATE_SECONDS=${UPDATE_SECONDS:-2}
CHECKPOINT_LOAD_SECONDS=${CHECKPOINT_LOAD_SECONDS:-4}
SERVER_CORE=${SERVER_CORE:-0}
KOVAN_THREADS=${KOVAN_THREADS:-1}  # worker threads
CLIENT_CORE=${CLIENT_CORE:-1}
OUT=${OUT:-$(mktemp -d /tmp/compare-durable.XXXXXX)}
DATA=${DATA:-$OUT/data}
mkdir -p "$OUT" "$DATA"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# start_kovan NAME DATADIR [flags...]: starts kovan-server, sets PID_<NAME>, PORT_<NAME>
# and T_<NAME> (milliseconds from spawn to "listening on").
start_kovan() {
  local name=$1 dir=$2
  shift 2
  local log=$OUT/$name.log
  local args=(--listen 127.0.0.1:0 --threads "$KOVAN_THREADS" --summary-interval 0)
  [[ -n $dir ]] && args+=(--data-dir "$dir")
  local t0
  t0=$(now_ms)
  taskset -c "$SERVER_CORE" "$KOVAN_SERVER" "${args[@]}" "$@" >"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local port=""
  for _ in $(seq 6000); do
    port=$(grep -o 'listening on [^ ]*' "$log" | sed 's/.*://' || true)
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  [[ -n $port ]] || { echo "kovan-server $name did not start" >&2; cat "$log" >&2; exit 1; }
  printf -v "PID_${name//-/_}" '%s' "$pid"
  printf -v "PORT_${name//-/_}" '%s' "$port"
  printf -v "T_${name//-/_}" '%s' "$(($(now_ms) - t0))"
}

# start_redis NAME DIR [config...]: as start_kovan; T_<NAME> until loading:0.
start_redis() {
  local name=$1 dir=$2
  shift 2
  local port
  port=$(free_port)
  mkdir -p "$dir"
  local t0
  t0=$(now_ms)
  taskset -c "$SERVER_CORE" "$REDIS_SERVER" --bind 127.0.0.1 --port "$port" --dir "$dir" "$@" \
    >"$OUT/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 60000); do
    redis-cli -p "$port" info persistence 2>/dev/null | grep -q '^loading:0' && break
    sleep 0.001
  done
  printf -v "PID_${name//-/_}" '%s' "$pid"
  printf -v "PORT_${name//-/_}" '%s' "$port"
  printf -v "T_${name//-/_}" '%s' "$(($(now_ms) - t0))"
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
crash_pid() { kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

bench() {  # bench TARGET_URL WORKLOAD PIPELINE DURATION JSON [extra...]
  local url=$1 wl=$2 pl=$3 dur=$4 json=$5
  shift 5
  taskset -c "$CLIENT_CORE" "$KOVAN_BENCH" run --target "$url" --workload "$wl" \
    --records "$RECORDS" --value-size "$VALUE_SIZE" --connections "$CONNECTIONS" \
    --pipeline "$pl" --duration "$dur" --warmup "$WARMUP" --json "$json" --quiet --no-progress "$@"
}

echo "machine: $(nproc) CPUs, $(uname -r); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data directories under $DATA ($(df -h "$DATA" | awk 'NR==2 {print $1 ", " $4 " free"}')); results in $OUT"

# --- 1. put throughput ---------------------------------------------------------------
declare -A URL
for t in $TARGETS; do
  case $t in
    kovan-always) start_kovan "$t" "$DATA/$t" --fsync always ;;
    kovan-everysec) start_kovan "$t" "$DATA/$t" --fsync everysec ;;
    kovan-mem) start_kovan "$t" "" ;;
    redis-always) start_redis "$t" "$DATA/$t" --save '' --appendonly yes --appendfsync always ;;
    redis-everysec) start_redis "$t" "$DATA/$t" --save '' --appendonly yes --appendfsync everysec ;;
    *) echo "unknown target $t" >&2; exit 1 ;;
  esac
  v=PORT_${t//-/_}
  if [[ $t == kovan-* ]]; then URL[$t]="kovan://127.0.0.1:${!v}"; else URL[$t]="redis://127.0.0.1:${!v}"; fi
done
RESULTS=$OUT/puts.csv
echo "target,pipeline,run,ops_per_s,p50_us,p99_us,errors" >"$RESULTS"
for pl in $PIPELINES; do
  for run in $(seq "$RUNS"); do
    for t in $TARGETS; do  # A B C ... A B C ...
      json=$OUT/set-$t-p$pl-$run.json
      bench "${URL[$t]}" set "$pl" "$DURATION" "$json" --seed "$run"
      jq -r --arg t "$t" --arg p "$pl" --arg r "$run" \
        '[$t, $p, $r, .throughput_ops_per_s, .latency_us.from_intended.p50,
          .latency_us.from_intended.p99, .errors_total] | @csv' "$json" | tr -d '"' >>"$RESULTS"
    done
  done
done
for t in $TARGETS; do v=PID_${t//-/_}; stop_pid "${!v}"; done
python3 - "$RESULTS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault(r["pipeline"], {}).setdefault(r["target"], []).append(r)
print("\n## Put throughput (set), median of runs\n")
print("| pipeline | target | ops/s (min-max) | p50 us | p99 us | errors |")
print("|---|---|---|---|---|---|")
for p, targets in by.items():
    for t, rs in targets.items():
        ops = [float(x["ops_per_s"]) for x in rs]
        print(f"| {p} | {t} | {statistics.median(ops):,.0f} ({min(ops):,.0f}-{max(ops):,.0f}) | "
              f"{statistics.median(float(x['p50_us']) for x in rs):.0f} | "
              f"{statistics.median(float(x['p99_us']) for x in rs):.0f} | "
              f"{sum(int(float(x['errors'])) for x in rs)} |")
    t = targets
    for a, b in (("kovan-always", "redis-always"), ("kovan-everysec", "redis-everysec"),
                 ("kovan-always", "kovan-mem")):
        if a in t and b in t:
            ra = statistics.median(float(x["ops_per_s"]) for x in t[a])
            rb = statistics.median(float(x["ops_per_s"]) for x in t[b])
            print(f"| {p} | {a} / {b} | {ra / rb:.2f} | | | |")
EOF

# --- 2. recovery time --------------------------------------------------------------------
SAVED_RECORDS=$RECORDS
RECORDS=$RECOVERY_KEYS
echo
echo "## Recovery of $RECOVERY_KEYS keys of $VALUE_SIZE B"
echo
rm -rf "$DATA/rec-kovan" "$DATA/rec-redis"
start_kovan rec_kovan "$DATA/rec-kovan" --fsync everysec
bench "kovan://127.0.0.1:$PORT_rec_kovan" set 16 0.2 "$OUT/rec-load-kovan.json" --load >/dev/null
"$KOVAN_CLI" --addr "127.0.0.1:$PORT_rec_kovan" checkpoint
bench "kovan://127.0.0.1:$PORT_rec_kovan" set 16 "$UPDATE_SECONDS" "$OUT/rec-upd-kovan.json"
"$KOVAN_CLI" --addr "127.0.0.1:$PORT_rec_kovan" stats | grep -E '^(revision|keys|wal_bytes|last_checkpoint_revision) '
stop_pid "$PID_rec_kovan"
du -sh "$DATA/rec-kovan"
start_kovan rec_kovan2 "$DATA/rec-kovan"
echo "kovan: checkpoint + log recovered in ${T_rec_kovan2} ms (process start to listening; $(kib "$PID_rec_kovan2" VmHWM) KiB peak RSS)"
stop_pid "$PID_rec_kovan2"

start_redis rec_redis "$DATA/rec-redis" --save '' --appendonly yes --appendfsync everysec
bench "redis://127.0.0.1:$PORT_rec_redis" set 16 0.2 "$OUT/rec-load-redis.json" --load >/dev/null
bench "redis://127.0.0.1:$PORT_rec_redis" set 16 "$UPDATE_SECONDS" "$OUT/rec-upd-redis.json"
redis-cli -p "$PORT_rec_redis" save >/dev/null  # dump.rdb of the same data, for the RDB run
stop_pid "$PID_rec_redis"
du -sh "$DATA/rec-redis"
start_redis rec_redis_aof "$DATA/rec-redis" --save '' --appendonly yes
echo "redis: AOF loaded in ${T_rec_redis_aof} ms (process start to loading:0; $(redis-cli -p "$PORT_rec_redis_aof" dbsize) keys)"
stop_pid "$PID_rec_redis_aof"
start_redis rec_redis_rdb "$DATA/rec-redis" --save '' --appendonly no
echo "redis: RDB loaded in ${T_rec_redis_rdb} ms (process start to loading:0; $(redis-cli -p "$PORT_rec_redis_rdb" dbsize) keys)"

# --- 3. checkpoint vs BGSAVE under write load ----------------------------------------------
echo
echo "## Checkpoint vs BGSAVE of $RECOVERY_KEYS keys under write load (set, pipeline 16)"
echo
start_kovan ck_kovan "$DATA/rec-kovan" --fsync everysec
rss0=$(kib "$PID_ck_kovan" VmRSS)
echo 5 >"/proc/$PID_ck_kovan/clear_refs"
bench "kovan://127.0.0.1:$PORT_ck_kovan" set 16 "$CHECKPOINT_LOAD_SECONDS" "$OUT/ck-kovan.json" &
load=$!
sleep 1
t0=$(now_ms)
"$KOVAN_CLI" --addr "127.0.0.1:$PORT_ck_kovan" checkpoint
t1=$(now_ms)
wait "$load"
hwm=$(kib "$PID_ck_kovan" VmHWM)
echo "kovan: checkpoint took $((t1 - t0)) ms; RSS before ${rss0} KiB, peak ${hwm} KiB (+$((hwm - rss0)) KiB) during the load with the checkpoint"
stop_pid "$PID_ck_kovan"

rss0=$(kib "$PID_rec_redis_rdb" VmRSS)
echo 5 >"/proc/$PID_rec_redis_rdb/clear_refs"
bench "redis://127.0.0.1:$PORT_rec_redis_rdb" set 16 "$CHECKPOINT_LOAD_SECONDS" "$OUT/ck-redis.json" &
load=$!
sleep 1
t0=$(now_ms)
redis-cli -p "$PORT_rec_redis_rdb" bgsave >/dev/null
child_peak=0
while redis-cli -p "$PORT_rec_redis_rdb" info persistence | grep -q '^rdb_bgsave_in_progress:1'; do
  for c in $(pgrep -P "$PID_rec_redis_rdb" || true); do
    r=$(kib "$c" VmHWM)
    ((r > child_peak)) && child_peak=$r
  done
  sleep 0.005
done
t1=$(now_ms)
wait "$load"
hwm=$(kib "$PID_rec_redis_rdb" VmHWM)
cow=$(redis-cli -p "$PORT_rec_redis_rdb" info persistence | awk -F: '/^rdb_last_cow_size/ {print int($2/1024)}' | tr -d '\r')
echo "redis: BGSAVE took $((t1 - t0)) ms; parent RSS before ${rss0} KiB, peak ${hwm} KiB; child peak RSS ${child_peak} KiB (shared pages included), copy-on-write ${cow} KiB"
stop_pid "$PID_rec_redis_rdb"
RECORDS=$SAVED_RECORDS
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
