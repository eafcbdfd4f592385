--- mile.models: intervention models by name, for the experiment layer (config keys
--- `learner.model`, `human.model`; docs/extending.md).
--
--   local models = require "mile.models"
--   models.register { name = "logistic", doc = "...", schema = {...},
--                     build = function(ctx) return function(args) ... end end }
--
-- build(ctx) (ctx = {cfg = resolved config, role = "learner" | "human", task = mile.tasks
-- entry}) returns the model: a function(args) of
--
--   args.policy, args.mental   pi_h's and pihat's parameters as mile.policy.params gives
--                              them: {logits = [B, A]} or {mu = [B, D], log_sd = [B, D]}
--   args.cost                  a number or a [B] tensor (schedules, memory models)
--   args.scale                 a number
--
-- that returns a result with logp, log1mp [B] and methods log_pi_at(a, nu), logq(a, nu)
-- (what mile.intervention's loss needs) and, for discrete policies, log_pi and log_q
-- [B, A] (what the simulated human samples its action from). One model is at once the
-- learner's (trained through the loss), the simulated human's and the one
-- mile.calibration scores.
local registry = require "mile.registry"

return registry.new { kind = "intervention model", key = "learner.model / human.model",
  builtins = { "mile.models.probit" },
  check = function(e) return type(e.build) == "function", "needs build(ctx) -> model" end }
