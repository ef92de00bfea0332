#!/usr/bin/env bash
# Builds the kovan-kv image from the repository root (`make image`). The engine: docker when
# its daemon answers, else podman; before the first podman build, podman-setup.sh (which
# installs podman and makes local debian:12 / debian:12-slim base images on machines that
# reach no registry) is run when found beside the checkout: $PODMAN_SETUP, else
# ../shared/tools/podman-setup.sh or ../../shared/tools/podman-setup.sh.
#   docker/build-image.sh [IMAGE]     build IMAGE (default kovan-kv)
#   docker/build-image.sh --engine    print the engine that would be used, and set it up
set -euo pipefail
cd "$(dirname "$0")/.."

engine() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
    return
  fi
  local setup=${PODMAN_SETUP:-}
  if [ -z "$setup" ]; then
    for candidate in ../shared/tools/podman-setup.sh ../../shared/tools/podman-setup.sh; do
      if [ -f "$candidate" ]; then setup=$candidate; break; fi
    done
  fi
  if [ -n "$setup" ]; then
    bash "$setup" >&2
  fi
  if command -v podman >/dev/null; then
    echo podman
    return
  fi
  echo "build-image: no container engine: no docker daemon answers and podman is not" \
       "installed (nor podman-setup.sh found beside the checkout)" >&2
  return 1
}

if [ "${1:-}" = "--engine" ]; then
  engine
  exit
fi
image=${1:-kovan-kv}
eng=$(engine)
if [ "$eng" = podman ]; then
  # --pull=never: the base images are local; --network host: apt inside the build reaches the
  # archive through the host; --format docker: keeps HEALTHCHECK (OCI images have none).
  set -x
  nice -n 10 podman build --pull=never --network host --format docker -f docker/Dockerfile -t "$image" .
else
  set -x
  nice -n 10 docker build -f docker/Dockerfile -t "$image" .
fi
