-- The public MILE code's protocol (protocol = "public", docs/reproduction.md) and its
-- ingredients, each checked against an independent computation; the information
-- metrics of metrics.csv.
local T = require "testing"
local tensor = require "mile.tensor"
local ag = require "mile.autograd"
local loop = require "mile.loop"
local human = require "mile.human"
local sys = require "mile.sys"

local root = debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/") or "."
local tmp = T.tmpdir()

local SHORT = { env = "LunarLander-v3", rounds = 2, episodes_per_round = 1, epochs = 2, batch_size = 64,
  eval_episodes = 3, max_episode_steps = 200, progress = false, seed = 4 }
local function with(set)
  local c = {}
  for k, v in pairs(SHORT) do c[k] = v end
  for k, v in pairs(set) do c[k] = v end
  return c
end
local n_runs = 0
local function run(set)
  n_runs = n_runs + 1
  return loop.run(with(set), { dir = ("%s/run%d"):format(tmp, n_runs) })
end

T.test("the public preset sets its ingredients and refuses a conflicting key, naming both", function()
  local cfg = loop.resolve { protocol = "public" }
  T.eq({ cfg.demos, cfg["human.rule"], cfg["learner.mental_init"], cfg["eval.select"], cfg["loss.variant"], cfg.rounds,
    cfg.epochs, cfg.batch_size, cfg.lr, cfg["train.holdout"] }, { 0, "argmax", "random", "best", "public", 20, 300, 1024,
    1e-4, 0.2 })
  T.raises(function() loop.resolve { protocol = "public", train = { holdout = 0 } } end,
    "'train.holdout' = 0 conflicts with protocol = public %(which sets train.holdout = 0.2%)")
  local d = loop.resolve { protocol = "public", env = "drawer-open-v3" }
  T.eq({ d["human.rule"], d["human.shrink"], d["loss.variant"] }, { "sample", true, "paper" })
  T.raises(function() loop.resolve({ protocol = "public" }, { "human.rule=sample" }) end,
    "'human.rule' = sample conflicts with protocol = public %(which sets human.rule = argmax%)")
  T.raises(function() loop.resolve { protocol = "public", demos = 3 } end, "'demos' = 3 conflicts with protocol = public")
  T.eq(loop.resolve({ protocol = "public" }, { "rounds=3" }).rounds, 3, "the budget may change")
  T.eq({ cfg["human.cost"], cfg["human.scale"], cfg["human.mental"] }, { 3, 1, "initial" }, "COST_LOOKUP, fixed pihat")
  local calibrated = require("mile.config").load_file(root .. "/scripts/configs/lunarlander.lua")
  T.raises(function() loop.resolve(calibrated, { "protocol=public" }) end,
    "'human.cost' = [%d.]+ conflicts with protocol = public %(which sets human.cost = 3%)")
  T.eq(loop.resolve { protocol = "public", method = "hg_dagger" }["loss.variant"], nil, "no key the method lacks")
end)

-- a discrete simulated human with fixed expert and mental logits
local function toy(rule, expert_logits, mental_logits, cost)
  return human.Simulated { expert = function() return { logits = tensor.from { expert_logits } } end,
    mental = function() return { logits = tensor.from { mental_logits } } end, cost = cost, scale = 1,
    generator = tensor.Generator(1), rule = rule }
end

T.test("the argmax human: deterministic argmax over [pi_E(a) p, 1 - p], never the robot's action", function()
  local Phi = require("reference_math").Phi
  local obs = tensor.zeros { 8 }
  for _, case in ipairs {
    { e = { 3, 0, 0, 0 }, m = { 0, 0, 0, 3 }, c = 0 }, { e = { 3, 0, 0, 0 }, m = { 3, 0, 0, 0 }, c = 3 },
    { e = { 0, 2, 1, 0 }, m = { 0, 0, 0, 4 }, c = 1 }, { e = { 1, 1.2, 0.9, 1 }, m = { 1, 1, 1, 1 }, c = 0.5 } } do
    -- p(s) in float64, independently: E_{a~pi_E} Phi(Delta(a) - c)
    local z, pe, pm = 0, {}, {}
    for a = 1, 4 do z = z + math.exp(case.e[a]) end
    for a = 1, 4 do pe[a] = math.exp(case.e[a]) / z end
    local zm = 0
    for a = 1, 4 do zm = zm + math.exp(case.m[a]) end
    local mean = 0
    for a = 1, 4 do pm[a] = math.exp(case.m[a]) / zm; mean = mean + pm[a] * math.log(pe[a]) end
    local p, best = 0, 1
    for a = 1, 4 do
      p = p + pe[a] * Phi(math.log(pe[a]) - mean - case.c)
      if pe[a] > pe[best] then best = a end
    end
    for robot = 0, 3 do
      local h = toy("argmax", case.e, case.m, case.c)
      local nu, a, info = h:decide(obs, robot)
      T.near(info.p, p, 1e-5)
      local want = (pe[best] * p > 1 - p and best - 1 ~= robot) and 1 or 0
      T.eq({ nu, a }, { want, want == 1 and best - 1 or robot }, ("case %s robot %d"):format(T.show(case.e), robot))
      T.eq({ h:decide(obs, robot) }, { nu, a, info }, "deterministic")
    end
  end
end)

T.test("the shrunk continuous human acts from N(p mu_E, (p sd_E)^2)", function()
  local mu, log_sd = tensor.from { { 0.8, -0.4 } }, tensor.from { { math.log(0.3), math.log(0.5) } }
  local h = human.Simulated { expert = function() return { mu = mu, log_sd = log_sd } end,
    mental = function() return { mu = tensor.from { { 0, 0 } }, log_sd = tensor.from { { 0, 0 } } } end,
    cost = -2, scale = 1, discrete = false, generator = tensor.Generator(2), shrink = true }
  local n, sum, sq, got, p = 4000, { 0, 0 }, { 0, 0 }, 0, nil
  for _ = 1, n do
    local nu, a, info = h:decide(tensor.zeros { 3 }, tensor.from { 0, 0 })
    p = info.p
    if nu == 1 then
      got = got + 1
      for d = 1, 2 do sum[d], sq[d] = sum[d] + a[d], sq[d] + a[d] ^ 2 end
    end
  end
  T.truthy(got > 1000, "it intervenes")
  local m_mu, m_sd = { 0.8 * p, -0.4 * p }, { 0.3 * p, 0.5 * p }
  for d = 1, 2 do
    local mean = sum[d] / got
    local sd = math.sqrt(sq[d] / got - mean ^ 2)
    T.near(mean, m_mu[d], 4 * m_sd[d] / math.sqrt(got), "mean " .. d)
    T.near(sd, m_sd[d], 0.05 * m_sd[d] + 0.01, "sd " .. d)
  end
end)

T.test("nu_bits_per_step and P(robot wrong | nu) agree with the recorded data", function()
  local r = run { ["human.mental"] = "accurate" }
  local ds = r.dataset
  local p, nu = ds:column("p", "float64"):totable(), ds:column("nu"):totable()
  local first = 1
  for k, row in ipairs(r.metrics) do
    local last = first + row.steps - 1
    local mean_p, mean_h = 0, 0
    for i = first, last do
      local q = p[i]
      mean_p = mean_p + q / row.steps
      if q > 0 and q < 1 then mean_h = mean_h - (q * math.log(q, 2) + (1 - q) * math.log(1 - q, 2)) / row.steps end
    end
    local hp = -(mean_p * math.log(mean_p, 2) + (1 - mean_p) * math.log(1 - mean_p, 2))
    T.near(row.nu_bits_per_step, hp - mean_h, 1e-5, "round " .. k)
    T.truthy(row.p_wrong_given_nu >= 0 and row.p_wrong_given_nu <= 1)
    first = last + 1
  end
end)

T.test("loss.variant = public trains on the human's label at every step", function()
  local r = loop.new_run(loop.resolve(with { ["loss.variant"] = "public", ["human.rule"] = "argmax" }))
  r:collect(1)
  local methods = require "mile.methods"
  local ctx = methods.context(r, 1)
  local cols = ctx:columns()
  local rows = {}
  for i = 1, math.min(50, r.dataset:size()) do rows[i] = i end
  local obs = cols.obs:index_select(1, rows)
  local labels = ctx:human_labels(obs):totable()
  -- independent: -mean ln softmax(policy logits)[label], label = human action on nu = 1
  local logits = ag.no_grad(function() return r.policy(obs).logits end):to("float64"):totable()
  local nu, ah = cols.nu:index_select(1, rows):totable(), cols.human_action:index_select(1, rows):totable()
  local j2 = 0
  for i, l in ipairs(logits) do
    local z = 0
    for _, x in ipairs(l) do z = z + math.exp(x) end
    local a = nu[i] == 1 and ah[i] or labels[i]
    j2 = j2 - (l[math.tointeger(a) + 1] - math.log(z)) / #rows
  end
  local model = methods.learner_model(r, obs, rows)
  local got = -model:log_pi_at(tensor.where(cols.nu:index_select(1, rows):ne(0),
    cols.human_action:index_select(1, rows), ctx:human_labels(obs))):mean():item()
  T.near(got, j2, 1e-5)
end)

T.test("demos: 0 or the cached count; eval.select = best never reports worse than the last policy", function()
  local none = run { demos = 0 }
  T.eq(#none.metrics, 2)
  T.raises(function() run { demos = 2 } end, "demos = 2: the cached demonstrations of LunarLander%-v3 are 3 episodes")
  local last = run { ["eval.every"] = 1, ["eval.select_episodes"] = 3 }
  local best = run { ["eval.select"] = "best", ["eval.every"] = 1, ["eval.select_episodes"] = 3 }
  for k = 1, 2 do T.truthy(best.metrics[k].success >= last.metrics[1].success - 1, "runs") end
  T.truthy(best.metrics[1].success >= last.metrics[1].success, "round 1: the best of the chunks >= the last chunk")
  local random = run { ["learner.mental_init"] = "random" }
  T.truthy(random.metrics[1].predicted_rate > 0.05, "a random mental model predicts interventions from the start")
end)

-- ---- train.holdout, bc.steps, initial.policy = "converged", eval.expert ---------------------

local methods = require "mile.methods"
local nn = require "mile.nn"
local io_ = require "mile.io"

-- a method that trains nothing and records what its context holds
local seen = {}
methods.register { name = "probe_holdout", doc = "test: records the rows a method is given", train = function(ctx)
  local cols = ctx:columns()
  seen[#seen + 1] = { demos = ctx.demos.obs:to("float64"):totable(), obs = cols and cols.obs:to("float64"):totable() or {},
    steps = ctx.steps, rows = ctx.dataset:size() }
  return { steps = 0 }
end }

local function rows_of(t) -- a [N, n] tensor as a set of row strings
  local set = {}
  for _, row in ipairs(t) do set[table.concat(row, ",")] = (set[table.concat(row, ",")] or 0) + 1 end
  return set
end

T.test("train.holdout: a fresh random fraction of all rows held out each round, never trained on", function()
  seen = {}
  local r = run { method = "probe_holdout", ["train.holdout"] = 0.2, rounds = 3 }
  local nd = r.demos.obs:size(1)
  local all_obs = r.dataset:column("obs", "float64"):totable()
  local demo_obs = r.demos.obs:to("float64"):totable()
  local n, held_demo_sets = 0, {}
  for k, row in ipairs(r.metrics) do
    n = n + row.steps
    local total = nd + n
    local n_train = (total * 4) // 5 -- the public code's int(0.8 n), in integers
    T.eq(row.holdout_rows, total - n_train, "round " .. k .. ": 20% held out")
    local s = seen[k]
    T.eq(#s.demos + s.rows, n_train, "round " .. k .. ": the method gets the other 80%")
    T.eq(s.steps, SHORT.epochs * math.ceil(n_train / SHORT.batch_size), "the budget counts the rows trained on")
    T.eq(#s.obs, s.rows)
    held_demo_sets[k] = #s.demos
  end
  -- the last round: the held-out rows (loop's record) and the rows the method saw are disjoint and cover all
  local split, s = r.last_split, seen[#seen]
  local trained = rows_of(s.obs)
  for _, i in ipairs(split.held.rows) do
    T.eq(trained[table.concat(all_obs[i], ",")], nil, "held-out dataset row " .. i .. " was not trained on")
  end
  local trained_demos = rows_of(s.demos)
  for _, i in ipairs(split.held.demos) do
    T.eq(trained_demos[table.concat(demo_obs[i], ",")], nil, "held-out demo row " .. i .. " was not trained on")
  end
  T.eq(#split.held.rows + #split.held.demos + #s.demos + s.rows, nd + n)
  T.truthy(held_demo_sets[1] ~= held_demo_sets[2] or held_demo_sets[2] ~= held_demo_sets[3], "a fresh draw each round")
  -- the held-out fraction of demos over the rounds is near 0.2 (a uniform draw): 3 draws of ~840 rows
  local f = 0
  for k = 1, 3 do f = f + (nd - held_demo_sets[k]) / nd / 3 end
  T.near(f, 0.2, 0.04)
end)

T.test("holdout_nll is the policy's NLL of the human's actions on the held-out rows", function()
  local r = run { ["train.holdout"] = 0.5, ["human.mental"] = "accurate" }
  local split, row = r.last_split, r.metrics[#r.metrics]
  T.eq(row.holdout_rows, (r.demos.obs:size(1) + r.dataset:size()) - (r.demos.obs:size(1) + r.dataset:size()) // 2)
  -- independently, in float64: -mean log softmax(logits)[a] over held demos and held nu = 1 rows
  local obs, acts = {}, {}
  local dobs, dact = r.demos.obs:to("float64"):totable(), r.demos.actions:to("float64"):totable()
  for _, i in ipairs(split.held.demos) do obs[#obs + 1], acts[#acts + 1] = dobs[i], dact[i] end
  local cols = r.dataset:tensors()
  local nu, ah, o = cols.nu:totable(), cols.human_action:to("float64"):totable(), cols.obs:to("float64"):totable()
  for _, i in ipairs(split.held.rows) do if nu[i] == 1 then obs[#obs + 1], acts[#acts + 1] = o[i], ah[i] end end
  T.truthy(#obs > 0)
  local logits = ag.no_grad(function() return r.policy(tensor.from(obs):float()).logits end):to("float64"):totable()
  local nll = 0
  for i, l in ipairs(logits) do
    local z = 0
    for _, x in ipairs(l) do z = z + math.exp(x) end
    nll = nll - (l[math.tointeger(acts[i]) + 1] - math.log(z)) / #logits
  end
  T.near(row.holdout_nll, nll, 1e-4)
  local off = run {}
  T.eq({ off.metrics[1].holdout_rows, off.gens.holdout }, { 0, nil }, "off by default: no split, no extra generator")
  T.truthy(off.metrics[1].holdout_nll ~= off.metrics[1].holdout_nll, "NaN without a hold-out")
end)

T.test("train.holdout: bad values and a memory model are refused", function()
  T.raises(function() loop.resolve(with { ["train.holdout"] = 1 }) end, "'train.holdout' = 1: must be in %[0, 1%)")
  T.raises(function() loop.resolve(with { ["train.holdout"] = -0.1 }) end, "must be in %[0, 1%)")
  T.raises(function() loop.resolve(with {}, { "train.holdout=0.3", "learner.memory=history" }) end,
    "'train.holdout' = 0.3 cannot be combined with 'learner.memory' = history")
end)

T.test("bc.steps: BC's budget fixed per round, not growing with the dataset it ignores", function()
  local shared = run { method = "bc" }
  local nd, n = shared.demos.obs:size(1), 0
  for k, row in ipairs(shared.metrics) do
    n = n + row.steps
    T.eq(row.train_steps, SHORT.epochs * math.ceil((nd + n) / SHORT.batch_size), "default: the shared budget, round " .. k)
  end
  local fixed = run { method = "bc", ["bc.steps"] = 7 }
  T.eq({ fixed.metrics[1].train_steps, fixed.metrics[2].train_steps }, { 7, 7 })
  local best = run { method = "bc", ["bc.steps"] = 5, ["eval.select"] = "best", ["eval.every"] = 1,
    ["eval.select_episodes"] = 2 }
  T.eq(best.metrics[2].train_steps, 5)
  T.raises(function() loop.resolve(with { method = "bc", ["bc.steps"] = 0 }) end, "'bc.steps' = 0: must be >= 1")
  T.eq(loop.resolve(with { method = "mile", ["bc.steps"] = 9 })["bc.steps"], 9, "kept without effect for other methods")
end)

T.test("initial.policy = converged: the converged clone and its demonstration episodes", function()
  local data_dir = require("mile.paths").data_dir .. "/LunarLander-v3"
  local cached = io_.load_safetensors(data_dir .. "/demos.safetensors")
  local r = loop.new_run(loop.resolve(with { ["initial.policy"] = "converged" }))
  -- its demos are the cached demonstrations' first episode (same seeds), every method alike
  local nd = r.demos.obs:size(1)
  local first = cached.obs:to("float64"):totable()
  local mine = r.demos.obs:to("float64"):totable()
  T.truthy(nd > 100 and nd < cached.obs:size(1) / 2, "one of the three episodes")
  for i = 1, nd do T.eq(mine[i], first[i], "row " .. i) end
  -- the run starts from the converged file (policy, warm mental model and the human's pihat)
  local want = nn.load(data_dir .. "/initial-converged-1ep.safetensors"):state_dict()
  for name, t in pairs(r.policy:state_dict()) do
    T.eq(t:to("float64"):totable(), want[name]:to("float64"):totable(), name)
  end
  for name, t in pairs(r.mental:state_dict()) do T.eq(t:to("float64"):totable(), want[name]:to("float64"):totable()) end
  -- trained to convergence: on its demos it fits better than the cached 500-step clone does on them
  local function nll(net)
    local logits = ag.no_grad(function() return net(r.demos.obs).logits end):to("float64"):totable()
    local a, s = r.demos.actions:to("float64"):totable(), 0
    for i, l in ipairs(logits) do
      local z = 0
      for _, x in ipairs(l) do z = z + math.exp(x) end
      s = s - (l[math.tointeger(a[i]) + 1] - math.log(z)) / #logits
    end
    return s
  end
  local cached_initial = nn.load(data_dir .. "/initial.safetensors")
  T.truthy(nll(r.policy) < nll(cached_initial), ("converged %.3f < cached %.3f"):format(nll(r.policy),
    nll(cached_initial)))
  T.eq(loop.new_run(loop.resolve(with { ["initial.policy"] = "converged", demos = 0 })).demos.obs:size(1), 0)
  T.raises(function() loop.new_run(loop.resolve(with { ["initial.policy"] = "converged", demos = 3 })) end,
    "demos = 3: the cached demonstrations of LunarLander%-v3 are 1 episodes; use 0 or 1")
  T.raises(function() loop.new_run(loop.resolve(with { ["initial.policy"] = "converged", initial = {
    demo_episodes = 7 } })) end, "initial%-converged%-7ep.safetensors; run .*make_policies.lua %-%-converged %-%-episodes 7")
  T.raises(function() loop.resolve(with { initial = { policy = "best" } }) end,
    "'initial.policy' must be one of cached, converged, got best")
end)

T.test("eval.expert: the expert's greedy success on the run's evaluation states", function()
  local r = run { ["eval.expert"] = true, eval_episodes = 4 }
  -- independently: the expert network's argmax, the env reset with the evaluation seeds
  local expert = nn.load(require("mile.paths").data_dir .. "/LunarLander-v3/expert.safetensors")
  local tasks = require "mile.tasks"
  local env = tasks.make_env("LunarLander-v3")
  local wins = 0
  for i = 1, 4 do
    local obs = env:reset { seed = 5000000 + SHORT.seed * 100000 + i }
    local done, t = false, 0
    while not done do
      local l = ag.no_grad(function() return expert(obs:view { 1, -1 }:float()).logits end):view { -1 }:totable()
      local a = 1
      for j = 2, #l do if l[j] > l[a] then a = j end end
      local next_obs, _, term, trunc, info = env:step(a - 1)
      obs = next_obs
      t = t + 1
      if info.success then wins = wins + 1 end
      done = term or trunc or info.success or t >= SHORT.max_episode_steps
    end
  end
  T.near(r.expert.success, wins / 4, 1e-12)
  T.eq(run({}).expert, nil, "off by default")
end)

T.run()
