--- mile.temporal: memory models, intervention models with memory (MILE's open
--- question 1), registered by name (config keys `learner.memory`, `human.memory`).
--
-- The memoryless model of DESIGN.md section 1 decides at step t from s_t alone:
-- q_t(a) = Phi((Delta_t(a) - c) / sigma). A memory model adds a memory term m_t that
-- depends only on the episode's earlier steps:
--
--     q_t(a) = Phi((Delta_t(a) + m_t - c) / sigma),   p_t = E_{a~pi_h} q_t(a),
--
-- so it is the run's intervention model (learner.model, human.model: probit or a
-- plugin) with the per-sample cost c - m_t: discrete and Gaussian policies, the three
-- loss variants and the exact gradients all carry over, and gradients flow through m_t
-- into the policy, the mental model and the memory's own parameters. m_t is computed
-- from per-step features of steps 1..t-1 of the same episode (features()):
--
--     dbar_j = E_{a~pi_h} Delta_j(a)                  the expected value gap at s_j
--     gap_j  = E_{a~pi_h} ln pi_h(a) - ln pi_h(a^r_j)  how much worse the robot's action was
--     nu_j                                             whether the human intervened
--
-- A memory model registers itself (docs/extending.md; the built-ins are
-- mile.temporal.history, .accumulator, .gru):
--
--   temporal.register { name =, doc =, schema = {config keys it owns},
--                       new = function(opts) -> memory }   -- opts: role ("learner" | "human"), cfg, task
--
-- and the memory is an nn module (its parameters train with the policy) with
--
--   memory(seq) -> m [S, T]      seq = {dbar=, gap=, nu=, valid= ([S, T] each), cost= (number
--                                or [S, T])}; m[:, t] may use positions < t only; valid = 0
--                                marks padding before an episode's first step
--   init_state() -> state        online form, for the simulated human (one step at a time)
--   shift(state) -> m_t          (a number)
--   advance(state, f) -> state   f = {dbar=, gap=, nu=, cost=} of the step just taken
--
-- Learners train through time on minibatches of episode segments: `temporal.segment`
-- loss steps after `temporal.context` steps of history (both inside one episode).
local T = require "mile.tensor"
local policy = require "mile.policy"
local schedules = require "mile.schedules"

local registry = require "mile.registry"

local M = registry.new { kind = "memory model", key = "learner.memory / human.memory",
  builtins = { "mile.temporal.history", "mile.temporal.accumulator", "mile.temporal.gru" },
  check = function(e) return type(e.new) == "function", "needs new(opts) -> memory" end,
  -- the keys of every temporal learner, whatever its memory
  schema = {
    ["temporal.segment"] = { type = "integer", default = 16, check = function(v) return v >= 1, "must be >= 1" end,
      doc = "temporal learners: loss steps per episode segment" },
    ["temporal.context"] = { type = "integer", default = 16, check = function(v) return v >= 0, "must be >= 0" end,
      doc = "temporal learners: history steps before each segment" },
    ["temporal.lr"] = { type = "number", default = 1e-2, check = function(v) return v > 0, "must be > 0" end,
      doc = "temporal learners: Adam step size of the memory's parameters" },
  },
}

--- new(name, opts) -> a memory (opts: role, cfg, task).
function M.new(name, opts)
  return M.get(name).new(opts)
end

--- features(ph, pm, robot_action) -> dbar [B], gap [B] from the parameters of pi_h (ph)
--- and pihat (pm) as policy.params returns them, and the robot's actions ([B] action
--- values, or [B, D]). Differentiable.
function M.features(ph, pm, robot_action)
  if ph.logits then
    local lp = ph.logits:log_softmax(2)
    local e = (lp:exp() * lp):sum(2)                                  -- E_pi_h ln pi_h
    local dbar = e - (pm.logits:softmax(2) * lp):sum(2)
    local a = robot_action
    if a:dtype() ~= lp:dtype() then a = a:to(lp:dtype()) end
    local gap = e - lp:gather(2, (a + 1):view { -1, 1 }):view { -1 }
    return dbar, gap
  end
  local D = ph.mu:size(2)
  local diff = pm.mu - ph.mu
  local K = ((diff * diff) * (ph.log_sd * -2):exp() + ((pm.log_sd - ph.log_sd) * 2):exp()):sum(2) * 0.5
  local a = robot_action
  if a:dtype() ~= ph.mu:dtype() then a = a:to(ph.mu:dtype()) end
  local z = (a - ph.mu) * (-ph.log_sd):exp()
  return K - 0.5 * D, (z * z):sum(2) * 0.5 - 0.5 * D
end

--- step_features(e, m, robot_action) -> dbar, gap as numbers, for one step (the
--- simulated human): e, m the parameters of pi_E and pihat at one observation.
function M.step_features(e, m, robot_action)
  local a
  if e.logits then
    a = T.from({ robot_action }, e.logits:dtype())
  else
    a = robot_action:view { 1, -1 }:to(e.mu:dtype())
  end
  local dbar, gap = M.features(e, m, a)
  return dbar:item(), gap:item()
end

-- ---- episode windows over a dataset --------------------------------------------------------------

--- episode_start(run, row) -> the first dataset row of row's episode (cached on the
--- run, extended as the dataset grows).
function M.episode_start(run, row)
  local c = rawget(run, "_episode_start")
  local n = run.dataset:size()
  if not c or #c.start > n then c = { start = {}, episode = {} }; rawset(run, "_episode_start", c) end
  local start, episode = c.start, c.episode
  if row > #start then
    local from = #start + 1
    local ep = run.dataset:column("episode", "float64"):narrow(1, from, n - from + 1):totable()
    for k, e in ipairs(ep) do
      local i = from + k - 1
      if i > 1 and episode[i - 1] == e then start[i] = start[i - 1] else start[i] = i end
      episode[i] = e
    end
  end
  return start[row]
end

--- windows(run, anchors, length) -> rows (Lua list of S * length dataset rows), valid
--- ([S, length] float32, 0 for padding), first (Lua list: the first valid position of
--- each window). Window s holds the `length` rows ending at anchors[s], cut at its
--- episode's start (padding repeats the episode's first row).
function M.windows(run, anchors, length)
  local rows, valid, first = {}, {}, {}
  for s, anchor in ipairs(anchors) do
    local start = M.episode_start(run, anchor)
    local v = {}
    for p = 1, length do
      local r = anchor - length + p
      if r >= start then rows[#rows + 1], v[p] = r, 1 else rows[#rows + 1], v[p] = start, 0 end
    end
    valid[s] = v
    first[s] = math.max(1, length - (anchor - start))
  end
  return rows, T.from(valid), first
end

-- The dataset columns a sequence model reads, cached per dataset size.
local function columns(run)
  local c = rawget(run, "_temporal_cols")
  local n = run.dataset:size()
  if not c or c.n ~= n then
    local t = run.dataset:tensors()
    c = { n = n, obs = t.obs, robot_action = t.robot_action, nu = t.nu, human_action = t.human_action }
    rawset(run, "_temporal_cols", c)
  end
  return c
end
M.columns = columns

-- policy parameters at the positions `pick`
local function at_params(params, pick)
  local out = {}
  for k, t in pairs(params) do out[k] = t:index_select(1, pick) end
  return out
end

--- sequence_model(run, rows, valid, pick) -> the learner's intervention model (the
--- result of run.intervention, the learner's model of mile.models) at the flat window positions `pick` (Lua list of
--- 1-based positions into rows), with memory from the whole windows.
function M.sequence_model(run, rows, valid, pick)
  local cfg, cols = run.cfg, columns(run)
  local S, L = valid:size(1), valid:size(2)
  local obs = cols.obs:index_select(1, rows)
  local ph, pm = policy.params(run.policy, obs), policy.params(run.mental, obs)
  local dbar, gap = M.features(ph, pm, cols.robot_action:index_select(1, rows))
  local c = schedules.cost_at(run.learner_cost or cfg["learner.cost"], rows, obs)
  local cseq = c
  if T.is_tensor(c) then cseq = c:numel() == 1 and c:item() or c:view { S, L } end
  local m = run.temporal:memory { dbar = dbar:view { S, L }, gap = gap:view { S, L },
    nu = cols.nu:index_select(1, rows):view { S, L }, valid = valid, cost = cseq }
  local cost = (-m + cseq):view { -1 }:index_select(1, pick)
  return run.intervention { policy = at_params(ph, pick), mental = at_params(pm, pick), cost = cost,
    scale = cfg["learner.scale"] }
end

--- train_batch(run, gen, b) -> model, nu, human_action: a training minibatch of about
--- b loss steps as ceil(b / temporal.segment) episode segments of temporal.segment
--- steps, each after temporal.context steps of history; segment ends drawn uniformly
--- over the dataset's rows.
function M.train_batch(run, gen, b)
  local cfg, cols = run.cfg, columns(run)
  local seg, ctx = cfg["temporal.segment"], cfg["temporal.context"]
  local n, L = run.dataset:size(), seg + ctx
  local anchors = {}
  for s = 1, math.max(1, math.ceil(b / seg)) do anchors[s] = gen:integer(n) end
  local rows, valid, first = M.windows(run, anchors, L)
  local pick, picked = {}, {}
  for s = 1, #anchors do
    for p = math.max(ctx + 1, first[s]), L do
      local k = (s - 1) * L + p
      pick[#pick + 1], picked[#picked + 1] = k, rows[k]
    end
  end
  local model = M.sequence_model(run, rows, valid, pick)
  return model, cols.nu:index_select(1, picked), cols.human_action:index_select(1, picked)
end

--- rows_model(run, rows [, budget]) -> the learner's model at dataset rows (a Lua list),
--- each with its episode's full history: runs of consecutive rows of one episode share
--- a window. When the windows would exceed `budget` positions (default 2^20), history
--- is cut to fit (at least temporal.context steps).
function M.rows_model(run, rows, budget)
  budget = budget or 1048576
  local groups = {}
  for _, r in ipairs(rows) do
    local g = groups[#groups]
    if g and r == g.last + 1 and M.episode_start(run, r) == g.start then
      g.last, g.n = r, g.n + 1
    else
      groups[#groups + 1] = { first = r, last = r, n = 1, start = M.episode_start(run, r) }
    end
  end
  local full, longest = 0, 0
  for _, g in ipairs(groups) do full, longest = math.max(full, g.last - g.start + 1), math.max(longest, g.n) end
  local L = math.min(full, math.max(math.floor(budget / #groups), run.cfg["temporal.context"] + longest))
  local anchors = {}
  for i, g in ipairs(groups) do anchors[i] = g.last end
  local wrows, valid = M.windows(run, anchors, L)
  local pick = {}
  for i, g in ipairs(groups) do
    for p = L - g.n + 1, L do pick[#pick + 1] = (i - 1) * L + p end
  end
  return M.sequence_model(run, wrows, valid, pick)
end

return M
