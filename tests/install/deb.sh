#!/bin/sh
# deb.sh BUILD OUT VERSION: `cpack -G DEB` of the build tree, and its file list: the
# program, the libraries, the C module, the Lua library with its plugins, the cached
# policies, the kernelspec, headers, pkg-config and CMake files; no tests.
set -eu
build=$1 out=$2 version=$3
rm -rf "$out"
mkdir -p "$out"
(cd "$out" && cpack -G DEB --config "$build/CPackConfig.cmake" >cpack.log 2>&1) || { cat "$out/cpack.log"; exit 1; }
deb=$(ls "$out"/mile_"$version"_*.deb)
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./||' >"$out/files"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt" | sed 's|^/||')
fail() { echo "FAIL: $*"; exit 1; }
for f in bin/mile lib/lua/5.4/mile/core.so share/lua/5.4/mile/init.lua share/lua/5.4/mile/paths.lua \
  share/lua/5.4/mile/models/ share/lua/5.4/mile/methods/ share/lua/5.4/mile/schedules/ \
  share/lua/5.4/mile/temporal/ share/mile/scripts/cli/train.lua \
  share/mile/scripts/data/LunarLander-v3/initial.safetensors share/jupyter/kernels/mile/kernel.json \
  include/mile/mile.h include/mile/env.h; do
  grep -qx "$prefix/$f" "$out/files" || fail "$prefix/$f is not in $deb"
done
grep -q "^$prefix/lib.*/libmilecore\.so" "$out/files" || fail "no libmilecore in $deb"
grep -q "^$prefix/lib.*/pkgconfig/mile\.pc$" "$out/files" || fail "no mile.pc in $deb"
grep -q "^$prefix/lib.*/cmake/mile/mileConfig\.cmake$" "$out/files" || fail "no mileConfig.cmake in $deb"
if grep -E '(^|/)(test_|tests/)|CMakeCache|\.o$' "$out/files"; then fail "$deb holds build or test files"; fi
dpkg-deb -f "$deb" Version | grep -qx "$version" || fail "package version is not $version"
dpkg-deb --fsys-tarfile "$deb" | tar -xO "./$prefix/share/jupyter/kernels/mile/kernel.json" |
  grep -q "\"/$prefix/bin/mile\"" || fail "the packaged kernel.json does not name /$prefix/bin/mile"
echo "ok: $(basename "$deb"): $(wc -l <"$out/files") entries, $(du -k "$deb" | cut -f1) KiB"
