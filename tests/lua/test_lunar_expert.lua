-- The LunarLander heuristic as a law with gains (mile.envs.lunar_heuristic), the tuned
-- expert of scripts/make_policies.lua --tune-expert, and config expert.policy.
local T = require "testing"
local tensor = require "mile.tensor"
local envs = require "mile.envs"
local nn = require "mile.nn"
local io_ = require "mile.io"
local loop = require "mile.loop"
local policy = require "mile.policy"
local lh = require "mile.envs.lunar_heuristic"

local root = debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/") or "."
local data_dir = root .. "/scripts/data/LunarLander-v3"

-- States off the expert's own path too: episodes driven by random actions.
local function visited_states(name, episodes, steps)
  local env = envs.make(name)
  local gen = tensor.Generator(3)
  local states = {}
  for ep = 1, episodes do
    local obs = env:reset { seed = 900 + ep }
    for _ = 1, steps do
      states[#states + 1] = obs
      local _, term, trunc
      obs, _, term, trunc = env:step(env.action_space:sample(gen))
      if term or trunc then break end
    end
  end
  return states, env
end

T.test("with Gymnasium's gains the law is the env's scripted expert (envs/src/lunar_lander.cpp)", function()
  local states, env = visited_states("LunarLander-v3", 6, 120)
  local expert = envs.scripted_expert(env)
  for i, s in ipairs(states) do T.eq(lh.act(lh.GYMNASIUM, s), expert:act(s), "state " .. i) end
  local cstates, cenv = visited_states("LunarLanderContinuous-v3", 6, 120)
  local cexpert = envs.scripted_expert(cenv)
  for i, s in ipairs(cstates) do
    local want, got = cexpert:act(s):totable(), lh.act(lh.GYMNASIUM, s:totable(), true)
    T.near(got[1], want[1], 1e-12, "main, state " .. i)
    T.near(got[2], want[2], 1e-12, "lateral, state " .. i)
  end
  T.truthy(#states > 300 and #cstates > 300, "enough states")
end)

T.test("the law's leg-contact branch and its deadband, by hand", function()
  -- at rest on a leg: no steering, the main engine only against a fall faster than deadband / leg_fall_gain
  local g = lh.GYMNASIUM
  T.eq(lh.act(g, { 0.3, 0, 0.5, -0.05, 0.2, 0.3, 1, 0 }), 0)
  T.eq(lh.act(g, { 0.3, 0, 0.5, -0.2, 0.2, 0.3, 1, 0 }), 2)
  -- upright above the pad, falling slowly: angle cmd 0, hover cmd (0 - 1) 0.5 < 0: engines off
  T.eq(lh.act(g, { 0, 1, 0, 0, 0, 0, 0, 0 }), 0)
  -- tilted left (angle 0.3): angle cmd -0.15 < -deadband, the right engine (3)
  T.eq(lh.act(g, { 0, 1, 0, 0, 0.3, 0, 0, 0 }), 3)
  local missing = {}
  for k, v in pairs(g) do missing[k] = v end
  missing.spin_gain = nil
  T.raises(function() lh.check(missing) end, "gain spin_gain must be a finite number")
  missing.spin_gain = 0 / 0
  T.raises(function() lh.check(missing) end, "gain spin_gain must be a finite number %(got %-?nan")
end)

-- Success rate of act(obs) over episodes of seeds seed_base + 1.. (the evaluation rule:
-- an episode stops at its first success).
local function success(act, episodes, seed_base)
  local env = envs.make("LunarLander-v3")
  local wins = 0
  for ep = 1, episodes do
    local obs = env:reset { seed = seed_base + ep }
    local done = false
    while not done do
      local _, term, trunc, info
      obs, _, term, trunc, info = env:step(act(obs))
      if info.success then wins = wins + 1 end
      done = term or trunc or info.success
    end
  end
  return wins / episodes
end

T.test("the tuned expert: its gains land where Gymnasium's do not, and its clone keeps most of that", function()
  local net, meta = nn.load(data_dir .. "/expert-tuned.safetensors")
  local gains = lh.check(io_.json_decode(meta["expert.gains"]))
  -- seeds neither the search (400001-400200) nor its held-out score (600001-600500) used
  local tuned = success(function(obs) return lh.act(gains, obs) end, 100, 700000)
  local gym = success(function(obs) return lh.act(lh.GYMNASIUM, obs) end, 100, 700000)
  T.truthy(tuned >= 0.97, ("tuned law %.2f >= 0.97"):format(tuned))
  T.truthy(tuned - gym >= 0.08, ("tuned law %.2f beats Gymnasium's gains %.2f by >= 0.08"):format(tuned, gym))
  local clone = success(function(obs) return policy.act(net, obs, true) end, 100, 700000)
  T.truthy(clone >= 0.9, ("clone %.2f >= 0.9"):format(clone))
end)

T.test("expert.policy picks the expert's file; a continuous task refuses tuned, naming the key and the task", function()
  local cfg = loop.resolve { env = "LunarLander-v3", expert = { policy = "tuned" } }
  T.truthy(loop.policy_file(cfg, "expert"):match("/LunarLander%-v3/expert%-tuned%.safetensors$"))
  T.truthy(loop.policy_file(cfg, "initial"):match("/LunarLander%-v3/initial%.safetensors$"))
  T.truthy(loop.policy_file(loop.resolve { env = "LunarLander-v3" }, "expert"):match("/expert%.safetensors$"))
  T.raises(function() loop.resolve({ env = "drawer-open-v3" }, { "expert.policy=tuned" }) end,
    "'expert.policy' = tuned: drawer%-open%-v3's expert is its scripted controller")
  T.raises(function() loop.resolve({ env = "LunarLander-v3" }, { "expert.policy=best" }) end, "expert.policy")
end)

T.run()
