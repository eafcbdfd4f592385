-- scripts/schedule_eval.lua - the adaptive cost schedules on LunarLander, measured.
--
--   mile scripts/schedule_eval.lua [--seeds 3] [--rounds 10] [--doc docs/research.md]
--
-- 1. `target` (the human's cost adapted so that the human's intervention rate follows
--    schedule.target): targets 0.05, 0.1, 0.2, per step (default) and per round; the
--    observed rate per round, its mean absolute distance to the target over rounds
--    3..R, and the pooled rate over those rounds.
-- 2. `adaptive` (the learner's cost adapted so that its predicted rate tracks the
--    observed one) against `constant`, with the learner's cost wrong (learner.cost 1
--    and 5, the human's 3): mean |predicted - observed| over rounds 2..R, and the
--    learner's final cost.
-- MILE, 2 episodes per round, 5 epochs. The tables go into the block
-- `schedule-results` of docs/research.md, the figure into docs/img/schedule_target.png.
local loop = require "mile.loop"
local sys = require "mile.sys"
local plot = require "mile.plot"

local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "scripts"
local E = loadfile(here .. "/temporal_eval.lua")("--module")
local setup = E.script_setup({ ... }, { seeds = 3, rounds = 10, doc = here .. "/../docs/research.md" }, "schedule_target.png")
local seeds, rounds, doc, img, tmp = setup.seeds, setup.rounds, setup.doc, setup.img, setup.tmp

local BASE = { env = "LunarLander-v3", method = "mile", rounds = rounds, episodes_per_round = 2, epochs = 5,
  eval_episodes = 10, progress = false }

local function run_with(set, seed, tag)
  local cfg = {}
  for k, v in pairs(BASE) do cfg[k] = v end
  for k, v in pairs(set) do cfg[k] = v end
  cfg.seed = seed
  return loop.run(cfg, { dir = ("%s/%s-%d"):format(tmp, tag, seed) })
end

local t0 = sys.monotonic()
local lines = {}

-- 1. the human's rate follows a target
local TARGETS = { 0.05, 0.1, 0.2 }
local series = {}
lines[#lines + 1] = ("**`target`** (human cost adapted; human.cost starts at 3, sigma 1; %d seeds, %d rounds x 2 " ..
  "episodes): observed intervention rate per round (mean over seeds), its mean |rate - target| over rounds 3..%d " ..
  "(mean ± sd over seeds) and the pooled rate of rounds 3..%d."):format(seeds, rounds, rounds, rounds)
lines[#lines + 1] = ""
local head = "| target | mode |"
local rule = "|---|---|"
for r = 1, rounds do head = head .. " r" .. r .. " |"; rule = rule .. "---|" end
lines[#lines + 1] = head .. " mean abs error | pooled rate | final human cost |"
lines[#lines + 1] = rule .. "---|---|---|"
for _, mode in ipairs { "step", "round" } do
  for _, target in ipairs(TARGETS) do
    local per_round, errs, pooled, costs = {}, {}, {}, {}
    for r = 1, rounds do per_round[r] = {} end
    for seed = 0, seeds - 1 do
      local run = run_with({ ["learner.schedule"] = "target", ["schedule.target"] = target,
        ["schedule.per_step"] = mode == "step" }, seed, ("target-%s-%g"):format(mode, target))
      local err, n, steps, ints = 0, 0, 0, 0
      for r, row in ipairs(run.metrics) do
        per_round[r][#per_round[r] + 1] = row.intervention_rate
        if r >= 3 then
          err, n = err + math.abs(row.intervention_rate - target), n + 1
          steps, ints = steps + row.steps, ints + row.interventions
        end
      end
      errs[#errs + 1], pooled[#pooled + 1] = err / n, ints / steps
      costs[#costs + 1] = run.metrics[#run.metrics].human_cost
      print(("target %.2f (%s) seed %d: pooled rate %.3f, mean abs error %.3f  [%.0f s]"):format(target, mode, seed,
        ints / steps, err / n, sys.monotonic() - t0))
    end
    local cells = { ("| %.2f | %s |"):format(target, mode == "round" and "per round" or "per step") }
    local ys = {}
    for r = 1, rounds do
      ys[r] = E.stats(per_round[r])
      cells[#cells + 1] = (" %.3f |"):format(ys[r])
    end
    local em, es = E.stats(errs)
    local pm, ps = E.stats(pooled)
    cells[#cells + 1] = (" %.3f ± %.3f | %.3f ± %.3f | %.2f |"):format(em, es, pm, ps, (E.stats(costs)))
    lines[#lines + 1] = table.concat(cells)
    if mode == "step" then
      local xs = {}
      for r = 1, rounds do xs[r] = r end
      series[#series + 1] = { name = ("target %.2f"):format(target), x = xs, y = ys }
    end
  end
end
lines[#lines + 1] = ""

-- 2. the learner's cost adapted to its predictions
lines[#lines + 1] = ("**`adaptive`** (learner cost adapted, gain 0.5; the human's cost is 3, the learner's starts " ..
  "wrong; %d seeds): mean |predicted - observed| intervention rate over rounds 2..%d, the learner's final cost and " ..
  "final success."):format(seeds, rounds)
lines[#lines + 1] = ""
lines[#lines + 1] = "| learner.cost | schedule | mean abs(predicted - observed) | final learner cost | final success |"
lines[#lines + 1] = "|---|---|---|---|---|"
for _, c in ipairs { 1, 3, 5 } do
  for _, sched in ipairs { "constant", "adaptive" } do
    local gaps, finals, succ = {}, {}, {}
    for seed = 0, seeds - 1 do
      local run = run_with({ ["learner.schedule"] = sched, ["learner.cost"] = c }, seed, ("adaptive-%s-%g"):format(sched, c))
      local g, n = 0, 0
      for r, row in ipairs(run.metrics) do
        if r >= 2 then g, n = g + math.abs(row.predicted_rate - row.intervention_rate), n + 1 end
      end
      gaps[#gaps + 1] = g / n
      finals[#finals + 1] = run.metrics[#run.metrics].learner_cost
      succ[#succ + 1] = run.metrics[#run.metrics].success
      print(("learner.cost %g %s seed %d: mean |pred - obs| %.3f, final cost %.2f  [%.0f s]"):format(c, sched, seed,
        g / n, finals[#finals], sys.monotonic() - t0))
    end
    local gm, gs = E.stats(gaps)
    local fm, fs = E.stats(finals)
    local sm, ss = E.stats(succ)
    lines[#lines + 1] = ("| %g | %s | %.3f ± %.3f | %.2f ± %.2f | %.2f ± %.2f |"):format(c, sched, gm, gs, fm, fs, sm, ss)
  end
end
lines[#lines + 1] = ""
lines[#lines + 1] = ("Generated by `mile scripts/schedule_eval.lua --seeds %d --rounds %d` in %.0f s."):format(seeds,
  rounds, sys.monotonic() - t0)

local xs = {}
for r = 1, rounds do xs[r] = r end
for _, target in ipairs(TARGETS) do
  local ys = {}
  for r = 1, rounds do ys[r] = target end
  series[#series + 1] = { name = ("(target %.2f)"):format(target), x = xs, y = ys }
end
if plot.lines { path = img, title = "Human's intervention rate under the target schedule (per step)",
  xlabel = "round", ylabel = "observed intervention rate", series = series } then
  lines[#lines + 1] = ""
  lines[#lines + 1] = "![target schedule](img/schedule_target.png)"
end

local text = table.concat(lines, "\n")
print(text)
E.replace_block(doc, "schedule-results", text)
os.execute("rm -rf " .. tmp)
print("written to " .. doc)
