-- history: a window of the last k steps. The memory term is a learned linear
-- combination of the per-step features of the k - 1 previous steps of the episode,
--
--     m_t = sum_{j=1}^{k-1} ( w_j dbar_{t-j} + u_j gap_{t-j} ),
--
-- dbar_j = E_{a~pi_h} Delta_j(a) (the expected value gap at s_j, through the mental
-- model) and gap_j = E_{a~pi_h} ln pi_h(a) - ln pi_h(a^r_j) (how much worse than the
-- human's policy the robot's action a^r_j was); q_t(a) = Phi((Delta_t(a) + m_t - c) / sigma).
-- The learner's w, u start at 0 (the memoryless model) and train with the policy;
-- window k = `temporal.k` (default 4).
--
-- The simulated human (human.memory = "history") remembers the robot's recent
-- mistakes: u = `human.weights` (default {0.5, 0.3, 0.2}, so k = 4), w = 0.
local T = require "mile.tensor"
local nn = require "mile.nn"
local temporal = require "mile.temporal"

local History = nn.class("TemporalHistory")

--- History{k =, weights = {w_1..} | nil, gap_weights = {u_1..} | nil, dtype = "float32"}:
--- fixed weights when given (the human), else trained parameters starting at 0.
function History:__init(opts)
  local k = opts.k
  assert(math.type(k) == "integer" and k >= 1, "history: k must be an integer >= 1")
  rawset(self, "k", k)
  local dtype = opts.dtype or "float32"
  local function list(v)
    local out = {}
    for j = 1, k - 1 do out[j] = v and v[j] or 0 end
    return T.from(out, dtype)
  end
  if opts.weights or opts.gap_weights then
    rawset(self, "w", list(opts.weights))
    rawset(self, "u", list(opts.gap_weights))
  else
    self:register_parameter("w", T.zeros({ math.max(k - 1, 1) }, dtype))
    self:register_parameter("u", T.zeros({ math.max(k - 1, 1) }, dtype))
  end
end

function History:extra_repr() return ("k=%d"):format(self.k) end

-- the feature matrix x [S, L] delayed by j steps (zeros enter at the start)
local function delayed(x, j)
  local S, L = x:size(1), x:size(2)
  return T.cat({ T.zeros({ S, j }, x:dtype()), x:narrow(2, 1, L - j) }, 2)
end

--- memory(seq) -> m [S, L].
function History:memory(seq)
  local S, L = seq.dbar:size(1), seq.dbar:size(2)
  local d, g = seq.dbar * seq.valid, seq.gap * seq.valid
  local m
  for j = 1, math.min(self.k - 1, L - 1) do
    local term = delayed(d, j) * self.w:narrow(1, j, 1) + delayed(g, j) * self.u:narrow(1, j, 1)
    m = m and m + term or term
  end
  return m or T.zeros({ S, L }, seq.dbar:dtype())
end

-- online form: the last k - 1 features, most recent first
function History:init_state() return { d = {}, g = {}, w = self.w:totable(), u = self.u:totable() } end

function History:shift(st)
  local m = 0
  for j = 1, #st.d do m = m + st.w[j] * st.d[j] + st.u[j] * st.g[j] end
  return m
end

function History:advance(st, f)
  if self.k <= 1 then return st end
  table.insert(st.d, 1, f.dbar)
  table.insert(st.g, 1, f.gap)
  if #st.d > self.k - 1 then st.d[#st.d], st.g[#st.g] = nil, nil end
  return st
end

return temporal.register {
  name = "history",
  doc = "window of the last k steps: m_t = sum_j w_j dbar_{t-j} + u_j gap_{t-j}",
  schema = {
    ["temporal.k"] = { type = "integer", default = 4, check = function(v) return v >= 1, "must be >= 1" end,
      doc = "learner.memory=history: window (steps, the current one included)" },
    ["human.weights"] = { type = "list", default = { 0.5, 0.3, 0.2 },
      doc = "human.memory=history: weights of the robot's mistakes 1, 2, ... steps back" },
  },
  History = History,
  new = function(opts)
    local cfg = opts.cfg
    if opts.role == "human" then
      local w = cfg["human.weights"]
      return History { k = #w + 1, gap_weights = w }
    end
    return History { k = cfg["temporal.k"] }
  end,
}
