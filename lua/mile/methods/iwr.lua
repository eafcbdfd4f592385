--- iwr: Mandlekar et al. 2020. Every step, robot steps labelled with the robot's
--- action; intervention samples (and demonstrations) and robot samples are drawn half
--- and half (weight (N - N_int) / N_int against 1).
local methods = require "mile.methods"

return methods.register {
  name = "iwr",
  doc = "IWR (Mandlekar et al. 2020): every step, intervention and robot samples drawn half and half",
  train = function(ctx)
    local nd = ctx.demos.obs:size(1)
    local human_rows, robot_rows = {}, {}
    for i = 1, nd do human_rows[i] = i end
    local obs, labels = methods.labelled(ctx, function(nu)
      local rows = {}
      for i, v in ipairs(nu) do
        rows[i] = i
        if v == 1 then human_rows[#human_rows + 1] = nd + i else robot_rows[#robot_rows + 1] = nd + i end
      end
      return rows
    end)
    return ctx:clone(function(gen)
      local idx = {}
      for i = 1, ctx.batch_size do
        local pool = (#robot_rows == 0 or (#human_rows > 0 and gen:uniform() < 0.5)) and human_rows or robot_rows
        idx[i] = pool[gen:integer(#pool)]
      end
      return obs:index_select(1, idx), labels:index_select(1, idx)
    end, #human_rows + #robot_rows)
  end,
}
