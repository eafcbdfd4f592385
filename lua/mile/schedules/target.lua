-- target: the simulated *human's* cost is adapted so that the human's intervention
-- rate follows `schedule.target` (an intervention budget; MILE's open question 3).
--
-- Model-free, as a person with a budget would do it: after every step,
--   c_h <- max(0, c_h + schedule.rate sigma_h (nu - target))
-- (a Robbins-Monro iteration; rate default 0.1): each intervention raises the cost a
-- little, each step without one lowers it, and the long-run rate is the target. With
-- schedule.per_step = false the update runs once per round instead, in probit space:
--   c_h <- max(0, c_h + schedule.gain sigma_h (Phi^-1(observed rate) - Phi^-1(target)))
-- (gain default 1; the observed rate clamped to [0.5/n, 1 - 0.5/n]). Per step tracks
-- the target much better on LunarLander (docs/research.md): a round's rate varies
-- with the states the policy visits far more than with the cost.
--
-- The learner keeps learner.cost unless schedule.side = "both": then each dataset row
-- is modelled with the human cost in force when it was collected (a per-sample cost).
-- c_h starts at schedule.start (default human.cost).
--
--   mile train scripts/configs/lunarlander.lua --set learner.schedule=target --set schedule.target=0.1
local schedules = require "mile.schedules"

local S = {}

function S.init(cfg, run)
  local target = cfg["schedule.target"]
  assert(type(target) == "number" and target > 0 and target < 1, "target: set schedule.target in (0, 1)")
  local side = cfg["schedule.side"] or "human"
  assert(side == "human" or side == "both", "target: schedule.side must be human or both, got " .. tostring(side))
  return { c = cfg["schedule.start"] or cfg["human.cost"], target = target, gain = cfg["schedule.gain"] or 1,
    rate = cfg["schedule.rate"] or 0.1, per_step = cfg["schedule.per_step"] ~= false, sigma = cfg["human.scale"],
    side = side, row_costs = {}, run = run }
end

function S.human_cost(self) return self.c end

function S.cost(self)
  if self.side ~= "both" then return nil end
  local row_costs = self.row_costs
  return function(rows, obs)
    local out = {}
    for i, r in ipairs(rows) do out[i] = row_costs[r] or self.c end
    return require("mile.tensor").from(out, obs and obs:dtype() or "float32")
  end
end

-- every collection step: remember the cost of the row; in per-step mode, adapt
function S.step(self, info)
  if self.side == "both" then self.row_costs[info.row] = info.human_cost end
  if not self.per_step then return nil end
  self.c = math.max(0, self.c + self.rate * self.sigma * (info.nu - self.target))
  return self.c
end

function S.update(self, stats)
  if self.per_step or stats.steps == 0 then return end
  local n = stats.steps
  local observed = math.min(math.max(stats.rate, 0.5 / n), 1 - 0.5 / n)
  self.c = math.max(0, self.c + self.gain * self.sigma * (schedules.probit(observed) - schedules.probit(self.target)))
end

S.name = "target"
S.doc = "the simulated human's cost adapts so that its intervention rate follows schedule.target"
S.schema = { ["schedule.start"] = schedules.keys.start, ["schedule.gain"] = schedules.keys.gain,
    ["schedule.rate"] = schedules.keys.rate, ["schedule.side"] = schedules.keys.side,
    ["schedule.target"] = { type = "number", default = nil, doc = "target: the human's intervention rate to follow" },
    ["schedule.per_step"] = { type = "boolean", default = nil,
      doc = "target: adapt after every step (default) or per round" } }

return schedules.register(S)
