--- mile.schedules: intervention-cost schedules, registered by name (config key
--- `learner.schedule`; built-ins: mile.schedules.constant, linear, exponential,
--- adaptive, target).
--
--   local schedules = require "mile.schedules"
--   local s = schedules.new("linear", cfg, run)
--   run.learner_cost = s:learner_cost(round, stats) -- number | [N] tensor | function
--
-- A schedule registers a table with name, doc, schema (the config keys it reads; the
-- shared ones are in schedules.keys) and any of these functions; the ones it leaves
-- out get the defaults in brackets (docs/extending.md has a worked example):
--
--   init(cfg, run) -> self              its state, a table [{}]
--   cost(self, round, stats) -> c       the learner's cost for this round [cfg learner.cost]:
--                                       a number, a tensor [N] with one cost per dataset
--                                       row, or a function(rows, obs) -> number | [B] tensor
--   human_cost(self, round, stats) -> c the simulated human's cost for this round, or nil
--                                       to leave it as it is [nil]
--   update(self, stats)                 after the round's collection, before training [no-op]
--   step(self, info) -> c | nil         after every collection step; a number becomes the
--                                       human's cost from the next step on [absent: not called]
--   state(self) -> table, load(self, t) what a resumed run needs [self's plain fields]
--
-- The loop asks cost and human_cost at the start of each round (stats: the previous
-- round's, nil in the first round of a process) and asks cost again after update
-- (stats: this round's) for training. stats holds round, rows = {first, last} (the
-- round's dataset rows), steps, interventions, rate (observed), predicted (the
-- learner's rate on the round's states, computed before training, NaN for methods
-- without a mental model), p_mean (the simulated human's mean p), learner_cost and
-- human_cost (means over the round), predicted_at(c) (the learner's predicted rate on
-- the round's states with cost c) and run.
local T = require "mile.tensor"
local registry = require "mile.registry"

local M = registry.new { kind = "schedule", key = "learner.schedule",
  builtins = { "mile.schedules.constant", "mile.schedules.linear", "mile.schedules.exponential",
    "mile.schedules.adaptive", "mile.schedules.target" } }

--- Config keys shared by several schedules (declare them in a schedule's schema as
--- `["schedule.start"] = schedules.keys.start`; a key is declared alike by all).
M.keys = {
  start = { type = "number", default = nil, doc = "schedules: first cost (default: the side's cost)" },
  ["end"] = { type = "number", default = nil, doc = "linear/exponential: last cost (default 0)" },
  rate = { type = "number", default = nil, doc = "exponential: decay per round; target (per step): step size" },
  gain = { type = "number", default = nil, doc = "adaptive, target: feedback gain" },
  side = { type = "string", default = nil, choices = { "learner", "human", "both" },
    doc = "whose cost a schedule sets (linear, exponential, target)" },
}

--- on_side(name, at [, fields]) -> init, cost, human_cost: the functions of a schedule
--- whose cost follows a curve at(self, r) over rounds, from schedule.start (default: the
--- side's configured cost) towards schedule.end (default 0), applied to schedule.side:
--- "learner" (default) the learner's cost; "human" the simulated human's only (the
--- learner keeps learner.cost); "both" the human's, and the learner models each dataset
--- row with the cost of the round that collected it. fields(self, cfg) adds the curve's
--- own parameters to the state.
function M.on_side(name, at, fields)
  local function init(cfg, run)
    local side = cfg["schedule.side"] or "learner"
    assert(side == "learner" or side == "human" or side == "both",
      name .. ": schedule.side must be learner, human or both, got " .. tostring(side))
    local base = side == "learner" and cfg["learner.cost"] or cfg["human.cost"]
    local self = { side = side, start = cfg["schedule.start"] or base, stop = cfg["schedule.end"] or 0, run = run }
    if fields then fields(self, cfg) end
    return self
  end
  local function cost(self, round)
    if self.side == "learner" then return at(self, round) end
    if self.side == "both" then return M.by_round(self.run, function(r) return at(self, r) end) end
    return nil -- "human": the learner keeps learner.cost
  end
  local function human_cost(self, round)
    if self.side ~= "learner" then return at(self, round) end
  end
  return init, cost, human_cost
end

-- plain values of a table (numbers, strings, booleans, nested plain tables), for state
local function plain(t, depth)
  if depth > 8 then return nil end
  local out = {}
  for k, v in pairs(t) do
    local tv = type(v)
    if (type(k) == "string" or math.type(k) == "integer") then
      if tv == "number" or tv == "string" or tv == "boolean" then out[k] = v
      elseif tv == "table" and getmetatable(v) == nil then out[k] = plain(v, depth + 1) end
    end
  end
  return out
end

local Schedule = {}
Schedule.__index = Schedule

--- new(name, cfg [, run]) -> a schedule object with methods learner_cost(round, stats),
--- human_cost(round, stats), update(stats), step(info), state(), load(t) and field
--- `has_step`.
function M.new(name, cfg, run)
  local mod = M.get(name)
  local self = mod.init and mod.init(cfg, run) or {}
  if type(self) ~= "table" then error(("schedules: %s.init must return a table"):format(name), 2) end
  return setmetatable({ name = name, mod = mod, self = self, cfg = cfg, has_step = mod.step ~= nil }, Schedule)
end

function Schedule:learner_cost(round, stats)
  if not self.mod.cost then return self.cfg["learner.cost"] end
  local c = self.mod.cost(self.self, round, stats)
  if c == nil then return self.cfg["learner.cost"] end
  return c
end

function Schedule:human_cost(round, stats)
  if self.mod.human_cost then return self.mod.human_cost(self.self, round, stats) end
end

function Schedule:update(stats)
  if self.mod.update then self.mod.update(self.self, stats) end
end

function Schedule:step(info)
  return self.mod.step(self.self, info)
end

function Schedule:state()
  if self.mod.state then return self.mod.state(self.self) end
  return plain(self.self, 0)
end

function Schedule:load(t)
  if t == nil then return end
  if self.mod.load then return self.mod.load(self.self, t) end
  for k, v in pairs(t) do self.self[k] = v end
end

-- ---- helpers for schedules and learners ------------------------------------------------------

--- cost_at(c, rows, obs [, dtype]) -> the learner's cost for a batch: a number, or a [B]
--- tensor. c is a number, a tensor [N] over dataset rows (picked at `rows`, a Lua list
--- of 1-based row indices) or a function(rows, obs) -> number | [B] tensor.
function M.cost_at(c, rows, obs, dtype)
  dtype = dtype or (obs and obs:dtype()) or "float32"
  local per_row = true
  if type(c) == "function" then c, per_row = c(rows, obs), false end
  if type(c) == "number" or c == nil then return c end
  if not T.is_tensor(c) then error("schedules: a cost must be a number, a tensor or a function, got " .. type(c), 2) end
  if c:dtype() ~= dtype then c = c:to(dtype) end
  if c:numel() == 1 then return c:reshape { 1 } end
  if not per_row then return c end
  if not rows then error("schedules: a per-row learner cost needs the dataset rows of the batch", 2) end
  return c:index_select(1, rows)
end

--- round_of(run, row) -> the round that collected dataset row `row` (from the episode
--- column and episodes_per_round; cached on the run, extended as the dataset grows).
function M.round_of(run, row)
  local cache = rawget(run, "_row_rounds")
  if not cache or #cache > run.dataset:size() then cache = {}; rawset(run, "_row_rounds", cache) end
  if row > #cache then
    local n = run.dataset:size()
    local ep = run.dataset:column("episode", "float64"):narrow(1, #cache + 1, n - #cache):totable()
    local k = run.cfg.episodes_per_round
    for i, e in ipairs(ep) do cache[#cache + 1] = math.floor(e / k) + 1 end
  end
  return cache[row]
end

--- by_round(run, cost_of_round) -> function(rows, obs) -> [B] tensor: each row gets
--- cost_of_round(r) (a function, or a list indexed by round) for the round r that
--- collected it. A learner cost for schedules whose human cost changes by round.
function M.by_round(run, cost_of_round)
  local f = cost_of_round
  if type(f) == "table" then
    local list = f
    f = function(r) return list[r] or list[#list] end
  end
  return function(rows, obs)
    local out = {}
    for i, row in ipairs(rows) do out[i] = f(M.round_of(run, row)) end
    return T.from(out, obs and obs:dtype() or "float32")
  end
end

--- solve(f, target, lo, hi) -> x in [lo, hi] with f(x) ~ target for a decreasing f
--- (bisection, 40 steps; the bound when target is out of range).
function M.solve(f, target, lo, hi)
  if f(lo) <= target then return lo end
  if f(hi) >= target then return hi end
  for _ = 1, 40 do
    local mid = 0.5 * (lo + hi)
    if f(mid) > target then lo = mid else hi = mid end
  end
  return 0.5 * (lo + hi)
end

--- Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9
--- after one Newton step), for probit-space updates.
function M.probit(p)
  if p <= 0 then return -math.huge elseif p >= 1 then return math.huge end
  local a = { -3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
    -3.066479806614716e+01, 2.506628277459239e+00 }
  local b = { -5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
    -1.328068155288572e+01 }
  local c = { -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
    4.374664141464968e+00, 2.938163982698783e+00 }
  local d = { 7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00 }
  local x
  if p < 0.02425 then
    local q = math.sqrt(-2 * math.log(p))
    x = (((((c[1] * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) * q + c[6]) /
      ((((d[1] * q + d[2]) * q + d[3]) * q + d[4]) * q + 1)
  elseif p > 1 - 0.02425 then
    local q = math.sqrt(-2 * math.log(1 - p))
    x = -(((((c[1] * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) * q + c[6]) /
      ((((d[1] * q + d[2]) * q + d[3]) * q + d[4]) * q + 1)
  else
    local q = p - 0.5
    local r = q * q
    x = (((((a[1] * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * r + a[6]) * q /
      (((((b[1] * r + b[2]) * r + b[3]) * r + b[4]) * r + b[5]) * r + 1)
  end
  return x
end

return M
