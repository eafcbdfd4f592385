-- Golden metrics: short runs of every built-in method, intervention model, memory
-- model, simulated-human variant and cost schedule, with fixed seeds, must reproduce
-- the metrics.csv files recorded under tests/golden/ exactly (every column but the
-- wall-clock `seconds`). They were recorded before the experiment layer was
-- refactored into plugins, so a refactor that changes any number fails here.
--
--   MILE_GOLDEN_RECORD=1 build/mile tests/lua/test_golden.lua   -- re-record (on purpose only)
local T = require "testing"
local loop = require "mile.loop"
local sys = require "mile.sys"

local root = debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/") or "."
local golden_dir = root .. "/tests/golden"
local record = os.getenv("MILE_GOLDEN_RECORD") == "1"

local tmp = os.tmpname()
os.remove(tmp)
assert(sys.mkdir(tmp))

local SHORT = { env = "LunarLander-v3", rounds = 2, episodes_per_round = 1, epochs = 2, batch_size = 64,
  eval_episodes = 2, max_episode_steps = 300, progress = false, seed = 3 }
local MANIP = { env = "drawer-open-v3", max_episode_steps = 60, eval_episodes = 1 }

-- name -> settings over SHORT
local CASES = {
  bc = { method = "bc" },
  hg_dagger = { method = "hg_dagger" },
  iwr = { method = "iwr" },
  mile = { method = "mile" },
  mile_joint = { method = "mile", ["loss.variant"] = "joint" },
  mile_reference = { method = "mile", ["loss.variant"] = "reference" },
  mile_frozen = { method = "mile", ["learner.mental"] = "frozen" },
  human_lag = { method = "mile", ["human.mental"] = "lag", ["human.lag"] = 0 },
  human_noisy = { method = "mile", ["human.mental"] = "noisy" },
  memory_history = { method = "mile", ["learner.memory"] = "history", ["human.memory"] = "history" },
  memory_accumulator = { method = "mile", ["learner.memory"] = "accumulator", ["human.memory"] = "accumulator" },
  memory_gru = { method = "mile", ["learner.memory"] = "gru", ["human.memory"] = "gru" },
  schedule_linear = { method = "mile", ["learner.schedule"] = "linear", ["schedule.start"] = 3,
    ["schedule.end"] = 1, ["schedule.side"] = "both" },
  schedule_exponential = { method = "mile", ["learner.schedule"] = "exponential", ["schedule.start"] = 4,
    ["schedule.end"] = 1, ["schedule.rate"] = 0.5 },
  schedule_adaptive = { method = "mile", ["learner.schedule"] = "adaptive", ["learner.cost"] = 1 },
  schedule_target = { method = "mile", ["learner.schedule"] = "target", ["schedule.target"] = 0.1,
    ["schedule.side"] = "both" },
  drawer_mile = { method = "mile", manip = true },
  drawer_hg_dagger = { method = "hg_dagger", manip = true },
  drawer_iwr = { method = "iwr", manip = true },
}

local function config_of(case)
  local cfg = {}
  for k, v in pairs(SHORT) do cfg[k] = v end
  if case.manip then for k, v in pairs(MANIP) do cfg[k] = v end end
  for k, v in pairs(case) do if k ~= "manip" then cfg[k] = v end end
  return cfg
end

local read = T.read_file

-- The columns `names` (less `seconds`) of a metrics.csv text, as lines: columns added
-- to metrics.csv after the golden files were recorded are left out of the comparison.
local function columns(text, names)
  local lines, header, pick = {}, nil, {}
  for line in text:gmatch("[^\n]+") do
    local cells = {}
    for c in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = c end
    if not header then
      header = {}
      for i, c in ipairs(cells) do header[c] = i end
      for _, name in ipairs(names or cells) do
        if name ~= "seconds" then pick[#pick + 1] = assert(header[name], "no column " .. name) end
      end
    end
    local out = {}
    for i, k in ipairs(pick) do out[i] = cells[k] end
    lines[#lines + 1] = table.concat(out, ",")
  end
  return lines
end

local function header_of(text)
  local names = {}
  for c in (text:match("^[^\n]*") .. ","):gmatch("([^,]*),") do names[#names + 1] = c end
  return names
end

local names = {}
for name in pairs(CASES) do names[#names + 1] = name end
table.sort(names)

for _, name in ipairs(names) do
  T.test("golden metrics: " .. name, function()
    local dir = tmp .. "/" .. name
    loop.run(config_of(CASES[name]), { dir = dir })
    local got = read(dir .. "/metrics.csv")
    local path = ("%s/%s.csv"):format(golden_dir, name)
    if record then
      assert(sys.mkdir(golden_dir))
      assert(sys.write_atomic(path, got))
      return
    end
    local want = read(path)
    T.truthy(want, "no golden file " .. path .. " (record with MILE_GOLDEN_RECORD=1)")
    local names = header_of(want)
    T.eq(columns(got, names), columns(want, names), name)
  end)
end

T.run()
