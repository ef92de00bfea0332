#!/usr/bin/env bash
# packaging/systemd/kovan-server.service: `systemd-analyze verify` accepts it (with ExecStart
# pointed at this build's kovan-server) without a warning, it carries the directives
# docs/OPERATIONS.md promises, and `systemd-analyze security --offline` rates it at most 2.0
# ("OK"). Exits 77 (skipped) where systemd-analyze is missing.
#   systemd_test.sh SOURCE_DIR KOVAN_SERVER_BIN
set -euo pipefail
src=$(cd "${1:?usage: systemd_test.sh SOURCE_DIR KOVAN_SERVER_BIN}" && pwd)
server=$(realpath "${2:?usage: systemd_test.sh SOURCE_DIR KOVAN_SERVER_BIN}")
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/packaging/lib.sh
source "$here/lib.sh"
unit="$src/packaging/systemd/kovan-server.service"

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze not installed"
  exit 77
fi

# shellcheck disable=SC2016 # $MAINPID is matched literally
for directive in '^DynamicUser=yes' '^User=kovan' '^LimitNOFILE=[0-9]' \
                 '^ExecReload=/bin/kill -HUP \$MAINPID' '^ExecStart=/usr/local/bin/kovan-server --config /etc/kovan/kovan.toml' \
                 '^NoNewPrivileges=yes' '^ProtectSystem=strict' '^PrivateTmp=yes' \
                 '^RestartPreventExitStatus=2' '^KillSignal=SIGTERM'; do
  grep -Eq "$directive" "$unit" || fail "kovan-server.service lacks $directive"
done

sed "s|/usr/local/bin/kovan-server|$server|" "$unit" >"$work/kovan-server.service"
out=$(systemd-analyze verify "$work/kovan-server.service" 2>&1) \
  || fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify warned: $out"

security_help=$(systemd-analyze security --help 2>&1 || true)
if grep -q -- '--offline' <<<"$security_help"; then
  sec=$(systemd-analyze security --offline=true "$work/kovan-server.service" 2>&1 || true)
  level=$(sed -n 's/.*Overall exposure level for kovan-server.service: \([0-9.]*\).*/\1/p' <<<"$sec")
  [ -n "$level" ] || fail "systemd-analyze security gave no exposure level: $sec"
  awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || fail "exposure level $level > 2.0"
  echo "exposure level $level"
fi
echo "PASS: kovan-server.service verified"
