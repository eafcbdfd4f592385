--- mile: MILE (Korkmaz & Biyik 2025). Policy and mental model trained jointly through
--- the learner's intervention model (loss.variant, loss.lambda); the demonstrations add
--- (1 - lambda) * NLL. With a memory model (learner.memory) the intervention data is
--- drawn as episode segments and trained through time.
local I = require "mile.intervention"
local methods = require "mile.methods"

return methods.register {
  name = "mile",
  doc = "MILE: policy and mental model trained through the intervention model (+ demonstrations)",
  uses_mental = true,
  schema = {
    ["loss.variant"] = { type = "string", default = "paper", choices = { "paper", "joint", "reference" },
      doc = "mile: the loss (mile.intervention.loss)" },
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
    for _ = 1, ctx.steps do
      local loss, j1, j2 = nil, 0, 0
      if n > 0 then
        local model, nu, ah
        if ctx.memory then
          model, nu, ah = ctx:memory_batch()
        else
          local idx = ctx:draw(n)
          model = ctx:learner_model(cols.obs:index_select(1, idx), idx)
          nu, ah = cols.nu:index_select(1, idx), cols.human_action:index_select(1, idx)
        end
        local out = I.loss { model = model, variant = cfg["loss.variant"], nu = nu, human_action = ah, lambda = lambda }
        loss, j1, j2 = out.loss, out.j1:item(), out.j2:item()
      end
      local di = ctx:draw(nd)
      local bc = ctx:nll(d.obs:index_select(1, di), d.actions:index_select(1, di)) * (1 - lambda)
      loss = loss and loss + bc or bc
      ctx:step(loss, opts)
      if frozen then o.mental:zero_grad() end -- its gradients are never used
      sums.loss, sums.j1, sums.j2 = sums.loss + loss:item(), sums.j1 + j1, sums.j2 + j2
    end
    local k = math.max(ctx.steps, 1)
    return { steps = ctx.steps, loss = sums.loss / k, j1 = sums.j1 / k, j2 = sums.j2 / k }
  end,
}
