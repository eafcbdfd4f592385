--- probit: the intervention model of MILE (DESIGN.md section 1), the built-in default.
--
--   q(a, s) = Phi((Delta(a, s) - c) / sigma),   p(s) = E_{a~pi_h} q(a, s)
--
-- with the fused kernels of mile.intervention: I.discrete for Categorical policies,
-- I.gaussian (quadrature) for diagonal Gaussian ones.
local I = require "mile.intervention"
local models = require "mile.models"

return models.register {
  name = "probit",
  doc = "MILE's probit model: q(a) = Phi((Delta(a) - c) / sigma), fused discrete and Gaussian kernels",
  build = function()
    return function(args)
      local ph, pm = args.policy, args.mental
      if ph.logits then
        return I.discrete { policy_logits = ph.logits, mental_logits = pm.logits, cost = args.cost, scale = args.scale }
      end
      return I.gaussian { mu = ph.mu, log_sd = ph.log_sd, mental_mu = pm.mu, mental_log_sd = pm.log_sd,
        cost = args.cost, scale = args.scale }
    end
  end,
}
