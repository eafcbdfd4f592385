-- scripts/mismatch.lua - MILE when the human's mental model is wrong (open question 2).
--
--   mile scripts/mismatch.lua [--seeds 3] [--rounds 8] [--doc docs/research.md]
--
-- Runs MILE on LunarLander-v3 (the main job's settings: 2 episodes per round, 20
-- epochs) with simulated humans whose mental model pihat is
--   initial      frozen at the initial policy (the default, and the learner's warm start)
--   lag r        the robot policy that acted r rounds ago (r = 0: the current one)
--   noisy sd     the initial policy with N(0, sd^2) noise on its logits at every step
-- and reports sample efficiency: success (policy alone, 20 evaluation episodes) after
-- each round against the interventions spent so far. The learner is the same in every
-- condition (it does not know how the human's belief was formed). The table goes into
-- the block `mismatch-results` of docs/research.md, the figure into
-- docs/img/mismatch.png.
local loop = require "mile.loop"
local sys = require "mile.sys"
local plot = require "mile.plot"

local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "scripts"
local E = loadfile(here .. "/temporal_eval.lua")("--module")
local seeds, rounds, doc = 3, 8, here .. "/../docs/research.md"
local args = { ... }
for i = 1, #args do
  if args[i] == "--seeds" then seeds = tonumber(args[i + 1]) end
  if args[i] == "--rounds" then rounds = tonumber(args[i + 1]) end
  if args[i] == "--doc" then doc = args[i + 1] end
end
local img = (doc:match("^(.*)/[^/]*$") or ".") .. "/img/mismatch.png"
local tmp = os.tmpname()
os.remove(tmp)
assert(sys.mkdir(tmp))

local BASE = { env = "LunarLander-v3", method = "mile", rounds = rounds, episodes_per_round = 2, epochs = 20,
  eval_episodes = 20, progress = false }
local CONDITIONS = {
  { name = "initial", set = { ["human.mental"] = "initial" } },
  { name = "lag 0", set = { ["human.mental"] = "lag", ["human.lag"] = 0 } },
  { name = "lag 1", set = { ["human.mental"] = "lag", ["human.lag"] = 1 } },
  { name = "lag 3", set = { ["human.mental"] = "lag", ["human.lag"] = 3 } },
  { name = "noisy 0.5", set = { ["human.mental"] = "noisy", ["human.noise"] = 0.5 } },
  { name = "noisy 1", set = { ["human.mental"] = "noisy", ["human.noise"] = 1 } },
  { name = "noisy 2", set = { ["human.mental"] = "noisy", ["human.noise"] = 2 } },
}

local t0 = sys.monotonic()
local lines = {
  ("MILE on LunarLander-v3, %d rounds x 2 episodes, 20 epochs, %d seeds (mean ± sd). `success`: the policy alone on " ..
    "20 evaluation episodes after the last round; `interventions`: human-controlled steps over all rounds; " ..
    "`rate`: interventions / steps; `success / 1k int.`: final success per 1000 interventions; `int. to 0.5`: " ..
    "interventions spent when the success rate first reached 0.5 (seeds that never did count as missing, n = " ..
    "seeds that did)."):format(rounds, seeds), "",
  "| human's mental model | success | interventions | rate | success / 1k int. | int. to 0.5 | success by round |",
  "|---|---|---|---|---|---|---|",
}
local series = {}
for _, cond in ipairs(CONDITIONS) do
  local succ, ints, rates, eff, reach = {}, {}, {}, {}, {}
  local by_round, x_round = {}, {}
  for r = 1, rounds do by_round[r], x_round[r] = {}, {} end
  for seed = 0, seeds - 1 do
    local cfg = {}
    for k, v in pairs(BASE) do cfg[k] = v end
    for k, v in pairs(cond.set) do cfg[k] = v end
    cfg.seed = seed
    local run = loop.run(cfg, { dir = ("%s/%s-%d"):format(tmp, cond.name:gsub(" ", "_"), seed) })
    local m = run.metrics
    local last = m[#m]
    local steps = 0
    for r, row in ipairs(m) do
      steps = steps + row.steps
      by_round[r][#by_round[r] + 1] = row.success
      x_round[r][#x_round[r] + 1] = row.interventions_total
      if row.success >= 0.5 and not reach[seed + 1] then reach[seed + 1] = row.interventions_total end
    end
    succ[#succ + 1], ints[#ints + 1] = last.success, last.interventions_total
    rates[#rates + 1] = last.interventions_total / steps
    eff[#eff + 1] = 1000 * last.success / math.max(last.interventions_total, 1)
    print(("%-10s seed %d: success %.2f, %d interventions (rate %.3f)  [%.0f s]"):format(cond.name, seed, last.success,
      last.interventions_total, rates[#rates], sys.monotonic() - t0))
  end
  local reached = {}
  for _, v in pairs(reach) do reached[#reached + 1] = v end
  local sm, ss = E.stats(succ)
  local im, is = E.stats(ints)
  local rm = E.stats(rates)
  local em, es = E.stats(eff)
  local by, xs, ys = {}, {}, {}
  for r = 1, rounds do
    ys[r], xs[r] = E.stats(by_round[r]), E.stats(x_round[r])
    by[r] = ("%.2f"):format(ys[r])
  end
  local rc = "-"
  if #reached > 0 then
    local a, b = E.stats(reached)
    rc = ("%.0f ± %.0f (n = %d)"):format(a, b, #reached)
  end
  lines[#lines + 1] = ("| %s | %.2f ± %.2f | %.0f ± %.0f | %.3f | %.2f ± %.2f | %s | %s |"):format(cond.name, sm, ss, im, is,
    rm, em, es, rc, table.concat(by, " "))
  series[#series + 1] = { name = cond.name, x = xs, y = ys }
end
lines[#lines + 1] = ""
lines[#lines + 1] = ("Generated by `mile scripts/mismatch.lua --seeds %d --rounds %d` in %.0f s."):format(seeds, rounds,
  sys.monotonic() - t0)
if plot.lines { path = img, title = "MILE: success vs interventions, by the human's mental model",
  xlabel = "interventions so far (mean over seeds)", ylabel = "success rate (mean over seeds)", series = series,
  yrange = { 0, 1 } } then
  lines[#lines + 1] = ""
  lines[#lines + 1] = "![mismatch](img/mismatch.png)"
end
local text = table.concat(lines, "\n")
print(text)
E.replace_block(doc, "mismatch-results", text)
os.execute("rm -rf " .. tmp)
print("written to " .. doc)
