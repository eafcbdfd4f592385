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

function S.init(cfg, run)
  local side = cfg["schedule.side"] or "learner"
  assert(side == "learner" or side == "human" or side == "both",
    "linear: schedule.side must be learner, human or both, got " .. tostring(side))
  local base = side == "learner" and cfg["learner.cost"] or cfg["human.cost"]
  return { side = side, start = cfg["schedule.start"] or base, stop = cfg["schedule.end"] or 0, rounds = cfg.rounds,
    run = run }
end

--- The scheduled cost of round r.
function S.at(self, r)
  if self.rounds <= 1 then return self.start end
  local f = math.min(1, math.max(0, (r - 1) / (self.rounds - 1)))
  return self.start + (self.stop - self.start) * f
end

function S.cost(self, round)
  if self.side == "learner" then return S.at(self, round) end
  if self.side == "both" then return schedules.by_round(self.run, function(r) return S.at(self, r) end) end
  return nil -- "human": the learner keeps learner.cost
end

function S.human_cost(self, round)
  if self.side ~= "learner" then return S.at(self, round) end
end

S.name = "linear"
S.doc = "the cost moves linearly from schedule.start (round 1) to schedule.end (the last round)"
S.schema = { ["schedule.start"] = schedules.keys.start, ["schedule.end"] = schedules.keys["end"], ["schedule.side"] = schedules.keys.side }

return schedules.register(S)
