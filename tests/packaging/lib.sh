# shellcheck shell=bash
# Shared by the packaging tests (sourced). Sets `work` (a temporary folder, removed
# on exit) and provides: fail MSG, start_server BIN ARGS... (sets server_pid, server_port,
# server_log), stop_server (SIGTERM, expects exit status 0).
work=$(mktemp -d "${TMPDIR:-/tmp}/kovan-pkg.XXXXXX")
server_pid=""
server_port=""
server_log="$work/server.log"

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  if [ -s "$server_log" ]; then
    echo "--- server log"
    cat "$server_log"
  fi
  exit 1
}

# start_server BIN [ARGS...]: kovan-server on 127.0.0.1 and a free port, read from its
# "listening on HOST:PORT" start-up line (30 s deadline).
start_server() {
  local bin=$1
  shift
  "$bin" --listen 127.0.0.1:0 --summary-interval 0 "$@" >"$server_log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    server_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$server_log" | head -n 1)
    [ -n "$server_port" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || fail "kovan-server exited before listening"
    sleep 0.05
  done
  fail "kovan-server did not start within 30 s"
}

stop_server() {
  kill -TERM "$server_pid"
  local rc=0
  wait "$server_pid" || rc=$?
  server_pid=""
  [ "$rc" -eq 0 ] || fail "kovan-server exited with status $rc after SIGTERM"
}
