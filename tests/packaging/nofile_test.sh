#!/usr/bin/env bash
# kovan-server raises its soft open-file limit to the hard limit at start and logs it
# (container engines commonly start processes with a soft limit of 1024 while the server
# accepts --max-connections 10000 by default).
#   nofile_test.sh KOVAN_SERVER_BIN
set -euo pipefail
server=${1:?usage: nofile_test.sh KOVAN_SERVER_BIN}
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- server log"; cat "$work/log" 2>/dev/null || true; exit 1; }

hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=$(cat /proc/sys/fs/nr_open)
soft=64
if [ "$hard" -le "$soft" ]; then
  echo "SKIP: the hard open-file limit ($hard) leaves nothing to raise"
  exit 0
fi

# The server inherits a soft limit of 64 from this subshell.
( ulimit -Sn "$soft" && exec "$server" --listen 127.0.0.1:0 --summary-interval 0 ) >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q 'listening on' "$work/log" && break
  kill -0 "$pid" 2>/dev/null || fail "kovan-server exited before listening"
  sleep 0.05
done
grep -q 'listening on' "$work/log" || fail "kovan-server did not start within 30 s"

limits=$(awk '/^Max open files/ {print $4, $5}' "/proc/$pid/limits")
[ "$limits" = "$hard $hard" ] || fail "open-file limits are '$limits', want soft = hard = $hard"
grep -q "open-file limit raised from $soft to $hard" "$work/log" \
  || fail "no log line 'open-file limit raised from $soft to $hard'"
kill -TERM "$pid"
wait "$pid" || fail "kovan-server exited with status $? after SIGTERM"
pid=""
echo "PASS: soft open-file limit $soft -> $hard, logged"
