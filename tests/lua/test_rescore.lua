-- mile rescore (mile.rescore) against the independent computation it replaces: a run
-- trained with more evaluation episodes from the start. Same config and seed, so the
-- training is the same; only the scores may change, and they must come out as that
-- run's.
local T = require "testing"
local loop = require "mile.loop"
local rescore = require "mile.rescore"
local rundir = require "mile.rundir"
local sys = require "mile.sys"

local MILE = arg[-1]
local tmp = T.tmpdir()

local SCORES = { success = true, ["return"] = true, length = true }

local function run_with(cfg, episodes, dir)
  local c = {}
  for k, v in pairs(cfg) do c[k] = v end
  c.eval_episodes = episodes
  loop.run(c, { dir = dir })
  return dir
end

local function copy(from, to)
  T.truthy(os.execute(("cp -r '%s' '%s'"):format(from, to)))
  return to
end

-- Every metric of two runs equal, except the seconds a round took; the scores to
-- `tol` (relative; 0: to the bit).
local function same_metrics(a, b, tol)
  T.eq(#a, #b)
  for r = 1, #a do
    for k, v in pairs(b[r]) do
      if k ~= "seconds" then
        local w = a[r][k]
        if SCORES[k] and tol > 0 then
          T.truthy(math.abs(w - v) <= tol * math.max(1, math.abs(v)), ("round %d %s: %.17g vs %.17g"):format(r, k, w, v))
        elseif v == v then
          T.eq(w, v, ("round %d %s"):format(r, k))
        else
          T.truthy(w ~= w, ("round %d %s: nan expected"):format(r, k))
        end
      end
    end
  end
end

local function same_score(a, b, what)
  for k in pairs(SCORES) do T.eq(a[k], b[k], what .. " " .. k) end
end

local read = T.read_file

local LUNAR = { env = "LunarLander-v3", method = "mile", rounds = 2, episodes_per_round = 1, epochs = 2,
  ["eval.expert"] = true, progress = false }

local three = run_with(LUNAR, 3, tmp .. "/three")
local six = run_with(LUNAR, 6, tmp .. "/six")

T.test("rescoring a 3-episode run on 6 gives the 6-episode run's metrics", function()
  local dir = copy(three, tmp .. "/extended")
  local run, changed = rescore.run(dir, 6)
  T.truthy(changed)
  local want = rundir.open(six):state()
  local got = rundir.open(dir):state()
  -- rounds keep their 3 stored episodes and play 4..6: the mean return to rounding
  same_metrics(got.metrics, want.metrics, 1e-12)
  same_score(got.initial, want.initial, "initial") -- the references are played in full
  same_score(got.expert, want.expert, "expert")
  T.eq(got.eval_episodes, 6)
  T.eq(rundir.open(dir):config().eval_episodes, 6)
  T.eq(read(dir .. "/dataset.csv"), read(six .. "/dataset.csv")) -- evaluation fed no training
  T.eq(run.metrics[2].success, want.metrics[2].success)
  -- metrics.csv is the state's, as the 6-episode run wrote it (but for seconds)
  local function without_seconds(text) return (text:gsub(",[^,\n]*\n", "\n")) end
  T.eq(without_seconds(read(dir .. "/metrics.csv")), without_seconds(read(six .. "/metrics.csv")))
  local again, changed_again = rescore.run(dir, 6)
  T.truthy(not changed_again, "a second rescore at the same count changes nothing")
  T.eq(again.metrics[1].success, got.metrics[1].success)
end)

T.test("--full plays every episode and matches to the bit; fewer episodes replay in full", function()
  local dir = copy(three, tmp .. "/full")
  rescore.run(dir, 6, { full = true })
  same_metrics(rundir.open(dir):state().metrics, rundir.open(six):state().metrics, 0)
  local down = copy(six, tmp .. "/down")
  rescore.run(down, 3)
  local got, want = rundir.open(down):state(), rundir.open(three):state()
  same_metrics(got.metrics, want.metrics, 0)
  same_score(got.initial, want.initial, "initial")
end)

T.test("a stored score the run's states do not reproduce is refused, and nothing is written", function()
  local dir = copy(three, tmp .. "/tampered")
  local text = read(dir .. "/state.lua")
  local st = rundir.open(dir):state()
  local forged = text:gsub("initial = {(.-)success = [^,]+,", ("initial = {%%1success = %.17g,"):format(
    st.initial.success + 1 / 3), 1)
  T.truthy(forged ~= text)
  T.truthy(sys.write_atomic(dir .. "/state.lua", forged))
  local ok, err = pcall(rescore.run, dir, 6)
  T.truthy(not ok)
  T.truthy(tostring(err):find("initial policy's stored success", 1, true), err)
  T.truthy(tostring(err):find("not reproduced on its own 3 episodes", 1, true), err)
  T.eq(read(dir .. "/state.lua"), forged)
  T.eq(rundir.open(dir):config().eval_episodes, 3)
end)

T.test("a memo shares the references between runs of one seed, and checks them", function()
  local a, b = copy(three, tmp .. "/memo_a"), copy(three, tmp .. "/memo_b")
  local memo = {}
  rescore.run(a, 5, { memo = memo })
  local n = 0
  for _ in pairs(memo) do n = n + 1 end
  T.eq(n, 2) -- the initial policy and the expert
  rescore.run(b, 5, { memo = memo })
  same_score(rundir.open(b):state().initial, rundir.open(a):state().initial, "initial")
end)

T.test("best-of selection (eval.select_episodes) does not depend on eval_episodes", function()
  local cfg = { env = "drawer-open-v3", method = "mile", rounds = 1, episodes_per_round = 1, epochs = 2,
    ["eval.select"] = "best", ["eval.every"] = 1, ["eval.select_episodes"] = 1, max_episode_steps = 25,
    progress = false }
  local one = run_with(cfg, 1, tmp .. "/best1")
  local two = run_with(cfg, 2, tmp .. "/best2")
  rescore.run(one, 2, { full = true })
  same_metrics(rundir.open(one):state().metrics, rundir.open(two):state().metrics, 0)
  T.eq(read(one .. "/checkpoints/round_001/policy.safetensors"), read(two .. "/checkpoints/round_001/policy.safetensors"))
end)

T.test("mile rescore: run and batch directories, and bad input", function()
  local dir = copy(three, tmp .. "/cli")
  local out = io.popen(("%s rescore %s --episodes 4 2>&1"):format(MILE, dir)):read("a")
  T.truthy(out:find("scored on 4 episodes", 1, true), out)
  T.eq(rundir.open(dir):state().eval_episodes, 4)
  local spec = tmp .. "/spec.lua"
  T.truthy(sys.write_atomic(spec, ([[return { name = "tiny", base = { env = "LunarLander-v3", rounds = 1,
    episodes_per_round = 1, epochs = 1, eval_episodes = 2, progress = false }, grid = { method = { "bc" } },
    seeds = { 0 } }]])))
  T.truthy(os.execute(("%s batch %s --out %s/tiny >/dev/null 2>&1"):format(MILE, spec, tmp)))
  out = io.popen(("%s rescore %s/tiny --episodes 4 2>&1"):format(MILE, tmp)):read("a")
  T.truthy(out:find("scored on 4 episodes", 1, true), out)
  -- the aggregate is written again from the rescored job (round 0: the initial policy)
  local job = rundir.open(tmp .. "/tiny/jobs/method=bc_seed=0"):state()
  local rows = {}
  for line in read(tmp .. "/tiny/aggregate.csv"):gmatch("[^\n]+") do
    local f = {}
    for v in line:gmatch("[^,]+") do f[#f + 1] = v end
    rows[#rows + 1] = f
  end
  T.eq(rows[1][3], "round")
  T.eq(rows[1][8], "return_mean")
  T.near(tonumber(rows[2][8]), job.initial["return"], 1e-4 * math.abs(job.initial["return"]))
  T.near(tonumber(rows[3][8]), job.metrics[1]["return"], 1e-4 * math.abs(job.metrics[1]["return"]))
  for _, bad in ipairs { { "--episodes 4", "needs a run or batch directory" },
    { dir, "--episodes N (>= 1) is required" }, { dir .. " --episodes 0", "--episodes N (>= 1) is required" },
    { tmp .. "/nowhere --episodes 4", "neither a run directory" } } do
    local text = io.popen(("%s rescore %s 2>&1; echo rc=$?"):format(MILE, bad[1])):read("a")
    T.truthy(text:find(bad[2], 1, true), text)
    T.truthy(not text:find("rc=0", 1, true), text)
  end
end)

T.run()
