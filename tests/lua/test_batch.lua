-- mile.batch: Student-t intervals against tables, planning a spec, a tiny batch end to
-- end with 2 workers, and a batch killed with SIGKILL (driver and workers) that
-- resumes to the same aggregate.csv.
local T = require "testing"
local batch = require "mile.batch"
local sys = require "mile.sys"

local MILE = arg[-1]
local tmp = os.tmpname()
os.remove(tmp)
assert(sys.mkdir(tmp))

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

local function read_lua(path) return assert(loadfile(path, "t", { math = { huge = math.huge } }))() end

T.test("t quantiles and 95% intervals match the tables", function()
  -- two-sided 95% critical values t_{0.975, df} (any statistics table)
  local table95 = { [1] = 12.7062047361747, [2] = 4.30265272974946, [3] = 3.18244630528371, [4] = 2.77644510519779,
    [10] = 2.22813885198627, [30] = 2.04227245630124, [1000] = 1.96233908082641 }
  for df, t in pairs(table95) do T.near(batch.t_quantile(0.975, df), t, 1e-9, "df " .. df) end
  T.near(batch.t_quantile(0.5, 7), 0, 1e-12)
  T.near(batch.t_quantile(0.025, 4), -2.77644510519779, 1e-9)
  T.near(batch.t_cdf(2.0, 5), 0.949030260585071, 1e-10)
  local mean, sd, ci, n = batch.summary { 1, 2, 3, 4 }
  T.near(mean, 2.5, 1e-15)
  T.near(sd, math.sqrt(5 / 3), 1e-12)
  T.near(ci, 3.18244630528371 * math.sqrt(5 / 3) / 2, 1e-9)
  T.eq(n, 4)
  local _, sd1, ci1 = batch.summary { 0.7 }
  T.truthy(sd1 ~= sd1 and ci1 ~= ci1, "one value: no spread")
end)

local BASE = { env = "LunarLander-v3", method = "mile", rounds = 3, episodes_per_round = 1, epochs = 1, eval_episodes = 3 }

T.test("a spec plans cells x seeds, checked before anything runs", function()
  local plan = batch.plan { name = "p", base = BASE, seeds = { 0, 1, 2 }, set = { epochs = 2 },
    grid = { ["loss.lambda"] = { 0.25, 0.75 },
      cost = { { label = "c10", ["human.cost"] = 10, ["learner.cost"] = 10 }, { ["human.cost"] = 50, ["learner.cost"] = 50 } } } }
  T.eq(#plan.cells, 4)
  T.eq(#plan.jobs, 12)
  T.eq(plan.axes, { "cost", "loss.lambda" })
  T.eq(plan.cells[1].id, "cost=c10_loss.lambda=0.25")
  T.eq(plan.cells[4].id, "cost=50-50_loss.lambda=0.75")
  T.eq(plan.jobs[1].id, "cost=c10_loss.lambda=0.25_seed=0")
  T.eq(plan.jobs[12].id, "cost=50-50_loss.lambda=0.75_seed=2")
  local cfg = plan.jobs[12].config
  T.eq(cfg["human.cost"], 50)
  T.eq(cfg["learner.cost"], 50)
  T.eq(cfg["loss.lambda"], 0.75)
  T.eq(cfg.seed, 2)
  T.eq(cfg.epochs, 2)
  T.raises(function() batch.plan { name = "p", base = BASE, grid = { ["loss.lamda"] = { 0.5 } } } end,
    "unknown key 'loss.lamda'")
  T.raises(function() batch.plan { name = "p", base = BASE, grid = { method = { "nope" } } } end, "method")
  T.raises(function() batch.plan { name = "p", base = BASE, grid = { x = { { label = "a", seed = 1 }, { label = "a", seed = 2 } } } } end,
    "both named")
  T.raises(function() batch.plan { name = "p", base = BASE, seedz = { 1 } } end, "unknown spec key 'seedz'")
end)

T.test("a setting that only some methods use is quiet; one no job uses warns once", function()
  local function warnings(spec)
    local said, stderr = {}, io.stderr
    io.stderr = { write = function(_, s) said[#said + 1] = s end }
    local ok, err = pcall(batch.plan, spec)
    io.stderr = stderr
    assert(ok, err)
    return said
  end
  local quiet = warnings { name = "p", base = BASE, seeds = { 0, 1 }, set = { ["bc.steps"] = 5 },
    grid = { method = { "mile", "bc" } } }
  T.eq(#quiet, 0, table.concat(quiet))
  local said = warnings { name = "p", base = BASE, seeds = { 0, 1 }, set = { ["bc.steps"] = 5 },
    grid = { method = { "mile", "iwr" } } }
  T.eq(#said, 1, table.concat(said))
  T.truthy(said[1]:find('bc.steps belongs to method "bc"', 1, true), said[1])
  T.truthy(said[1]:find("which no job of the batch uses", 1, true), said[1])
end)

-- the tiny batch of the next tests: 2 cells x 2 seeds
local spec = tmp .. "/tiny.lua"
assert(io.open(spec, "w")):write([[
return {
  name = "tiny",
  base = { env = "LunarLander-v3", method = "mile", rounds = 3, episodes_per_round = 1, epochs = 1, eval_episodes = 3 },
  grid = { ["loss.lambda"] = { 0.3, 0.7 } },
  seeds = { 0, 1 },
}
]]):close()

local function batch_cmd(out, extra)
  return ("%s batch %s --out %s --workers 2 %s"):format(MILE, spec, out, extra or "")
end

local function csv(path)
  local rows, header = {}, nil
  for line in io.lines(path) do
    local f = {}
    for x in (line .. ","):gmatch("([^,]*),") do f[#f + 1] = x end
    if not header then header = f else
      local r = {}
      for i, k in ipairs(header) do r[k] = tonumber(f[i]) or f[i] end
      rows[#rows + 1] = r
    end
  end
  return rows, header
end

local whole = tmp .. "/whole"

T.test("a tiny batch runs end to end with 2 workers", function()
  T.truthy(os.execute(batch_cmd(whole, ">" .. tmp .. "/whole.out 2>&1")), read(tmp .. "/whole.out"))
  for _, f in ipairs { "aggregate.csv", "aggregate.md", "base.lua", "batch.lua", "jobs.csv" } do
    T.eq(sys.stat(whole .. "/" .. f), "file", f)
  end
  local ids = sys.listdir(whole .. "/jobs")
  T.eq(ids, { "loss.lambda=0.3_seed=0", "loss.lambda=0.3_seed=1", "loss.lambda=0.7_seed=0", "loss.lambda=0.7_seed=1" })
  for _, id in ipairs(ids) do
    T.eq(read_lua(whole .. "/jobs/" .. id .. "/state.lua").round, 3, id)
    T.eq(sys.stat(whole .. "/logs/" .. id .. ".log"), "file", id)
  end
  -- the aggregate against the jobs' own metrics: mean and t-interval with n = 2
  local rows = csv(whole .. "/aggregate.csv")
  T.eq(#rows, 2 * 4) -- rounds 0..3 per cell
  local t975 = 12.7062047361747
  for _, row in ipairs(rows) do
    local v = {}
    for seed = 0, 1 do
      local st = read_lua(("%s/jobs/loss.lambda=%s_seed=%d/state.lua"):format(whole, row["loss.lambda"], seed))
      v[#v + 1] = row.round == 0 and st.initial.success or st.metrics[row.round].success
    end
    T.eq(row.n, 2)
    local mean = (v[1] + v[2]) / 2
    local sd = math.abs(v[1] - v[2]) / math.sqrt(2)
    T.near(row.success_mean, mean, 1e-5)
    T.near(row.success_ci95, t975 * sd / math.sqrt(2), 1e-5 * math.max(1, t975 * sd))
  end
  local last = read_lua(whole .. "/jobs/loss.lambda=0.7_seed=1/state.lua").metrics[3]
  T.truthy(read(whole .. "/aggregate.md"):find("| 0.7 | 2/2 | 3 |", 1, true), "final-round table")
  T.truthy(last.interventions_total > 0)
  -- the same command again: nothing to run, the same aggregate
  local before = read(whole .. "/aggregate.csv")
  local p = io.popen(batch_cmd(whole, "2>&1"))
  local out = p:read("a")
  p:close()
  T.truthy(out:find("4 finished, 0 to resume, 0 to start", 1, true), out)
  T.eq(read(whole .. "/aggregate.csv"), before)
end)

T.test("a batch killed with SIGKILL resumes to the same aggregate", function()
  local killed = tmp .. "/killed"
  -- setsid: the driver leads a new process group, which its workers join
  local pidfile = tmp .. "/driver.pid"
  T.truthy(os.execute(("setsid %s >%s/killed.out 2>&1 & echo $! >%s"):format(batch_cmd(killed), tmp, pidfile)))
  local pid = assert(tonumber(read(pidfile)))
  -- wait until one job is finished and another has committed its first round (of 3)
  local function states()
    local finished, partial = 0, 0
    for _, id in ipairs(sys.listdir(killed .. "/jobs") or {}) do
      local f = loadfile(killed .. "/jobs/" .. id .. "/state.lua", "t", { math = { huge = math.huge } })
      local ok, st = pcall(f or error)
      if ok and st then
        if st.round == 3 then finished = finished + 1 elseif st.round == 1 then partial = partial + 1 end
      end
    end
    return finished, partial
  end
  local t0, finished, partial = sys.monotonic(), 0, 0
  repeat
    os.execute("sleep 0.02")
    finished, partial = states()
  until (finished >= 1 and partial >= 1) or finished == 4 or sys.monotonic() - t0 > 60
  T.truthy(os.execute(("kill -9 -%d"):format(pid)), "kill the process group") -- the driver and its workers
  os.execute("sleep 0.2")
  print(("# killed with %d finished and %d partial jobs"):format(finished, partial))
  T.truthy(finished >= 1 and partial >= 1, "killed midway (" .. finished .. " finished, " .. partial .. " partial)")
  T.truthy(sys.stat(killed .. "/aggregate.csv") == nil, "the killed driver never aggregated")
  -- the same command again: resumes the partial jobs, starts the rest
  local p = io.popen(batch_cmd(killed, "2>&1"))
  local out = p:read("a")
  local ok = p:close()
  T.truthy(ok, out)
  T.truthy(out:find("resumed", 1, true), "a job continued with --resume:\n" .. out)
  T.eq(read(killed .. "/aggregate.csv"), read(whole .. "/aggregate.csv"))
end)

T.test("a failing job is reported and the batch goes on", function()
  local out = tmp .. "/failing"
  local s = batch.run({ name = "failing", base = { env = "LunarLander-v3", rounds = 1, episodes_per_round = 1, epochs = 1,
    eval_episodes = 1 }, set = { policy_dir = tmp .. "/nowhere" } }, { out = out, workers = 1, mile = MILE, quiet = true })
  T.eq(s.failed, { "base_seed=0" })
  T.truthy(read(out .. "/jobs.csv"):find("base_seed=0,base,0,failed,1,", 1, true), read(out .. "/jobs.csv"))
  T.truthy(read(out .. "/logs/base_seed=0.log"):find("no cached policies", 1, true))
  T.truthy(read(out .. "/aggregate.md"):find("0/1", 1, true))
end)

T.run()
