-- mile eval RUN_DIR [--round R] [--episodes N] [--plugin FILE ...] [--trust]
--
-- Re-evaluates a run's checkpoint (the last round by default) with the policy acting
-- alone, on the run's evaluation states. The run's plugins load from the copies its
-- directory keeps, when trusted (--trust, or code run on this machine before).
local loop = require "mile.loop"
local nn = require "mile.nn"
local sys = require "mile.sys"
local cli = require "mile.cli"

local args = cli.parse("eval", { ... }, {
  usage = "usage: mile eval RUN_DIR [--round R] [--episodes N] [--plugin FILE ...] [--trust]",
  options = { round = "integer", episodes = "integer", plugin = "list", trust = "flag" },
  positional = 1,
})
local dir = args[1] or cli.usage_error("eval", "needs a run directory")
if args.episodes and args.episodes < 1 then cli.usage_error("eval", "--episodes must be >= 1") end

cli.guard("eval", function()
  for _, p in ipairs(args.plugin) do require("mile.plugins").load(p) end
  local run = loop.open(dir, { trust = args.trust })
  local round = args.round or run.round
  if round < 1 or round > run.round then
    error(("round %d is not committed in %s (1..%d)"):format(round, dir, run.round), 0)
  end
  local ck = run.rundir:checkpoint(round) .. "/policy.safetensors"
  if sys.stat(ck) ~= "file" then error("no checkpoint " .. ck, 0) end
  run.policy:load_state_dict(nn.load(ck):state_dict())
  local n = args.episodes or run.cfg.eval_episodes
  local ev = run:evaluate(n)
  print(("%s round %d: success %.3f  return %.1f  length %.1f  (%d episodes)"):format(run.cfg.name, round,
    ev.success, ev["return"], ev.length, n))
end)
