--- bc: behaviour cloning on the initial demonstrations only (the floor).
local methods = require "mile.methods"

return methods.register {
  name = "bc",
  doc = "behaviour cloning on the initial demonstrations only (the floor)",
  train = function(ctx)
    local d = ctx.demos
    local n = d.obs:size(1)
    return ctx:clone(function()
      local idx = ctx:draw(n)
      return d.obs:index_select(1, idx), d.actions:index_select(1, idx)
    end, n)
  end,
}
