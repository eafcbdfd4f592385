-- mile batch SPEC.lua [--out DIR] [--workers N] [--set key=value ...] [--dry-run] [--aggregate]
--
-- Runs an ablation batch (mile.batch): every cell of the spec's grid x every seed, each
-- job a `mile train` process with its own run directory under DIR/jobs/ and log under
-- DIR/logs/, at most N at once (default: the number of cores). Running the same
-- command again skips finished jobs and resumes interrupted ones. At the end:
-- DIR/aggregate.csv, aggregate.md and plots (mean and 95% CI over seeds per cell).
--   --set k=v     a config setting for every job, after the spec's (e.g. a smoke test:
--                 --set rounds=2 --set epochs=1 --out runs/smoke)
--   --dry-run     list the jobs and their settings, run nothing
--   --aggregate   only rebuild the aggregate from the jobs finished so far
local batch = require "mile.batch"

local function usage(msg)
  if msg then io.stderr:write("mile batch: ", msg, "\n") end
  io.stderr:write("usage: mile batch SPEC.lua [--out DIR] [--workers N] [--set key=value ...] [--dry-run] [--aggregate]\n")
  os.exit(msg and 2 or 0)
end

local args = { ... }
local file, opts, only_aggregate = nil, {}, false
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--out" then
    opts.out = args[i + 1] or usage("--out needs a directory")
    i = i + 1
  elseif a == "--workers" then
    opts.workers = math.tointeger(tonumber(args[i + 1] or ""))
    if not opts.workers or opts.workers < 1 then usage("--workers needs a positive integer") end
    i = i + 1
  elseif a == "--set" then
    opts.set = opts.set or {}
    opts.set[#opts.set + 1] = args[i + 1] or usage("--set needs key=value")
    i = i + 1
  elseif a == "--dry-run" then
    opts.dry_run = true
  elseif a == "--aggregate" then
    only_aggregate = true
  elseif a == "-h" or a == "--help" then
    usage()
  elseif a:sub(1, 1) == "-" then
    usage("unknown option " .. a)
  elseif file then
    usage("more than one spec file")
  else
    file = a
  end
  i = i + 1
end
if not file then usage("needs a spec file") end

local failed = 0
local ok, err = pcall(function()
  local spec = batch.load_spec(file)
  if only_aggregate then
    local out = batch.out_dir(spec, opts)
    batch.aggregate(out)
    io.write(assert(io.open(out .. "/aggregate.md")):read("a"))
    return
  end
  local summary = batch.run(spec, opts)
  failed = summary.failed and #summary.failed or 0
end)
if not ok then
  io.stderr:write("mile batch: ", tostring(err), "\n")
  os.exit(tostring(err):find("interrupted", 1, true) and 130 or 1)
end
os.exit(failed > 0 and 1 or 0)
