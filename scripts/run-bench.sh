#!/usr/bin/env bash
# Runs the benchmarks and renders their plots.
#   bash scripts/run-bench.sh [build-dir]        (what `make bench` runs)
# Environment:
#   BENCH_SECONDS   seconds per reclaimer run (default 0.25)
#   BENCH_REPEAT    repetitions of the reclaimer matrix (default 3; medians are reported)
#   BENCH_OUT       where CSVs and PNGs go (default docs/img)
#   XBEAM_SECONDS, XBEAM_REPEAT, XBEAM_STALL_OPS
#                   the crossbeam-epoch comparison (bench/scripts/compare-crossbeam.sh)
# The defaults take about five minutes on a 2-core machine. docs/BENCHMARKS.md explains
# every file written.
set -euo pipefail

BUILD=${1:-build/release}
SECS=${BENCH_SECONDS:-0.25}
REPEAT=${BENCH_REPEAT:-3}
OUT=${BENCH_OUT:-docs/img}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"

RECLAIM=$BUILD/bench/reclaim
if ! cmake --build "$BUILD" --target kovan-reclaim-bench kovan-reclaim-micro >/dev/null 2>&1; then
  echo "run-bench: the reclaimer benchmarks are not part of $BUILD (are liburcu, xenium and" >&2
  echo "           Google Benchmark installed? see scripts/install-deps.sh)" >&2
  exit 1
fi

log_load() { echo "run-bench: $1; load average: $(cut -d' ' -f1-3 /proc/loadavg)"; }

# ---------------------------------------------------------------------------------------
# Reclaimer: micro benchmarks (Google Benchmark), medians of 3 repetitions.
# ---------------------------------------------------------------------------------------
log_load "reclaimer micro benchmarks"
"$RECLAIM/kovan-reclaim-micro" --benchmark_min_time=0.2 --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=csv \
  >"$OUT/reclaim-micro.csv" 2>/dev/null
grep -E '_median"?,' "$OUT/reclaim-micro.csv" | cut -d, -f1,3,4 | sed 's/"//g' |
  awk -F, '{ printf "  %-58s real %8.2f ns  cpu %8.2f ns\n", $1, $2, $3 }'

# ---------------------------------------------------------------------------------------
# Reclaimer: IBR-style matrix (every scheme back to back in each cell), then medians.
# ---------------------------------------------------------------------------------------
log_load "reclaimer matrix: ${SECS}s per run, ${REPEAT} repetitions"
"$RECLAIM/kovan-reclaim-bench" --seconds "$SECS" --repeat "$REPEAT" \
  --csv "$OUT/reclaim-matrix.csv" 2>/dev/null
log_load "reclaimer matrix done"

# Median, min and max per (scheme, ds, mix, stall, threads); rows grouped so that each
# plotted line is contiguous.
{
  echo "scheme,ds,mix,stall,threads,mops_median,mops_min,mops_max,unreclaimed_median,runs"
  tail -n +2 "$OUT/reclaim-matrix.csv" |
    sort -t, -k2,2 -k3,3 -k4,4 -k6,6n -k5,5n |
    awk -F, '
      function median(s,   a, n, i, j, t) {
        n = split(s, a, " ")
        for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      function flush() {
        if (key == "") return
        split(mops, m, " "); lo = hi = m[1]
        for (i in m) { if (m[i] + 0 < lo + 0) lo = m[i]; if (m[i] + 0 > hi + 0) hi = m[i] }
        printf "%s,%.3f,%.3f,%.3f,%.1f,%d\n", key, median(mops), lo, hi, median(unrec), runs
      }
      { k = $2 "," $3 "," $4 "," $6 "," $5
        if (k != key) { flush(); key = k; mops = ""; unrec = ""; runs = 0 }
        mops = mops " " $9; unrec = unrec " " $10; runs++ }
      END { flush() }'
} >"$OUT/reclaim-summary.csv"

# ---------------------------------------------------------------------------------------
# Reclaimer: unreclaimed objects over time with one stalled thread, until 10 M retirements.
# ---------------------------------------------------------------------------------------
log_load "reclaimer stall time series"
"$RECLAIM/kovan-reclaim-bench" --timeseries "$OUT/reclaim-stall-timeseries.csv" \
  --ts-ds stack,map --ts-mix write --ts-threads 2 --ts-retired 10000000 --ts-seconds 10 \
  --sample-ms 50
log_load "reclaimer stall time series done"

# ---------------------------------------------------------------------------------------
# Reclaimer: kovan versus crossbeam-epoch on one shared cell (skipped, with a message, when
# cargo or Debian's crossbeam-epoch crates are missing). XBEAM_* variables: see the script.
# ---------------------------------------------------------------------------------------
log_load "kovan vs crossbeam-epoch, single cell"
BENCH_OUT=$OUT bash bench/scripts/compare-crossbeam.sh "$BUILD"
log_load "kovan vs crossbeam-epoch done"

if command -v gnuplot >/dev/null; then
  gnuplot -e "dir='$OUT'" scripts/plot-reclaim.gp
  echo "run-bench: plots written to $OUT/reclaim-*.png"
else
  echo "run-bench: gnuplot not found; CSVs are in $OUT, no plots" >&2
fi
