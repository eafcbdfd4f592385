--- bc: behaviour cloning on the initial demonstrations only (the floor). Its budget is the
--- shared one (epochs over demos + dataset) unless bc.steps fixes it per round.
local methods = require "mile.methods"

return methods.register {
  name = "bc",
  doc = "behaviour cloning on the initial demonstrations only (the floor)",
  schema = {
    ["bc.steps"] = { type = "integer", default = nil, check = function(v) return v >= 1, "must be >= 1" end,
      doc = "bc: gradient steps per round, fixed (default: the shared budget, which grows with the dataset BC "
        .. "does not use)" },
  },
  -- a budget that does not grow with data BC ignores
  budget = function(cfg, steps) return cfg["bc.steps"] or steps end,
  train = function(ctx)
    local d = ctx.demos
    local n = d.obs:size(1)
    return ctx:clone(function()
      local idx = ctx:draw(n)
      return d.obs:index_select(1, idx), d.actions:index_select(1, idx)
    end, n)
  end,
}
