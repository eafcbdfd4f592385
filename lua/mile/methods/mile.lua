--- mile: MILE (Korkmaz & Biyik 2025). Policy and mental model trained jointly through
--- the learner's intervention model (loss.variant, loss.lambda); the demonstrations add
--- (1 - lambda) * NLL. With a memory model (learner.memory) the intervention data is
--- drawn as episode segments and trained through time.
---
--- Two variants reproduce the public MILE code (docs/reproduction.md): loss.variant =
--- "public" trains the action term on the human's label at every step (its action
--- where it intervened, pi_E's mode where it did not: mile_disc_loss_fn), and with
--- human.shrink the action term is the likelihood under the shrunk Gaussian
--- N(p mu, (p sd)^2) the public code's continuous human acts from.
local T = require "mile.tensor"
local I = require "mile.intervention"
local methods = require "mile.methods"

local LN_2PI = math.log(2 * math.pi)

-- -ln N(a; p mu, (p sd)^2) per sample [B] (the shrunk Gaussian of human.shrink)
local function shrunk_nll(model, action)
  local logp = model.logp:view { -1, 1 }
  local log_sd = model.log_sd + logp
  local z = (action:to(model.mu:dtype()) - model.mu * logp:exp()) * (-log_sd):exp()
  return ((z * z) * 0.5 + log_sd + 0.5 * LN_2PI):sum(2)
end

-- The round's loss on a minibatch of intervention data: I.loss, or the public code's forms.
local function intervention_loss(ctx, model, nu, ah, obs)
  local cfg = ctx.cfg
  local variant, lambda = cfg["loss.variant"], cfg["loss.lambda"]
  if variant == "public" then
    local labels = T.where(nu:ne(0), ah:to(model.logp:dtype()), ctx:human_labels(obs):to(model.logp:dtype()))
    local j1 = I.loss { model = model, variant = "paper", nu = nu, human_action = ah, lambda = 1 }.j1
    local j2 = -model:log_pi_at(labels):mean()
    return { loss = j1 * lambda + j2 * (1 - lambda), j1 = j1, j2 = j2 }
  end
  if cfg["human.shrink"] and model.kind == "gaussian" then
    local out = I.loss { model = model, variant = "paper", nu = nu, human_action = ah, lambda = 1 }
    local mask = nu:to(model.logp:dtype())
    local n1 = mask:sum():item()
    local j2 = n1 > 0 and (shrunk_nll(model, ah) * mask):sum() / n1 or model.logp:sum() * 0
    return { loss = out.j1 * lambda + j2 * (1 - lambda), j1 = out.j1, j2 = j2 }
  end
  return I.loss { model = model, variant = variant, nu = nu, human_action = ah, lambda = lambda }
end

return methods.register {
  name = "mile",
  doc = "MILE: policy and mental model trained through the intervention model (+ demonstrations)",
  uses_mental = true,
  schema = {
    ["loss.variant"] = { type = "string", default = "paper", choices = { "paper", "joint", "reference", "public" },
      doc = "mile: the loss (mile.intervention.loss; public: the public code's labels on every step)" },
    ["loss.lambda"] = { type = "number", default = 0.5, doc = "mile: weight of J1 (1 - lambda: J2 and the demos)",
      check = function(v) return v >= 0 and v <= 1, "must be in [0, 1]" end },
    ["learner.mental"] = { type = "string", default = "learned", choices = { "learned", "frozen" },
      doc = "mile: train the mental model (learned) or keep the warm start, the initial BC policy (frozen)" },
  },
  train = function(ctx)
    local cfg, d, cols = ctx.cfg, ctx.demos, ctx:columns()
    local lambda = cfg["loss.lambda"]
    local n, nd = cols and cols.obs:size(1) or 0, d.obs:size(1)
    local o = ctx.optimizers
    local frozen = cfg["learner.mental"] == "frozen" -- ablation: pihat stays the warm start
    local opts = frozen and { o.policy, o.memory } or { o.policy, o.mental, o.memory }
    local sums = { loss = 0, j1 = 0, j2 = 0 }
    if n == 0 and nd == 0 then return { steps = 0 } end -- nothing to learn from yet
    -- one update from a batch of intervention rows (the model is built from obs, or given
    -- by a memory model) and of demonstration rows (demos = 0: no demonstration term)
    local function update(model, nu, ah, obs, dobs, dact, rows)
      local loss, j1, j2
      if nu then
        local out = intervention_loss(ctx, model or ctx:learner_model(obs, rows), nu, ah, obs)
        loss, j1, j2 = out.loss, out.j1, out.j2
      end
      if dobs then
        local bc = ctx:nll(dobs, dact) * (1 - lambda)
        loss = loss and loss + bc or bc
      end
      ctx:step(loss, opts)
      if frozen then o.mental:zero_grad() end -- its gradients are never used
      return loss, j1, j2
    end
    -- replayed from C (train.compile) unless the learner's cost is per row or a schedule,
    -- which reads the batch's rows
    local cost = ctx._run.learner_cost or cfg["learner.cost"]
    local by_rows = cost ~= nil and type(cost) ~= "number"
    local step = ctx:compiled(function(obs, nu, ah, dobs, dact) return update(nil, nu, ah, obs, dobs, dact) end)
    for _ = 1, ctx.steps do
      local model, nu, ah, obs, rows, dobs, dact
      if n > 0 then
        if ctx.memory then
          model, nu, ah = ctx:memory_batch()
          if cfg["loss.variant"] == "public" then error("mile: loss.variant = public with a memory model", 0) end
        else
          rows = ctx:draw(n)
          obs = cols.obs:index_select(1, rows)
          nu, ah = cols.nu:index_select(1, rows), cols.human_action:index_select(1, rows)
        end
      end
      if nd > 0 then
        local di = ctx:draw(nd)
        dobs, dact = d.obs:index_select(1, di), d.actions:index_select(1, di)
      end
      local loss, j1, j2
      if model or by_rows then
        loss, j1, j2 = update(model, nu, ah, obs, dobs, dact, rows)
      else
        loss, j1, j2 = step(obs, nu, ah, dobs, dact)
      end
      sums.loss, sums.j1, sums.j2 = sums.loss + loss:item(), sums.j1 + (j1 and j1:item() or 0),
        sums.j2 + (j2 and j2:item() or 0)
    end
    local k = math.max(ctx.steps, 1)
    return { steps = ctx.steps, loss = sums.loss / k, j1 = sums.j1 / k, j2 = sums.j2 / k }
  end,
}
