-- linear: the cost moves linearly from `schedule.start` (round 1) to `schedule.end`
-- (the last round).
--
--   mile train scripts/configs/lunarlander.lua --set learner.schedule=linear \
--     --set schedule.start=3 --set schedule.end=1 [--set schedule.side=both]
--
-- schedule.side: "learner" (default) schedules the learner's cost only; "human" the
-- simulated human's cost only (the learner keeps learner.cost: a mismatch study);
-- "both" the human's, and the learner knows it: each dataset row is modelled with
-- the cost that was in force when it was collected (a per-sample cost).
-- schedule.start defaults to the scheduled side's configured cost, schedule.end to 0.
local schedules = require "mile.schedules"

local S = {}

--- The scheduled cost of round r.
function S.at(self, r)
  if self.rounds <= 1 then return self.start end
  local f = math.min(1, math.max(0, (r - 1) / (self.rounds - 1)))
  return self.start + (self.stop - self.start) * f
end

S.init, S.cost, S.human_cost = schedules.on_side("linear", S.at, function(self, cfg) self.rounds = cfg.rounds end)

S.name = "linear"
S.doc = "the cost moves linearly from schedule.start (round 1) to schedule.end (the last round)"
S.schema = { ["schedule.start"] = schedules.keys.start, ["schedule.end"] = schedules.keys["end"], ["schedule.side"] = schedules.keys.side }

return schedules.register(S)
