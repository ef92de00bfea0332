#!/usr/bin/env bash
# Model-checks every TLA+ configuration in tla/ with TLC (see tla/README.md).
# Pass configurations must exit 0; must-fail configurations (a mutation that removes an
# essential step) must exit 12 (safety violation) or, for liveness ones, 13.
# Uses $TLA2TOOLS_JAR (default ~/.cache/kovan/tla2tools.jar); without it, prints
# "TLC skipped: no tla2tools.jar" and exits 0.
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
  "Reclaimer Reclaimer_StaleRetireScan.cfg 12"
  "Reclaimer Reclaimer_NoHelperRecheck.cfg 12"
  "Reclaimer Reclaimer_NoFinisherCheck.cfg 12"
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
