-- mile teleop [CONFIG.lua] [--set key=value ...] [--plugin FILE ...] [--out DIR] [--dir RUN_DIR]
--             [--bind ADDR] [--port N] [--no-open]
-- mile teleop --resume RUN_DIR [--set rounds=N] [--trust] [--bind ADDR] [--port N]
--
-- The round protocol of `mile train` with a person instead of the simulated human
-- (human.kind = live): prints the page's URL (http://127.0.0.1:PORT/?token=...) and
-- opens it when a browser is around; the person holds space to take over
-- (docs/teleop.md). The run directory is `mile train`'s, plus teleop.csv (per-step
-- wall-clock times and the learner's p(s)); a killed session resumes with --resume.
local loop = require "mile.loop"
local config = require "mile.config"
local cli = require "mile.cli"
local teleop = require "mile.teleop"

local args = cli.parse("teleop", { ... }, {
  usage = "usage: mile teleop [CONFIG.lua] [--set key=value ...] [--plugin FILE ...] [--out DIR] [--dir RUN_DIR]\n"
    .. "                   [--bind ADDR] [--port N] [--no-open]\n"
    .. "       mile teleop --resume RUN_DIR [--set rounds=N] [--trust] [--bind ADDR] [--port N]",
  options = { set = "list", plugin = "list", out = "value", dir = "value", resume = "value", trust = "flag",
    bind = "value", port = "integer", no_open = "flag" },
  positional = 1,
})
local file = args[1]
if file and args.resume then cli.usage_error("teleop", "give a config file or --resume RUN_DIR, not both") end
if args.port and (args.port < 0 or args.port > 65535) then
  cli.usage_error("teleop", ("--port %d: not in 0..65535"):format(args.port))
end

cli.guard("teleop", function()
  local live
  local function human(run)
    live = teleop.human(run, { bind = args.bind, port = args.port, open = not args.no_open and nil or false })
    return live
  end
  local ok, err = pcall(function()
    local run
    if args.resume then
      run = loop.run(nil, { resume = args.resume, overrides = args.set, plugins = args.plugin, trust = args.trust,
        human = human })
    else
      local overrides = args.set
      if args.out then overrides[#overrides + 1] = "out=" .. args.out end
      local user = file and config.load_file(file) or {}
      if user.human == "live" then user.human = nil end
      overrides[#overrides + 1] = "human.kind=live"
      run = loop.run(user, { overrides = overrides, dir = args.dir, plugins = args.plugin, human = human })
    end
    if live then live:finish(("done: %d rounds, run directory %s"):format(run.round, run.dir)) end
    print(("run directory: %s"):format(run.dir))
  end)
  if not ok then
    if live then pcall(live.finish, live, "stopped: " .. tostring(err)) end
    error(err, 0)
  end
end)
