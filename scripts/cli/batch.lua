-- mile batch SPEC.lua [--out DIR] [--workers N] [--set key=value ...] [--plugin FILE ...]
--                     [--dry-run] [--aggregate]
--
-- Runs an ablation batch (mile.batch): every cell of the spec's grid x every seed, each
-- job a `mile train` process with its own run directory under DIR/jobs/ and log under
-- DIR/logs/, at most N at once (default: the number of cores). Running the same
-- command again skips finished jobs and resumes interrupted ones. At the end:
-- DIR/aggregate.csv, aggregate.md and plots (mean and 95% CI over seeds per cell).
--   --set k=v     a config setting for every job, after the spec's (e.g. a smoke test:
--                 --set rounds=2 --set epochs=1 --out runs/smoke)
--   --plugin F    a plugin every job loads (recorded in each job's run directory)
--   --dry-run     list the jobs and their settings, run nothing
--   --aggregate   only rebuild the aggregate from the jobs finished so far
local batch = require "mile.batch"
local cli = require "mile.cli"

local args = cli.parse("batch", { ... }, {
  usage = "usage: mile batch SPEC.lua [--out DIR] [--workers N] [--set key=value ...] [--plugin FILE ...] "
    .. "[--dry-run] [--aggregate]",
  options = { out = "value", workers = "integer", set = "list", plugin = "list", dry_run = "flag", aggregate = "flag" },
  positional = 1,
})
local file = args[1] or cli.usage_error("batch", "needs a spec file")
if args.workers and args.workers < 1 then cli.usage_error("batch", "--workers needs a positive integer") end

local failed = 0
cli.guard("batch", function()
  local spec = batch.load_spec(file)
  local opts = { out = args.out, workers = args.workers, set = #args.set > 0 and args.set or nil,
    plugins = args.plugin, dry_run = args.dry_run }
  if args.aggregate then
    local out = batch.out_dir(spec, opts)
    batch.aggregate(out)
    io.write(assert(io.open(out .. "/aggregate.md")):read("a"))
    return
  end
  local summary = batch.run(spec, opts)
  failed = summary.failed and #summary.failed or 0
end)
os.exit(failed > 0 and 1 or 0)
