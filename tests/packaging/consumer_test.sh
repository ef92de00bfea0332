#!/usr/bin/env bash
# `cmake --install` output is usable by another project: installs this build folder into a
# temporary prefix, checks the layout, builds tests/packaging/consumer against it twice (CMake
# find_package(KovanKV) and pkg-config kovan-kv), and runs both against the installed
# kovan-server, next to a put/get through the installed kovan-cli.
#   consumer_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: consumer_test.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/packaging/lib.sh
source "$here/lib.sh"

prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log"; fail "cmake --install failed"; }

for f in bin/kovan-server bin/kovan-cli \
         include/kovan-kv/client/client.hpp include/kovan-kv/client/status.hpp \
         include/kovan-kv/client/types.hpp include/kovan-kv/kovan/kovan.hpp \
         include/kovan-kv/kovan/detail/runtime.hpp include/kovan-kv/proto/codec.hpp \
         include/kovan-kv/proto/kv.pb.h share/kovan-kv/kv.proto share/kovan-kv/kovan.toml \
         share/kovan-kv/systemd/kovan-server.service share/doc/kovan-kv/OPERATIONS.md; do
  [ -e "$prefix/$f" ] || fail "cmake --install did not install $f"
done
if [ -e "$build/bench/load/kovan-bench" ]; then
  [ -x "$prefix/bin/kovan-bench" ] || fail "cmake --install did not install bin/kovan-bench"
fi
config=$(find "$prefix" -name KovanKVConfig.cmake -print -quit)
[ -n "$config" ] || fail "no KovanKVConfig.cmake under the prefix"
pc=$(find "$prefix" -name kovan-kv.pc -print -quit)
[ -n "$pc" ] || fail "no kovan-kv.pc under the prefix"

# 1. CMake: find_package(KovanKV CONFIG REQUIRED) from a separate project.
cmake -S "$here/consumer" -B "$work/consumer-cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log" 2>&1 \
  || { cat "$work/configure.log"; fail "configuring the consumer project failed"; }
cmake --build "$work/consumer-cmake" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; fail "building the consumer project failed"; }

# 2. pkg-config: the same program, compiled by hand.
pkgdir=$(dirname "$pc")
flags=$(PKG_CONFIG_PATH="$pkgdir" pkg-config --cflags --libs kovan-kv) \
  || fail "pkg-config kovan-kv failed"
# shellcheck disable=SC2086
c++ -std=c++20 -O1 -o "$work/consumer-pc" "$here/consumer/consumer.cpp" $flags \
  >"$work/pc.log" 2>&1 || { cat "$work/pc.log"; fail "compiling with pkg-config flags ($flags) failed"; }

# 3. Both against the installed server, and the installed CLI.
start_server "$prefix/bin/kovan-server"
addr="127.0.0.1:$server_port"
out=$("$work/consumer-cmake/consumer" "$addr") || fail "CMake consumer failed: $out"
[ "$out" = "consumer ok" ] || fail "CMake consumer printed '$out'"
out=$("$work/consumer-pc" "$addr") || fail "pkg-config consumer failed: $out"
[ "$out" = "consumer ok" ] || fail "pkg-config consumer printed '$out'"
"$prefix/bin/kovan-cli" --addr "$addr" put packaging/cli from-cli >/dev/null || fail "installed kovan-cli put failed"
out=$("$prefix/bin/kovan-cli" --addr "$addr" get packaging/key) || fail "installed kovan-cli get failed"
[[ "$out" == *installed* ]] || fail "installed kovan-cli get printed '$out'"
stop_server
echo "PASS: installed to $prefix; find_package and pkg-config consumers ran against the installed server"
