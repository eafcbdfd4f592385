-- The experiment layer: the simulated human against independent math, a short
-- end-to-end run, resume after kill -9, config errors.
local T = require "testing"
local R = require "reference_math"
local tensor = require "mile.tensor"
local human = require "mile.human"
local loop = require "mile.loop"
local config = require "mile.config"
local sys = require "mile.sys"

local MILE = arg[-1]
local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/[^/]*$") or "."
local LUNAR = ROOT .. "/scripts/configs/lunarlander.lua"
local tmp = T.tmpdir()

local Phi, softmax = R.Phi, R.softmax

-- The discrete model of DESIGN.md section 1 in plain Lua numbers.
local function discrete_reference(le, lm, c, s)
  local pi, pihat = softmax(le), softmax(lm)
  local expected = 0
  for b = 1, #pi do expected = expected + pihat[b] * math.log(pi[b]) end
  local q, p = {}, 0
  for a = 1, #pi do
    q[a] = Phi((math.log(pi[a]) - expected - c) / s)
    p = p + pi[a] * q[a]
  end
  local cond = {}
  for a = 1, #pi do cond[a] = pi[a] * q[a] / p end
  return p, cond
end

local LE, LM, C, S = { 2.0, 0.5, -1.0, 0.2 }, { -0.5, 1.5, 0.3, 0.0 }, 0.8, 1.3

local function fixed_human(seed)
  local le, lm = tensor.from { LE }, tensor.from { LM }
  return human.Simulated { expert = function() return { logits = le } end, mental = function() return { logits = lm } end,
    cost = C, scale = S, discrete = true, generator = tensor.Generator(seed) }
end

T.test("the simulated human intervenes with frequency p(s)", function()
  local p = discrete_reference(LE, LM, C, S)
  local h = fixed_human(5)
  T.near(h:probability(tensor.zeros { 8 }), p, 1e-5)
  local n, hits = 20000, 0
  for _ = 1, n do
    local nu = h:decide(tensor.zeros { 8 }, 0)
    hits = hits + nu
  end
  local sd = math.sqrt(p * (1 - p) / n)
  print(("# p = %.4f, empirical %.4f (5 sd = %.4f)"):format(p, hits / n, 5 * sd))
  T.truthy(math.abs(hits / n - p) < 5 * sd, "frequency outside 5 standard deviations")
end)

T.test("contiguous takeovers: held for human.hold steps, handed back early when the robot agrees", function()
  -- An expert whose mode is action 0 and a mental model that makes p(s) close to 1:
  -- the first decision is a takeover. Held steps act from pi_E's mode (rule argmax).
  local le, lm = tensor.from { { 6, 0, 0, 0 } }, tensor.from { { 0, 0, 0, 6 } }
  local function make(hold, until_)
    return human.Simulated { expert = function() return { logits = le } end,
      mental = function() return { logits = lm } end, cost = -5, scale = 1, discrete = true, rule = "argmax",
      generator = tensor.Generator(3), hold = hold, hold_until = until_ }
  end
  local o = tensor.zeros { 8 }
  -- steps: a robot that keeps taking action 3 (wrong) sees 4 held steps after each takeover
  local h = make(5, "steps")
  local seq = {}
  for t = 1, 7 do
    local nu, a, info = h:decide(o, 3)
    seq[t] = ("%d%s%s"):format(nu, tostring(a), info.held and "h" or "")
  end
  T.eq(table.concat(seq, " "), "10 10h 10h 10h 10h 10 10h")
  -- agree: the robot taking the expert's action (0) ends the takeover at once
  h = make(5, "agree")
  local nu1 = h:decide(o, 3)
  local nu2, a2, i2 = h:decide(o, 3)
  local nu3, a3, i3 = h:decide(o, 0)
  T.eq({ nu1, nu2, a2, i2.held, nu3, a3, i3.held }, { 1, 1, 0, true, 0, 0, nil })
  -- reset ends a takeover; hold = 0 (the default) decides every step on its own
  h = make(5, "steps")
  h:decide(o, 3)
  h:reset()
  local _, _, ir = h:decide(o, 3)
  T.eq(ir.held, nil)
  h = make(0, "agree")
  for _ = 1, 3 do
    local _, _, i = h:decide(o, 3)
    T.eq(i.held, nil)
  end
  T.raises(function() make(-1, "steps") end, "hold must be an integer >= 0")
  T.raises(function() make(2, "forever") end, "hold_until must be agree or steps")
end)

T.test("the human's action given an intervention follows pi_E(a) q(a) / p", function()
  local _, cond = discrete_reference(LE, LM, C, S)
  local h = fixed_human(9)
  local counts, total = { 0, 0, 0, 0 }, 0
  for _ = 1, 40000 do
    local nu, a = h:decide(tensor.zeros { 8 }, -1)
    if nu == 1 then
      counts[a + 1] = counts[a + 1] + 1
      total = total + 1
    else
      T.eq(a, -1) -- no intervention: the robot's action stands
    end
  end
  local chi2 = 0
  for a = 1, 4 do
    local expected = cond[a] * total
    if expected > 0 then chi2 = chi2 + (counts[a] - expected) ^ 2 / expected end
  end
  print(("# %d interventions, chi-square %.2f (3 dof; 0.1%% critical value 16.27)"):format(total, chi2))
  T.truthy(chi2 < 16.27, "action distribution differs from pi_E q / p")
end)

local SHORT = { env = "LunarLander-v3", method = "mile", rounds = 2, episodes_per_round = 1, epochs = 2,
  eval_episodes = 3, progress = false }

T.test("a short MILE run writes a complete run directory", function()
  local dir = tmp .. "/short"
  local run = loop.run(SHORT, { dir = dir })
  T.eq(#run.metrics, 2)
  for _, f in ipairs { "config.lua", "metrics.csv", "dataset.csv", "state.lua", "report.md",
    "checkpoints/round_002/policy.safetensors", "checkpoints/round_002/mental.safetensors" } do
    T.eq(sys.stat(dir .. "/" .. f), "file", f)
  end
  local m = run.metrics[2]
  T.truthy(m.success >= 0 and m.success <= 1)
  T.truthy(m.predicted_rate >= 0 and m.predicted_rate <= 1)
  T.eq(m.interventions_total, run.dataset:n_interventions())
end)

T.test("every method runs on the same protocol", function()
  for _, method in ipairs { "bc", "hg_dagger", "iwr" } do
    local cfg = {}
    for k, v in pairs(SHORT) do cfg[k] = v end
    cfg.method, cfg.rounds = method, 1
    local run = loop.run(cfg, { dir = tmp .. "/" .. method })
    T.eq(run.metrics[1].train_steps, require("mile.methods").budget(run), method)
  end
  -- every shipped config serves every method (the main job and batches share one base)
  for _, file in ipairs { "lunarlander", "drawer_open", "button_press", "peg_insert" } do
    local base = config.load_file(ROOT .. "/scripts/configs/" .. file .. ".lua")
    for _, method in ipairs(require("mile.methods").names()) do
      T.eq(loop.resolve(base, { "method=" .. method }).method, method, file)
    end
  end
end)

T.test("a continuous task runs through the Gaussian model", function()
  local run = loop.run({ env = "drawer-open-v3", method = "mile", rounds = 1, episodes_per_round = 1, epochs = 1,
    eval_episodes = 1, max_episode_steps = 60, progress = false }, { dir = tmp .. "/drawer" })
  T.eq(#run.metrics, 1)
  T.truthy(run.metrics[1].steps > 0)
end)

T.test("a run killed with SIGKILL resumes and ends with the same metrics", function()
  local cfg = "rounds=4"
  local function train(dir, extra)
    return ("%s train " .. LUNAR .. " --set %s --set eval_episodes=3 --set episodes_per_round=1 " ..
      "--set epochs=3 --set progress=false --dir %s %s"):format(MILE, cfg, dir, extra or "")
  end
  local a, b = tmp .. "/whole", tmp .. "/killed"
  T.truthy(os.execute(train(a, ">/dev/null")))
  -- start the second run, kill it once its first round is committed
  local sh = ("( %s >/dev/null 2>&1 & pid=$!; while [ ! -f %s/state.lua ]; do sleep 0.02; done; kill -9 $pid; " ..
    "wait $pid 2>/dev/null; exit 0 )"):format(train(b), b)
  T.truthy(os.execute(sh))
  local state = assert(io.open(b .. "/state.lua")):read("a")
  T.truthy(not state:find("round = 4,", 1, true), "killed before the last round")
  T.truthy(os.execute(("%s train --resume %s >/dev/null"):format(MILE, b)))
  local function metrics(dir)
    local rows = {}
    for line in io.lines(dir .. "/metrics.csv") do rows[#rows + 1] = line:gsub(",[^,]*$", "") end -- drop seconds
    return rows
  end
  T.eq(metrics(b), metrics(a))
end)

T.test("config errors name the key", function()
  T.raises(function() loop.resolve { rounds = "three" } end, "'rounds' must be integer, got string")
  T.raises(function() loop.resolve({}, { "loss.lamda=0.3" }) end, "unknown key 'loss.lamda'.*did you mean 'loss.lambda'")
  T.raises(function() loop.resolve { method = "dagger" } end, "'method' = dagger: unknown method %(known: bc, hg_dagger, iwr, mile%)")
  T.raises(function() loop.resolve { env = "CartPole-v1" } end, "'env'")
  local out = io.popen(MILE .. " train " .. LUNAR .. " --set foo=1 2>&1"):read("a")
  T.truthy(out:find("unknown key 'foo'", 1, true), out)
end)

T.run()
