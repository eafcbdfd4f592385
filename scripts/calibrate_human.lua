-- scripts/calibrate_human.lua - derive each task's simulated-human cost and scale so
-- that the human's decisions carry information about the state.
--
--   mile scripts/calibrate_human.lua [--episodes 10] [--write] [--table] [--set key=value ...] [task ...]
--
-- The public code's cost table (c, sigma per task) was tuned to its SAC policies'
-- log-probability scale. With this project's experts the expected value gap
--   dbar(s) = E_{a~pi_E} Delta(a, s),  Delta(a, s) = ln pi_E(a|s) - E_{a'~pihat} ln pi_E(a'|s)
-- varies over the states the initial policy visits on a scale of its own, so a fixed
-- table leaves p(s) nearly constant (a coin-flip human). The rule here, the same for
-- every task: the human's mental model is accurate (pihat = the robot's policy, here
-- the initial one), the states are those of `episodes` rollouts of the initial policy
-- alone, and
--   c     = the median of dbar(s)                         (p(s) ~ 1/2 at the typical state)
--   sigma = (q75 - q25) of dbar(s) / 1.349               (the spread of dbar: its interquartile
--                                                          range as a normal sd, robust to tails)
-- It prints the spread of p(s) and the information nu carries, I(nu; S) = H(E p) -
-- E H(p(s)) in bits per step (the metrics' nu_bits_per_step); --write puts c and sigma
-- into the block `calibrated-human` of scripts/configs/<task>.lua. --table scores the
-- public code's cost table (mile.tasks: human_cost, human_scale) on the same states
-- instead, for comparison. --set changes the run the states come from, as mile train's
-- does (expert.policy=tuned, initial.policy=converged: another expert or initial policy).
local T = require "mile.tensor"
local ag = require "mile.autograd"
local loop = require "mile.loop"
local policy = require "mile.policy"
local temporal = require "mile.temporal"
local sys = require "mile.sys"
local cli = require "mile.cli"

local args = cli.parse("calibrate_human", { ... }, {
  usage = "usage: mile scripts/calibrate_human.lua [--episodes N] [--write] [--table] [--set key=value ...] [task ...]",
  options = { episodes = "integer", write = "flag", table = "flag", set = "list" }, positional = 8,
})
local EPISODES = args.episodes or 10
local CONFIGS = { ["LunarLander-v3"] = "lunarlander", ["drawer-open-v3"] = "drawer_open",
  ["button-press-v3"] = "button_press", ["peg-insert-side-v3"] = "peg_insert" }
local here = arg[0]:match("^(.*)/[^/]*$") or "."

local function quantile(sorted, q)
  local x = (#sorted - 1) * q + 1
  local lo = math.floor(x)
  local hi = math.min(lo + 1, #sorted)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo)
end

local function h2(p)
  if p <= 0 or p >= 1 then return 0 end
  return -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
end

--- calibrate(task) -> {cost, scale, bits, p10, p50, p90, states}
local function calibrate(task)
  -- the initial policy alone: a human that never intervenes watches
  local run = loop.new_run(loop.resolve({ env = task, ["human.cost"] = 1e6, ["human.mental"] = "accurate",
    episodes_per_round = EPISODES, progress = false, max_episode_steps = 500, seed = 0 }, args.set))
  run:collect(1)
  local obs = run.dataset:column("obs"):float()
  local robot = run.dataset:column("robot_action"):float()
  local expert, mental = run.human.expert, run.human.mental
  local dbar = ag.no_grad(function()
    local e, m = {}, {}
    local n = obs:size(1)
    for i = 1, n do -- the scripted experts act one state at a time
      local o = obs:narrow(1, i, 1)
      e[i], m[i] = expert(o), mental(o)
    end
    local function stack(list, key)
      local parts = {}
      for i, x in ipairs(list) do parts[i] = x[key] end
      return T.cat(parts)
    end
    local pe = e[1].logits and { logits = stack(e, "logits") } or { mu = stack(e, "mu"), log_sd = stack(e, "log_sd") }
    local pm = m[1].logits and { logits = stack(m, "logits") } or { mu = stack(m, "mu"), log_sd = stack(m, "log_sd") }
    return (temporal.features(pe, pm, robot)), pe, pm
  end)
  local d = dbar:to("float64"):totable()
  table.sort(d)
  local c = quantile(d, 0.5)
  local sigma = (quantile(d, 0.75) - quantile(d, 0.25)) / 1.349
  if not (sigma > 0) then error(("%s: dbar does not vary over the states (sigma %g)"):format(task, sigma), 0) end
  if args.table then c, sigma = run.task.human_cost, run.task.human_scale end
  -- what the human does with them: p(s) with the run's intervention model
  run.human.cost, run.human.scale = c, sigma
  local p = {}
  ag.no_grad(function()
    for i = 1, obs:size(1) do p[i] = run.human:probability(obs:select(1, i)) end
  end)
  local mean_p, mean_h = 0, 0
  for _, x in ipairs(p) do mean_p, mean_h = mean_p + x / #p, mean_h + h2(x) / #p end
  table.sort(p)
  return { cost = c, scale = sigma, bits = h2(mean_p) - mean_h, p10 = quantile(p, 0.1), p50 = quantile(p, 0.5),
    p90 = quantile(p, 0.9), states = #p, mean_p = mean_p }
end

local function fmt(x) return ("%.4g"):format(x) end

local tasks = {}
for i = 1, #args do tasks[i] = args[i] end
if #tasks == 0 then tasks = { "LunarLander-v3", "drawer-open-v3", "button-press-v3", "peg-insert-side-v3" } end
print("task                 states  cost      scale     p10    p50    p90    mean p  nu bits/step")
for _, task in ipairs(tasks) do
  local t0 = sys.monotonic()
  local r = calibrate(task)
  print(("%-20s %6d  %-9s %-9s %.3f  %.3f  %.3f  %.3f   %.3f   (%.0f s)"):format(task, r.states, fmt(r.cost),
    fmt(r.scale), r.p10, r.p50, r.p90, r.mean_p, r.bits, sys.monotonic() - t0))
  if args.write and not args.table then
    if #args.set > 0 then error("calibrate_human: --write writes a config's default block; --set changes it", 0) end
    local path = ("%s/configs/%s.lua"):format(here, CONFIGS[task] or task)
    local text = assert(io.open(path)):read("a")
    local block = ("  -- calibrated-human:begin (scripts/calibrate_human.lua: %d states, %.2f bits per step)\n"
      .. "  human = { cost = %s, scale = %s, mental = \"accurate\" },\n  learner = { cost = %s, scale = %s },\n"
      .. "  -- calibrated-human:end"):format(r.states, r.bits, fmt(r.cost), fmt(r.scale), fmt(r.cost), fmt(r.scale))
    local new, n = text:gsub("  %-%- calibrated%-human:begin.-%-%- calibrated%-human:end", function() return block end)
    if n == 0 then error(path .. " has no calibrated-human block", 0) end
    assert(sys.write_atomic(path, new))
  end
end
