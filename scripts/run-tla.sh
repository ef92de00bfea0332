#!/usr/bin/env bash
# Model-checks every TLA+ configuration in tla/ with TLC (see tla/README.md).
# Pass configurations must exit 0; must-fail configurations (a mutation that removes an
# essential step) must exit 12 (safety violation) or, for liveness ones, 13.
# Uses $TLA2TOOLS_JAR (default ~/.cache/kovan/tla2tools.jar); without it, prints
# "TLC skipped: no tla2tools.jar" and exits 0. With $TLA_LOG_DIR set, each TLC log (with
# the counterexample of a must-fail configuration) is kept there as <config>.log.
set -u
cd "$(dirname "$0")/../tla" || exit 1

JAR="${TLA2TOOLS_JAR:-$HOME/.cache/kovan/tla2tools.jar}"
if [ ! -f "$JAR" ]; then
  echo "TLC skipped: no tla2tools.jar"
  exit 0
fi

# spec  config  expected-exit-code
CONFIGS=(
  "MvccGc MvccGc.cfg 0"
  "MvccGc MvccGc_iso.cfg 0"
  "MvccGc MvccGc_stale_a.cfg 12"
  "MvccGc MvccGc_no_validation.cfg 12"
  "Reclaimer Reclaimer.cfg 0"
  "Reclaimer Reclaimer_helping.cfg 0"
  "Reclaimer Reclaimer_live.cfg 0"
  "Reclaimer Reclaimer_waitfree.cfg 0"
  "Reclaimer Reclaimer_StaleRetireScan.cfg 12"
  "Reclaimer Reclaimer_NoHelperRecheck.cfg 12"
  "Reclaimer Reclaimer_NoFinisherCheck.cfg 12"
  "Reclaimer Reclaimer_NoRaise.cfg 12"
  "Reclaimer Reclaimer_NoHelping.cfg 12"
)

failed=0
for entry in "${CONFIGS[@]}"; do
  read -r spec cfg want <<<"$entry"
  meta="$(mktemp -d)"
  log="$meta/tlc.log"
  start=$(date +%s)
  java -XX:+UseParallelGC -cp "$JAR" tlc2.TLC -workers 2 -metadir "$meta" \
       -noGenerateSpecTE -config "$cfg" "$spec.tla" >"$log" 2>&1
  got=$?
  secs=$(( $(date +%s) - start ))
  what=$(grep -m1 -E 'Invariant .* is violated|Temporal properties were violated|No error has been found' "$log" || true)
  states=$(grep -oE '[0-9,]+ distinct states found' "$log" | tail -n 1 | cut -d' ' -f1)
  trace=$(grep -cE '^State [0-9]+:' "$log")
  if [ "$trace" -gt 0 ]; then what="$what (trace: $trace states)"; fi
  what="${states:-?} distinct states; $what"
  if [ -n "${TLA_LOG_DIR:-}" ]; then mkdir -p "$TLA_LOG_DIR" && cp "$log" "$TLA_LOG_DIR/$cfg.log"; fi
  if [ "$got" -eq "$want" ]; then
    printf 'ok    %-34s exit %-3s (expected %-3s) %4ss  %s\n' "$cfg" "$got" "$want" "$secs" "$what"
  else
    printf 'FAIL  %-34s exit %-3s (expected %-3s) %4ss  %s\n' "$cfg" "$got" "$want" "$secs" "$what"
    tail -n 30 "$log" | sed 's/^/      /'
    failed=1
  fi
  rm -rf "$meta"
done

if [ "$failed" -ne 0 ]; then
  echo "TLC: some expectations were not met"
  exit 1
fi
echo "TLC: every configuration behaved as expected"
