--- mile.human: the simulated human of the MILE protocol (DESIGN.md section 1).
--
-- Any object with `decide(obs, robot_action) -> nu, human_action, info` can watch a
-- rollout: this simulated expert, a person at the keyboard, or a temporal variant.
--
--   local h = human.Simulated{expert = fn, mental = fn, cost = 3, scale = 1,
--                             discrete = true, generator = T.Generator(1)}
--   local nu, a_h, info = h:decide(obs, robot_action)   -- info.p: P(intervene | s)
--
-- expert(obs [1,n]) and mental(obs [1,n]) return the parameters of pi_E (the
-- human's policy) and pihat (what the human believes the robot does): {logits=[1,A]}
-- for discrete tasks, {mu=[1,D], log_sd=[1,D]} for continuous ones. The human
-- intervenes with probability p(s) = E_{a~pi_E} Phi((Delta(a) - c) / sigma) and then
-- acts from p(a | nu = 1, s) ~ pi_E(a) q(a, s): exactly (discrete), or by rejection
-- from pi_E with acceptance q (continuous).
local T = require "mile.tensor"
local ag = require "mile.autograd"
local I = require "mile.intervention"

local M = {}

local Simulated = {}
Simulated.__index = Simulated
M.Simulated = Simulated

--- Simulated{expert=, mental=, cost=, scale=, discrete=, generator=, max_tries=10000}
function M.Simulated(opts)
  for _, k in ipairs { "expert", "mental", "cost", "scale", "generator" } do
    if opts[k] == nil then error("human.Simulated: missing " .. k, 2) end
  end
  return setmetatable({ expert = opts.expert, mental = opts.mental, cost = opts.cost, scale = opts.scale,
    discrete = opts.discrete ~= false, gen = opts.generator, max_tries = opts.max_tries or 10000 }, Simulated)
end

--- The intervention model of this human at a batch of observations [B, n].
function Simulated:model(obs)
  local e, m = self.expert(obs), self.mental(obs)
  if self.discrete then
    return I.discrete { policy_logits = e.logits, mental_logits = m.logits, cost = self.cost, scale = self.scale }
  end
  return I.gaussian { mu = e.mu, log_sd = e.log_sd, mental_mu = m.mu, mental_log_sd = m.log_sd,
    cost = self.cost, scale = self.scale }
end

--- p(s) for one observation (1-d tensor).
function Simulated:probability(obs)
  return ag.no_grad(function() return self:model(obs:view { 1, -1 }:float()).logp:exp():item() end)
end

function Simulated:decide(obs, robot_action)
  return ag.no_grad(function()
    local o = obs:view { 1, -1 }:float()
    local model = self:model(o)
    local p = model.logp:exp():item()
    if self.gen:uniform() >= p then return 0, robot_action, { p = p } end
    if self.discrete then
      -- p(a | nu=1, s) ~ pi_E(a) q(a, s), in log space
      local a = self.gen:categorical((model.log_pi + model.log_q):softmax(2))
      return 1, math.tointeger(a[1]), { p = p }
    end
    -- rejection from pi_E with acceptance q(a): expected 1/p tries
    local e = self.expert(o)
    local best, best_logq
    for _ = 1, self.max_tries do
      local a = e.mu + e.log_sd:exp() * T.randn(e.mu:shape(), self.gen, e.mu:dtype())
      local logq = model:logq(a):item()
      if math.log(self.gen:uniform()) < logq then return 1, a:view { -1 }, { p = p } end
      if not best_logq or logq > best_logq then best, best_logq = a, logq end
    end
    return 1, best:view { -1 }, { p = p, rejection_exhausted = true }
  end)
end

return M
