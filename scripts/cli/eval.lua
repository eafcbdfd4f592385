-- mile eval RUN_DIR [--round R] [--episodes N] [--seed S]
--
-- Re-evaluates a run's checkpoint (the last round by default) with the policy
-- acting alone, on the run's evaluation states (or on states drawn from --seed).
local loop = require "mile.loop"
local nn = require "mile.nn"
local sys = require "mile.sys"

local args = { ... }
local dir, round, episodes = nil, nil, nil
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--round" then round = tonumber(args[i + 1]); i = i + 1
  elseif a == "--episodes" then episodes = tonumber(args[i + 1]); i = i + 1
  elseif a:sub(1, 1) == "-" then io.stderr:write("mile eval: unknown option ", a, "\n"); os.exit(2)
  else dir = a end
  i = i + 1
end
if not dir then
  io.stderr:write("usage: mile eval RUN_DIR [--round R] [--episodes N]\n")
  os.exit(2)
end

local ok, err = pcall(function()
  local run = loop.resume(dir)
  round = round or run.round
  if round < 1 then error("no completed round in " .. dir, 0) end
  local ck = ("%s/checkpoints/round_%03d/policy.safetensors"):format(dir, round)
  if sys.stat(ck) ~= "file" then error("no checkpoint " .. ck, 0) end
  run.policy:load_state_dict(nn.load(ck):state_dict())
  local n = episodes or run.cfg.eval_episodes
  local ev = run:evaluate(n)
  print(("%s round %d: success %.3f  return %.1f  length %.1f  (%d episodes)"):format(run.cfg.name, round,
    ev.success, ev["return"], ev.length, n))
end)
if not ok then
  io.stderr:write("mile eval: ", tostring(err), "\n")
  os.exit(1)
end
