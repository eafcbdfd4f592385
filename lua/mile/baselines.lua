--- mile.baselines: how each method trains on the same protocol and budget.
--
-- Every method gets the initial demonstrations and, each round, the same number of
-- minibatch steps: epochs * ceil((demos + dataset rows) / batch_size). A method is a
-- table {name, uses_mental, train(run, round) -> {steps, loss, j1, j2}} and, for
-- methods with a mental model, intervention_model(run, obs [, rows]) (the learner's
-- model, differentiable; rows, the dataset rows of obs, feed per-row costs and
-- temporal models). Add one with baselines.register(method); RL-based baselines
-- (RLIF, PVP) fit the same table.
--   bc         the initial demonstrations only (the floor)
--   hg_dagger  Kelly et al. 2019: demonstrations + the steps where the human was in
--              control, labelled with the human's action; behaviour cloning
--   iwr        Mandlekar et al. 2020: every step, robot steps labelled with the robot's
--              action; intervention samples (and demonstrations) and robot samples are
--              drawn half and half (weight (N - N_int) / N_int against 1)
--   mile       policy + mental model trained jointly through the intervention model
--              (loss.variant, loss.lambda); demonstrations add (1 - lambda) * NLL
local T = require "mile.tensor"
local I = require "mile.intervention"
local policy = require "mile.policy"
local schedules = require "mile.schedules"
local temporal = require "mile.temporal"

local M = {}
local methods, order = {}, {}

function M.register(method)
  assert(type(method.name) == "string" and type(method.train) == "function", "baselines.register: name and train")
  if not methods[method.name] then order[#order + 1] = method.name end
  methods[method.name] = method
end

function M.get(name)
  return methods[name] or error(("baselines: unknown method %q (known: %s)"):format(tostring(name),
    table.concat(order, ", ")), 2)
end

function M.names()
  local out = {}
  for i, n in ipairs(order) do out[i] = n end
  return out
end

-- ---- shared pieces ---------------------------------------------------------------------

-- Training steps of a round, the same for every method.
local function budget(run)
  local n = run.demos.obs:size(1) + run.dataset:size()
  return run.cfg.epochs * math.ceil(n / run.cfg.batch_size)
end
M.budget = budget

-- b indices drawn uniformly (with replacement) from the Lua list `pool`, or from 1..n.
local function draw(gen, b, n, pool)
  local idx = {}
  for i = 1, b do
    local k = gen:integer(n)
    idx[i] = pool and pool[k] or k
  end
  return idx
end

local function step(opts, loss)
  for _, o in ipairs(opts) do o:zero_grad() end
  loss:backward()
  for _, o in ipairs(opts) do o:step() end
end

-- Behaviour cloning on (obs [N,n], actions [N] or [N,D]) with classes drawn by
-- `pick(gen)` -> rows: the common loop of bc, hg_dagger and iwr.
local function clone_steps(run, steps, sample)
  local gen, last = run.gens.train, nil
  for _ = 1, steps do
    local obs, actions = sample(gen)
    last = policy.nll(run.policy, obs, actions)
    step({ run.opt_policy }, last)
  end
  return { steps = steps, loss = last and last:item() }
end

-- demos and dataset rows side by side: obs, labels (human action column) and nu.
local function columns(run)
  local cols = run.dataset:size() > 0 and run.dataset:tensors() or nil
  return run.demos, cols
end

-- ---- the methods -----------------------------------------------------------------------

M.register {
  name = "bc",
  train = function(run)
    local d = run.demos
    local n, b = d.obs:size(1), run.cfg.batch_size
    return clone_steps(run, budget(run), function(gen)
      local idx = draw(gen, b, n)
      return d.obs:index_select(1, idx), d.actions:index_select(1, idx)
    end)
  end,
}

M.register {
  name = "hg_dagger",
  train = function(run)
    local d, cols = columns(run)
    local obs, labels = d.obs, d.actions
    if cols then
      local rows = {}
      local nu = cols.nu:totable()
      for i, v in ipairs(nu) do if v == 1 then rows[#rows + 1] = i end end
      if #rows > 0 then
        obs = T.cat { d.obs, cols.obs:index_select(1, rows) }
        labels = T.cat { d.actions, cols.human_action:index_select(1, rows) }
      end
    end
    local n, b = obs:size(1), run.cfg.batch_size
    return clone_steps(run, budget(run), function(gen)
      local idx = draw(gen, b, n)
      return obs:index_select(1, idx), labels:index_select(1, idx)
    end)
  end,
}

M.register {
  name = "iwr",
  train = function(run)
    local d, cols = columns(run)
    -- intervention class: demonstrations + nu = 1 rows; robot class: nu = 0 rows
    local obs, labels = d.obs, d.actions
    local nd = d.obs:size(1)
    local human_rows, robot_rows = {}, {}
    for i = 1, nd do human_rows[i] = i end
    if cols then
      obs = T.cat { d.obs, cols.obs }
      labels = T.cat { d.actions, cols.human_action } -- holds the robot action where nu = 0
      for i, v in ipairs(cols.nu:totable()) do
        if v == 1 then human_rows[#human_rows + 1] = nd + i else robot_rows[#robot_rows + 1] = nd + i end
      end
    end
    local b = run.cfg.batch_size
    return clone_steps(run, budget(run), function(gen)
      local idx = {}
      for i = 1, b do
        local pool = (#robot_rows == 0 or (#human_rows > 0 and gen:uniform() < 0.5)) and human_rows or robot_rows
        idx[i] = pool[gen:integer(#pool)]
      end
      return obs:index_select(1, idx), labels:index_select(1, idx)
    end)
  end,
}

-- The learner's intervention model at obs: policy as pi_h, mental model as pihat.
-- rows (optional): the dataset rows of obs (a Lua list), needed by per-row costs
-- (run.learner_cost a tensor [N] or a function, mile.schedules) and by temporal
-- models (run.temporal, mile.temporal: the memory comes from each row's episode).
local function learner_model(run, obs, rows)
  local cfg = run.cfg
  if run.temporal and rows then return temporal.rows_model(run, rows) end
  local cost, scale = schedules.cost_at(run.learner_cost or cfg["learner.cost"], rows, obs), cfg["learner.scale"]
  local ph, pm = policy.params(run.policy, obs), policy.params(run.mental, obs)
  if ph.logits then
    return I.discrete { policy_logits = ph.logits, mental_logits = pm.logits, cost = cost, scale = scale }
  end
  return I.gaussian { mu = ph.mu, log_sd = ph.log_sd, mental_mu = pm.mu, mental_log_sd = pm.log_sd,
    cost = cost, scale = scale }
end

M.register {
  name = "mile",
  uses_mental = true,
  intervention_model = learner_model,
  train = function(run)
    local cfg, d = run.cfg, run.demos
    local _, cols = columns(run)
    local lambda, b = cfg["loss.lambda"], cfg.batch_size
    local n, nd = cols and cols.obs:size(1) or 0, d.obs:size(1)
    local steps = budget(run)
    local sums = { loss = 0, j1 = 0, j2 = 0 }
    local opts = { run.opt_policy, run.opt_mental, run.opt_temporal } -- opt_temporal: temporal learners only
    local frozen = cfg["learner.mental"] == "frozen" -- ablation: pihat stays the warm start (initial BC policy)
    if frozen then opts = { run.opt_policy, run.opt_temporal } end
    for _ = 1, steps do
      local gen = run.gens.train
      local loss
      local j1, j2 = 0, 0
      if n > 0 then
        local model, nu, ah
        if run.temporal then -- episode segments, trained through time (mile.temporal)
          model, nu, ah = temporal.train_batch(run, gen, b)
        else
          local idx = draw(gen, b, n)
          model = learner_model(run, cols.obs:index_select(1, idx), idx)
          nu, ah = cols.nu:index_select(1, idx), cols.human_action:index_select(1, idx)
        end
        local out = I.loss { model = model, variant = cfg["loss.variant"], nu = nu, human_action = ah, lambda = lambda }
        loss, j1, j2 = out.loss, out.j1:item(), out.j2:item()
      end
      local di = draw(gen, b, nd)
      local bc = policy.nll(run.policy, d.obs:index_select(1, di), d.actions:index_select(1, di)) * (1 - lambda)
      loss = loss and loss + bc or bc
      step(opts, loss)
      if frozen then run.opt_mental:zero_grad() end -- its gradients are never used
      sums.loss, sums.j1, sums.j2 = sums.loss + loss:item(), sums.j1 + j1, sums.j2 + j2
    end
    local k = math.max(steps, 1)
    return { steps = steps, loss = sums.loss / k, j1 = sums.j1 / k, j2 = sums.j2 / k }
  end,
}

return M
