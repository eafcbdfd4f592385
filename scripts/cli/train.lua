-- mile train [CONFIG.lua] [--set key=value ...] [--plugin FILE|MODULE ...] [--out DIR] [--dir RUN_DIR]
-- mile train --resume RUN_DIR [--set rounds=N] [--set progress=false] [--trust]
-- mile train --keys [--plugin ...]
--
-- Runs the round protocol (mile.loop) with the config file's table, overridden by
-- --set (any key of `mile train --keys`), and writes runs/<name>-<time>/ (or under
-- --out): config.lua, plugins (a copy of each), metrics.csv, dataset.csv, checkpoints/,
-- report.md + plots. A killed run continues from its last completed round with
-- --resume; `--resume DIR --set rounds=N` extends a finished run by more rounds.
-- --plugin loads a Lua file or module that registers models, methods, schedules,
-- memory models or tasks (docs/extending.md); the run directory records it. A run
-- directory's plugin copies run on --resume only when trusted: code run on this machine
-- before, a file named again with --plugin, or --trust (docs/experiment.md).
local loop = require "mile.loop"
local config = require "mile.config"
local cli = require "mile.cli"

local args = cli.parse("train", { ... }, {
  usage = "usage: mile train [CONFIG.lua] [--set key=value ...] [--plugin FILE ...] [--out DIR] [--dir RUN_DIR]\n"
    .. "       mile train --resume RUN_DIR [--set rounds=N] [--trust]\n       mile train --keys [--plugin FILE ...]",
  options = { set = "list", plugin = "list", out = "value", dir = "value", resume = "value", keys = "flag",
    trust = "flag" },
  positional = 1,
})
local file = args[1]

if args.keys then
  cli.guard("train", function()
    for _, p in ipairs(args.plugin) do require("mile.plugins").load(p) end
    io.write(cli.keys_text())
  end)
  os.exit(0)
end
if file and args.resume then cli.usage_error("train", "give a config file or --resume RUN_DIR, not both") end

cli.guard("train", function()
  local run
  if args.resume then
    run = loop.run(nil, { resume = args.resume, overrides = args.set, plugins = args.plugin, trust = args.trust })
  else
    local overrides = args.set
    if args.out then overrides[#overrides + 1] = "out=" .. args.out end
    local user = file and config.load_file(file) or {} -- without a file: the defaults and --set
    run = loop.run(user, { overrides = overrides, dir = args.dir, plugins = args.plugin })
  end
  print(("run directory: %s"):format(run.dir))
end)
