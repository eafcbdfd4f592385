-- mile batch SPEC.lua [--out DIR] [--workers N] [--set key=value ...] [--plugin FILE ...]
--                     [--seeds LIST] [--dry-run] [--aggregate] [--backend local|slurm] [--detach]
--                     [--status] [--cancel] [slurm options]
--
-- Runs an ablation batch (mile.batch): every cell of the spec's grid x every seed, each
-- job a `mile train` process with its own run directory under DIR/jobs/ and log under
-- DIR/logs/, at most N at once (default: the number of cores). Running the same
-- command again skips finished jobs and resumes interrupted ones. At the end:
-- DIR/aggregate.csv, aggregate.md and plots (mean and 95% CI over seeds per cell).
--   --set k=v     a config setting for every job, after the spec's (e.g. a smoke test:
--                 --set rounds=2 --set epochs=1 --out runs/smoke)
--   --plugin F    a plugin every job loads (recorded in each job's run directory)
--   --seeds LIST  run these seeds instead of the spec's (comma-separated integers, e.g.
--                 a smoke test: --seeds 0,1)
--   --dry-run     list the jobs and their settings, run nothing
--   --aggregate   only rebuild the aggregate from the jobs finished so far
--   --backend B   where jobs run: local (processes of this machine, default) or slurm
--                 (one job array per submission; docs/cluster.md); spec.backend too
--   --detach      slurm: submit and return (prints the array's job id)
--   --status      the jobs table (finished, failed, queued, running, with times)
--   --cancel      scancel what the batch has queued or running
-- Slurm options (spec.slurm = {...} too; the command line wins): --partition P,
-- --time T (sbatch's forms, 2:00:00), --cpus N (per task), --mem M (2G), --account A,
-- --qos Q, --max-running N (the array's %N), --sbatch-flags=F (extra sbatch arguments,
-- repeatable, e.g. --sbatch-flags=--exclusive), --prologue TEXT (shell lines each task
-- runs first, e.g. "module load openblas"). --workers is for the local backend only.
local batch = require "mile.batch"
local cli = require "mile.cli"

local SLURM = { partition = "value", time = "value", cpus = "integer", mem = "value", account = "value",
  qos = "value", max_running = "integer", sbatch_flags = "list", prologue = "value" }
local options = { out = "value", workers = "integer", set = "list", plugin = "list", seeds = "value", dry_run = "flag",
  aggregate = "flag", backend = "value", detach = "flag", status = "flag", cancel = "flag" }
for k, v in pairs(SLURM) do options[k] = v end

local args = cli.parse("batch", { ... }, {
  usage = "usage: mile batch SPEC.lua [--out DIR] [--workers N] [--set key=value ...] [--plugin FILE ...] "
    .. "[--seeds LIST] [--dry-run] [--aggregate] [--backend local|slurm] [--detach] [--status] [--cancel] "
    .. "[--partition P] [--time T] [--cpus N] [--mem M] [--account A] [--qos Q] [--max-running N] "
    .. "[--sbatch-flags=F ...] [--prologue TEXT]",
  options = options,
  positional = 1,
})
local file = args[1] or cli.usage_error("batch", "needs a spec file")
if args.workers and args.workers < 1 then cli.usage_error("batch", "--workers needs a positive integer") end
local modes = 0
for _, m in ipairs { "aggregate", "status", "cancel", "detach", "dry_run" } do modes = modes + (args[m] and 1 or 0) end
if modes > 1 then cli.usage_error("batch", "--aggregate, --status, --cancel, --detach and --dry-run exclude each other") end
local seeds
if args.seeds then
  seeds = {}
  for item in (args.seeds .. ","):gmatch("([^,]*),") do
    local s = math.tointeger(tonumber(item))
    if not s or s < 0 then cli.usage_error("batch", ("--seeds %s: expected comma-separated integers >= 0"):format(
      args.seeds)) end
    seeds[#seeds + 1] = s
  end
end
for _, k in ipairs { "cpus", "max_running" } do
  if args[k] and args[k] < 1 then cli.usage_error("batch", ("--%s needs a positive integer"):format(k:gsub("_", "-"))) end
end

local failed = 0
cli.guard("batch", function()
  local spec = batch.load_spec(file)
  if seeds then spec.seeds = seeds end
  local slurm = {}
  for k in pairs(SLURM) do
    if k == "sbatch_flags" then slurm[k] = #args[k] > 0 and args[k] or nil else slurm[k] = args[k] end
  end
  local backend = args.backend or spec.backend or "local"
  if next(slurm) and backend ~= "slurm" then
    error(("--%s is a slurm option (add --backend slurm)"):format((next(slurm):gsub("_", "-"))), 0)
  end
  if args.workers and backend ~= "local" then error("--workers is for the local backend (slurm: --max-running)", 0) end
  local opts = { out = args.out, workers = args.workers, set = #args.set > 0 and args.set or nil,
    plugins = args.plugin, dry_run = args.dry_run, backend = args.backend, slurm = slurm, detach = args.detach }
  if args.aggregate then
    local out = batch.out_dir(spec, opts)
    batch.aggregate(out)
    io.write(assert(io.open(out .. "/aggregate.md")):read("a"))
    return
  end
  if args.status then
    local rows, out = batch.status(spec, opts)
    local count = {}
    print(("%-44s %-10s %8s  %s"):format("job", "state", "seconds", "detail"))
    for _, r in ipairs(rows) do
      count[r.state] = (count[r.state] or 0) + 1
      print(("%-44s %-10s %8s  %s"):format(r.id, r.state, r.seconds and ("%.0f"):format(r.seconds) or "", r.detail))
    end
    local parts = {}
    for state, n in pairs(count) do parts[#parts + 1] = n .. " " .. state end
    table.sort(parts)
    print(("%s: %d jobs: %s"):format(out, #rows, table.concat(parts, ", ")))
    return
  end
  if args.cancel then
    local what = batch.cancel(spec, opts)
    print(#what > 0 and ("cancelled %s"):format(table.concat(what, ", ")) or "nothing queued or running")
    return
  end
  local summary = batch.run(spec, opts)
  failed = summary.failed and #summary.failed or 0
end)
os.exit(failed > 0 and 1 or 0)
