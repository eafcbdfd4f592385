#!/bin/sh
# short_run.sh MILE LUA_ENV OUT_DIR [REF_MILE]: the same short MILE run (LunarLander-v3,
# one round) twice, through a stock lua5.4 and `require "mile.loop"`, and through the
# `mile train` subcommand; both metrics.csv must be equal but for the wall-clock
# `seconds` column. LUA_ENV: a command printing the exports that let lua5.4 find this
# copy of mile ("" when it is on lua5.4's default paths). REF_MILE: another `mile`
# (the build tree's) whose `mile train` must give the same numbers too. Runs in
# OUT_DIR, away from the source tree, so nothing is found relative to the working
# directory.
set -eu
mile=$1 env_sh=$2 out=$3 ref=${4:-}
rm -rf "$out"
mkdir -p "$out"
cd "$out"
if [ -n "$env_sh" ]; then eval "$(sh -c "$env_sh")"; fi

lua5.4 - <<'LUA'
local mile = require "mile"
assert(mile._VERSION:match("^mile %d+%.%d+%.%d+$"), mile._VERSION)
local paths = require "mile.paths"
assert(io.open(paths.data_dir .. "/LunarLander-v3/initial.safetensors"), "no cached policy under " .. paths.data_dir)
require("mile.loop").run({ env = "LunarLander-v3", rounds = 1, episodes_per_round = 1, epochs = 1,
  eval_episodes = 1, max_episode_steps = 200, progress = false, seed = 5 }, { dir = "lua-run" })
LUA
"$mile" train --set env=LunarLander-v3 --set rounds=1 --set episodes_per_round=1 --set epochs=1 \
  --set eval_episodes=1 --set max_episode_steps=200 --set progress=false --set seed=5 --dir host-run >/dev/null

# metrics.csv without the `seconds` column
strip() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") drop = i }
  { s = ""; for (i = 1; i <= NF; i++) if (i != drop) s = s (s == "" ? "" : ",") $i; print s }' "$1"; }
strip host-run/metrics.csv >host.csv
if [ -n "$ref" ]; then
  "$ref" train --set env=LunarLander-v3 --set rounds=1 --set episodes_per_round=1 --set epochs=1 \
    --set eval_episodes=1 --set max_episode_steps=200 --set progress=false --set seed=5 --dir ref-run >/dev/null
  strip ref-run/metrics.csv >ref.csv
  if ! cmp -s ref.csv host.csv; then
    echo "FAIL: $mile and $ref differ"; diff ref.csv host.csv; exit 1
  fi
  echo "ok: $mile train and $ref train give the same metrics"
fi
strip lua-run/metrics.csv >lua.csv
[ "$(wc -l <lua.csv)" -eq 2 ] || { echo "FAIL: lua-run/metrics.csv has no round"; cat lua.csv; exit 1; }
if ! cmp -s lua.csv host.csv; then
  echo "FAIL: lua5.4 and mile train differ"; diff lua.csv host.csv; exit 1
fi
echo "ok: lua5.4 and mile train give the same metrics"; cat lua.csv
