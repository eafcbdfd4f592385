-- scripts/main.lua - the main job of `make run`: MILE and the baselines on
-- LunarLander-v3 with the default config (scripts/configs/lunarlander.lua), the same
-- seeds for every method, and a comparison table at the end.
--
--   mile scripts/main.lua [--seeds N] [--out DIR]
--
-- Each (method, seed) is a normal run directory under runs/main-<time>/ with its own
-- report; the comparison is written to runs/main-<time>/comparison.md as well.
local loop = require "mile.loop"
local sys = require "mile.sys"
local report = require "mile.report"
local config = require "mile.config"

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local CONFIG = config.load_file(here .. "/configs/lunarlander.lua")
CONFIG.progress = false
local METHODS = { "mile", "hg_dagger", "iwr", "bc" }

local seeds, out = 3, "runs"
local args = { ... }
for i = 1, #args do
  if args[i] == "--seeds" then seeds = assert(tonumber(args[i + 1]), "--seeds needs a number") end
  if args[i] == "--out" then out = args[i + 1] end
end

local root = ("%s/main-%s"):format(out, os.date("!%Y%m%d-%H%M%S"))
assert(sys.mkdir(root))
print(("MILE vs baselines on %s: %d rounds x %d episodes, %d seeds; runs in %s"):format(CONFIG.env, CONFIG.rounds,
  CONFIG.episodes_per_round, seeds, root))

local t0 = sys.monotonic()
local results = {}
for _, method in ipairs(METHODS) do
  results[method] = {}
  for seed = 0, seeds - 1 do
    local cfg = {}
    for k, v in pairs(CONFIG) do cfg[k] = v end
    cfg.method, cfg.seed = method, seed
    local run = loop.run(cfg, { dir = ("%s/%s-seed%d"):format(root, method, seed) })
    results[method][#results[method] + 1] = run
    local last = run.metrics[#run.metrics]
    print(("  %-9s seed %d: success %.2f after %d interventions (initial %.2f)  [%.0f s so far]"):format(method, seed,
      last.success, last.interventions_total, run.initial.success, sys.monotonic() - t0))
  end
end

local init = {}
for i, run in ipairs(results.mile) do init[i] = run.initial.success end
local lines = {
  ("Success rate (policy alone, %d evaluation episodes) after each round, mean ± sd over %d seeds;")
    :format(CONFIG.eval_episodes, seeds),
  ("initial policy %.2f; interventions: human-controlled steps over all rounds."):format((report.mean_sd(init))), "",
  report.seed_table(results, METHODS, CONFIG.rounds),
}
local text = table.concat(lines, "\n")
print("\n" .. text)
print(("\n%d runs in %.0f s; per-run reports in %s/*/report.md"):format(#METHODS * seeds, sys.monotonic() - t0, root))
sys.write_atomic(root .. "/comparison.md", text .. "\n")
