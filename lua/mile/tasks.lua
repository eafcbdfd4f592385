--- mile.tasks: what the experiments need to know about each task, in one table.
--
-- Costs and scales of the simulated human follow the public MILE code's
-- COST_LOOKUP (docs/envs.md, ENVS.md 3.2). Manipulation tasks observe a stack of
-- 4 frames (156 dims), as MILE does.
local envs = require "mile.envs"
local registry = require "mile.registry"

--- Tasks by name (config key `env`). A task registers {name (the mile.envs id), doc,
--- discrete, obs_dim, n_actions | action_dim, frame_stack, human_cost, human_scale,
--- hidden, expert_std (continuous: sd of the simulated expert around the scripted
--- controller), policy_seed, demo_episodes, initial_steps, ...} (scripts/make_policies.lua
--- reads the policy fields).
local M = registry.new { kind = "task", key = "env", builtins = { "mile.tasks" },
  check = function(e)
    return type(e.discrete) == "boolean" and math.type(e.obs_dim) == "integer",
      "needs discrete (boolean) and obs_dim (integer)"
  end }

M.register {
  name = "LunarLander-v3", doc = "Box2D LunarLander, 4 discrete actions (Gymnasium)",
  env = "LunarLander-v3", discrete = true, obs_dim = 8, n_actions = 4, frame_stack = 1,
  human_cost = 3, human_scale = 1,
  hidden = { 64, 64 }, expert_hidden = { 64, 64 },
  policy_seed = 7, clone_episodes = 80, clone_noise = 0.3, clone_steps = 3000,
  demo_episodes = 3, initial_steps = 500,
}
M.register {
  name = "drawer-open-v3", doc = "MuJoCo Drawer-Open (Meta-World layout), hand x/y/z + gripper",
  env = "drawer-open-v3", discrete = false, obs_dim = 156, action_dim = 4, frame_stack = 4,
  human_cost = 60, human_scale = 75, expert_std = 0.1,
  hidden = { 256, 256 }, policy_seed = 11, demo_episodes = 1, initial_steps = 60,
}
M.register {
  name = "button-press-v3", doc = "MuJoCo Button-Press (Meta-World layout), hand x/y/z + gripper",
  env = "button-press-v3", discrete = false, obs_dim = 156, action_dim = 4, frame_stack = 4,
  human_cost = 150, human_scale = 200, expert_std = 0.1,
  hidden = { 256, 256 }, policy_seed = 13, demo_episodes = 1, initial_steps = 60,
}
M.register {
  name = "peg-insert-side-v3", doc = "MuJoCo Peg-Insert-Side (Meta-World layout), hand x/y/z + gripper",
  env = "peg-insert-side-v3", discrete = false, obs_dim = 156, action_dim = 4, frame_stack = 4,
  human_cost = 75, human_scale = 175, expert_std = 0.1,
  hidden = { 256, 256 }, policy_seed = 17, demo_episodes = 1, initial_steps = 60,
}

--- make_env(name): the env as the experiments see it (TimeLimit from the registry,
--- frame stacking where the task asks for it).
function M.make_env(name)
  local t = M.get(name)
  local env = envs.make(t.env or t.name)
  if (t.frame_stack or 1) > 1 then env = envs.FrameStack(env, t.frame_stack) end
  return env
end

return M
