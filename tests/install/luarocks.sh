#!/bin/sh
# luarocks.sh SOURCE OUT REF_MILE: `luarocks make rockspecs/mile-scm-1.rockspec`
# (Debian's luarocks) builds a copy of the source tree into a temporary rocks tree, then
# a stock lua5.4 with that tree's paths (luarocks path) requires mile and trains a short
# run, whose metrics must equal those of REF_MILE train (the build tree's program).
set -eu
src=$1 out=$2 ref=$3
rm -rf "$out"
mkdir -p "$out/src"
# a copy: luarocks builds in the source directory (build.luarocks/)
(cd "$src" && tar -cf - --exclude='./build*' --exclude=./.git --exclude='./notebooks' .) | (cd "$out/src" && tar -xf -)
cd "$out/src"
luarocks --lua-version 5.4 --tree "$out/tree" make rockspecs/mile-scm-1.rockspec >"$out/luarocks.log" 2>&1 ||
  { tail -40 "$out/luarocks.log"; exit 1; }
cd "$out"
rm -rf "$out/src"
eval "$(luarocks --lua-version 5.4 --tree "$out/tree" path)"
lua5.4 - <<'LUA'
local mile = require "mile"
print(mile._VERSION, package.searchpath("mile.core", package.cpath))
local paths = require "mile.paths"
assert(not paths.build_tree, "mile.paths is the build tree's")
assert(io.open(paths.data_dir .. "/LunarLander-v3/initial.safetensors"), "no cached policy under " .. paths.data_dir)
require("mile.loop").run({ env = "LunarLander-v3", rounds = 1, episodes_per_round = 1, epochs = 1,
  eval_episodes = 1, max_episode_steps = 200, progress = false, seed = 5 }, { dir = "rock-run" })
LUA
"$ref" train --set env=LunarLander-v3 --set rounds=1 --set episodes_per_round=1 --set epochs=1 \
  --set eval_episodes=1 --set max_episode_steps=200 --set progress=false --set seed=5 --dir ref-run >/dev/null
strip() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") drop = i }
  { s = ""; for (i = 1; i <= NF; i++) if (i != drop) s = s (s == "" ? "" : ",") $i; print s }' "$1"; }
strip rock-run/metrics.csv >rock.csv
strip ref-run/metrics.csv >ref.csv
[ "$(wc -l <rock.csv)" -eq 2 ] || { echo "FAIL: rock-run/metrics.csv has no round"; cat rock.csv; exit 1; }
if ! cmp -s rock.csv ref.csv; then
  echo "FAIL: the luarocks tree and $ref train differ"; diff rock.csv ref.csv; exit 1
fi
echo "ok: lua5.4 from the luarocks tree gives the metrics of $ref train"
