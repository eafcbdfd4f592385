-- accumulator: a leaky evidence accumulator. The human's urge to intervene builds up
-- over the episode,
--
--     E_t(a) = gamma Ebar_{t-1} + Delta_t(a) - c,   q_t(a) = Phi(E_t(a) / sigma),
--     Ebar_t = gamma Ebar_{t-1} + dbar_t - c        (Ebar = E_{a~pi_h} E(a), 0 at the episode start),
--
-- i.e. the memory term m_t = gamma Ebar_{t-1} = sum_{j<t} gamma^(t-j) (dbar_j - c_j).
-- gamma = 0 is the memoryless model. The batch form is one matrix product with the
-- lower-triangular matrix G[j, t] = gamma^(t-j-1) (j < t), so training through time
-- over episode segments is plain autograd.
--
-- The simulated human (human.memory = "accumulator") has gamma = `human.gamma` (default
-- 0.8). The learner's memory term is  m_t = w sum_{j<t} gamma^(t-j-1) (dbar_j - c_j)
-- with w and gamma = sigmoid(theta) trained: the human's model when w = gamma, and the
-- memoryless model when w = 0, where it starts (so on a memoryless human's data it
-- stays near the memoryless model); gamma starts at `temporal.gamma` (default 0.5).
local T = require "mile.tensor"
local nn = require "mile.nn"
local temporal = require "mile.temporal"

local Accumulator = nn.class("TemporalAccumulator")

--- Accumulator{gamma =, trainable = false, weight = 0}: a fixed leak with w = gamma
--- (the human), or trained gamma (starting at `gamma`) and w (starting at `weight`).
function Accumulator:__init(opts)
  local g = opts.gamma
  assert(type(g) == "number" and g >= 0 and g < 1, "accumulator: gamma must be in [0, 1)")
  rawset(self, "trainable", opts.trainable or false)
  if opts.trainable then
    local gg = math.min(math.max(g, 1e-4), 1 - 1e-4)
    self:register_parameter("theta", T.from { math.log(gg / (1 - gg)) })
    self:register_parameter("weight", T.from { opts.weight or 0 })
  else
    rawset(self, "fixed_gamma", g)
  end
end

--- w() -> the weight of the memory term (a number; gamma for the human).
function Accumulator:w()
  if self.trainable then return self.weight:item() end
  return self.fixed_gamma
end

--- gamma() -> the current leak (a number).
function Accumulator:gamma()
  if self.trainable then return self.theta:sigmoid():item() end
  return self.fixed_gamma
end

function Accumulator:extra_repr()
  return ("gamma=%.4f, w=%.4f%s"):format(self:gamma(), self:w(), self.trainable and ", trained" or "")
end

--- memory(seq) -> m [S, L].
function Accumulator:memory(seq)
  local L, dtype = seq.dbar:size(2), seq.dbar:dtype()
  local x = (seq.dbar - seq.cost) * seq.valid
  local idx = T.arange(L, dtype)
  local lag = idx:view { 1, L } - idx:view { L, 1 }                 -- lag[j][t] = t - j
  local log_gamma, w
  if self.trainable then log_gamma, w = -(-self.theta):softplus(), self.weight  -- ln sigmoid(theta)
  elseif self.fixed_gamma > 0 then log_gamma, w = math.log(self.fixed_gamma), self.fixed_gamma
  else return x * 0 end
  local G = T.where(lag:gt(0), ((lag - 1):clamp(0, nil) * log_gamma):exp(), 0)   -- gamma^(t-j-1), j < t
  return x:matmul(G) * w
end

function Accumulator:init_state() return { E = 0, gamma = self:gamma(), w = self:w() } end
function Accumulator:shift(st) return st.w * st.E end
function Accumulator:advance(st, f)
  st.E = st.gamma * st.E + f.dbar - f.cost
  return st
end

return temporal.register {
  name = "accumulator",
  doc = "leaky evidence accumulator: E_t = gamma E_{t-1} + Delta_t - c, p = Phi(E_t / sigma)",
  schema = {
    ["human.gamma"] = { type = "number", default = 0.8, check = function(v) return v >= 0 and v < 1, "must be in [0, 1)" end,
      doc = "human.memory=accumulator: the leak" },
    ["temporal.gamma"] = { type = "number", default = 0.5, check = function(v) return v > 0 and v < 1, "must be in (0, 1)" end,
      doc = "learner.memory=accumulator: initial leak" },
  },
  Accumulator = Accumulator,
  new = function(opts)
    local cfg = opts.cfg
    if opts.role == "human" then return Accumulator { gamma = cfg["human.gamma"] } end
    return Accumulator { gamma = cfg["temporal.gamma"], trainable = true }
  end,
}
