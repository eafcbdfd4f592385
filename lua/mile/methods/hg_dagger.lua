--- hg_dagger: Kelly et al. 2019. Demonstrations + the steps where the human was in
--- control, labelled with the human's action; behaviour cloning.
local methods = require "mile.methods"

return methods.register {
  name = "hg_dagger",
  doc = "HG-DAgger (Kelly et al. 2019): clone the demonstrations and the human-controlled steps",
  train = function(ctx)
    local obs, labels = methods.labelled(ctx, function(nu)
      local rows = {}
      for i, v in ipairs(nu) do if v == 1 then rows[#rows + 1] = i end end
      return rows
    end)
    local n = obs:size(1)
    return ctx:clone(function()
      local idx = ctx:draw(n)
      return obs:index_select(1, idx), labels:index_select(1, idx)
    end, n)
  end,
}
