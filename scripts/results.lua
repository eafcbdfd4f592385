-- scripts/results.lua - per-round tables of every method on every task, several seeds.
--
--   mile scripts/results.lua [--seeds 5] [--tasks lunarlander,drawer_open,...] [--out runs/results]
--                            [--doc docs/results.md]
--
-- Runs scripts/configs/<task>.lua for each method and seed (the configs' settings,
-- method and seed overridden), then writes the tables into the block `results-lua` of
-- docs/results.md (the rest of the file, the reproduction study's summary, is left as
-- it is): the expert's and the initial policy's success, each method's success after
-- every round (mean ± sd over seeds), interventions used, and MILE's predicted vs
-- observed intervention rate. No paired statistics: the study's comparisons are
-- scripts/reproduce.lua's. Anyone can rerun it; about 15 minutes on 2 idle cores.
local loop = require "mile.loop"
local config = require "mile.config"
local sys = require "mile.sys"
local nn = require "mile.nn"
local envs = require "mile.envs"
local policy = require "mile.policy"
local tasks = require "mile.tasks"
local report = require "mile.report"

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local seeds, out, doc = 5, "runs/results", here .. "/../docs/results.md"
local task_files = { "lunarlander", "drawer_open", "button_press", "peg_insert" }
local METHODS = { "mile", "hg_dagger", "iwr", "bc" }
local args = { ... }
for i = 1, #args do
  if args[i] == "--seeds" then seeds = tonumber(args[i + 1]) end
  if args[i] == "--out" then out = args[i + 1] end
  if args[i] == "--doc" then doc = args[i + 1] end
  if args[i] == "--tasks" then
    task_files = {}
    for t in args[i + 1]:gmatch("[^,]+") do task_files[#task_files + 1] = t end
  end
end

local BLOCK = "(<!%-%- results%-lua:begin %-%->\n).-(<!%-%- results%-lua:end %-%->)"
do -- before the runs: the file must hold the block
  local f = io.open(doc)
  if not (f and f:read("a"):find(BLOCK)) then error(doc .. " has no results-lua block", 0) end
  f:close()
end

-- The expert acting alone on the runs' evaluation states.
local function expert_success(run)
  if run.task.discrete then
    local net = nn.load(loop.policy_file(run.cfg, "expert"))
    return run:evaluate(run.cfg.eval_episodes, function(obs) return policy.act(net, obs, true) end).success
  end
  local scripted = envs.scripted_expert(run.eval_env)
  return run:evaluate(run.cfg.eval_episodes, function(obs) return scripted:act(obs) end).success
end

local sections = {
  ("Produced by `mile scripts/results.lua --seeds %d` (%s). Each cell: success rate of the policy"):format(seeds,
    os.date("!%Y-%m-%d")),
  "acting alone on the run's fixed evaluation states after that round, mean ± sd over seeds.",
  "Interventions: human-controlled steps over all rounds (mean over seeds). Every method sees",
  "the same simulated human, the same demonstrations and the same number of gradient steps",
  "per round (mile.methods); the reported policy is always the last round's.", "",
}
local t0 = sys.monotonic()
for _, tf in ipairs(task_files) do
  local base = config.load_file(here .. "/configs/" .. tf .. ".lua")
  local results, expert, initial = {}, nil, nil
  for _, method in ipairs(METHODS) do
    results[method] = {}
    for seed = 0, seeds - 1 do
      local run = loop.run(base, { overrides = { "method=" .. method, "seed=" .. seed, "progress=false" },
        dir = ("%s/%s/%s-seed%d"):format(out, tf, method, seed) })
      results[method][#results[method] + 1] = run
      expert = expert or expert_success(run)
      initial = initial or run.initial.success
      io.stderr:write(("%s %s seed %d: %.2f (%.0f s)\n"):format(tf, method, seed, run.metrics[#run.metrics].success,
        sys.monotonic() - t0))
    end
  end
  local cfg = results.mile[1].cfg
  local lines = {
    ("### %s"):format(cfg.env), "",
    ("Config `scripts/configs/%s.lua`: %d rounds x %d episodes, %d epochs, batch %d, lr %g; human c = %g, sigma = %g; %d evaluation episodes.")
      :format(tf, cfg.rounds, cfg.episodes_per_round, cfg.epochs, cfg.batch_size, cfg.lr, cfg["human.cost"],
        cfg["human.scale"], cfg.eval_episodes),
    ("Expert (%s) success %.2f; initial policy success %.2f."):format(
      tasks.get(cfg.env).discrete and "the cloned network, greedy" or "the scripted controller", expert, initial), "",
  }
  lines[#lines + 1] = report.seed_table(results, METHODS, cfg.rounds)
  -- calibration of MILE's learned model: predicted vs observed rate per round
  lines[#lines + 1] = ""
  lines[#lines + 1] = "MILE's learned intervention model, mean over seeds: predicted rate on the round's states (before"
  lines[#lines + 1] = "training on them) vs the observed rate."
  lines[#lines + 1] = ""
  lines[#lines + 1] = "| round | predicted | observed |"
  lines[#lines + 1] = "|---|---|---|"
  for r = 1, cfg.rounds do
    local p, o = {}, {}
    for i, run in ipairs(results.mile) do p[i], o[i] = run.metrics[r].predicted_rate, run.metrics[r].intervention_rate end
    lines[#lines + 1] = ("| %d | %.3f | %.3f |"):format(r, (report.mean_sd(p)), (report.mean_sd(o)))
  end
  lines[#lines + 1] = ""
  sections[#sections + 1] = table.concat(lines, "\n")
end
sections[#sections + 1] = ("Total time: %.0f s on this machine."):format(sys.monotonic() - t0)
local text = assert(io.open(doc)):read("a")
local new, n = text:gsub(BLOCK, function(a, b) return a .. table.concat(sections, "\n") .. "\n" .. b end)
if n == 0 then error(doc .. " has no results-lua block", 0) end
assert(sys.write_atomic(doc, new))
print("wrote the results-lua block of " .. doc)
