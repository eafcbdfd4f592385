-- scripts/main.lua - the main job of `make run`: MILE and the baselines on
-- LunarLander-v3 with the default config embedded below, the same seeds for every
-- method, and a comparison table at the end.
--
--   mile scripts/main.lua [--seeds N] [--out DIR]
--
-- Each (method, seed) is a normal run directory under runs/main-<time>/ with its own
-- report; the comparison is written to runs/main-<time>/comparison.md as well.
local loop = require "mile.loop"
local sys = require "mile.sys"
local report = require "mile.report"

local CONFIG = {
  env = "LunarLander-v3",
  rounds = 8,
  episodes_per_round = 2,
  epochs = 20,
  batch_size = 256,
  lr = 1e-3,
  eval_episodes = 50,
  loss = { variant = "paper", lambda = 0.5 },
  human = { cost = 3, scale = 1 },
  learner = { cost = 3, scale = 1 },
  progress = false,
}
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

-- mean and standard deviation over seeds, per round
local function stats(values)
  local n, s, ss = #values, 0, 0
  for _, v in ipairs(values) do s = s + v end
  local mean = s / n
  for _, v in ipairs(values) do ss = ss + (v - mean) ^ 2 end
  return mean, n > 1 and math.sqrt(ss / (n - 1)) or 0
end

local lines = {
  ("Success rate (policy alone, %d evaluation episodes) after each round, mean ± sd over %d seeds;")
    :format(CONFIG.eval_episodes, seeds),
  "interventions: total human-controlled steps over all rounds (mean).", "",
  "| method | initial | " .. (function()
    local r = {}
    for i = 1, CONFIG.rounds do r[i] = "r" .. i end
    return table.concat(r, " | ")
  end)() .. " | interventions |",
  "|---|---|" .. string.rep("---|", CONFIG.rounds) .. "---|",
}
for _, method in ipairs(METHODS) do
  local runs = results[method]
  local cells = {}
  local init = {}
  for i, run in ipairs(runs) do init[i] = run.initial.success end
  cells[1] = ("%.2f"):format((stats(init)))
  for r = 1, CONFIG.rounds do
    local v = {}
    for i, run in ipairs(runs) do v[i] = run.metrics[r].success end
    local m, sd = stats(v)
    cells[#cells + 1] = ("%.2f ± %.2f"):format(m, sd)
  end
  local iv = {}
  for i, run in ipairs(runs) do iv[i] = run.metrics[#run.metrics].interventions_total end
  cells[#cells + 1] = ("%.0f"):format((stats(iv)))
  lines[#lines + 1] = ("| %s | %s |"):format(method, table.concat(cells, " | "))
end
local text = table.concat(lines, "\n")
print("\n" .. text)
print(("\n%d runs in %.0f s; per-run reports in %s/*/report.md"):format(#METHODS * seeds, sys.monotonic() - t0, root))
sys.write_atomic(root .. "/comparison.md", text .. "\n")
