-- mile replay (docs/teleop.md): a recorded episode re-simulated from its collection seed
-- and executed actions, written as PNG frames and as an animated PNG; the replayed
-- observations against the dataset's, the marked frames against nu, the run directory
-- left as it was, bad options. (The page playback: tests/teleop.)
local T = require "testing"
local loop = require "mile.loop"
local replay = require "mile.replay"
local data = require "mile.data"
local sys = require "mile.sys"

local MILE = arg[-1]
local tmp = T.tmpdir()

local function sh(cmd) return T.shell(".", cmd) end
local q = T.quote
local function slurp(path) return assert(T.read_file(path), "cannot read " .. path) end

-- A short run with the simulated human: 2 rounds of 2 episodes.
local function train(dir, set)
  local cfg = { env = "LunarLander-v3", rounds = 2, episodes_per_round = 2, epochs = 1, batch_size = 64,
    eval_episodes = 1, max_episode_steps = 120, progress = false, seed = 3 }
  for k, v in pairs(set or {}) do cfg[k] = v end
  return loop.run(cfg, { dir = dir })
end

-- The dataset's rows of one 0-based episode: {nu = {...}, obs = {{...}}}.
local function recorded(dir, discrete, index)
  local ds = assert(data.load(dir .. "/dataset.csv", discrete and { n_actions = 4 } or nil))
  local ep, nu, obs = ds:column("episode"):totable(), ds:column("nu"):totable(), ds:column("obs"):totable()
  local r = { nu = {}, obs = {} }
  for i = 1, #ep do
    if ep[i] == index then r.nu[#r.nu + 1], r.obs[#r.obs + 1] = math.tointeger(nu[i]), obs[i] end
  end
  return r
end

-- The files of a directory and their hashes (to see that replay wrote nothing there).
local function snapshot(dir)
  local f = io.popen("cd " .. q(dir) .. " && find . -type f | sort | xargs sha256sum")
  local s = f:read("a")
  f:close()
  return s
end

local lunar = tmp .. "/lunar"
train(lunar)

T.test("every step of an episode replays to the recorded observation; marked frames are the nu = 1 steps", function()
  local before = snapshot(lunar)
  local run = loop.open(lunar)
  T.eq(loop.collect_seed(run.cfg, 2, 1), 1000000 + 3 * 100000 + 2 * 1000 + 1)
  local total = 0
  for round = 1, 2 do
    for k = 1, 2 do
      local ep = replay.episode(run, round, k)
      local rec = recorded(lunar, true, (round - 1) * 2 + (k - 1))
      T.eq(ep.steps, #rec.nu, "steps")
      T.eq(ep.nu, rec.nu, "nu")
      local seen, marked = {}, {}
      local plain = {}
      local r = replay.play(ep, function(i, env, d)
        seen[i] = d
        local img = env:render(60, 40)
        plain[i] = img.rgb
        marked[i] = (ep.nu[i] == 1) and replay.mark(img, 2).rgb ~= img.rgb
      end)
      T.eq(#seen, ep.steps, "on_step for every step")
      T.eq(r.max_diff, 0, "replayed observations equal the recorded ones")
      T.eq(r.diverged_at, nil)
      T.truthy(replay.summary(ep, r):find("equal the recorded ones", 1, true))
      total = total + ep.interventions
    end
  end
  T.truthy(total > 0, "the simulated human intervened somewhere")
  T.eq(snapshot(lunar), before, "the run directory is unchanged")
end)

T.test("mile replay --png: one PNG per step, frames.csv's nu = the dataset's, red border exactly on nu = 1", function()
  local out = tmp .. "/png"
  local rc, text = sh(("%s replay %s --round 2 --episode 2 --png %s"):format(q(MILE), q(lunar), q(out)))
  T.eq(rc, 0, text)
  T.truthy(text:find("equal the recorded ones (max |difference| 0)", 1, true), text)
  local rec = recorded(lunar, true, 3)
  local lines = {}
  for line in io.lines(out .. "/frames.csv") do lines[#lines + 1] = line end
  T.eq(lines[1], "t,nu,action,file")
  T.eq(#lines - 1, #rec.nu, "a frame for every step")
  for t = 0, #rec.nu - 1 do
    local tt, nu, _, file = lines[t + 2]:match("^(%d+),(%d+),([^,]*),(.*)$")
    T.eq({ tonumber(tt), tonumber(nu), file }, { t, rec.nu[t + 1], ("frame_%05d.png"):format(t) })
    T.eq(sys.stat(out .. "/" .. file), "file")
  end
  -- the marked frames: the same images as unmarked ones except on nu = 1 steps
  local plain = tmp .. "/plain"
  rc, text = sh(("%s replay %s --round 2 --episode 2 --png %s --no-mark"):format(q(MILE), q(lunar), q(plain)))
  T.eq(rc, 0, text)
  for t = 0, #rec.nu - 1 do
    local name = ("/frame_%05d.png"):format(t)
    T.eq(slurp(out .. name) ~= slurp(plain .. name), rec.nu[t + 1] == 1, ("step %d marked iff nu = 1"):format(t))
  end
end)

T.test("mile replay --apng: one animated PNG, a frame per step at the task's rate, valid chunks", function()
  local out = tmp .. "/ep.png"
  local rc, text = sh(("%s replay %s --round 1 --episode 1 --apng %s"):format(q(MILE), q(lunar), q(out)))
  T.eq(rc, 0, text)
  local b = slurp(out)
  T.eq(b:sub(1, 8), "\137PNG\r\n\26\n")
  local pos, kinds, seq, frames, delay = 9, {}, 0, 0, nil
  while pos <= #b do
    local len, kind = string.unpack(">I4c4", b, pos)
    local body = b:sub(pos + 8, pos + 7 + len)
    kinds[kind] = (kinds[kind] or 0) + 1
    if kind == "acTL" then frames = string.unpack(">I4", body) end
    if kind == "fcTL" or kind == "fdAT" then
      T.eq(string.unpack(">I4", body), seq, "sequence numbers")
      seq = seq + 1
    end
    if kind == "fcTL" then delay = { string.unpack(">I2I2", body, 21) } delay[3] = nil end
    pos = pos + 12 + len
  end
  local steps = #recorded(lunar, true, 0).nu
  T.eq({ frames, kinds.fcTL, kinds.IEND, kinds.IHDR }, { steps, steps, 1, 1 })
  T.eq(delay, { 1, 50 }, "LunarLander's 50 frames/s")
end)

T.test("a continuous task (drawer-open) replays exactly too", function()
  local dir = tmp .. "/drawer"
  train(dir, { env = "drawer-open-v3", rounds = 1, max_episode_steps = 30 })
  local run = loop.open(dir)
  local ep = replay.episode(run, 1, 2)
  local r = replay.play(ep)
  T.eq(r.steps, #recorded(dir, false, 1).nu)
  T.eq(r.max_diff, 0)
end)

T.test("a dataset that does not match the simulation is reported as diverged", function()
  local copy = tmp .. "/tampered"
  assert(os.execute(("cp -r %s %s"):format(q(lunar), q(copy))))
  local lines = {}
  for line in io.lines(copy .. "/dataset.csv") do lines[#lines + 1] = line end
  -- row t = 5 of episode 0: its first observation moved by 0.5
  local cells = {}
  for c in lines[7]:gmatch("[^,]+") do cells[#cells + 1] = c end
  T.eq({ cells[1], cells[2] }, { "0", "5" })
  cells[3] = tostring(tonumber(cells[3]) + 0.5)
  lines[7] = table.concat(cells, ",")
  assert(sys.write_atomic(copy .. "/dataset.csv", table.concat(lines, "\n") .. "\n"))
  local rc, text = sh(("%s replay %s --round 1 --episode 1 --png %s"):format(q(MILE), q(copy), q(tmp .. "/t")))
  T.eq(rc, 0, text)
  T.truthy(text:find("DIVERGED: the replayed observations differ from the recorded ones from step 5 on (max |difference| 0.5;",
    1, true), text)
end)

T.test("bad options exit 2, an episode that does not exist exits 1, each with a clear message", function()
  local cases = {
    { "--round 0", 2, "--round 0: rounds are 1, 2, ..." },
    { "--episode -1", 2, "--episode -1: episodes are 1, 2, ... within a round" },
    { "--episode two", 2, "--episode two: not an integer" },
    { "--round", 2, "--round needs a value" },
    { "--port 70000", 2, "--port 70000: not in 0..65535" },
    { "--frames 3", 2, "unknown option --frames" },
    { "--round 3 --png " .. q(tmp .. "/x"), 1, "round 3 does not exist in " .. lunar .. " (committed rounds: 1..2)" },
    { "--episode 3 --png " .. q(tmp .. "/x"), 1, "episode 3 does not exist in round 2 (episodes_per_round = 2: 1..2)" },
  }
  for _, c in ipairs(cases) do
    local rc, text = sh(("%s replay %s %s"):format(q(MILE), q(lunar), c[1]))
    T.eq(rc, c[2], c[1] .. ": " .. text)
    T.truthy(text:find("mile replay: " .. c[3], 1, true), c[1] .. ": " .. text)
  end
  local rc, text = sh(("%s replay %s --png %s"):format(q(MILE), q(tmp .. "/none"), q(tmp .. "/x")))
  T.eq(rc, 1)
  T.truthy(text:find("is not a run directory", 1, true), text)
  T.eq(sys.stat(tmp .. "/x"), nil, "nothing written")
end)

T.run()
