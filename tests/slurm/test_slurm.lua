-- mile batch --backend slurm against a live single-node Slurm (tests/slurm/start.sh,
-- started here when it is not running and stopped at the end when started here):
-- the same 2x2 batch through slurm and local ends with the same aggregate.csv; a driver
-- killed with SIGKILL while its array runs, and a task scancelled, finish when the command
-- runs again, with no job run twice (the scheduler's job completion log, by job name); a
-- failing task is reported with its log tail; --detach, --status and --cancel; bad input
-- (no sbatch, a partition that does not exist, an unreachable controller) is a clear
-- error with nothing submitted. Skipped (status 77) only where slurm-wlm and munge
-- cannot be installed.
local T = require "testing"
local sys = require "mile.sys"

local MILE = arg[-1]
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local CLUSTER = os.getenv("MILE_SLURM_DIR") or "/tmp/mile-slurm"
local CONF = CLUSTER .. "/slurm.conf"
local ENV = "SLURM_CONF=" .. CONF .. " "

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

local function sh(cmd) -- -> ok, output (stdout and stderr)
  local p = io.popen("{ " .. cmd .. "; } 2>&1")
  local out = p:read("a")
  return p:close() and true or false, out
end

-- the cluster: running already, or started here (and stopped at the end)
local t0 = sys.monotonic()
local running_before = sh(ENV .. "scontrol ping 2>/dev/null | grep -q UP")
if not running_before then
  local ok, how, code = os.execute(("%s/start.sh %s >/dev/null"):format(HERE, CLUSTER))
  if not ok and how == "exit" and code == 77 then
    print("# SKIP: slurm-wlm and munge are not installed and cannot be installed here (tests/slurm/start.sh)")
    os.exit(77)
  end
  assert(ok, "tests/slurm/start.sh failed; logs in " .. CLUSTER .. "/log")
end
print(("# cluster %s (%.1f s)"):format(running_before and "was running" or "started", sys.monotonic() - t0))

local tmp = os.tmpname()
os.remove(tmp)
assert(sys.mkdir(tmp))

-- the tiny 2x2 batch (2 cells x 2 seeds)
local function write_spec(name, base)
  local path = ("%s/%s.lua"):format(tmp, name)
  assert(io.open(path, "w")):write(([[
return {
  name = %q,
  base = { env = "LunarLander-v3", method = "mile", episodes_per_round = 1, %s },
  grid = { ["loss.lambda"] = { 0.3, 0.7 } },
  seeds = { 0, 1 },
  slurm = { poll = 1 },   -- squeue every second (default 10): the tests wait on it
}
]]):format(name, base)):close()
  return path
end
local TINY = "rounds = 1, epochs = 1, eval_episodes = 1, max_episode_steps = 100"

local function batch(spec, out, extra)
  return ("%s%s batch %s --out %s %s"):format(ENV, MILE, spec, out, extra or "")
end

-- the array job ids a batch directory submitted
local function arrays_of(out)
  local ids = {}
  for _, name in ipairs(sys.listdir(out .. "/slurm") or {}) do
    if name:match("^array%-%d+%.id$") then ids[#ids + 1] = read(out .. "/slurm/" .. name):match("%d+") end
  end
  return ids
end

-- the scheduler's job completion records of these arrays: {name, state, array, task}
local function completions(arrays)
  local want = {}
  for _, a in ipairs(arrays) do want[a] = true end
  local list = {}
  for line in (io.open(CLUSTER .. "/log/jobcomp.log") and read(CLUSTER .. "/log/jobcomp.log") or ""):gmatch("[^\n]+") do
    local array = line:match(" ArrayJobId=(%d+)")
    if array and want[array] then
      list[#list + 1] = { name = line:match(" Name=(%S+)"), state = line:match(" JobState=(%S+)"), array = array,
        task = line:match(" ArrayTaskId=(%d+)") }
    end
  end
  return list
end

local function queued(out) -- tasks of this batch still in the queue
  local _, text = sh(ENV .. "squeue -h -r -o '%o'")
  local n = 0
  for line in text:gmatch("[^\n]+") do if line:find(out, 1, true) then n = n + 1 end end
  return n
end

local tiny = write_spec("tiny", TINY)

T.test("the same 2x2 batch through slurm and local: the same aggregate.csv", function()
  local ok, out = sh(batch(tiny, tmp .. "/local", "--workers 2"))
  T.truthy(ok, out)
  local t = sys.monotonic()
  ok, out = sh(batch(tiny, tmp .. "/slurm", "--backend slurm --max-running 4 --time 10 --cpus 1 --mem 500M " ..
    "--prologue 'echo prologue ran on $(hostname)'"))
  print(("# 4-task array: %.1f s"):format(sys.monotonic() - t))
  T.truthy(ok, out)
  T.truthy(out:find("[4/4] done", 1, true), out)
  T.truthy(read(tmp .. "/slurm/logs/loss.lambda=0.3_seed=0.log"):find("prologue ran on", 1, true), "the prologue ran")
  T.eq(read(tmp .. "/slurm/aggregate.csv"), read(tmp .. "/local/aggregate.csv"))
  -- one array, each job run once, under its own name
  local arrays = arrays_of(tmp .. "/slurm")
  T.eq(#arrays, 1)
  local names = {}
  for _, c in ipairs(completions(arrays)) do
    T.eq(c.state, "COMPLETED", c.name)
    names[#names + 1] = c.name
  end
  table.sort(names)
  T.eq(names, { "tiny/loss.lambda=0.3_seed=0", "tiny/loss.lambda=0.3_seed=1", "tiny/loss.lambda=0.7_seed=0",
    "tiny/loss.lambda=0.7_seed=1" })
  -- the array index is the job's place in the plan
  T.truthy(read(tmp .. "/slurm/slurm/array-1.jobs"):find("4\tloss.lambda=0.7_seed=1", 1, true))
end)

T.test("a driver killed with SIGKILL and a scancelled task: the batch finishes, no job run twice", function()
  -- longer jobs, one at a time, so that one runs while the driver is killed
  local spec = write_spec("killed", "rounds = 3, epochs = 2, eval_episodes = 4, max_episode_steps = 300")
  local ok, out = sh(batch(spec, tmp .. "/killed-local", "--workers 2"))
  T.truthy(ok, out)
  local dir = tmp .. "/killed"
  local pidfile = tmp .. "/driver.pid"
  T.truthy(os.execute(("setsid env %s >%s/killed.out 2>&1 & echo $! >%s"):format(
    batch(spec, dir, "--backend slurm --max-running 1"), tmp, pidfile)))
  local pid = assert(tonumber(read(pidfile)))
  -- wait until a task runs under its job's name (the wrapper renamed it)
  local task, name
  local t = sys.monotonic()
  repeat
    os.execute("sleep 0.05")
    local _, text = sh(ENV .. "squeue -h -r -t RUNNING -o '%i %j %o'")
    for line in text:gmatch("[^\n]+") do
      local i, j, o = line:match("^(%S+) (%S+) (%S+)$")
      if o and o:find(dir, 1, true) and j:find("^killed/") then task, name = i, j end
    end
  until task or sys.monotonic() - t > 60
  T.truthy(task, "a task ran: " .. read(tmp .. "/killed.out"))
  T.truthy(os.execute(("kill -9 %d"):format(pid)), "kill the driver")
  T.truthy(os.execute(ENV .. "scancel " .. task), "scancel " .. task)
  t = sys.monotonic()
  repeat os.execute("sleep 0.1") until not sh(ENV .. "squeue -h -j " .. task .. " | grep -q R") or sys.monotonic() - t > 30
  print(("# killed the driver and cancelled %s (%s); %d tasks still queued"):format(task, name, queued(dir)))
  T.truthy(sys.stat(dir .. "/aggregate.csv") == nil, "the killed driver never aggregated")
  -- the same command again: adopts what is queued or running, resubmits the cancelled job
  ok, out = sh(batch(spec, dir, "--backend slurm --max-running 1"))
  T.truthy(ok, out)
  T.truthy(out:find("adopted", 1, true), "tasks of the killed driver were adopted:\n" .. out)
  T.eq(read(dir .. "/aggregate.csv"), read(tmp .. "/killed-local/aggregate.csv"))
  T.eq(queued(dir), 0)
  -- from the scheduler: every job ran to completion once; the cancelled one ran twice,
  -- first cancelled
  local arrays = arrays_of(dir)
  T.eq(#arrays, 2, "the first array and the resubmission")
  local by_name = {}
  for _, c in ipairs(completions(arrays)) do
    by_name[c.name] = by_name[c.name] or {}
    table.insert(by_name[c.name], c.state)
  end
  local n = 0
  for job, states in pairs(by_name) do
    n = n + 1
    if job == name then T.eq(states, { "CANCELLED", "COMPLETED" }, job) else T.eq(states, { "COMPLETED" }, job) end
  end
  T.eq(n, 4)
end)

T.test("a task cancelled under a running driver is reported with its Slurm state; a rerun resumes it", function()
  local spec = tmp .. "/killed.lua" -- the jobs of the previous test, run again elsewhere
  local dir = tmp .. "/cancelled"
  T.truthy(os.execute(("(env %s >%s/cancelled.out 2>&1; echo $? >%s/cancelled.rc) &"):format(
    batch(spec, dir, "--backend slurm --max-running 1"), tmp, tmp)))
  local task
  local t = sys.monotonic()
  repeat
    os.execute("sleep 0.05")
    local _, text = sh(ENV .. "squeue -h -r -t RUNNING -o '%i %j %o'")
    for line in text:gmatch("[^\n]+") do
      local i, j, o = line:match("^(%S+) (%S+) (%S+)$")
      if o and o:find(dir, 1, true) and j:find("^killed/") then task = i end
    end
  until task or sys.monotonic() - t > 60
  T.truthy(task, "a task ran")
  T.truthy(os.execute(ENV .. "scancel " .. task))
  t = sys.monotonic()
  repeat os.execute("sleep 0.1") until sys.stat(tmp .. "/cancelled.rc") or sys.monotonic() - t > 120
  local out = read(tmp .. "/cancelled.out")
  T.eq(read(tmp .. "/cancelled.rc"), "1\n", out)
  T.truthy(out:find("FAILED [^\n]* %(exit %-1%)"), out)
  T.truthy(out:find("| mile batch: Slurm task " .. task .. " ended CANCELLED without an exit status", 1, true), out)
  T.truthy(out:find("1 job(s) failed", 1, true), out)
  local ok
  ok, out = sh(batch(spec, dir, "--backend slurm"))
  T.truthy(ok, out)
  T.eq(read(dir .. "/aggregate.csv"), read(tmp .. "/killed-local/aggregate.csv"))
end)

T.test("a failing task is reported with its log tail; the others finish; exit status 1", function()
  local spec = tmp .. "/failing.lua"
  assert(io.open(spec, "w")):write(([[
return {
  name = "failing",
  base = { env = "LunarLander-v3", method = "mile", episodes_per_round = 1, %s },
  grid = { where = { { label = "good" }, { label = "bad", policy_dir = %q } } },
}
]]):format(TINY, tmp .. "/nowhere")):close()
  local ok, out = sh(batch(spec, tmp .. "/failing", "--backend slurm"))
  T.truthy(not ok, "exit status non-zero:\n" .. out)
  T.truthy(out:find("FAILED where=bad_seed=0 (exit 1)", 1, true), out)
  T.truthy(out:find("| .*no cached policies"), "the log tail:\n" .. out)
  T.truthy(out:find("done where=good_seed=0", 1, true), out)
  T.truthy(out:find("1 job(s) failed: where=bad_seed=0", 1, true), out)
  _, out = sh(batch(spec, tmp .. "/failing", "--backend slurm --status"))
  T.truthy(out:find("where=bad_seed=0%s+failed%s+%d*%s+exit 1"), out)
  T.truthy(out:find("where=good_seed=0%s+finished"), out)
end)

T.test("--detach submits and returns; --status shows the queue; --cancel empties it; a rerun finishes", function()
  local dir = tmp .. "/detached"
  -- held: nothing starts until released, so the queue is seen as it was submitted
  local ok, out = sh(batch(tiny, dir, "--backend slurm --detach --sbatch-flags=--hold"))
  T.truthy(ok, out)
  local array = out:match("submitted job array (%d+)")
  T.truthy(array, out)
  ok, out = sh(batch(tiny, dir, "--backend slurm --status"))
  T.truthy(ok, out)
  T.truthy(out:find("4 jobs: 4 queued", 1, true), out)
  T.truthy(out:find("loss.lambda=0.7_seed=1%s+queued%s+" .. array .. "_4"), out)
  ok, out = sh(batch(tiny, dir, "--backend slurm --cancel"))
  T.truthy(ok and out:find("cancelled " .. array, 1, true), out)
  T.eq(queued(dir), 0)
  ok, out = sh(batch(tiny, dir, "--backend slurm --status"))
  T.truthy(out:find("4 jobs: 4 new", 1, true), out)
  ok, out = sh(batch(tiny, dir, "--backend slurm"))
  T.truthy(ok, out)
  T.eq(read(dir .. "/aggregate.csv"), read(tmp .. "/local/aggregate.csv"))
end)

T.test("bad input: a clear error naming what is missing, nothing submitted", function()
  local before = queued(tmp)
  -- no sbatch on the PATH: a directory with every other program
  local bin = tmp .. "/bin"
  assert(sys.mkdir(bin))
  T.truthy(os.execute(("for f in /usr/bin/* /bin/*; do n=${f##*/}; [ \"$n\" = sbatch ] || ln -sf \"$f\" %s/\"$n\"; done")
    :format(bin)))
  local ok, out = sh(("PATH=%s %s"):format(bin, batch(tiny, tmp .. "/bad1", "--backend slurm")))
  T.truthy(not ok and out:find("not found: sbatch", 1, true), out)
  T.eq(sys.stat(tmp .. "/bad1"), nil)
  -- a partition that does not exist
  ok, out = sh(batch(tiny, tmp .. "/bad2", "--backend slurm --partition nope"))
  T.truthy(not ok and out:find("Slurm partition 'nope' does not exist (partitions: debug)", 1, true), out)
  T.eq(sys.stat(tmp .. "/bad2"), nil)
  -- an unreachable controller: a config naming a port nobody listens on
  local conf = read(CONF):gsub("SlurmctldPort=%d+", "SlurmctldPort=9") .. "MessageTimeout=2\n"
  assert(io.open(tmp .. "/unreachable.conf", "w")):write(conf):close()
  ok, out = sh(("SLURM_CONF=%s/unreachable.conf %s batch %s --out %s/bad3 --backend slurm"):format(tmp, MILE, tiny, tmp))
  T.truthy(not ok and out:find("cannot reach the Slurm controller", 1, true), out)
  T.truthy(out:find("unreachable.conf", 1, true), "names the config:\n" .. out)
  T.eq(sys.stat(tmp .. "/bad3"), nil)
  -- a request sbatch refuses (more memory than the node has): no array queued
  ok, out = sh(batch(tiny, tmp .. "/bad4", "--backend slurm --mem 100000G"))
  T.truthy(not ok and out:find("sbatch refused the request (--ntasks=1 --mem='100000G')", 1, true), out)
  T.eq(sys.stat(tmp .. "/bad4"), nil)
  T.eq(queued(tmp), before)
  -- options of the wrong backend
  ok, out = sh(batch(tiny, tmp .. "/bad5", "--partition debug"))
  T.truthy(not ok and out:find("--partition is a slurm option", 1, true), out)
  ok, out = sh(batch(tiny, tmp .. "/bad5", "--backend slurm --workers 2"))
  T.truthy(not ok and out:find("--workers is for the local backend", 1, true), out)
  ok, out = sh(batch(tiny, tmp .. "/bad5", "--detach"))
  T.truthy(not ok and out:find("--detach needs a scheduler backend", 1, true), out)
end)

T.test("docs/cluster.md: the example spec plans, every slurm option is documented", function()
  local doc = HERE .. "/../../docs/cluster.md"
  local blocks = T.lua_blocks(doc)
  T.eq(#blocks, 1)
  local spec = assert(load(blocks[1], "=docs/cluster.md"))()
  spec.dir = HERE .. "/../.."
  local plan = require("mile.batch").plan(spec)
  T.eq(#plan.jobs, 20)
  T.eq(spec.backend, "slurm")
  local slurm = require "mile.batch.slurm"
  slurm.options(spec.slurm)
  local text = read(doc)
  for k in pairs(slurm.OPTIONS) do
    T.truthy(text:find("| `" .. k .. "`", 1, true), "docs/cluster.md documents " .. k)
  end
  T.raises(function() slurm.options { partiton = "x" } end, "unknown slurm option 'partiton'")
  T.raises(function() slurm.options { max_running = 0 } end, "max_running must be a positive integer")
end)

T.test("mile batch --help lists the slurm backend", function()
  local _, out = sh(MILE .. " batch --help")
  T.truthy(out:find("--backend local|slurm", 1, true), out)
end)

if not running_before then
  T.test("the cluster stops (the daemons this test started)", function()
    T.truthy(os.execute(("%s/stop.sh %s"):format(HERE, CLUSTER)))
    T.truthy(not sh(ENV .. "scontrol ping 2>/dev/null | grep -q UP"), "no controller answers")
  end)
end

T.run()
