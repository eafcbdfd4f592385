-- mile.calibration: the metrics against hand computations, and mile.open on a tiny
-- run (held-out scoring agrees with the loop's logged prediction; predict against the
-- intervention model written out in plain Lua).
local T = require "testing"
local R = require "reference_math"
local mile = require "mile"
local C = require "mile.calibration"
local loop = require "mile.loop"
local plot = require "mile.plot"
local sys = require "mile.sys"

local tmp = os.tmpname()
os.remove(tmp)
assert(sys.mkdir(tmp))

-- 10 predictions over 6 of the 10 bins (p = 0 and p = 1 included), labels by hand.
local P = { 0.05, 0.15, 0.12, 0.85, 0.95, 0.55, 1.0, 0.0, 0.33, 0.38 }
local Y = { 0, 0, 1, 1, 1, 0, 1, 0, 1, 0 }

T.test("reliability bins, ECE and MCE match a hand computation", function()
  local m = C.metrics { p = P, y = Y, bins = 10 }
  -- non-empty bins, worked out by hand:
  --   [0, .1):  .05 .00 -> mean .025, freq 0,  gap .025, n 2
  --   [.1, .2): .15 .12 -> mean .135, freq .5, gap .365, n 2
  --   [.3, .4): .33 .38 -> mean .355, freq .5, gap .145, n 2
  --   [.5, .6): .55     -> gap .55, n 1;   [.8, .9): .85 -> gap .15, n 1
  --   [.9, 1]:  .95 1.0 -> mean .975, freq 1,  gap .025, n 2
  local expect = { [1] = { 2, 0.025, 0 }, [2] = { 2, 0.135, 0.5 }, [4] = { 2, 0.355, 0.5 }, [6] = { 1, 0.55, 0 },
    [9] = { 1, 0.85, 1 }, [10] = { 2, 0.975, 1 } }
  for b = 1, 10 do
    local bin = m.bins[b]
    T.near(bin.lo, (b - 1) / 10, 1e-15)
    if expect[b] then
      T.eq(bin.n, expect[b][1], "bin " .. b)
      T.near(bin.mean_p, expect[b][2], 1e-12, "bin " .. b)
      T.near(bin.freq, expect[b][3], 1e-12, "bin " .. b)
    else
      T.eq(bin.n, 0, "bin " .. b)
    end
  end
  T.near(m.ece, (2 * .025 + 2 * .365 + 2 * .145 + .55 + .15 + 2 * .025) / 10, 1e-12)
  T.near(m.ece, 0.182, 1e-12)
  T.near(m.mce, 0.55, 1e-12)
  T.eq(m.n, 10)
  T.eq(m.positives, 5)
  T.near(m.base_rate, 0.5, 1e-15)
end)

T.test("Brier score and log-loss match an independent computation", function()
  local m = C.metrics { p = P, y = Y }
  local brier = (0.05 ^ 2 + 0.15 ^ 2 + 0.88 ^ 2 + 0.15 ^ 2 + 0.05 ^ 2 + 0.55 ^ 2 + 0 + 0 + 0.67 ^ 2 + 0.38 ^ 2) / 10
  T.near(m.brier, brier, 1e-12)
  T.near(m.brier, 0.17202, 1e-12)
  local ll = -(math.log(0.95) + math.log(0.85) + math.log(0.12) + math.log(0.85) + math.log(0.95) + math.log(0.45)
    + 0 + 0 + math.log(0.33) + math.log(0.62)) / 10
  T.near(m.log_loss, ll, 1e-12)
  T.near(m.brier_base, 0.25, 1e-15)
  T.near(m.log_loss_base, math.log(2), 1e-12)
  -- from the model's own log-probabilities: the same, without clipping
  local logp, log1mp = {}, {}
  for i, p in ipairs(P) do logp[i], log1mp[i] = math.log(p), math.log(1 - p) end
  T.near(C.metrics { p = P, y = Y, logp = logp, log1mp = log1mp }.log_loss, ll, 1e-12)
  -- a confident mistake is clipped at 1e-15 when only p is known
  T.near(C.metrics { p = { 0 }, y = { 1 } }.log_loss, -math.log(1e-15), 1e-9)
  -- tensors work like lists
  local t = require "mile.tensor"
  T.near(C.metrics { p = t.from(P), y = t.from(Y) }.ece, 0.182, 1e-6) -- float32 p
end)

T.test("bad inputs are errors", function()
  T.raises(function() C.metrics { p = { 0.5, 0.2 }, y = { 1 } } end, "2 predictions and 1 labels")
  T.raises(function() C.metrics { p = { 0.5 }, y = { 2 } } end, "not 0 or 1")
  T.raises(function() C.metrics { p = { 1.5 }, y = { 1 } } end, "not a probability")
  T.raises(function() mile.open(tmp) end, "not a run directory")
end)

-- ---- a tiny run ------------------------------------------------------------------------------

local dir = tmp .. "/tiny"
loop.run({ env = "LunarLander-v3", method = "mile", rounds = 3, episodes_per_round = 1, epochs = 2, eval_episodes = 3,
  progress = false }, { dir = dir })
local run = mile.open(dir)

T.test("mile.open: config, metrics, dataset, checkpoints", function()
  T.eq(run.config.env, "LunarLander-v3")
  T.eq(run.rounds, 3)
  T.eq(#run.metrics, 3)
  T.eq(run.dataset:size(), run.metrics[1].steps + run.metrics[2].steps + run.metrics[3].steps)
  local first, last = run:rows(2)
  T.eq(first, run.metrics[1].steps + 1)
  T.eq(last, run.metrics[1].steps + run.metrics[2].steps)
  T.eq(select(2, run:rows(3)), run.dataset:size())
  local obs = run.dataset:column("obs"):narrow(1, 1, 1)
  T.truthy(run.checkpoints[2].policy(obs).logits, "a policy module")
  T.truthy(run.checkpoints[0].mental(obs).logits, "the warm start")
  T.raises(function() return run.checkpoints[4] end, "not committed")
  T.truthy(tostring(run):find("3/3 rounds", 1, true))
end)

T.test("held-out calibration agrees with the loop's logged prediction", function()
  local png = tmp .. "/rel.png"
  local c = run:calibration { round = 2, quiet = true, plot = png }
  local m = run.metrics[2]
  T.eq(c.n, m.steps)
  T.eq(c.positives, m.interventions)
  -- the loop predicted round 2's states with the model of round 1, before training
  T.near(c.mean_p, m.predicted_rate, 1e-5 * math.max(m.predicted_rate, 1e-3))
  local brier = 0
  for i = 1, c.n do brier = brier + (c.p[i] - c.y[i]) ^ 2 end
  T.near(c.brier, brier / c.n, 1e-12)
  T.truthy(c.human and c.human.n == c.n, "the simulated human's p scored too")
  if plot.available() then T.eq(sys.stat(png), "file") end
  -- every round pooled, each scored by the checkpoint before it
  local all = run:calibration { quiet = true, plot = false }
  T.eq(all.n, run.dataset:size())
  T.near(all.p[(run:rows(2))], c.p[1], 1e-12) -- pooled in dataset order
  -- in sample (the model of round 2 on round 2's states) is a different model
  local ins = run:calibration { round = 2, checkpoint = 2, quiet = true, plot = false }
  T.eq(ins.n, c.n)
end)

local Phi, softmax = R.Phi, R.softmax

T.test("predict: Delta, q and p as DESIGN.md section 1 writes them", function()
  local row = select(1, run:rows(2)) + 3
  local pr = run:predict(row, { round = 1, quiet = true })
  local obs = run.dataset:column("obs"):index_select(1, { row })
  local pi = softmax(run.checkpoints[1].policy(obs).logits:double():view { -1 }:totable())
  local pihat = softmax(run.checkpoints[1].mental(obs).logits:double():view { -1 }:totable())
  local c, s = run.config["learner.cost"], run.config["learner.scale"]
  local expected = 0
  for a = 1, #pi do expected = expected + pihat[a] * math.log(pi[a]) end
  local p = 0
  for a = 1, #pi do
    T.near(pr.pi[a], pi[a], 1e-5)
    T.near(pr.pihat[a], pihat[a], 1e-5)
    local delta = math.log(pi[a]) - expected
    T.near(pr.delta[a], delta, 1e-4)
    T.near(pr.q[a], Phi((delta - c) / s), 1e-5)
    p = p + pi[a] * Phi((delta - c) / s)
  end
  T.near(pr.p, p, 1e-5)
  -- the same state in the held-out calibration of round 2 (checkpoint 1)
  local first = run:rows(2)
  local cal = run:calibration { round = 2, quiet = true, plot = false }
  T.near(pr.p, cal.p[row - first + 1], 1e-6)
  T.eq(pr.nu, cal.y[row - first + 1])
  -- an observation given as a list of numbers
  local again = run:predict(obs:view { -1 }:totable(), { round = 1, quiet = true })
  T.near(again.p, pr.p, 1e-6)
  T.raises(function() run:predict({ 1, 2 }, { quiet = true }) end, "observation has 2 values")
end)

T.test("a continuous task: the Gaussian model's K, Delta and q", function()
  local d = tmp .. "/drawer"
  loop.run({ env = "drawer-open-v3", method = "mile", rounds = 1, episodes_per_round = 1, epochs = 1, eval_episodes = 1,
    max_episode_steps = 40, progress = false }, { dir = d })
  local r = mile.open(d)
  local c = r:calibration { round = 1, quiet = true, plot = false }
  T.eq(c.n, r.metrics[1].steps)
  T.near(c.mean_p, r.metrics[1].predicted_rate, 1e-5 * math.max(r.metrics[1].predicted_rate, 1e-3))
  local pr = r:predict(5, { round = 0, quiet = true, action = { 0.1, -0.2, 0.3, 0 } })
  T.near(pr.p, c.p[5], 1e-6)
  -- K = sum_d ((m_d - mu_d)^2 + s_d^2) / (2 sd_d^2); Delta(mu) = K; Delta(a) = K - |z|^2 / 2
  local K, z2 = 0, 0
  local a = { 0.1, -0.2, 0.3, 0 }
  for i = 1, #pr.mu do
    K = K + ((pr.mental_mu[i] - pr.mu[i]) ^ 2 + pr.mental_sd[i] ^ 2) / (2 * pr.sd[i] ^ 2)
    z2 = z2 + ((a[i] - pr.mu[i]) / pr.sd[i]) ^ 2
  end
  local cost, scale = r.config["learner.cost"], r.config["learner.scale"]
  T.near(pr.K, K, 1e-4 * K)
  T.near(pr.at_mean.delta, K, 1e-4 * K)
  T.near(pr.at_mean.q, Phi((K - cost) / scale), 1e-5)
  T.near(pr.at_action.delta, K - z2 / 2, 1e-4 * math.max(1, math.abs(K - z2 / 2)))
  T.near(pr.at_action.q, Phi((K - z2 / 2 - cost) / scale), 1e-5)
end)

-- ---- docs/research.md, section 4 -------------------------------------------------------------

local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
local DOC = here .. "/../../docs/research.md"

local function section4()
  local text = assert(io.open(DOC)):read("a")
  return assert(text:match("\n## 4%.(.-)\n## 5%."), "docs/research.md has a section 4")
end

-- Run code with print silenced (the report stays readable).
local function quietly(f)
  local real = print
  print = function() end
  local ok, err = pcall(f)
  print = real
  if not ok then error(err, 0) end
end

T.test("docs/research.md: the REPL session runs as written", function()
  local block = assert(section4():match("<!%-%- calibration%-session:begin %-%->(.-)<!%-%- calibration%-session:end %-%->"))
  local env = setmetatable({ mile = mile }, { __index = _G })
  local n = 0
  quietly(function()
    for line in block:gmatch("[^\n]+") do
      local code = line:match("^> (.*)$")
      if code then
        code = code:gsub("runs/cal%-demo", dir)
        local chunk = load("return " .. code, "=session", "t", env) or assert(load(code, "=session", "t", env))
        chunk()
        n = n + 1
      end
    end
  end)
  T.truthy(n >= 10, "the session has its lines")
  T.near(env.p.p, env.c.p[11], 1e-6) -- the held-out prediction of that row, both ways
end)

T.test("docs/research.md: the Lua examples of section 4 run", function()
  local n = 0
  for code in section4():gmatch("```lua\n(.-)```") do
    code = code:gsub("/tmp/reliability%.png", tmp .. "/doc.png")
    quietly(assert(load(code, "=docs/research.md")))
    n = n + 1
  end
  T.truthy(n >= 1)
end)

T.run()
