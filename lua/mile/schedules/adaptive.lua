-- adaptive: the learner's cost c is updated online so that the learner's predicted
-- intervention rate tracks the observed one.
--
-- After each round's collection (before training on it) the schedule finds, by
-- bisection, the cost c* at which the learner's model -- policy and mental model as
-- they stand -- predicts the observed intervention rate on the round's states, and
-- moves towards it:  c <- c + schedule.gain (c* - c)  (gain default 0.5; the round's
-- training then uses the new c). c starts at schedule.start (default learner.cost)
-- and stays >= 0. A learner whose cost is wrong (learner.cost != human.cost) drifts
-- to a cost under which its predictions are calibrated in the aggregate.
--
--   mile train scripts/configs/lunarlander.lua --set learner.schedule=adaptive \
--     --set learner.cost=1 --set human.cost=3
local schedules = require "mile.schedules"

local S = {}

function S.init(cfg)
  return { c = cfg["schedule.start"] or cfg["learner.cost"], gain = cfg["schedule.gain"] or 0.5,
    sigma = cfg["learner.scale"], history = {} }
end

function S.cost(self) return self.c end

function S.update(self, stats)
  if stats.predicted ~= stats.predicted or stats.steps == 0 then return end -- no mental model
  local n = stats.steps
  local observed = math.min(math.max(stats.rate, 0.5 / n), 1 - 0.5 / n)
  local lo, hi = math.max(0, self.c - 20 * self.sigma), self.c + 20 * self.sigma
  local target = schedules.solve(stats.predicted_at, observed, lo, hi)
  self.c = math.max(0, self.c + self.gain * (target - self.c))
  self.history[#self.history + 1] = { round = stats.round, observed = stats.rate, predicted = stats.predicted,
    solved = target, c = self.c }
end

S.name = "adaptive"
S.doc = "the learner's cost follows the cost at which its predicted rate matches the observed one"
S.schema = { ["schedule.start"] = schedules.keys.start, ["schedule.gain"] = schedules.keys.gain }

return schedules.register(S)
