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

function S.init(cfg, run)
  local side = cfg["schedule.side"] or "learner"
  assert(side == "learner" or side == "human" or side == "both",
    "exponential: schedule.side must be learner, human or both, got " .. tostring(side))
  local base = side == "learner" and cfg["learner.cost"] or cfg["human.cost"]
  return { side = side, start = cfg["schedule.start"] or base, stop = cfg["schedule.end"] or 0,
    rate = cfg["schedule.rate"] or 0.3, run = run }
end

--- The scheduled cost of round r.
function S.at(self, r)
  return self.stop + (self.start - self.stop) * math.exp(-self.rate * (r - 1))
end

function S.cost(self, round)
  if self.side == "learner" then return S.at(self, round) end
  if self.side == "both" then return schedules.by_round(self.run, function(r) return S.at(self, r) end) end
  return nil
end

function S.human_cost(self, round)
  if self.side ~= "learner" then return S.at(self, round) end
end

S.name = "exponential"
S.doc = "the cost decays from schedule.start towards schedule.end by exp(-schedule.rate) per round"
S.schema = { ["schedule.start"] = schedules.keys.start, ["schedule.end"] = schedules.keys["end"], ["schedule.side"] = schedules.keys.side,
    ["schedule.rate"] = schedules.keys.rate }

return schedules.register(S)
