#!/usr/bin/env bash
# kovan versus crossbeam-epoch on the single-cell workload, side by side in one run.
#
#   bash bench/scripts/compare-crossbeam.sh [build-dir]     (run-bench.sh runs it too)
#
# Writers exchange a fresh node into one shared cell and retire the old one; readers load
# it (bench/reclaim/single_cell.cpp and bench/reclaim/crossbeam/src/main.rs, the same work
# in C++ and Rust). Three configurations:
#   w2     2 writers, timed
#   w4r4   4 writers + 4 readers, timed (8 threads: oversubscribes a 2-core machine)
#   stall  one thread pins and holds a guard while 2 writers do XBEAM_STALL_OPS exchanges;
#          unreclaimed = retired - destroyed, counted with the guard still held
# Every repetition runs every configuration for both, interleaved (kovan first on odd
# repetitions, crossbeam first on even ones); the script then prints medians and the
# ratios kovan/crossbeam.
#
# The crossbeam side is built with cargo offline against Debian's
# librust-crossbeam-epoch-dev (crates under /usr/share/cargo/registry, configured in
# bench/reclaim/crossbeam/.cargo/config.toml). Without cargo or that package the
# comparison is skipped with a message and the script exits 0.
#
# Environment:
#   XBEAM_SECONDS     seconds per timed run (default 1)
#   XBEAM_REPEAT      repetitions (default 5)
#   XBEAM_STALL_OPS   exchanges in the stalled run (default 10000000)
#   BENCH_OUT         where crossbeam-single-cell.csv (every run) and
#                     crossbeam-single-cell-summary.csv go (default docs/img)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${1:-build/release}
SECS=${XBEAM_SECONDS:-1}
REPEAT=${XBEAM_REPEAT:-5}
STALL_OPS=${XBEAM_STALL_OPS:-10000000}
OUT=${BENCH_OUT:-docs/img}
CRATE_DIR=bench/reclaim/crossbeam
REGISTRY=/usr/share/cargo/registry

if ! command -v cargo >/dev/null 2>&1; then
  echo "compare-crossbeam: cargo not found; skipping the crossbeam-epoch comparison" >&2
  echo "                   (install cargo and librust-crossbeam-epoch-dev to run it)" >&2
  exit 0
fi
if ! compgen -G "$REGISTRY/crossbeam-epoch-0.9.*" >/dev/null; then
  echo "compare-crossbeam: crossbeam-epoch 0.9 not found under $REGISTRY; skipping the" >&2
  echo "                   comparison (apt-get install librust-crossbeam-epoch-dev)" >&2
  exit 0
fi

if ! cmake --build "$BUILD" --target kovan-single-cell >/dev/null 2>&1; then
  echo "compare-crossbeam: cannot build kovan-single-cell in $BUILD" >&2
  exit 1
fi
KOVAN=$BUILD/bench/reclaim/kovan-single-cell
# The Cargo output goes into the build folder; cargo reads .cargo/config.toml from the
# directory it runs in, hence the cd.
CARGO_TARGET=$(cd "$BUILD" && pwd)/crossbeam-target
if ! (cd "$CRATE_DIR" && cargo build --release --offline --quiet --target-dir "$CARGO_TARGET"); then
  echo "compare-crossbeam: cargo build of $CRATE_DIR failed" >&2
  exit 1
fi
XBEAM=$CARGO_TARGET/release/single-cell-crossbeam

mkdir -p "$OUT"
RAW=$OUT/crossbeam-single-cell.csv
SUMMARY=$OUT/crossbeam-single-cell-summary.csv
echo "compare-crossbeam: kovan vs crossbeam-epoch" \
  "$(basename "$(compgen -G "$REGISTRY/crossbeam-epoch-0.9.*" | head -1)"), ${SECS}s per run," \
  "$REPEAT repetitions, stall $STALL_OPS exchanges; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

run_cfg() {  # run_cfg <binary> <config>
  case $2 in
    w2) "$1" --config w2 --writers 2 --readers 0 --seconds "$SECS" ;;
    w4r4) "$1" --config w4r4 --writers 4 --readers 4 --seconds "$SECS" ;;
    stall) "$1" --config stall --writers 2 --stall-ops "$STALL_OPS" ;;
  esac
}

echo "rep,impl,config,writers,readers,stall_ops,seconds,writes,reads,writes_per_s,reads_per_s,unreclaimed,errors,vm_hwm_kb" >"$RAW"
for ((rep = 1; rep <= REPEAT; rep++)); do
  if ((rep % 2)); then order=("$KOVAN" "$XBEAM"); else order=("$XBEAM" "$KOVAN"); fi
  for cfg in w2 w4r4 stall; do
    for bin in "${order[@]}"; do
      line=$(run_cfg "$bin" "$cfg")
      echo "$rep,$line" >>"$RAW"
    done
  done
done
echo "compare-crossbeam: done; load average: $(cut -d' ' -f1-3 /proc/loadavg); every run in $RAW"

# Medians per (config, impl) of writes/s, reads/s, unreclaimed and peak RSS; then ratios.
tail -n +2 "$RAW" | awk -F, -v summary="$SUMMARY" '
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function ratio(a, b) { return b > 0 ? sprintf("%.3g", a / b) : "-" }
  # columns: rep,impl,config,writers,readers,stall_ops,seconds,writes,reads,writes_per_s,
  #          reads_per_s,unreclaimed,errors,vm_hwm_kb
  { k = $3 SUBSEP $2; w[k] = w[k] " " $10; r[k] = r[k] " " $11; u[k] = u[k] " " $12
    m[k] = m[k] " " $14; n[k]++; err += $13; cfgs[$3] = 1 }
  END {
    print "config,impl,runs,writes_per_s,reads_per_s,unreclaimed,vm_hwm_kb" > summary
    printf "  %-6s %-10s %13s %13s %12s %10s\n", "config", "impl", "writes/s", "reads/s", "unreclaimed", "peak RSS"
    split("w2 w4r4 stall", order, " ")
    for (c = 1; c <= 3; c++) {
      cfg = order[c]
      if (!(cfg in cfgs)) continue
      for (i = 1; i <= 2; i++) {
        impl = (i == 1) ? "kovan" : "crossbeam"; k = cfg SUBSEP impl
        mw[impl] = median(w[k]); mr[impl] = median(r[k]); mu[impl] = median(u[k]); mm[impl] = median(m[k])
        printf "%s,%s,%d,%.0f,%.0f,%.0f,%.0f\n", cfg, impl, n[k], mw[impl], mr[impl], mu[impl], mm[impl] > summary
        printf "  %-6s %-10s %13.0f %13.0f %12.0f %7.0f MiB\n", cfg, impl, mw[impl], mr[impl], mu[impl], mm[impl] / 1024
      }
      printf "  %-6s %-10s %13s %13s %12s %10s\n", cfg, "kovan/xb", ratio(mw["kovan"], mw["crossbeam"]),
        ratio(mr["kovan"], mr["crossbeam"]), ratio(mu["kovan"], mu["crossbeam"]), ratio(mm["kovan"], mm["crossbeam"])
      if (cfg == "stall" && mu["kovan"] > 0)
        printf "  %-6s crossbeam leaves %.0fx more nodes unreclaimed than kovan\n", cfg, mu["crossbeam"] / mu["kovan"]
    }
    if (err > 0) { printf "compare-crossbeam: %d reads saw a destroyed node\n", err > "/dev/stderr"; exit 1 }
  }'
echo "compare-crossbeam: medians in $SUMMARY"
