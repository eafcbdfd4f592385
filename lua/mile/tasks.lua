--- mile.tasks: what the experiments need to know about each task, in one table.
--
-- Costs and scales of the simulated human follow the public MILE code's
-- COST_LOOKUP (docs/envs.md, ENVS.md 3.2). Manipulation tasks observe a stack of
-- 4 frames (156 dims), as MILE does.
local envs = require "mile.envs"

local M = {}

local TASKS = {
  ["LunarLander-v3"] = {
    env = "LunarLander-v3", discrete = true, obs_dim = 8, n_actions = 4, frame_stack = 1,
    human_cost = 3, human_scale = 1,
    hidden = { 64, 64 }, expert_hidden = { 64, 64 },
    policy_seed = 7, clone_episodes = 80, clone_noise = 0.3, clone_steps = 3000,
    demo_episodes = 3, initial_steps = 500,
  },
  ["drawer-open-v3"] = {
    env = "drawer-open-v3", discrete = false, obs_dim = 156, action_dim = 4, frame_stack = 4,
    human_cost = 60, human_scale = 75, expert_std = 0.1,
    hidden = { 256, 256 }, policy_seed = 11, demo_episodes = 1, initial_steps = 60,
  },
  ["button-press-v3"] = {
    env = "button-press-v3", discrete = false, obs_dim = 156, action_dim = 4, frame_stack = 4,
    human_cost = 150, human_scale = 200, expert_std = 0.1,
    hidden = { 256, 256 }, policy_seed = 13, demo_episodes = 1, initial_steps = 60,
  },
  ["peg-insert-side-v3"] = {
    env = "peg-insert-side-v3", discrete = false, obs_dim = 156, action_dim = 4, frame_stack = 4,
    human_cost = 75, human_scale = 175, expert_std = 0.1,
    hidden = { 256, 256 }, policy_seed = 17, demo_episodes = 1, initial_steps = 60,
  },
}

--- get(name) -> the task's table (an error names the known tasks).
function M.get(name)
  local t = TASKS[name]
  if not t then
    error(("tasks: unknown task %q (known: %s)"):format(tostring(name), table.concat(M.names(), ", ")), 2)
  end
  return t
end

function M.names()
  local out = {}
  for k in pairs(TASKS) do out[#out + 1] = k end
  table.sort(out)
  return out
end

--- make_env(name): the env as the experiments see it (TimeLimit from the registry,
--- frame stacking where the task asks for it).
function M.make_env(name)
  local t = M.get(name)
  local env = envs.make(t.env)
  if t.frame_stack > 1 then env = envs.FrameStack(env, t.frame_stack) end
  return env
end

return M
