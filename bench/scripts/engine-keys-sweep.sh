#!/usr/bin/env bash
# Engine point reads and puts against the key count, for two builds side by side in one run.
#
#   bash bench/scripts/engine-keys-sweep.sh OLD_BENCH NEW_BENCH [KEYS...]
#
# OLD_BENCH and NEW_BENCH are kovan-engine-bench binaries (e.g. main's and a branch's).
# For each key count (default 100000 1000000 3000000 10000000) it runs both, one after the
# other (old first), each loading KEYS records of 100 B into a fresh engine (the load rate
# is the rate of inserting new keys, 1 thread) and then running, 1 thread, 2 s each:
# C (point reads) and U (updates: puts of existing keys), uniform and zipfian. It prints a
# table with the ratio new/old per cell. 10 M keys take about 4 GB per process; the
# processes run one at a time, so memory is freed between runs.
set -euo pipefail
OLD=${1:?usage: engine-keys-sweep.sh OLD_BENCH NEW_BENCH [KEYS...]}
NEW=${2:?usage: engine-keys-sweep.sh OLD_BENCH NEW_BENCH [KEYS...]}
shift 2
KEYS=("$@")
[ ${#KEYS[@]} -gt 0 ] || KEYS=(100000 1000000 3000000 10000000)
SECONDS_PER_CELL=${SECONDS_PER_CELL:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() {  # binary keys file
  "$1" ycsb --records "$2" --workloads CU --dists uniform,zipfian --threads 1 \
    --stores engine --seconds "$SECONDS_PER_CELL" >"$3"
}
rate() {  # file workload dist
  awk -v w="$2" -v d="$3" '$1 == w && $2 == d { print $5 }' "$1"
}
load() {  # file
  sed -n 's/.*load \([0-9]*\) inserts.*/\1/p' "$1"
}

printf '%-10s %-8s %-8s %14s %14s %7s\n' keys op dist old new new/old
for k in "${KEYS[@]}"; do
  run "$OLD" "$k" "$out/old"
  run "$NEW" "$k" "$out/new"
  rows=("load insert -" "C read uniform" "C read zipfian" "U put uniform" "U put zipfian")
  for row in "${rows[@]}"; do
    read -r w op d <<<"$row"
    if [ "$w" = load ]; then
      o=$(load "$out/old")
      n=$(load "$out/new")
    else
      o=$(rate "$out/old" "$w" "$d")
      n=$(rate "$out/new" "$w" "$d")
    fi
    if [ -z "$o" ] || [ -z "$n" ]; then
      printf '%-10s %-8s %-8s %14s %14s %7s\n' "$k" "$op" "$d" "${o:-n/a}" "${n:-n/a}" n/a
    else
      printf '%-10s %-8s %-8s %14s %14s %7.2f\n' "$k" "$op" "$d" "$o" "$n" \
        "$(awk -v a="$n" -v b="$o" 'BEGIN { print a / b }')"
    fi
  done
done
