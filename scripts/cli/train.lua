-- mile train CONFIG.lua [--set key=value ...] [--out DIR] [--dir RUN_DIR]
-- mile train --resume RUN_DIR
--
-- Runs the round protocol (mile.loop) with the config file's table, overridden by
-- --set (any key of `mile train --keys`), and writes runs/<name>-<time>/ (or under
-- --out): config.lua, metrics.csv, dataset.csv, checkpoints/, report.md + plots.
-- A killed run continues from its last completed round with --resume.
local loop = require "mile.loop"
local config = require "mile.config"

local function usage(msg)
  if msg then io.stderr:write("mile train: ", msg, "\n") end
  io.stderr:write("usage: mile train CONFIG.lua [--set key=value ...] [--out DIR] [--dir RUN_DIR]\n",
    "       mile train --resume RUN_DIR\n       mile train --keys\n")
  os.exit(msg and 2 or 0)
end

local args = { ... }
local file, overrides, resume, dir = nil, {}, nil, nil
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--set" then
    overrides[#overrides + 1] = args[i + 1] or usage("--set needs key=value")
    i = i + 1
  elseif a:match("^%-%-set=") then
    overrides[#overrides + 1] = a:sub(7)
  elseif a == "--out" then
    overrides[#overrides + 1] = "out=" .. (args[i + 1] or usage("--out needs a directory"))
    i = i + 1
  elseif a == "--dir" then
    dir = args[i + 1] or usage("--dir needs a directory")
    i = i + 1
  elseif a == "--resume" then
    resume = args[i + 1] or usage("--resume needs a run directory")
    i = i + 1
  elseif a == "--keys" then
    local keys = {}
    for k in pairs(loop.schema) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local s = loop.schema[k]
      local d = type(s.default) == "table" and table.concat(s.default, ",") or tostring(s.default)
      print(("%-22s %-8s %s%s"):format(k, s.type, s.default ~= nil and ("default " .. d .. "  ") or "",
        s.doc or ""))
    end
    os.exit(0)
  elseif a == "-h" or a == "--help" then
    usage()
  elseif a:sub(1, 1) == "-" then
    usage("unknown option " .. a)
  elseif file then
    usage("more than one config file")
  else
    file = a
  end
  i = i + 1
end
if not file and not resume then usage("needs a config file or --resume RUN_DIR") end

local ok, err = pcall(function()
  local run
  if resume then
    run = loop.run(nil, { resume = resume })
  else
    run = loop.run(config.load_file(file), { overrides = overrides, dir = dir })
  end
  print(("run directory: %s"):format(run.dir))
end)
if not ok then
  io.stderr:write("mile train: ", tostring(err), "\n")
  os.exit(1)
end
