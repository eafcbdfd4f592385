-- mile replay RUN_DIR [--round R] [--episode E] [--png DIR] [--apng FILE] [--no-mark]
--             [--bind ADDR] [--port N] [--no-open] [--paused] [--once] [--trust]
--
-- Plays a recorded episode back: in the teleop page (docs/teleop.md; the URL with its
-- token on stdout), at the task's real-time rate with pause and slow motion, the
-- intervention steps (nu = 1) highlighted; or, with --png DIR / --apng FILE, written as
-- a PNG per step / one animated PNG, without a browser (intervention steps framed in
-- red unless --no-mark). Round R (default: the last committed) and episode E (default
-- 1) are 1-based. The episode is re-simulated from the seed the run collected it with
-- and the dataset's executed actions; the replayed observations are compared with the
-- recorded ones and the result printed. The run directory is only read.
local loop = require "mile.loop"
local cli = require "mile.cli"
local replay = require "mile.replay"

local args = cli.parse("replay", { ... }, {
  usage = "usage: mile replay RUN_DIR [--round R] [--episode E] [--png DIR] [--apng FILE] [--no-mark]\n"
    .. "                   [--bind ADDR] [--port N] [--no-open] [--paused] [--once] [--trust]",
  options = { round = "integer", episode = "integer", png = "value", apng = "value", no_mark = "flag",
    bind = "value", port = "integer", no_open = "flag", paused = "flag", once = "flag", trust = "flag" },
  positional = 1,
})
local dir = args[1] or cli.usage_error("replay", "needs a run directory")
if args.round and args.round < 1 then cli.usage_error("replay", ("--round %d: rounds are 1, 2, ..."):format(args.round)) end
if args.episode and args.episode < 1 then
  cli.usage_error("replay", ("--episode %d: episodes are 1, 2, ... within a round"):format(args.episode))
end
if args.port and (args.port < 0 or args.port > 65535) then
  cli.usage_error("replay", ("--port %d: not in 0..65535"):format(args.port))
end

cli.guard("replay", function()
  if not require("mile.rundir").is_rundir(dir) then error(("%s is not a run directory (no config.lua)"):format(dir), 0) end
  local run = loop.open(dir, { trust = args.trust })
  local ep = replay.episode(run, args.round or run.round, args.episode or 1)
  local opts = { mark = not args.no_mark }
  if args.png or args.apng then
    local r
    if args.png then
      r = replay.write_png(ep, args.png, opts)
      print(("wrote %d frames to %s (frames.csv: t, nu, action, file)"):format(ep.steps, args.png))
    end
    if args.apng then
      r = replay.write_apng(ep, args.apng, opts)
      print(("wrote %s: %d frames at %d/s"):format(args.apng, ep.steps, require("mile.teleop").task_rate(run.task)))
    end
    print(replay.summary(ep, r))
    return
  end
  replay.serve(ep, { bind = args.bind, port = args.port, open = not args.no_open, paused = args.paused,
    once = args.once })
end)
