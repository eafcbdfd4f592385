-- constant: the learner's cost is `learner.cost` in every round (the default schedule).
--
-- The smallest schedule there is; copy it to start a new one (docs/research.md). Every
-- function is optional: a schedule without `cost` gives the learner `learner.cost`, one
-- without `human_cost` leaves the simulated human's cost alone.
local schedules = require "mile.schedules"

local S = {}

--- init(cfg, run) -> the schedule's state (`self` of the other functions).
function S.init(cfg)
  return { c = cfg["learner.cost"] }
end

--- cost(self, round, stats) -> the learner's cost: a number, a tensor [N] over dataset
--- rows, or a function(rows, obs) -> number | [B] tensor.
function S.cost(self)
  return self.c
end

S.name = "constant"
S.doc = "the learner's cost is learner.cost in every round (the default)"
S.schema = {}

return schedules.register(S)
