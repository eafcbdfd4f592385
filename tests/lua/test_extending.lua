-- docs/extending.md: each example plugin is copied out of the document into a temporary
-- directory outside the repository and run through `mile train --plugin`, `--resume`
-- (the resumed run must end with the uninterrupted run's metrics), `mile eval`,
-- `mile.open` from another working directory and a 2 x 2 `mile batch`. Then the bad
-- inputs: a plugin with a syntax error, a name registered twice, a conflicting config
-- key, a missing plugin copy at resume.
local T = require "testing"
local sys = require "mile.sys"

local MILE = arg[-1]
local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/") or "."
local DOC = ROOT .. "/docs/extending.md"

local tmp = T.tmpdir()
local other = tmp .. "/elsewhere" -- a working directory that holds nothing of the runs
assert(sys.mkdir(other))

local read, write, q = T.read_file, T.write_file, T.quote

-- run a shell command in dir; returns ok, output (stdout + stderr)
local function sh(dir, cmd)
  local code, out = T.shell(dir, cmd)
  return code == 0, out, code
end

-- The files of the document: <!-- file: NAME --> followed by a ```lua block.
local function doc_files()
  local text = assert(read(DOC), "no " .. DOC)
  local files = {}
  for name, body in text:gmatch("<!%-%- file: ([%w_%.]+) %-%->%s*```lua\n(.-)```") do files[name] = body end
  return files
end

local FILES = doc_files()

-- Each example: its file and the settings that select what it registers.
local EXAMPLES = {
  { file = "logistic.lua", set = { "learner.model=logistic", "human.model=logistic" },
    grid = { key = "loss.lambda", values = { 0.3, 0.7 } } },
  { file = "height_cost.lua", set = { "learner.schedule=height_cost" },
    grid = { key = "height_cost.gain", values = { 1, 3 } } },
  { file = "sirius.lua", set = { "method=sirius" }, grid = { key = "sirius.up", values = { 2, 4 } } },
  { file = "fatigue.lua", set = { "learner.memory=fatigue", "human.memory=fatigue" },
    grid = { key = "fatigue.k", values = { 0.3, 1 } } },
}

local BASE = { "env=LunarLander-v3", "episodes_per_round=1", "epochs=2", "batch_size=64", "eval_episodes=2",
  "max_episode_steps=200", "progress=false", "seed=2" }

local function sets(list)
  local parts = {}
  for _, s in ipairs(list) do parts[#parts + 1] = "--set " .. q(s) end
  return table.concat(parts, " ")
end

local function all_sets(ex, extra)
  local l = {}
  for _, s in ipairs(BASE) do l[#l + 1] = s end
  for _, s in ipairs(ex.set) do l[#l + 1] = s end
  for _, s in ipairs(extra or {}) do l[#l + 1] = s end
  return sets(l)
end

-- metrics.csv without the wall-clock column
local function metrics(dir)
  local text = assert(read(dir .. "/metrics.csv"), "no metrics.csv in " .. dir)
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = (line:gsub(",[^,]*$", "")) end
  return lines
end

T.test("docs/extending.md has the four example files", function()
  for _, ex in ipairs(EXAMPLES) do T.truthy(FILES[ex.file], "no file block " .. ex.file) end
end)

for _, ex in ipairs(EXAMPLES) do
  T.test("example " .. ex.file .. ": train, resume, eval, open elsewhere, batch", function()
    local work = tmp .. "/" .. ex.file:gsub("%.lua$", "")
    assert(sys.mkdir(work))
    write(work .. "/" .. ex.file, FILES[ex.file])
    write(work .. "/base.lua", "return {}\n")
    -- uninterrupted: 2 rounds
    local ok, out = sh(work, ("%s train base.lua --plugin %s %s --set rounds=2 --dir full"):format(q(MILE), ex.file,
      all_sets(ex)))
    T.truthy(ok, out)
    -- interrupted after round 1, resumed (and extended) to 2 without --plugin
    ok, out = sh(work, ("%s train base.lua %s --set rounds=1 --dir part --plugin %s"):format(q(MILE), all_sets(ex),
      ex.file))
    T.truthy(ok, out)
    -- a copy of the interrupted run, moved elsewhere, resumes the same (paths inside are relative)
    ok, out = sh(work, "cp -r part " .. q(other .. "/moved-" .. ex.file) .. " && mv part part-moved")
    T.truthy(ok, out)
    ok, out = sh(other, ("%s train --resume %s --set rounds=2"):format(q(MILE), q(work .. "/part-moved")))
    T.truthy(ok, out)
    T.eq(metrics(work .. "/part-moved"), metrics(work .. "/full"), ex.file .. ": resumed = uninterrupted")
    ok, out = sh(other, ("%s train --resume %s --set rounds=2"):format(q(MILE), q("moved-" .. ex.file)))
    T.truthy(ok, out)
    T.eq(metrics(other .. "/moved-" .. ex.file), metrics(work .. "/full"), ex.file .. ": a copied run resumes the same")
    os.execute("mv " .. q(work .. "/part-moved") .. " " .. q(work .. "/part"))
    T.truthy(read(work .. "/part/plugins/1_" .. ex.file), "the run keeps a copy of the plugin")
    -- eval and open from another working directory
    ok, out = sh(other, ("%s eval %s --episodes 1"):format(q(MILE), q(work .. "/full")))
    T.truthy(ok and out:find("round 2: success", 1, true), out)
    ok, out = sh(other, ("%s -e %s"):format(q(MILE), q(("local r = require('mile').open(%q); "
      .. "print('rounds', r.rounds, r.config.plugins[1]); "
      .. "if r.method.uses_mental then r:calibration { quiet = true, plot = false } end")
      :format(work .. "/full"))))
    T.truthy(ok and out:find("rounds\t2\t" .. work .. "/" .. ex.file, 1, true), out)
    -- a changed plugin file is named in a warning; the run uses its own copy
    write(work .. "/" .. ex.file, FILES[ex.file] .. "\n-- edited\n")
    ok, out = sh(other, ("%s eval %s --episodes 1"):format(q(MILE), q(work .. "/full")))
    T.truthy(ok and out:find("plugin " .. work .. "/" .. ex.file .. " changed", 1, true), out)
    write(work .. "/" .. ex.file, FILES[ex.file])
    -- a 2 x 2 batch: two values of one of the plugin's (or its method's) keys x two seeds
    local spec = ("return { name = 'b', base = 'base.lua', set = { rounds = 1, epochs = 1, eval_episodes = 1, "
      .. "max_episode_steps = 100, episodes_per_round = 1, %s }, grid = { [%q] = { %s, %s } }, seeds = { 0, 1 } }\n")
      :format((function()
        local parts = {}
        for _, s in ipairs(ex.set) do
          local k, v = s:match("^(.-)=(.*)$")
          parts[#parts + 1] = ("[%q] = %q"):format(k, v)
        end
        return table.concat(parts, ", ")
      end)(), ex.grid.key, ex.grid.values[1], ex.grid.values[2])
    write(work .. "/spec.lua", spec)
    ok, out = sh(work, ("%s batch spec.lua --plugin %s --out batch --workers 2"):format(q(MILE), ex.file))
    T.truthy(ok, out)
    local agg = read(work .. "/batch/aggregate.csv") or ""
    local rows = 0
    for line in agg:gmatch("[^\n]+") do if line:match(",1,2,") then rows = rows + 1 end end
    T.eq(rows, 2, "two cells of two seeds each, round 1:\n" .. agg)
  end)
end

-- ---- bad input ------------------------------------------------------------------------------------

local function listing(dir)
  local p = io.popen(("cd %s && find . -type f -exec sha256sum {} + | sort"):format(q(dir)))
  local s = p:read("a")
  p:close()
  return s
end

T.test("bad plugins: syntax error, a name twice, a conflicting key, a missing copy", function()
  local work = tmp .. "/bad"
  assert(sys.mkdir(work))
  write(work .. "/base.lua", "return {}\n")
  write(work .. "/broken.lua", "local x = = 1\n")
  local ok, out = sh(work, ("%s train base.lua --plugin broken.lua %s --dir never"):format(q(MILE), sets(BASE)))
  T.truthy(not ok and out:find("plugin broken.lua: .*broken.lua:1:"), out)
  T.eq(sys.stat(work .. "/never"), nil, "no run directory")
  write(work .. "/twice.lua", FILES["sirius.lua"])
  write(work .. "/twice2.lua", FILES["sirius.lua"])
  ok, out = sh(work, ("%s train base.lua --plugin twice.lua --plugin twice2.lua %s --dir never"):format(q(MILE),
    sets(BASE)))
  T.truthy(not ok and out:find("twice2.lua: method.register: method \"sirius\" is registered twice %(first by .*twice.lua%)"),
    out)
  write(work .. "/conflict.lua", "return require('mile.schedules').register { name = 'c', doc = 'conflicts',\n"
    .. "  schema = { ['loss.lambda'] = { type = 'string', default = 'x' } } }\n")
  ok, out = sh(work, ("%s train base.lua --plugin conflict.lua %s --dir never"):format(q(MILE), sets(BASE)))
  T.truthy(not ok and out:find("conflict.lua: schedule.register: c: config key 'loss.lambda' is already declared by method \"mile\""),
    out)
  T.eq(sys.stat(work .. "/never"), nil, "no run directory")
  -- a run whose plugin copy is gone: resume refuses, naming it, and changes nothing
  write(work .. "/fatigue.lua", FILES["fatigue.lua"])
  ok, out = sh(work, ("%s train base.lua --plugin fatigue.lua %s --set learner.memory=fatigue --set rounds=1 --dir run")
    :format(q(MILE), sets(BASE)))
  T.truthy(ok, out)
  os.remove(work .. "/run/plugins/1_fatigue.lua")
  local before = listing(work .. "/run")
  ok, out = sh(other, ("%s train --resume %s --set rounds=2"):format(q(MILE), q(work .. "/run")))
  T.truthy(not ok and out:find("the copy plugins/1_fatigue.lua of plugin .*fatigue.lua is missing %(config key 'plugins'%)"),
    out)
  T.eq(listing(work .. "/run"), before, "the run directory is untouched")
  -- a key no selected entry owns says whose it is; --resume refuses keys that cannot change
  ok, out = sh(work, ("%s train base.lua %s --set fatigue.k=1 --dir never"):format(q(MILE), sets(BASE)))
  T.truthy(not ok and out:find("unknown key 'fatigue.k'", 1, true), out)
end)

T.run()
