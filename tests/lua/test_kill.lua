-- The commit protocol of a run survives a kill at any instruction that touches its
-- files: `mile train` is killed (SIGKILL, by strace's fault injection) at every rename
-- and at every write to a file of a short run, then resumed; each resumed run must end
-- with the uninterrupted run's dataset.csv and metrics.csv (less the wall-clock column),
-- with no temporary file left behind. The same for the `mile batch` driver (its jobs
-- are other processes and run on): killed at every rename and at a sample of its
-- writes, then run again, it must end with the uninterrupted batch's aggregate.csv and
-- every job run to its end exactly once.
local T = require "testing"
local sys = require "mile.sys"

local MILE = arg[-1]
local tmp = T.tmpdir()

local q, read = T.quote, T.read_file

local function sh(cmd) return T.shell(tmp, cmd) end

local function metrics(dir)
  local lines = {}
  for line in (read(dir .. "/metrics.csv") or ""):gmatch("[^\n]+") do lines[#lines + 1] = (line:gsub(",[^,]*$", "")) end
  return lines
end

local SETTINGS = "--set episodes_per_round=1 --set epochs=1 --set batch_size=64 --set eval_episodes=1 "
  .. "--set max_episode_steps=100 --set progress=false --set rounds=2 --set seed=1"
local TRAIN = q(MILE) .. " train " .. SETTINGS .. " --dir "

if sys.stat("/usr/bin/strace") ~= "file" then
  T.test("kill at every write", function() T.skip("strace is not installed (scripts/setup-deps.sh installs it)") end)
  T.run()
  return
end

-- the uninterrupted run, and the syscalls to kill at
local code, out = sh("strace -qq -e trace=rename,write -o trace.txt " .. TRAIN .. "ref")
assert(code == 0, out)
local renames, writes = 0, 0
for line in (read(tmp .. "/trace.txt") or ""):gmatch("[^\n]+") do
  if line:match("^rename%(") then renames = renames + 1 end
  if line:match("^write%([3-9]") or line:match("^write%(%d%d") then writes = writes + 1 end -- files, not stdout/err
end
local want_dataset, want_metrics = read(tmp .. "/ref/dataset.csv"), metrics(tmp .. "/ref")

local function leftovers(dir)
  local p = io.popen(("find %s -name '*.tmp*' -o -name '*.part*'"):format(q(dir)))
  local s = p:read("a")
  p:close()
  return s
end

-- kill at the n-th call of syscall `which`, then finish the run as a user would
local function case(which, n)
  local dir = ("%s-%d"):format(which, n)
  local c, o = sh(("strace -qq -e trace=%s -e inject=%s:signal=SIGKILL:when=%d -o /dev/null %s%s"):format(which,
    which, n, TRAIN, dir))
  T.truthy(c ~= 0, ("%s #%d: the run was not killed: %s"):format(which, n, o))
  if sys.stat(tmp .. "/" .. dir .. "/config.lua") == "file" then
    c, o = sh(q(MILE) .. " train --resume " .. dir)
  else -- killed before the run directory existed: start it again
    c, o = sh(TRAIN .. dir)
  end
  T.eq(c, 0, ("%s #%d: %s"):format(which, n, o))
  T.truthy(read(tmp .. "/" .. dir .. "/dataset.csv") == want_dataset, ("%s #%d: dataset.csv differs"):format(which, n))
  T.eq(metrics(tmp .. "/" .. dir), want_metrics, ("%s #%d: metrics.csv"):format(which, n))
  T.eq(leftovers(tmp .. "/" .. dir), "", ("%s #%d: temporary files left"):format(which, n))
  os.execute("rm -rf " .. q(tmp .. "/" .. dir))
end

T.test(("killed at each of the %d renames, resumed"):format(renames), function()
  T.truthy(renames >= 15, "a two-round run renames every file it commits")
  for n = 1, renames do case("rename", n) end
end)

T.test(("killed at each of the %d writes to files, resumed"):format(writes), function()
  T.truthy(writes >= 20)
  for n = 1, writes do case("write", n) end
end)

-- ---- mile batch: the driver killed at each of its renames and writes, run again ----------------

local SPEC = [[return { name = "k", base = { env = "LunarLander-v3", rounds = 1, episodes_per_round = 1, epochs = 1,
  batch_size = 64, eval_episodes = 1, max_episode_steps = 60 }, grid = { seed = { 0, 1 } } }]]
assert(sys.write_atomic(tmp .. "/spec.lua", SPEC .. "\n"))
local BATCH = q(MILE) .. " batch spec.lua --workers 2 --out "

local function aggregate(dir) return read(tmp .. "/" .. dir .. "/aggregate.csv") end

code, out = sh("strace -qq -e trace=rename,write -o btrace.txt " .. BATCH .. "bref")
assert(code == 0, out)
local b_renames, b_writes = 0, 0
for line in (read(tmp .. "/btrace.txt") or ""):gmatch("[^\n]+") do
  if line:match("^rename%(") then b_renames = b_renames + 1 end
  if line:match("^write%(") then b_writes = b_writes + 1 end
end
local want_aggregate = aggregate("bref")

-- the number of `mile train` processes a batch directory's jobs were started by
local function starts(dir)
  local n = 0
  for _, log in ipairs(sys.listdir(tmp .. "/" .. dir .. "/logs") or {}) do
    if log:match("%.log$") then
      for _ in (read(tmp .. "/" .. dir .. "/logs/" .. log) or ""):gmatch("run directory:") do n = n + 1 end
    end
  end
  return n
end

local function batch_case(which, n)
  local dir = ("b%s-%d"):format(which, n)
  sh(("strace -qq -e trace=%s -e inject=%s:signal=SIGKILL:when=%d -o /dev/null %s%s"):format(which, which, n,
    BATCH, dir))
  local c, o = sh(BATCH .. dir)
  T.eq(c, 0, ("batch %s #%d: %s"):format(which, n, o))
  T.eq(aggregate(dir), want_aggregate, ("batch %s #%d: aggregate.csv"):format(which, n))
  T.eq(starts(dir), 2, ("batch %s #%d: each job ran to its end once"):format(which, n))
  os.execute("rm -rf " .. q(tmp .. "/" .. dir))
end

T.test(("the batch driver killed at each of its %d renames, run again"):format(b_renames), function()
  T.truthy(b_renames >= 4)
  for n = 1, b_renames do batch_case("rename", n) end
end)

-- every rename is a commit point of the driver; between them its writes go to temporary
-- files, so a sample of them (every k-th, about 8) covers the windows without a
-- minute per case in CI
T.test(("the batch driver killed at every %s of its %d writes, run again"):format("k-th", b_writes), function()
  local k = math.max(1, b_writes // 8)
  for n = 1, b_writes, k do batch_case("write", n) end
end)

T.run()
