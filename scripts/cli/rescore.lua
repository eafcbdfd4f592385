-- mile rescore DIR... --episodes N [--full] [--trust]
--
-- Scores finished runs again on N evaluation episodes without training them again
-- (mile.rescore): every round's checkpoint, the initial policy and the expert
-- reference; the references' stored scores (with --full, every round's too) are first
-- checked to come out again on their own episodes.
-- A DIR is a run directory or a batch directory (mile batch --out): a batch's jobs are
-- rescored and its aggregate files written again.
local cli = require "mile.cli"
local rescore = require "mile.rescore"
local batch = require "mile.batch"
local rundir = require "mile.rundir"
local sys = require "mile.sys"

local args = cli.parse("rescore", { ... }, {
  usage = "usage: mile rescore DIR... --episodes N [--full] [--trust]",
  options = { episodes = "integer", full = "flag", trust = "flag" },
  positional = math.huge,
})
if #args == 0 then cli.usage_error("rescore", "needs a run or batch directory") end
if not args.episodes or args.episodes < 1 then cli.usage_error("rescore", "--episodes N (>= 1) is required") end

local memo = {} -- reference scores, shared by the runs of one env and seed

local function one(dir)
  local t0 = sys.monotonic()
  local run, changed = rescore.run(dir, args.episodes, { trust = args.trust, full = args.full, memo = memo })
  local last = run.metrics[#run.metrics]
  print(("%s: %s (final success %.3f, %.0f s)"):format(dir, changed and ("scored on %d episodes"):format(
    args.episodes) or "already at that count", last.success, sys.monotonic() - t0))
end

cli.guard("rescore", function()
  for _, dir in ipairs(args) do
    if sys.stat(dir .. "/batch.lua") == "file" then
      local plan = rundir.read_data(dir .. "/batch.lua")
      for _, job in ipairs(plan.jobs) do -- jobs with a committed round (a resumed one goes on at N)
        local jd = dir .. "/jobs/" .. job.id
        if sys.stat(jd .. "/state.lua") == "file" then one(jd) end
      end
      batch.aggregate(dir)
    elseif rundir.is_rundir(dir) then
      one(dir)
    else
      error(dir .. " is neither a run directory (config.lua) nor a batch directory (batch.lua)", 0)
    end
  end
end)
