-- gru: a small GRU over the episode's per-step features. The memory term is a
-- linear read-out of the GRU state after the previous step,
--
--     h_t = GRU(h_{t-1}, x_t),  x_t = (tanh(dbar_t / 4), tanh(gap_t / 4), nu_t),  m_t = w . h_{t-1} + b,
--
-- q_t(a) = Phi((Delta_t(a) + m_t - c) / sigma): the GRU can learn any causal memory of
-- the value gaps, the robot's mistakes and the human's own past interventions (bursts).
-- Written with mile tensor ops and nn.Linear (PyTorch's GRU cell equations); trained
-- through time over episode segments. Hidden size `temporal.hidden` (default 8); the
-- learner's read-out starts at 0 (the memoryless model). The simulated human
-- (human.memory = "gru") is a fixed random GRU (seed 2024) with read-out weights x 4.
local T = require "mile.tensor"
local nn = require "mile.nn"
local ag = require "mile.autograd"
local temporal = require "mile.temporal"

local GRU = nn.class("TemporalGRU")

--- GRU{hidden =, seed = 1, out_scale = nil}: out_scale scales a random read-out (the
--- human); without it the read-out starts at 0 (the learner).
function GRU:__init(opts)
  local H = opts.hidden
  assert(math.type(H) == "integer" and H >= 1, "gru: hidden must be a positive integer")
  rawset(self, "hidden", H)
  local gen = T.Generator(opts.seed or 1)
  self.ih = nn.Linear(3, 3 * H, { generator = gen })
  self.hh = nn.Linear(H, 3 * H, { generator = gen })
  self.out = nn.Linear(H, 1, { generator = gen })
  ag.no_grad(function()
    if opts.out_scale then
      self.out.weight:copy_(self.out.weight * opts.out_scale)
    else
      self.out.weight:zero_()
    end
    self.out.bias:zero_()
  end)
end

function GRU:extra_repr() return ("hidden=%d"):format(self.hidden) end

-- one GRU step: h [S, H], gi = ih(x) [S, 3H] -> h'
function GRU:cell(h, gi)
  local H = self.hidden
  local gh = self.hh(h)
  local r = (gi:narrow(2, 1, H) + gh:narrow(2, 1, H)):sigmoid()
  local z = (gi:narrow(2, H + 1, H) + gh:narrow(2, H + 1, H)):sigmoid()
  local n = (gi:narrow(2, 2 * H + 1, H) + r * gh:narrow(2, 2 * H + 1, H)):tanh()
  return n + z * (h - n)                                            -- (1 - z) n + z h
end

--- memory(seq) -> m [S, L].
function GRU:memory(seq)
  local S, L, H = seq.dbar:size(1), seq.dbar:size(2), self.hidden
  local x = T.cat({ (seq.dbar * 0.25):tanh():view { S, L, 1 }, (seq.gap * 0.25):tanh():view { S, L, 1 },
    seq.nu:view { S, L, 1 } }, 3)
  local gi = self.ih(x)                                              -- [S, L, 3H]
  local h = T.zeros({ S, H }, x:dtype())
  local hs = {}
  for t = 1, L do
    hs[t] = h:view { S, 1, H }
    if t < L then
      local v = seq.valid:select(2, t):reshape { S, 1 }
      h = h + (self:cell(h, gi:select(2, t)) - h) * v               -- padding leaves h at 0
    end
  end
  return self.out(T.cat(hs, 2)):view { S, L }
end

function GRU:init_state() return { h = T.zeros { 1, self.hidden } } end

function GRU:shift(st)
  return ag.no_grad(function() return self.out(st.h):item() end)
end

function GRU:advance(st, f)
  ag.no_grad(function()
    local x = T.from { { math.tanh(f.dbar * 0.25), math.tanh(f.gap * 0.25), f.nu } }
    st.h = self:cell(st.h, self.ih(x))
  end)
  return st
end

return temporal.register {
  name = "gru",
  doc = "GRU over (dbar, gap, nu) with a linear read-out",
  schema = {
    ["temporal.hidden"] = { type = "integer", default = 8, check = function(v) return v >= 1, "must be >= 1" end,
      doc = "learner.memory=gru, human.memory=gru: hidden size" },
  },
  GRU = GRU,
  new = function(opts)
    local cfg = opts.cfg
    if opts.role == "human" then return GRU { hidden = cfg["temporal.hidden"], seed = 2024, out_scale = 4 } end
    return GRU { hidden = cfg["temporal.hidden"] }
  end,
}
