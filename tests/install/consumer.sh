#!/bin/sh
# consumer.sh PREFIX SOURCE_DIR OUT VERSION: builds tests/install/consumer/main.c against
# the mile installed in PREFIX twice, with pkg-config (mile.pc, mile-envs.pc) and
# with CMake's find_package(mile) (mile::core, mile::envs), and runs both.
set -eu
p=$1 src=$2 out=$3 version=$4
rm -rf "$out"
mkdir -p "$out"
policy=$p/share/mile/scripts/data/LunarLander-v3/initial.safetensors
export PKG_CONFIG_PATH="$(echo "$p"/lib*/pkgconfig | tr ' ' ':')"
[ "$(pkg-config --modversion mile)" = "$version" ] || { echo "FAIL: pkg-config --modversion mile"; exit 1; }
libdir=$(pkg-config --variable=libdir mile)
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$out/consumer-pc" "$src/main.c" $(pkg-config --cflags --libs mile mile-envs) \
  -Wl,-rpath,"$libdir"
"$out/consumer-pc" "$policy"
echo "ok: built and ran with pkg-config"
cmake -S "$src" -B "$out/build" -DCMAKE_PREFIX_PATH="$p" -DWANT_VERSION="$version" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$out/build" >/dev/null
"$out/build/consumer" "$policy"
echo "ok: built and ran with find_package(mile)"
