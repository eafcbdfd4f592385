-- Validation at the experiment layer's boundaries (issue: "validation at every
-- boundary", items 4 and 5): config values and CLI options are checked fully before
-- anything runs, data files of a run directory cannot hang or run code, and a run
-- directory's plugin copies run only when the user trusts them.
local T = require "testing"
local loop = require "mile.loop"
local sys = require "mile.sys"

local MILE = arg[-1]
local tmp = T.tmpdir()

local q, write = T.quote, T.write_file

local function sh(cmd, env) return T.shell(tmp, cmd, env) end

local SHORT = "--set episodes_per_round=1 --set epochs=1 --set eval_episodes=1 --set max_episode_steps=50 "
  .. "--set progress=false --set rounds=1"

T.test("config values: integers in range, finite numbers, checked ranges", function()
  T.raises(function() loop.resolve({}, { "seed=1e20" }) end, "seed=1e20: not an integer")
  T.raises(function() loop.resolve({}, { "seed=9223372036854775808" }) end, "not an integer")
  T.raises(function() loop.resolve({}, { "seed=-1" }) end, "'seed' = %-1: must be in %[0, 2%^40%]")
  T.raises(function() loop.resolve { lr = 1 / 0 } end, "'lr' must be a finite number, got inf")
  T.raises(function() loop.resolve { lr = 0 / 0 } end, "'lr' must be a finite number")
  T.raises(function() loop.resolve({}, { "lr=1e999" }) end, "'lr' must be a finite number")
  T.raises(function() loop.resolve({}, { "loss.lambda=1.5" }) end, "'loss.lambda' = 1.5: must be in %[0, 1%]")
  T.raises(function() loop.resolve({}, { "learner.scale=0" }) end, "'learner.scale' = 0: must be > 0")
  T.raises(function() loop.resolve({}, { "max_episode_steps=0" }) end, "'max_episode_steps' = 0: must be >= 1")
  -- --set applies before the file's values are checked: it may replace a bad one
  T.eq(loop.resolve({ method = "no_such" }, { "method=bc" }).method, "bc")
end)

T.test("CLI options are parsed strictly: bad or missing values exit 2 with the usage", function()
  for _, args in ipairs { "eval somedir --round abc", "eval somedir --episodes nan", "eval somedir --episodes -3",
    "eval somedir --round", "eval somedir --bogus", "eval a b", "train --set", "batch spec.lua --workers 0",
    "batch spec.lua --workers two" } do
    local code, out = sh(q(MILE) .. " " .. args)
    T.eq(code, 2, args .. ": " .. out)
    T.truthy(out:find("usage: mile", 1, true), args .. ": " .. out)
  end
  local code, out = sh(q(MILE) .. " train --set seed=1e20 " .. q(tmp .. "/none.lua"))
  T.eq(code, 1, out)
  code, out = sh(q(MILE) .. " eval --help")
  T.truthy(code == 0 and out:find("--episodes", 1, true), out)
end)

T.test("config and state files cannot hang, and must hold tables", function()
  write(tmp .. "/forever.lua", "while true do end\n")
  local code, out = sh(q(MILE) .. " train forever.lua")
  T.truthy(code == 1 and out:find("stopped after %d+ instructions"), out)
  local dir = tmp .. "/fake_run"
  assert(sys.mkdir(dir))
  write(dir .. "/config.lua", "return {}\n")
  write(dir .. "/state.lua", "")
  code, out = sh(q(MILE) .. " eval fake_run")
  T.truthy(code == 1 and out:find("state.lua must return a table", 1, true), out)
  write(dir .. "/state.lua", "while true do end")
  code, out = sh(q(MILE) .. " eval fake_run")
  T.truthy(code == 1 and out:find("state.lua: stopped after", 1, true), out)
  write(dir .. "/state.lua", "return { format = 1, round = 3 }\n")
  code, out = sh(q(MILE) .. " eval fake_run")
  T.truthy(code == 1 and out:find("format 1, this mile reads format 2", 1, true), out)
end)

T.test("a run directory's plugin code runs only when trusted", function()
  local marker = tmp .. "/marker"
  write(tmp .. "/noisy.lua", ("local f = io.open(%q, 'a'); f:write('ran\\n'); f:close()\n"
    .. "return require('mile.schedules').register { name = 'noisy', doc = 'marks each run' }\n"):format(marker))
  local mine, theirs = "MILE_TRUST_FILE=" .. q(tmp .. "/trust-mine"), "MILE_TRUST_FILE=" .. q(tmp .. "/trust-theirs")
  local code, out = sh(q(MILE) .. " train --plugin noisy.lua --set learner.schedule=noisy " .. SHORT
    .. " --dir run", mine)
  T.eq(code, 0, out)
  local function runs() return select(2, (assert(io.open(marker)):read("a")):gsub("\n", "")) end
  T.eq(runs(), 1)
  -- someone else's machine: refused, naming the file, nothing run
  code, out = sh(q(MILE) .. " train --resume run --set rounds=2", theirs)
  T.truthy(code == 1 and out:find("needs plugin code that has not run on this machine: .*plugins/1_noisy.lua")
    and out:find("--trust", 1, true), out)
  code, out = sh(q(MILE) .. " eval run", theirs)
  T.truthy(code == 1 and out:find("plugins/1_noisy.lua", 1, true), out)
  code, out = sh(q(MILE) .. " -e " .. q("require('mile').open('run')"), theirs)
  T.truthy(code ~= 0 and out:find("plugins/1_noisy.lua", 1, true), out)
  T.eq(runs(), 1, "the plugin did not run")
  -- a config.lua edited to name a file where a name belongs, or a plugin its manifest
  -- does not record, is refused: that file never runs
  local evil_marker = tmp .. "/evil-ran"
  write(tmp .. "/evil.lua", ("io.open(%q, 'w'):close()\n"
    .. "return require('mile.schedules').register { name = 'evil', doc = 'should never run' }\n"):format(evil_marker))
  local cfg = assert(io.open(tmp .. "/run/config.lua")):read("a")
  write(tmp .. "/run/config.lua", (cfg:gsub('schedule = "noisy"', ("schedule = %q"):format(tmp .. "/evil.lua"))))
  code, out = sh(q(MILE) .. " eval run", mine)
  T.truthy(code == 1 and out:find("a run directory's config names registered entries, not files", 1, true), out)
  write(tmp .. "/run/config.lua", (cfg:gsub("plugins = {", ("plugins = { %q,"):format(tmp .. "/evil.lua"))))
  code, out = sh(q(MILE) .. " eval run", mine)
  T.truthy(code == 1 and out:find("which the run directory's plugins.lua does not record", 1, true), out)
  write(tmp .. "/run/config.lua", cfg)
  T.eq(sys.stat(evil_marker), nil, "the file named in config.lua did not run")
  -- allowed: --trust, or the same file named with --plugin, or one's own machine
  local before = runs()
  code, out = sh(q(MILE) .. " eval run --trust --episodes 1", theirs)
  T.eq(code, 0, out)
  T.eq(runs(), before + 1)
  code, out = sh(q(MILE) .. " train --resume run --set rounds=2 --plugin noisy.lua", theirs)
  T.eq(code, 0, out)
  T.eq(runs(), before + 2)
end)

T.run()
