-- bench/envs.lua: environment steps per second with a random policy, one core.
--   mile bench/envs.lua [NAME ...]     (default: every env in BENCH_ENVS)
-- Prints one JSON line per env: {"bench":"env_steps_<name>","steps_per_s":...}.
-- The steps go through envs.make's full Lua path (TimeLimit, info tables, observation
-- tensors) and include the resets of the episodes that end during the run.
local envs = require "mile.envs"

-- Add an env here to benchmark it.
local BENCH_ENVS = {
  "LunarLander-v3",
  "LunarLanderContinuous-v3",
  "drawer-open-v3",
  "button-press-v3",
  "peg-insert-side-v3",
}

local SECONDS = 2.0 -- CPU time measured per env, after a warm-up

local function bench(name)
  local env = envs.make(name)
  local space = env.action_space
  math.randomseed(1)
  local steps, episodes = 0, 0
  env:reset{seed = 0}
  local function run(seconds)
    local start = os.clock()
    local n = 0
    repeat
      for _ = 1, 1000 do
        local _, _, terminated, truncated = env:step(space:sample())
        n = n + 1
        if terminated or truncated then
          episodes = episodes + 1
          env:reset()
        end
      end
    until os.clock() - start >= seconds
    return n, os.clock() - start
  end
  run(0.2) -- warm-up
  local elapsed
  steps, elapsed = run(SECONDS)
  env:close()
  return steps / elapsed
end

local names = #arg > 0 and arg or BENCH_ENVS
for _, name in ipairs(names) do
  print(string.format('{"bench":"env_steps_%s","steps_per_s":%.0f}', name, bench(name)))
end
