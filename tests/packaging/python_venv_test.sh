#!/usr/bin/env bash
# `pip install ./client/python` into a fresh `python3 -m venv --system-site-packages` (the
# system's protobuf, setuptools and wheel; no network: --no-build-isolation --no-index),
# then a round trip through the installed kovan_kv against a real kovan-server.
#   python_venv_test.sh SOURCE_DIR KOVAN_SERVER_BIN [PYTHON]
set -euo pipefail
src=$(cd "${1:?usage: python_venv_test.sh SOURCE_DIR KOVAN_SERVER_BIN [PYTHON]}" && pwd)
server=${2:?usage: python_venv_test.sh SOURCE_DIR KOVAN_SERVER_BIN [PYTHON]}
python=${3:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/packaging/lib.sh
source "$here/lib.sh"

"$python" -c 'import google.protobuf, ensurepip, setuptools, wheel' 2>/dev/null \
  || fail "$python lacks protobuf, venv/ensurepip, setuptools or wheel (Debian: python3-protobuf python3-venv python3-setuptools python3-wheel; scripts/install-deps.sh installs them)"

# A copy of the two folders the package is built from, so that the build leaves nothing in
# the checkout (setuptools writes build/ and *.egg-info next to pyproject.toml).
mkdir -p "$work/src/client" "$work/src/proto"
cp -r "$src/client/python" "$work/src/client/python"
cp "$src/proto/kv.proto" "$work/src/proto/kv.proto"
rm -rf "$work/src/client/python/kovan_kv/__pycache__"

"$python" -m venv --system-site-packages "$work/venv" >"$work/venv.log" 2>&1 \
  || { cat "$work/venv.log"; fail "python3 -m venv failed"; }
PIP_DISABLE_PIP_VERSION_CHECK=1 "$work/venv/bin/python" -m pip install --no-build-isolation \
  --no-index "$work/src/client/python" >"$work/pip.log" 2>&1 \
  || { cat "$work/pip.log"; fail "pip install ./client/python failed"; }
[ ! -e "$work/src/client/python/kovan_kv/kv_pb2.py" ] \
  || fail "the build wrote kv_pb2.py into the source folder"

meta=$("$work/venv/bin/python" -m pip show kovan-kv) || fail "pip show kovan-kv failed"
grep -q '^Requires: .*protobuf' <<<"$meta" || fail "kovan-kv does not declare protobuf: $meta"

start_server "$server"
# From an empty folder, so that only the installed package can be imported.
mkdir "$work/run"
(cd "$work/run" && "$work/venv/bin/python" - "$server_port" "$work/venv" <<'PY'
import sys
import kovan_kv
from kovan_kv import kv_pb2

port, venv = int(sys.argv[1]), sys.argv[2]
assert kovan_kv.__file__.startswith(venv), "imported from " + kovan_kv.__file__
assert kv_pb2.__file__.startswith(venv), "kv_pb2 imported from " + kv_pb2.__file__
c = kovan_kv.Client("127.0.0.1", port)
assert c.ping(b"hi") == b"hi"
c.put("pip/key", "installed")
got = c.get("pip/key")
assert got is not None and got.value == b"installed", got
c.close()
print("round trip ok")
PY
) >"$work/run.log" 2>&1 || { cat "$work/run.log"; fail "the round trip through the installed kovan_kv failed"; }
grep -q 'round trip ok' "$work/run.log" || fail "no round trip: $(cat "$work/run.log")"
stop_server
echo "PASS: pip installed kovan-kv into a fresh venv; round trip against kovan-server"
