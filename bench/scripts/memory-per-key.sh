#!/usr/bin/env bash
# Memory per key: Kovan KV versus Redis, side by side in one run.
#
# For each key count N (KEYS, default "1000000 10000000") a fresh kovan-server (in memory,
# --threads 1) and a fresh Redis (persistence off) are started; kovan-bench loads N records
# (16-byte keys "user" + 12 digits, VALUE_SIZE-byte values, pipelined over the network) into
# each, then loads them OVERWRITES more times (every key overwritten OVERWRITES times). After
# the load and after the overwrites the script reads VmRSS (and VmHWM) from /proc/PID/status
# and Redis's used_memory (INFO memory), and prints bytes per key:
#   * rss/key:   VmRSS / N (the whole process);
#   * +rss/key:  (VmRSS - VmRSS of the empty server) / N (what the keys cost);
#   * Redis's used_memory / N and (used_memory - empty used_memory) / N;
# and the ratio Kovan / Redis of +rss/key.
#
# Before reading Kovan after the overwrites, the script waits for the old versions to be
# collected (the sweeper runs each second) by polling the server's stats: until the index
# holds one version per key and the reclaimer's unreclaimed count (retired - reclaimed)
# stops changing for STABLE_POLLS polls (bounded by SETTLE_TIMEOUT seconds). Redis needs no
# wait (an overwrite frees the old value at once).
#
#   bench/scripts/memory-per-key.sh                 # 1 M and 10 M keys (10 M needs ~5 GB)
#   KEYS=1000000 bench/scripts/memory-per-key.sh    # 1 M only
#   KOVAN_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ...  # Kovan on another malloc
#   KOVAN_ARGS="--watch-history 0" ...             # without the watch feed's history
#
# Traffic stays on 127.0.0.1; the servers are stopped by PID.
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
KOVAN_CLI=${KOVAN_CLI:-$(find_bin client/kovan-cli)}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || true)}
[[ -n $REDIS_SERVER ]] || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "redis-cli not found (apt-get install redis-tools)" >&2; exit 1; }

KEYS=${KEYS:-"1000000 10000000"}
OVERWRITES=${OVERWRITES:-10}
VALUE_SIZE=${VALUE_SIZE:-100}
CONNECTIONS=${CONNECTIONS:-50}
PIPELINE=${PIPELINE:-16}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-300}
STABLE_POLLS=${STABLE_POLLS:-4}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-3600}
KOVAN_PRELOAD=${KOVAN_PRELOAD:-}  # a malloc library to run kovan-server with (LD_PRELOAD)
# Extra kovan-server flags, split on spaces; e.g. "--watch-history 0" leaves out the watch
# feed's history (a fixed budget, 64 MiB by default: about 67 bytes per key at 1 M keys).
KOVAN_ARGS=${KOVAN_ARGS:-}
read -r -a kovan_args <<<"$KOVAN_ARGS"
OUT=${OUT:-$(mktemp -d /tmp/memory-per-key.XXXXXX)}
mkdir -p "$OUT"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }  # status_kb PID VmRSS
redis_used() { redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}'; }
kovan_stat() { "$KOVAN_CLI" --addr "127.0.0.1:$1" stats | awk -v n="$2" '$1 == n {print $2}'; }

# load <target> <n>: stores records 0..n-1 once (a put / SET of every key).
load() {
  "$KOVAN_BENCH" run --target "$1" --workload get --records "$2" --value-size "$VALUE_SIZE" \
    --load --load-timeout "$LOAD_TIMEOUT" --duration 0.1 --warmup 0 \
    --connections "$CONNECTIONS" --pipeline "$PIPELINE" --quiet --no-progress
}

# settle <port> <n>: waits until Kovan holds one version per key and the reclaimer's backlog
# has stopped changing. Prints the polls it took.
settle() {
  local port=$1 n=$2 last=-1 same=0 polls=0 start=$SECONDS
  while ((SECONDS - start < SETTLE_TIMEOUT)); do
    polls=$((polls + 1))
    local stats versions retired reclaimed backlog
    stats=$("$KOVAN_CLI" --addr "127.0.0.1:$port" stats)
    versions=$(awk '$1 == "live_versions" {print $2}' <<<"$stats")
    retired=$(awk '$1 == "reclaimer_retired" {print $2}' <<<"$stats")
    reclaimed=$(awk '$1 == "reclaimer_reclaimed" {print $2}' <<<"$stats")
    backlog=$((retired - reclaimed))
    if ((versions == n)) && ((backlog == last)); then
      same=$((same + 1))
      ((same >= STABLE_POLLS)) && { echo "$polls polls, versions $versions, unreclaimed $backlog"; return; }
    else
      same=0
    fi
    last=$backlog
    sleep 0.5  # a polling interval, not an ordering: the condition above decides
  done
  echo "did not settle in ${SETTLE_TIMEOUT}s (versions $versions of $n, unreclaimed $backlog)"
}

RESULTS=$OUT/memory.csv
echo "keys,phase,server,rss_kb,hwm_kb,empty_rss_kb,used_memory,empty_used_memory" >"$RESULTS"
echo "machine: $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $($REDIS_SERVER --version | cut -d' ' -f1-3)"
echo "records: 16 B keys, $VALUE_SIZE B values; loader: kovan-bench, $CONNECTIONS connections, pipeline $PIPELINE; results in $OUT"
[[ -z $KOVAN_PRELOAD ]] || echo "kovan-server runs with LD_PRELOAD=$KOVAN_PRELOAD"
[[ -z $KOVAN_ARGS ]] || echo "kovan-server flags added: $KOVAN_ARGS"

for n in $KEYS; do
  REDIS_PORT=$(free_port)
  "$REDIS_SERVER" --save '' --appendonly no --bind 127.0.0.1 --port "$REDIS_PORT" \
    >"$OUT/redis-$n.log" 2>&1 &
  REDIS_PID=$!
  pids+=("$REDIS_PID")
  env ${KOVAN_PRELOAD:+LD_PRELOAD=$KOVAN_PRELOAD} "$KOVAN_SERVER" --listen 127.0.0.1:0 --threads 1 \
    "${kovan_args[@]}" >"$OUT/kovan-$n.log" 2>&1 &
  KOVAN_PID=$!
  pids+=("$KOVAN_PID")
  KOVAN_PORT=""
  for _ in $(seq 100); do
    KOVAN_PORT=$(grep -o 'listening on [^ ]*' "$OUT/kovan-$n.log" | sed 's/.*://' || true)
    [[ -n $KOVAN_PORT ]] && break
    sleep 0.1
  done
  [[ -n $KOVAN_PORT ]] || { echo "kovan-server did not start" >&2; cat "$OUT/kovan-$n.log"; exit 1; }
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  k_empty=$(status_kb "$KOVAN_PID" VmRSS)
  r_empty=$(status_kb "$REDIS_PID" VmRSS)
  r_used_empty=$(redis_used "$REDIS_PORT")

  record() {  # record <phase>
    echo "$n,$1,kovan,$(status_kb "$KOVAN_PID" VmRSS),$(status_kb "$KOVAN_PID" VmHWM),$k_empty,," >>"$RESULTS"
    echo "$n,$1,redis,$(status_kb "$REDIS_PID" VmRSS),$(status_kb "$REDIS_PID" VmHWM),$r_empty,$(redis_used "$REDIS_PORT"),$r_used_empty" >>"$RESULTS"
  }

  for s in kovan redis; do
    if [[ $s == kovan ]]; then target=kovan://127.0.0.1:$KOVAN_PORT; else target=redis://127.0.0.1:$REDIS_PORT; fi
    t0=$SECONDS
    load "$target" "$n"
    echo "$n keys: $s loaded in $((SECONDS - t0)) s"
  done
  echo "$n keys: kovan after load: $(settle "$KOVAN_PORT" "$n")"
  [[ $(kovan_stat "$KOVAN_PORT" keys) == "$n" ]] || { echo "kovan holds $(kovan_stat "$KOVAN_PORT" keys) keys, not $n" >&2; exit 1; }
  [[ $(redis-cli -p "$REDIS_PORT" dbsize) == "$n" ]] || { echo "redis holds $(redis-cli -p "$REDIS_PORT" dbsize) keys, not $n" >&2; exit 1; }
  record load

  for s in kovan redis; do
    if [[ $s == kovan ]]; then target=kovan://127.0.0.1:$KOVAN_PORT; else target=redis://127.0.0.1:$REDIS_PORT; fi
    t0=$SECONDS
    for _ in $(seq "$OVERWRITES"); do load "$target" "$n"; done
    echo "$n keys: $s overwritten $OVERWRITES times in $((SECONDS - t0)) s"
  done
  echo "$n keys: kovan after overwrites: $(settle "$KOVAN_PORT" "$n")"
  [[ $(kovan_stat "$KOVAN_PORT" keys) == "$n" ]] || { echo "kovan lost keys" >&2; exit 1; }
  record "overwrite x$OVERWRITES"
  cleanup
done

python3 - "$RESULTS" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault((int(r["keys"]), r["phase"]), {})[r["server"]] = r
print()
print("| keys | phase | Kovan rss/key | Kovan +rss/key | Kovan peak rss | Redis rss/key | Redis +rss/key | Redis used_memory/key | Redis +used_memory/key | Kovan / Redis (+rss) | Kovan / Redis (+rss vs +used_memory) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (n, phase), s in by.items():
    k, r = s["kovan"], s["redis"]
    krss, kdelta = int(k["rss_kb"]) * 1024 / n, (int(k["rss_kb"]) - int(k["empty_rss_kb"])) * 1024 / n
    rrss, rdelta = int(r["rss_kb"]) * 1024 / n, (int(r["rss_kb"]) - int(r["empty_rss_kb"])) * 1024 / n
    used, udelta = int(r["used_memory"]) / n, (int(r["used_memory"]) - int(r["empty_used_memory"])) / n
    print(f"| {n:,} | {phase} | {krss:.0f} B | {kdelta:.0f} B | {int(k['hwm_kb'])/1024:.0f} MiB | "
          f"{rrss:.0f} B | {rdelta:.0f} B | {used:.0f} B | {udelta:.0f} B | {kdelta/rdelta:.2f} | {kdelta/udelta:.2f} |")
EOF
