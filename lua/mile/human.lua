--- mile.human: the simulated human of the MILE protocol (DESIGN.md section 1).
--
-- Any object with `decide(obs, robot_action) -> nu, human_action, info` can watch a
-- rollout: this simulated expert, a person at the keyboard, or a temporal variant.
--
--   local h = human.Simulated{expert = fn, mental = fn, cost = 3, scale = 1,
--                             discrete = true, generator = T.Generator(1)
--                             [, model = an intervention model of mile.models]}
--   local nu, a_h, info = h:decide(obs, robot_action)   -- info.p: P(intervene | s)
--
-- expert(obs [1,n]) and mental(obs [1,n]) return the parameters of pi_E (the
-- human's policy) and pihat (what the human believes the robot does): {logits=[1,A]}
-- for discrete tasks, {mu=[1,D], log_sd=[1,D]} for continuous ones. The human
-- intervenes with probability p(s) = E_{a~pi_E} Phi((Delta(a) - c) / sigma) and then
-- acts from p(a | nu = 1, s) ~ pi_E(a) q(a, s): exactly (discrete), or by rejection
-- from pi_E with acceptance q (continuous).
--
-- Humans with memory: `memory` (a memory model of mile.temporal, e.g. the accumulator of
-- mile.temporal.accumulator) adds m_t, computed from the episode's earlier
-- steps, to the value gap: q_t(a) = Phi((Delta_t(a) + m_t - c) / sigma). The loop calls
-- `reset()` at the start of every episode (a memoryless human ignores it). `cost` may
-- be changed between steps (cost schedules).
local T = require "mile.tensor"
local ag = require "mile.autograd"
local models = require "mile.models"

local M = {}

local function temporal() return require "mile.temporal" end

local Simulated = {}
Simulated.__index = Simulated
M.Simulated = Simulated

--- Simulated{expert=, mental=, cost=, scale=, discrete=, generator=, max_tries=10000, memory=, model=,
---           rule = "sample" | "argmax", shrink = false, hold = 0, hold_until = "agree"}
--- rule "argmax" (discrete; the public MILE code's human): deterministic, the argmax over
--- [pi_E(a) p(s) for each a, 1 - p(s)], taking over only when that is an action other
--- than the robot's. shrink (continuous; the public code's human): the intervention
--- action is drawn from N(p mu_E, (p sd_E)^2) instead of p(a | nu = 1, s).
--- hold = k > 1: contiguous takeovers, as people take over for segments rather than
--- single steps. Once the human takes over it keeps control for up to k steps in all
--- (nu = 1 at each, acting from pi_E: its mode under rule "argmax", a draw otherwise);
--- hold_until = "agree" hands control back earlier, at the first held step where the
--- robot's own action is one the expert would take (robot_wrong false: the gap has
--- closed); "steps" holds all k. The decision to take over is the model's; the held
--- steps are not (info.held marks them).
function M.Simulated(opts)
  for _, k in ipairs { "expert", "mental", "cost", "scale", "generator" } do
    if opts[k] == nil then error("human.Simulated: missing " .. k, 2) end
  end
  local self = setmetatable({ expert = opts.expert, mental = opts.mental, cost = opts.cost, scale = opts.scale,
    discrete = opts.discrete ~= false, gen = opts.generator, max_tries = opts.max_tries or 10000,
    memory = opts.memory, intervention = opts.model or models.get("probit").build { role = "human" },
    rule = opts.rule or "sample", shrink = opts.shrink or false, hold = opts.hold or 0,
    hold_until = opts.hold_until or "agree", held = 0 }, Simulated)
  if self.rule ~= "sample" and self.rule ~= "argmax" then error("human.Simulated: rule must be sample or argmax", 2) end
  if self.rule == "argmax" and not self.discrete then error("human.Simulated: rule argmax needs discrete actions", 2) end
  if math.type(self.hold) ~= "integer" or self.hold < 0 then
    error("human.Simulated: hold must be an integer >= 0, got " .. tostring(self.hold), 2)
  end
  if self.hold_until ~= "agree" and self.hold_until ~= "steps" then
    error("human.Simulated: hold_until must be agree or steps, got " .. tostring(self.hold_until), 2)
  end
  self:reset()
  return self
end

--- Start of an episode: forget the memory (no-op for a memoryless human) and end a
--- takeover in progress.
function Simulated:reset()
  if self.memory then self.memory_state = self.memory:init_state() end
  self.held = 0
end

--- The intervention model of this human at a batch of observations [B, n], with cost
--- `cost` (default: the human's; a number or a [B] tensor).
function Simulated:model(obs, cost, e, m)
  e, m = e or self.expert(obs), m or self.mental(obs)
  return self.intervention { policy = e, mental = m, cost = cost or self.cost, scale = self.scale }
end

--- p(s) for one observation (1-d tensor).
function Simulated:probability(obs)
  return ag.no_grad(function() return self:model(obs:view { 1, -1 }:float()).logp:exp():item() end)
end

-- Whether the robot's action is one the expert would not take: another action than
-- pi_E's mode (discrete), or outside pi_E's central 95% in some dimension (continuous).
local function robot_wrong(e, robot_action)
  if e.logits then
    local _, best = e.logits:view { -1 }:max(1)
    return math.tointeger(best:item()) - 1 ~= robot_action
  end
  local z = ((robot_action:view { 1, -1 }:to(e.mu:dtype()) - e.mu) * (-e.log_sd):exp()):abs():max():item()
  return z > 1.96
end
M.robot_wrong = robot_wrong

--- labels(obs [B, n]) -> what this human would do at each state: pi_E's mode ([B]
--- action values, discrete; [B, D] means, continuous). The public code's MILE loss
--- trains on these at every step.
function Simulated:labels(obs)
  return ag.no_grad(function()
    local e = self.expert(obs)
    if e.logits then
      local _, idx = e.logits:max(2)
      return idx:view { -1 }:to(e.logits:dtype()) - 1
    end
    return e.mu
  end)
end

-- A draw from the expert's Gaussian pi_E (continuous tasks).
local function draw_expert(self, e)
  return e.mu + e.log_sd:exp() * T.randn(e.mu:shape(), self.gen, e.mu:dtype())
end

-- A held step's action: pi_E's mode (rule argmax) or a draw from pi_E (shrunk by p with
-- shrink, as the takeover's first action).
local function held_action(self, e, p)
  if e.logits then
    if self.rule == "argmax" then
      local _, best = e.logits:view { -1 }:max(1)
      return math.tointeger(best:item()) - 1
    end
    return math.tointeger(self.gen:categorical(e.logits:softmax(2))[1])
  end
  local a = draw_expert(self, e)
  if self.shrink then a = a * p end
  return a:view { -1 }
end

-- The model's decision of DESIGN.md section 1: nu and the action.
local function fresh(self, o, robot_action, e, model, p, info)
  if self.rule == "argmax" then -- deterministic: argmax over [pi_E(a) p, 1 - p]
    local top, best = e.logits:softmax(2):view { -1 }:max(1)
    local a = math.tointeger(best:item()) - 1
    if top:item() * p > 1 - p and a ~= robot_action then return 1, a, info end
    return 0, robot_action, info
  end
  if self.gen:uniform() >= p then return 0, robot_action, info end
  if self.discrete then
    -- p(a | nu=1, s) ~ pi_E(a) q(a, s), in log space
    local a = self.gen:categorical((model.log_pi + model.log_q):softmax(2))
    return 1, math.tointeger(a[1]), info
  end
  if self.shrink then -- the public code's continuous human: N(p mu_E, (p sd_E)^2)
    local a = draw_expert(self, e) * p
    return 1, a:view { -1 }, info
  end
  -- rejection from pi_E with acceptance q(a): expected 1/p tries
  local best, best_logq
  for _ = 1, self.max_tries do
    local a = draw_expert(self, e)
    local logq = model:logq(a):item()
    if math.log(self.gen:uniform()) < logq then return 1, a:view { -1 }, info end
    if not best_logq or logq > best_logq then best, best_logq = a, logq end
  end
  info.rejection_exhausted = true
  return 1, best:view { -1 }, info
end

-- One step: a takeover in progress continues (hold), else the model decides (with the
-- memory's shift m in the cost).
local function decide(self, o, robot_action, e, m, shift)
  e = e or self.expert(o)
  local model = self:model(o, shift and self.cost - shift or self.cost, e, m)
  local p = model.logp:exp():item()
  local info = { p = p, robot_wrong = robot_wrong(e, robot_action) }
  if self.held > 0 then -- a takeover in progress
    if self.hold_until == "agree" and not info.robot_wrong then
      self.held = 0
    else
      self.held = self.held - 1
      info.held = true
      return 1, held_action(self, e, p), info
    end
  end
  local nu, a = fresh(self, o, robot_action, e, model, p, info)
  if nu == 1 and self.hold > 1 then self.held = self.hold - 1 end
  return nu, a, info
end

function Simulated:decide(obs, robot_action)
  return ag.no_grad(function()
    local o = obs:view { 1, -1 }:float()
    if not self.memory then return decide(self, o, robot_action) end
    local e, m = self.expert(o), self.mental(o)
    local shift = self.memory:shift(self.memory_state)
    local nu, a, info = decide(self, o, robot_action, e, m, shift)
    local dbar, gap = temporal().step_features(e, m, robot_action)
    self.memory_state = self.memory:advance(self.memory_state, { dbar = dbar, gap = gap, nu = nu, cost = self.cost })
    info.memory = shift
    return nu, a, info
  end)
end

return M
