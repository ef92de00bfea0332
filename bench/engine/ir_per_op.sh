#!/usr/bin/env bash
# Instructions per engine operation, measured with callgrind (deterministic: independent of
# the machine's load). Counts only the instructions executed inside the engine store's
# read/write calls (one worker thread, a fixed number of operations), and runs each cell
# twice, with OPS and 2 x OPS operations: the difference divided by OPS leaves out the load
# phase (also engine writes), key generation and background threads.
#
#   bench/engine/ir_per_op.sh [BIN] [WORKLOADS] [DISTS] [RECORDS] [OPS]
#   defaults: build/rel/bench/engine/kovan-engine-bench CU zipfian,uniform 100000 20000
#   EXTRA="--watch-history 0" adds arguments to every run.
set -euo pipefail
BIN=${1:-build/rel/bench/engine/kovan-engine-bench}
WORKLOADS=${2:-CU}
DISTS=${3:-zipfian,uniform}
RECORDS=${4:-100000}
OPS=${5:-20000}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for ((i = 0; i < ${#WORKLOADS}; i++)); do
  w=${WORKLOADS:i:1}
  for d in ${DISTS//,/ }; do
    irs=()
    for n in "$OPS" $((2 * OPS)); do
      valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$w.$d.$n" \
        --toggle-collect='*EngineStore::read*' --toggle-collect='*EngineStore::write*' \
        "$BIN" ycsb --records "$RECORDS" --workloads "$w" --dists "$d" --threads 1 \
        --stores engine --ops "$n" ${EXTRA:-} >/dev/null 2>"$OUT/log"
      irs+=("$(grep -E '^(summary|totals):' "$OUT/cg.$w.$d.$n" | head -1 | awk '{print $2}')")
    done
    printf '%s %-8s %8.0f Ir/op\n' "$w" "$d" "$(echo "(${irs[1]} - ${irs[0]}) / $OPS" | bc -l)"
    # KEEP=prefix keeps both profiles (bench/engine/ir_diff.py PREFIX.W.D OPS: per function).
    if [[ -n "${KEEP:-}" ]]; then
      cp "$OUT/cg.$w.$d.$OPS" "$KEEP.$w.$d.1"
      cp "$OUT/cg.$w.$d.$((2 * OPS))" "$KEEP.$w.$d.2"
    fi
  done
done
