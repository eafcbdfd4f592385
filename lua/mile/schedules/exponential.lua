-- exponential: the cost decays from `schedule.start` towards `schedule.end` by a
-- factor exp(-schedule.rate) per round:  c(r) = end + (start - end) exp(-rate (r - 1)).
--
--   mile train scripts/configs/lunarlander.lua --set learner.schedule=exponential \
--     --set schedule.start=4 --set schedule.end=1 --set schedule.rate=0.5
--
-- schedule.side as in linear.lua: "learner" (default), "human" (the simulated human's
-- cost only) or "both" (the human's, and the learner models each row with the cost in
-- force when it was collected). schedule.start defaults to the side's configured cost,
-- schedule.end to 0, schedule.rate to 0.3.
local schedules = require "mile.schedules"

local S = {}

--- The scheduled cost of round r.
function S.at(self, r)
  return self.stop + (self.start - self.stop) * math.exp(-self.rate * (r - 1))
end

S.init, S.cost, S.human_cost = schedules.on_side("exponential", S.at,
  function(self, cfg) self.rate = cfg["schedule.rate"] or 0.3 end)

S.name = "exponential"
S.doc = "the cost decays from schedule.start towards schedule.end by exp(-schedule.rate) per round"
S.schema = { ["schedule.start"] = schedules.keys.start, ["schedule.end"] = schedules.keys["end"], ["schedule.side"] = schedules.keys.side,
    ["schedule.rate"] = schedules.keys.rate }

return schedules.register(S)
