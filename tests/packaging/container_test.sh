#!/usr/bin/env bash
# The container image (label `container`, `make test-container`; not in the default suite):
#   1. the build context leaves out build/ and .git (.dockerignore);
#   2. the image builds (docker/build-image.sh), keeps its HEALTHCHECK, runs as `kovan`,
#      exposes 7379 and 9100; a rebuild after a change outside the compiled folders reuses
#      every layer (dependencies and compile are not re-run);
#   3. run with published ports and a soft open-file limit of 1024: put/get with the host's
#      kovan-cli, metrics answer, the soft limit is raised and logged, the health check turns
#      healthy, and `stop` exits 0 (graceful SIGTERM) within the grace period;
#   4. flags after the image name replace the default listen address (`... kovan-kv --listen
#      0.0.0.0:8000`); a mounted /etc/kovan/kovan.toml sets it;
#   5. compose up / down with docker/compose.yaml (podman-compose, `podman compose` or
#      `docker compose`), with its data volume;
#   6. durability on the image's data volume: acknowledged writes survive `kill` (SIGKILL,
#      exit 137) and `stop` (exit 0), and revisions keep counting after each restart.
#   container_test.sh SOURCE_DIR KOVAN_CLI_BIN
set -euo pipefail
src=$(cd "${1:?usage: container_test.sh SOURCE_DIR KOVAN_CLI_BIN}" && pwd)
cli=$(realpath "${2:?usage: container_test.sh SOURCE_DIR KOVAN_CLI_BIN}")
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/packaging/lib.sh
source "$here/lib.sh"
image=${KOVAN_IMAGE:-kovan-kv}
prefix="kovan-ct-$$"
containers=()
compose_down=""

eng=$(bash "$src/docker/build-image.sh" --engine) || fail "no container engine"
echo "engine: $eng"

cleanup_containers() {
  local c
  for c in "${containers[@]}"; do "$eng" rm -f "$c" >/dev/null 2>&1 || true; done
  if [ -n "$compose_down" ]; then eval "$compose_down" >/dev/null 2>&1 || true; fi
  rm -f "$src/.kovan-context-probe" "$src/build/.kovan-context-probe"
  cleanup
}
trap cleanup_containers EXIT

step() { printf '\n--- %s\n' "$*"; }

# host_port NAME CONTAINER_PORT: the host port published for it.
host_port() {
  local line
  line=$("$eng" port "$1" "$2/tcp" | head -n 1) || return 1
  echo "${line##*:}"
}

# until_ok SECONDS CMD...: retries CMD every 0.2 s until it succeeds or the time runs out.
until_ok() {
  local deadline=$(( $(date +%s) + $1 ))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

healthy() {
  if [ "$eng" = podman ]; then
    # podman runs health checks from systemd timers, absent here: run one now.
    podman healthcheck run "$1" >/dev/null 2>&1 || return 1
  fi
  local s
  s=$("$eng" inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null) || return 1
  [ "$s" = healthy ]
}

run_container() {  # run_container NAME ARGS... (engine flags, image, server flags)
  local name=$1
  shift
  containers+=("$name")
  "$eng" run -d --name "$name" "$@" >/dev/null || fail "$eng run $* failed"
}

logs_of() { "$eng" logs "$1" 2>&1; }
# log_has NAME TEXT: the container's log contains TEXT. (Not `logs_of | grep -q`: under
# pipefail, grep -q exiting at the first match fails the pipeline with SIGPIPE.)
log_has() {
  local out
  out=$(logs_of "$1")
  grep -qF -- "$2" <<<"$out"
}

step "1. build context"
mkdir -p "$src/build"
echo probe >"$src/build/.kovan-context-probe"
printf 'FROM %s\nCOPY . /ctx\nRUN test -f /ctx/docker/Dockerfile && test ! -e /ctx/build && test ! -e /ctx/.git\n' \
  "${KOVAN_CONTEXT_BASE:-debian:12-slim}" >"$work/Containerfile.context"
ctx_flags=()
[ "$eng" = podman ] && ctx_flags=(--pull=never)
"$eng" build "${ctx_flags[@]}" --no-cache -f "$work/Containerfile.context" -t "$prefix-context" "$src" \
  >"$work/context.log" 2>&1 || { cat "$work/context.log"; fail "build/ or .git is in the build context (.dockerignore)"; }
"$eng" rmi -f "$prefix-context" >/dev/null 2>&1 || true
rm -f "$src/build/.kovan-context-probe"

step "2. image"
bash "$src/docker/build-image.sh" "$image" >"$work/image.log" 2>&1 \
  || { tail -n 40 "$work/image.log"; fail "the image does not build"; }
id1=$("$eng" image inspect --format '{{.Id}}' "$image")
[ -n "$("$eng" image inspect --format '{{.Config.Healthcheck}}' "$image" | grep -v '^<nil>$\|^$' || true)" ] \
  || fail "the image has no HEALTHCHECK"
user=$("$eng" image inspect --format '{{.Config.User}}' "$image")
[ "$user" = "kovan:kovan" ] || fail "the image runs as '$user', not kovan:kovan"
ports=$("$eng" image inspect --format '{{json .Config.ExposedPorts}}' "$image")
[[ "$ports" == *7379* && "$ports" == *9100* ]] || fail "the image exposes $ports, not 7379 and 9100"
# A file outside the compiled folders changes: every layer is reused (same image).
echo "probe $$" >"$src/.kovan-context-probe"
bash "$src/docker/build-image.sh" "$image" >"$work/rebuild.log" 2>&1 \
  || { tail -n 40 "$work/rebuild.log"; fail "the rebuild failed"; }
rm -f "$src/.kovan-context-probe"
id2=$("$eng" image inspect --format '{{.Id}}' "$image")
[ "$id1" = "$id2" ] || { cat "$work/rebuild.log"; fail "a change outside the sources rebuilt the image"; }

step "3. run, put/get, metrics, open-file limit, health, stop"
main="$prefix-main"
# A soft open-file limit of 1024 under this machine's hard limit. With podman, any --ulimit
# flag replaces containers.conf's default_ulimits, so its process-count limit (which
# podman-setup.sh sets because root here cannot raise the default) is passed again.
nofile_hard=$(ulimit -Hn)
[ "$nofile_hard" = unlimited ] && nofile_hard=1048576
[ "$nofile_hard" -gt 1024 ] || fail "the hard open-file limit ($nofile_hard) leaves nothing to raise"
ulimits=(--ulimit "nofile=1024:$nofile_hard")
if [ "$eng" = podman ]; then
  nproc=$(grep -ho 'nproc=[0-9]*:[0-9]*' /etc/containers/containers.conf \
            "${HOME:-/root}/.config/containers/containers.conf" 2>/dev/null | tail -n 1 || true)
  [ -z "$nproc" ] || ulimits+=(--ulimit "$nproc")
fi
run_container "$main" "${ulimits[@]}" -p 127.0.0.1::7379 -p 127.0.0.1::9100 "$image" --threads 2
port=$(host_port "$main" 7379) || fail "no published port for 7379"
mport=$(host_port "$main" 9100) || fail "no published port for 9100"
addr="127.0.0.1:$port"
until_ok 60 "$cli" --addr "$addr" ping || { logs_of "$main"; fail "the server in $main does not answer on $addr"; }
"$cli" --addr "$addr" put container/key from-host >/dev/null || fail "put through $addr failed"
got=$("$cli" --addr "$addr" get container/key) || fail "get through $addr failed"
[[ "$got" == *from-host* ]] || fail "get printed '$got'"
metrics=$(exec 3<>"/dev/tcp/127.0.0.1/$mport" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3) \
  || fail "no answer on the metrics port $mport"
[[ "$metrics" == *"200 OK"* && "$metrics" == *kovan_* ]] || fail "metrics answered: ${metrics:0:200}"
log_has "$main" "open-file limit raised from 1024 to $nofile_hard" \
  || { logs_of "$main"; fail "no 'open-file limit raised from 1024 to $nofile_hard' in the log"; }
[ "$("$eng" exec "$main" id -un)" = kovan ] || fail "the server does not run as kovan"
until_ok 60 healthy "$main" || fail "$main did not turn healthy"
start=$(date +%s)
"$eng" stop -t 10 "$main" >/dev/null || fail "$eng stop failed"
took=$(( $(date +%s) - start ))
code=$("$eng" inspect --format '{{.State.ExitCode}}' "$main")
[ "$code" = 0 ] || { logs_of "$main"; fail "the server exited with $code on stop"; }
[ "$took" -lt 10 ] || fail "stop took ${took}s: SIGTERM was not handled within the grace period"
sigterm_logged() { log_has "$main" 'received SIGTERM'; }
until_ok 10 sigterm_logged || { logs_of "$main"; fail "the log has no 'received SIGTERM'"; }
echo "stopped in ${took}s with exit code 0"

step "4. listen address from flags and from a mounted config file"
flags="$prefix-flags"
run_container "$flags" -e KOVAN_HEALTH_ADDR=127.0.0.1:8000 -p 127.0.0.1::8000 "$image" --listen 0.0.0.0:8000
p=$(host_port "$flags" 8000) || fail "no published port for 8000"
until_ok 60 "$cli" --addr "127.0.0.1:$p" ping || { logs_of "$flags"; fail "--listen 0.0.0.0:8000 after the image name did not take"; }
until_ok 60 healthy "$flags" || fail "$flags (KOVAN_HEALTH_ADDR) did not turn healthy"
printf 'listen = "0.0.0.0:7400"\nthreads = 1\ninsecure-no-auth = true\n' >"$work/kovan.toml"
chmod 0644 "$work/kovan.toml"
conf="$prefix-conf"
run_container "$conf" -v "$work/kovan.toml:/etc/kovan/kovan.toml:ro" -e KOVAN_HEALTH_ADDR=127.0.0.1:7400 \
  -p 127.0.0.1::7400 "$image"
p=$(host_port "$conf" 7400) || fail "no published port for 7400"
until_ok 60 "$cli" --addr "127.0.0.1:$p" ping || { logs_of "$conf"; fail "listen from the mounted kovan.toml did not take"; }
log_has "$conf" 'threads=1 ' || fail "threads = 1 from the mounted kovan.toml did not take"

step "5. compose"
compose=()
if [ "$eng" = podman ] && command -v podman-compose >/dev/null; then compose=(podman-compose)
elif [ "$eng" = podman ] && podman compose version >/dev/null 2>&1; then compose=(podman compose)
elif [ "$eng" = docker ] && docker compose version >/dev/null 2>&1; then compose=(docker compose)
fi
if [ ${#compose[@]} -eq 0 ]; then
  fail "no compose tool (podman-compose, podman compose or docker compose)"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export KOVAN_PORT KOVAN_METRICS_PORT
KOVAN_PORT=$(free_port)
KOVAN_METRICS_PORT=$(free_port)
project="${prefix}-compose"
cf="$src/docker/compose.yaml"
# What compose itself must state (podman-compose 1.0 has no `config` to print it): an image
# name, a restart policy, a health check of its own, both ports, a stop grace period.
if /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
  /usr/bin/python3 - "$cf" <<'PY' || fail "docker/compose.yaml lacks a required setting"
import sys, yaml
svc = yaml.safe_load(open(sys.argv[1]))["services"]["kovan"]
problems = []
if svc.get("image") != "kovan-kv": problems.append("image: kovan-kv")
if svc.get("restart") != "unless-stopped": problems.append("restart: unless-stopped")
if "kovan-cli" not in " ".join(svc.get("healthcheck", {}).get("test", [])): problems.append("healthcheck")
ports = " ".join(svc.get("ports", []))
if not (ports.endswith(":7379") or ":7379 " in ports) or ":9100" not in ports: problems.append("ports 7379, 9100")
if "stop_grace_period" not in svc: problems.append("stop_grace_period")
if not any(str(v).endswith(":/var/lib/kovan") for v in svc.get("volumes", [])): problems.append("a volume on /var/lib/kovan")
if problems: sys.exit("missing: " + ", ".join(problems))
PY
else
  echo "python3-yaml missing: compose.yaml checked by running it only"
fi
compose_down="${compose[*]} -p $project -f $cf down -v"
"${compose[@]}" -p "$project" -f "$cf" up -d >"$work/compose.log" 2>&1 \
  || { cat "$work/compose.log"; fail "compose up failed"; }
until_ok 60 "$cli" --addr "127.0.0.1:$KOVAN_PORT" ping || { cat "$work/compose.log"; fail "compose service does not answer"; }
cid=$("$eng" ps -q --filter "label=com.docker.compose.project=$project" | head -n 1)
[ -n "$cid" ] || fail "no container of compose project $project"
until_ok 60 healthy "$cid" || fail "the compose service did not turn healthy"
[ "$("$eng" inspect --format '{{.HostConfig.RestartPolicy.Name}}' "$cid")" = unless-stopped ] \
  || fail "the compose service has no restart policy unless-stopped"
"${compose[@]}" -p "$project" -f "$cf" down -v >>"$work/compose.log" 2>&1 || { cat "$work/compose.log"; fail "compose down failed"; }
compose_down=""
[ -z "$("$eng" ps -aq --filter "label=com.docker.compose.project=$project")" ] || fail "compose down left containers"

step "6. durability: the data volume across kill and stop"
dur="$prefix-durable"
vol="$prefix-data"
cleanup_volume() { "$eng" volume rm -f "$vol" >/dev/null 2>&1 || true; }
containers+=("$dur")
"$eng" run -d --name "$dur" -v "$vol:/var/lib/kovan" -p 127.0.0.1::7379 "$image" --threads 2 >/dev/null \
  || { cleanup_volume; fail "$eng run with a data volume failed"; }
p=$(host_port "$dur" 7379) || fail "no published port for 7379"
until_ok 60 "$cli" --addr "127.0.0.1:$p" ping || { logs_of "$dur"; fail "the durable container does not answer"; }
log_has "$dur" 'data-dir=/var/lib/kovan' || { logs_of "$dur"; fail "the image is not durable by default"; }
"$cli" --addr "127.0.0.1:$p" put dur/a before-kill >/dev/null || fail "put dur/a failed"
rev_of() { "$cli" --addr "127.0.0.1:$1" --json get "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["kv"]["mod_revision"])'; }
rev_a=$(rev_of "$p" dur/a) || fail "no revision for dur/a"
"$eng" kill "$dur" >/dev/null || fail "$eng kill failed"
"$eng" wait "$dur" >/dev/null 2>&1 || true
code=$("$eng" inspect --format '{{.State.ExitCode}}' "$dur")
[ "$code" = 137 ] || fail "kill: exit code $code, not 137 (SIGKILL)"
"$eng" start "$dur" >/dev/null || fail "$eng start after kill failed"
p=$(host_port "$dur" 7379) || fail "no published port after restart"
until_ok 60 "$cli" --addr "127.0.0.1:$p" ping || { logs_of "$dur"; fail "no answer after the restart that followed kill"; }
got=$("$cli" --addr "127.0.0.1:$p" get dur/a) || fail "get dur/a after kill failed"
[[ "$got" == *before-kill* ]] || { logs_of "$dur"; fail "an acknowledged write was lost by kill: got '$got'"; }
"$cli" --addr "127.0.0.1:$p" put dur/b before-stop >/dev/null || fail "put dur/b failed"
rev_b=$(rev_of "$p" dur/b) || fail "no revision for dur/b"
[ "$rev_b" -gt "$rev_a" ] || fail "revisions did not keep counting after the restart ($rev_b <= $rev_a)"
"$eng" stop -t 10 "$dur" >/dev/null || fail "$eng stop failed"
code=$("$eng" inspect --format '{{.State.ExitCode}}' "$dur")
[ "$code" = 0 ] || { logs_of "$dur"; fail "stop: exit code $code"; }
"$eng" start "$dur" >/dev/null || fail "$eng start after stop failed"
p=$(host_port "$dur" 7379) || fail "no published port after the second restart"
until_ok 60 "$cli" --addr "127.0.0.1:$p" ping || { logs_of "$dur"; fail "no answer after the restart that followed stop"; }
for kv in dur/a:before-kill dur/b:before-stop; do
  got=$("$cli" --addr "127.0.0.1:$p" get "${kv%%:*}") || fail "get ${kv%%:*} after stop failed"
  [[ "$got" == *"${kv#*:}"* ]] || fail "${kv%%:*} after stop: got '$got'"
done
"$eng" rm -f "$dur" >/dev/null 2>&1 || true
cleanup_volume

echo
echo "PASS: image built, ran, answered, turned healthy, stopped cleanly; compose up/down; data kept across kill and stop"
