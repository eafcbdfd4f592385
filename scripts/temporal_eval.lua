-- scripts/temporal_eval.lua - do temporal intervention models predict a human with
-- memory better than the memoryless model, and no worse a human without one?
--
--   mile scripts/temporal_eval.lua [--seeds 3] [--humans probit,accumulator,history,gru]
--       [--learners probit,history,accumulator,gru] [--modes oracle,mile] [--train 8] [--test 8]
--       [--epochs 20] [--doc docs/research.md]
--
-- For each simulated human (human.memory) and seed: the initial robot policy runs
-- --train + --test episodes on LunarLander with that human watching (no learning in
-- between, so every learner sees the same data); each learner memory (learner.memory)
-- is fitted to the training episodes and scored on the held-out ones by the
-- intervention log-loss -[nu ln p + (1 - nu) ln(1 - p)] per step, each step with its
-- episode's full history. Two fits:
--   oracle  pi_h = the expert network and pihat = the initial policy (the simulated
--           human's own), only the memory's parameters train (J1, Adam): is the
--           temporal structure identifiable?
--   mile    the MILE learner as the loop trains it: policy, mental model and memory
--           from the warm start, loss.variant paper, the protocol's step budget.
-- The table (mean ± sd over seeds, and the true human's log-loss as the floor) goes
-- into the block `temporal-results` of docs/research.md. About 3 minutes on 2 cores
-- with the defaults. `loadfile(this)("--module")` returns the functions (the tests
-- run a reduced version).
local T = require "mile.tensor"
local I = require "mile.intervention"
local loop = require "mile.loop"
local nn = require "mile.nn"
local optim = require "mile.optim"
local ag = require "mile.autograd"
local sys = require "mile.sys"
local methods = require "mile.methods"
local temporal = require "mile.temporal"

local M = {}

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- "probit": the memoryless model (no memory model)
local function memory_of(name) return (name == nil or name == "probit") and "none" or name end

--- collect{human=, seed=, train=, test=, set = {key = value}} -> train dataset, test
--- dataset, the resolved config (flat). The initial policy acts; the human watches.
function M.collect(opts)
  local user = { env = "LunarLander-v3", seed = opts.seed or 0, episodes_per_round = 1, eval_episodes = 0,
    progress = false, ["human.memory"] = memory_of(opts.human) }
  for k, v in pairs(opts.set or {}) do user[k] = v end
  local cfg = loop.resolve(user)
  local run = loop.new_run(cfg)
  for r = 1, opts.train do run:collect(r) end
  local n_train = run.dataset:size()
  for r = 1, opts.test do run:collect(500 + r) end
  local n = run.dataset:size()
  local idx = {}
  for i = 1, n_train do idx[i] = i end
  local train = run.dataset:subset(idx)
  idx = {}
  for i = n_train + 1, n do idx[#idx + 1] = i end
  return train, run.dataset:subset(idx), cfg
end

local function use_dataset(run, ds)
  run.dataset = ds
  rawset(run, "_episode_start", nil)
  rawset(run, "_temporal_cols", nil)
end

--- fit(train, cfg, learner, mode, {steps=, epochs=}) -> the run holding the fitted learner.
function M.fit(train, cfg, learner, mode, opts)
  opts = opts or {}
  local c = copy(cfg)
  c["learner.memory"] = memory_of(learner)
  c["human.memory"] = "none"
  c.name = ""
  local schema = loop.schema_for(c) -- keys of the collecting human's memory model are not this run's
  for k in pairs(c) do if schema[k] == nil then c[k] = nil end end
  if opts.epochs then c.epochs = opts.epochs end
  local run = loop.new_run(loop.resolve(c))
  use_dataset(run, train)
  if mode == "oracle" then
    run.policy:load_state_dict(nn.load(loop.policy_file(run.cfg, "expert")):state_dict())
    if not run.temporal or not run.opt_temporal then return run end
    local gen = run.gens.train
    for _ = 1, opts.steps or 300 do
      local model, nu, ah = temporal.train_batch(run, gen, run.cfg.batch_size)
      local out = I.loss { model = model, variant = "paper", lambda = 1, nu = nu, human_action = ah }
      run.opt_temporal:zero_grad()
      run.opt_policy:zero_grad()
      run.opt_mental:zero_grad()
      out.loss:backward()
      run.opt_temporal:step()
    end
    return run
  end
  methods.get("mile").train(methods.context(run, 1))
  return run
end

--- heldout(run, test) -> mean intervention log-loss of the run's learner on the test
--- dataset (full episode histories), and that of the true human (its recorded p).
function M.heldout(run, test)
  use_dataset(run, test)
  local n = test:size()
  local rows = {}
  for i = 1, n do rows[i] = i end
  local cols = test:tensors { dtype = "float64" }
  local nu = cols.nu
  local loss = ag.no_grad(function()
    local obs = test:column("obs"):index_select(1, rows)
    local m = methods.learner_model(run, obs, rows)
    local lp, l1 = m.logp:double(), m.log1mp:double()
    return -(T.where(nu:ne(0), lp, l1)):mean():item()
  end)
  local p = cols.p:clamp(1e-12, 1 - 1e-12)
  local floor = -(T.where(nu:ne(0), p:log(), (-p + 1):log())):mean():item()
  return loss, floor
end

-- mean and sd over a list
local function stats(v)
  local s, ss = 0, 0
  for _, x in ipairs(v) do s = s + x end
  local m = s / #v
  for _, x in ipairs(v) do ss = ss + (x - m) ^ 2 end
  return m, #v > 1 and math.sqrt(ss / (#v - 1)) or 0
end
M.stats = stats

--- replace_block(path, name, text): put text between <!-- name:begin --> and
--- <!-- name:end --> in the file (appended when the markers are missing).
function M.replace_block(path, name, text)
  local f = io.open(path)
  local doc = f and f:read("a") or ""
  if f then f:close() end
  local b, e = "<!-- " .. name .. ":begin -->", "<!-- " .. name .. ":end -->"
  local i = doc:find(b, 1, true)
  local j = doc:find(e, 1, true)
  local block = b .. "\n" .. text .. "\n" .. e
  if i and j then doc = doc:sub(1, i - 1) .. block .. doc:sub(j + #e) else doc = doc .. "\n" .. block .. "\n" end
  assert(sys.write_atomic(path, doc))
end

--- The common start of the research scripts: --seeds, --rounds, --doc from args
--- (defaults given), a fresh temporary directory, and the figure path next to doc.
function M.script_setup(args, defaults, figure)
  local o = { seeds = defaults.seeds, rounds = defaults.rounds, doc = defaults.doc }
  for i = 1, #args do
    if args[i] == "--seeds" then o.seeds = tonumber(args[i + 1]) end
    if args[i] == "--rounds" then o.rounds = tonumber(args[i + 1]) end
    if args[i] == "--doc" then o.doc = args[i + 1] end
  end
  o.img = (o.doc:match("^(.*)/[^/]*$") or ".") .. "/img/" .. figure
  o.tmp = os.tmpname()
  os.remove(o.tmp)
  assert(require("mile.sys").mkdir(o.tmp))
  return o
end

if (...) == "--module" then return M end

-- ---- the experiment ------------------------------------------------------------------------

local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "scripts"
local seeds, humans, learners, modes = 3, { "probit", "accumulator", "history", "gru" },
  { "probit", "history", "accumulator", "gru" }, { "oracle", "mile" }
local n_train, n_test, epochs, doc = 8, 8, 20, here .. "/../docs/research.md"
local args = { ... }
local function list(s) local out = {} for x in s:gmatch("[^,]+") do out[#out + 1] = x end return out end
for i = 1, #args do
  local a, v = args[i], args[i + 1]
  if a == "--seeds" then seeds = tonumber(v) end
  if a == "--humans" then humans = list(v) end
  if a == "--learners" then learners = list(v) end
  if a == "--modes" then modes = list(v) end
  if a == "--train" then n_train = tonumber(v) end
  if a == "--test" then n_test = tonumber(v) end
  if a == "--epochs" then epochs = tonumber(v) end
  if a == "--doc" then doc = v end
end

local t0 = sys.monotonic()
local results = {} -- results[mode][human][learner] = {losses}; floors[human] = {...}
local floors, rates, gammas, ws = {}, {}, {}, {}
for _, mode in ipairs(modes) do results[mode] = {} end
for _, h in ipairs(humans) do
  floors[h], rates[h], gammas[h], ws[h] = {}, {}, {}, {}
  for _, mode in ipairs(modes) do
    results[mode][h] = {}
    for _, l in ipairs(learners) do results[mode][h][l] = {} end
  end
  for seed = 0, seeds - 1 do
    local train, test, cfg = M.collect { human = h, seed = seed, train = n_train, test = n_test }
    rates[h][#rates[h] + 1] = test:n_interventions() / test:size()
    for _, mode in ipairs(modes) do
      for _, l in ipairs(learners) do
        local run = M.fit(train, cfg, l, mode, { epochs = epochs, steps = 300 })
        local loss, floor = M.heldout(run, test)
        table.insert(results[mode][h][l], loss)
        if mode == modes[1] and l == learners[1] then floors[h][#floors[h] + 1] = floor end
        if l == "accumulator" and mode == "oracle" then
          gammas[h][#gammas[h] + 1], ws[h][#ws[h] + 1] = run.temporal:gamma(), run.temporal:w()
        end
        print(("human %-11s seed %d  %-6s %-11s held-out log-loss %.4f (true human %.4f)  [%.0f s]"):format(h, seed,
          mode, l, loss, floor, sys.monotonic() - t0))
      end
    end
  end
end

local lines = {
  ("Held-out intervention log-loss per step (nats; mean ± sd over %d seeds; %d training and %d held-out " ..
    "episodes of the initial policy on LunarLander-v3 per seed; lower is better). `true human`: the log-loss of the " ..
    "simulated human's own p, the floor. Generated by `mile scripts/temporal_eval.lua` in %.0f s."):format(seeds,
    n_train, n_test, sys.monotonic() - t0), "" }
for _, mode in ipairs(modes) do
  lines[#lines + 1] = ("**%s fit** (%s)"):format(mode, mode == "oracle" and
    "pi_h = expert, pihat = the human's mental model; only the memory trains, 300 Adam steps" or
    ("policy, mental model and memory trained by MILE, %d epochs of the protocol's budget"):format(epochs))
  lines[#lines + 1] = ""
  local head = { "| human (rate) | true human |" }
  local rule = "|---|---|"
  for _, l in ipairs(learners) do head[#head + 1] = " " .. l .. " |"; rule = rule .. "---|" end
  lines[#lines + 1] = table.concat(head)
  lines[#lines + 1] = rule
  for _, h in ipairs(humans) do
    local rate, floor = stats(rates[h]), (stats(floors[h]))
    local cells = { ("| %s (%.2f) | %.4f |"):format(h, rate, floor) }
    local best, best_l = math.huge, nil
    for _, l in ipairs(learners) do
      local m = stats(results[mode][h][l])
      if m < best then best, best_l = m, l end
    end
    for _, l in ipairs(learners) do
      local m, sd = stats(results[mode][h][l])
      local cell = ("%.4f ± %.4f"):format(m, sd)
      if l == best_l then cell = "**" .. cell .. "**" end
      cells[#cells + 1] = " " .. cell .. " |"
    end
    lines[#lines + 1] = table.concat(cells)
  end
  lines[#lines + 1] = ""
end
if gammas.accumulator and #gammas.accumulator > 0 then
  local g1, gs1 = stats(gammas.accumulator)
  local w1, ws1 = stats(ws.accumulator)
  local line = ("Oracle fit of the accumulator learner (starting at gamma 0.5, w 0): gamma = %.3f ± %.3f, " ..
    "w = %.3f ± %.3f on the accumulator human's data (true: both 0.8)"):format(g1, gs1, w1, ws1)
  if ws.probit and #ws.probit > 0 then
    local w2, ws2 = stats(ws.probit)
    line = line .. ("; w = %.3f ± %.3f on the memoryless human's (true 0)"):format(w2, ws2)
  end
  lines[#lines + 1] = line .. "."
end
-- paired differences to the memoryless learner on the memoryless human's data
if results.oracle and results.oracle.probit and results.oracle.probit.probit then
  local r = results.oracle.probit
  local parts = {}
  for _, l in ipairs(learners) do
    if l ~= "probit" and r[l] then
      local d = {}
      for i = 1, #r[l] do d[i] = r[l][i] - r.probit[i] end
      local m, sd = stats(d)
      parts[#parts + 1] = ("%s %+.4f ± %.4f"):format(l, m, sd)
    end
  end
  if #parts > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "Oracle fit, memoryless human: held-out log-loss minus the memoryless learner's, paired by seed " ..
      "(mean ± sd): " .. table.concat(parts, ", ") .. "."
  end
end
local text = table.concat(lines, "\n")
print(text)
M.replace_block(doc, "temporal-results", text)
print("written to " .. doc)
