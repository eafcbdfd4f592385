#!/bin/sh
# check_install.sh BUILD PREFIX SOURCE VERSION: `cmake --install BUILD --prefix PREFIX`,
# then check that the installation holds what a run needs: the cached policies, the
# built-in plugins, mile.paths naming PREFIX, a kernelspec naming PREFIX/bin/mile, the
# C module, pkg-config and CMake files, and a version from project(VERSION).
set -eu
build=$1 p=$2 src=$3 version=$4
rm -rf "$p"
cmake --install "$build" --prefix "$p" >/dev/null
fail() { echo "FAIL: $*"; exit 1; }
for f in bin/mile lib/lua/5.4/mile/core.so share/lua/5.4/mile/init.lua share/lua/5.4/mile/tensor.lua \
  share/lua/5.4/mile/paths.lua share/lua/5.4/mile/cdef.lua share/jupyter/kernels/mile/kernel.json \
  share/mile/scripts/cli/train.lua share/mile/scripts/configs/lunarlander.lua share/mile/mile_cdef.h \
  include/mile/mile.h include/mile/env.h; do
  [ -f "$p/$f" ] || fail "$p/$f is not installed"
done
# every cached policy and every built-in plugin of the source tree
(cd "$src/scripts" && find data -name '*.safetensors') | while read -r f; do
  cmp -s "$src/scripts/$f" "$p/share/mile/scripts/$f" || fail "$f is missing or differs in $p/share/mile/scripts"
done
(cd "$src/lua" && find mile -name '*.lua') | while read -r f; do
  [ -f "$p/share/lua/5.4/$f" ] || fail "$f is not installed in $p/share/lua/5.4"
done
for d in models methods schedules temporal; do
  ls "$p/share/lua/5.4/mile/$d/"*.lua >/dev/null 2>&1 || fail "no built-in plugins in mile/$d"
done
grep -q "\"$p/bin/mile\"" "$p/share/jupyter/kernels/mile/kernel.json" ||
  fail "kernel.json does not name $p/bin/mile: $(cat "$p/share/jupyter/kernels/mile/kernel.json")"
grep -q "\"$p/share/mile/scripts\"" "$p/share/lua/5.4/mile/paths.lua" || fail "mile.paths does not name $p"
grep -q 'build_tree = false' "$p/share/lua/5.4/mile/paths.lua" || fail "mile.paths says build tree"
ls "$p"/lib*/pkgconfig/mile.pc "$p"/lib*/pkgconfig/mile-envs.pc "$p"/lib*/cmake/mile/mileConfig.cmake \
  "$p"/lib*/cmake/mile/mileConfigVersion.cmake "$p"/lib*/cmake/mile/mileTargets.cmake >/dev/null ||
  fail "pkg-config or CMake package files missing"
"$p/bin/mile" -v | grep -q "^mile $version " || fail "mile -v: $("$p/bin/mile" -v)"
# the installed program finds its own tree, not the build tree's
out=$("$p/bin/mile" -e 'local h = require "mile.host"; print(h.build_tree, h.scripts_dir, require("mile.paths").data_dir)')
[ "$out" = "false	$p/share/mile/scripts	$p/share/mile/scripts/data" ] || fail "installed mile sees: $out"
echo "ok: $p holds a complete installation ($(du -sk "$p" | cut -f1) KiB)"
