#!/usr/bin/env bash
# Installs, from Debian 12's packages, everything the build, the tests and the benchmarks
# need. Idempotent: when every package is present it makes one dpkg-query call and exits
# quietly, without touching the network. Run as root (or with sudo available).
#
#   scripts/install-deps.sh               everything (the default)
#   scripts/install-deps.sh --build-only  only what compiles kovan-server and kovan-cli in a
#                                         Release build without tests or benchmarks
#                                         (-DKV_BUILD_TESTS=OFF -DKV_BUILD_BENCH=OFF); the
#                                         container image's build stage uses it
set -euo pipefail

BUILD_ONLY_PACKAGES=(
  g++ cmake ninja-build
  libasio-dev libspdlog-dev libfmt-dev libcli11-dev protobuf-compiler libprotobuf-dev
  libssl-dev zlib1g-dev
)

ALL_PACKAGES=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config git clang clang-format clang-tidy
  libclang-rt-14-dev
  # libraries
  libasio-dev libspdlog-dev libfmt-dev libcli11-dev protobuf-compiler libprotobuf-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # TLS (server, clients), password hashes, and the test fixtures' throwaway CA
  libssl-dev openssl
  # crc32 for the write-ahead log and checkpoints
  zlib1g-dev
  # reclaimer baselines for the side-by-side benchmarks
  liburcu-dev libxenium-dev libcds-dev
  # crossbeam-epoch's crates as an offline cargo registry, for the single-cell comparison
  # (bench/scripts/compare-crossbeam.sh; it needs cargo too, and is skipped without it)
  librust-crossbeam-epoch-dev
  # python client and its tests
  python3 python3-protobuf
  # benchmarks: plots and peers
  gnuplot-nox redis-server redis-tools
  # model checking (TLC runs on the JVM; the jar itself is not a package)
  default-jre-headless
  # packaging checks: the Python client installed into a venv, pkg-config for the C++ one
  python3-venv python3-pip python3-setuptools python3-wheel
)

case "${1:-}" in
  "") PACKAGES=("${ALL_PACKAGES[@]}") ;;
  --build-only) PACKAGES=("${BUILD_ONLY_PACKAGES[@]}") ;;
  *)
    echo "usage: $0 [--build-only]" >&2
    exit 2
    ;;
esac

missing=()
# One dpkg-query for all packages: prints "name status" for each known package.
status=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null | sed 's/ *$//' || true)
for p in "${PACKAGES[@]}"; do
  if ! grep -qxF "${p} ii" <<<"$status"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
