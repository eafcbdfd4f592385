-- test_envs.lua: mile.envs (the Lua glue over the C simulators), run by the `mile` host:
--   build/mile tests/lua/test_envs.lua   (LUA_PATH="tests/lua/?.lua;;" finds the harness; ctest sets it)
-- Expected values come from Gymnasium's LunarLander-v3 (/work/shared/ENVS.md section 1)
-- and from the wrappers' Gymnasium semantics, not from this code's own output.
local T = require "testing"
local envs = require "mile.envs"
local tensor = require "mile.tensor"

local test = T.test

-- Runs f and checks that it raises an error whose message contains `needle` (plain text).
local function expect_error(needle, f, ...)
  local ok, err = pcall(f, ...)
  T.truthy(not ok, "expected an error mentioning: " .. needle)
  T.truthy(tostring(err):find(needle, 1, true), ("error %q does not mention %q"):format(tostring(err), needle))
end

local function values(t)
  local out = {}
  for i = 1, #t do out[i] = t[i] end
  return out
end

local function same_values(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local DISCRETE, CONTINUOUS = "LunarLander-v3", "LunarLanderContinuous-v3"

test("list names both LunarLander variants", function()
  local seen = {}
  for _, name in ipairs(envs.list()) do seen[name] = true end
  assert(seen[DISCRETE] and seen[CONTINUOUS])
end)

test("spaces and spec are Gymnasium's", function()
  local env <close> = envs.make(DISCRETE)
  local os_ = env.observation_space
  assert(os_.type == "box" and os_.shape[1] == 8 and #os_.low == 8)
  assert(os_.low[1] == -2.5 and os_.high[2] == 2.5 and os_.low[3] == -10 and os_.high[8] == 1)
  assert(math.abs(os_.high[5] - 2 * math.pi) < 1e-12)
  assert(env.action_space.type == "discrete" and env.action_space.n == 4)
  assert(env.spec.id == DISCRETE and env.spec.max_episode_steps == 1000)
  local cenv <close> = envs.make(CONTINUOUS)
  local as = cenv.action_space
  assert(as.type == "box" and as.shape[1] == 2 and as.low[1] == -1 and as.high[2] == 1)
end)

test("reset and step return Gymnasium's values", function()
  local env <close> = envs.make(DISCRETE)
  local obs, info = env:reset{seed = 3}
  assert(tensor.is_tensor(obs) and #obs == 8 and obs:dtype() == "float64")
  assert(info.seed == 3)
  -- the lander starts at (10, 13.333) m: y obs = (13.333 - 3.933) / 6.667 = 1.41
  assert(math.abs(obs[1]) < 0.01 and math.abs(obs[2] - 1.41) < 0.02)
  local obs2, reward, terminated, truncated, info2 = env:step(0)
  assert(#obs2 == 8 and type(reward) == "number")
  assert(terminated == false and truncated == false and info2.success == false)
end)

test("same seed, same trajectory; unseeded resets continue the seeds", function()
  local a <close> = envs.make(CONTINUOUS)
  local b <close> = envs.make(CONTINUOUS)
  local oa = a:reset{seed = 42}
  local ob = b:reset(42)
  assert(same_values(values(oa), values(ob)))
  for t = 1, 1000 do
    local action = {math.sin(t), math.cos(3 * t)}
    local ra, rb, ta, tb
    oa, ra, ta = a:step(action)
    ob, rb, tb = b:step(action)
    assert(same_values(values(oa), values(ob)) and ra == rb and ta == tb)
    if ta then break end
  end
  local _, info = a:reset()
  assert(info.seed == 43)
  _, info = a:reset()
  assert(info.seed == 44)
  expect_error("seed must be an integer", a.reset, a, {seed = 1.5})
end)

test("actions as number, table or tensor are the same action", function()
  local function obs_after(name, action)
    local env <close> = envs.make(name)
    env:reset{seed = 9}
    return values((env:step(action)))
  end
  local base = obs_after(DISCRETE, 2)
  assert(same_values(base, obs_after(DISCRETE, {2})))
  assert(same_values(base, obs_after(DISCRETE, tensor.from{2})))
  local cbase = obs_after(CONTINUOUS, {0.7, -0.8})
  assert(same_values(cbase, obs_after(CONTINUOUS, tensor.from{0.7, -0.8})))
  -- box actions are clipped to [-1, 1] (Gymnasium's np.clip)
  assert(same_values(obs_after(CONTINUOUS, {1, 1}), obs_after(CONTINUOUS, {3, 7})))
end)

test("options reach the simulator: gravity=-5 halves the free-fall acceleration", function()
  local function dvy(options)
    local env <close> = envs.make(DISCRETE, options)
    local obs = env:reset{seed = 3}
    for _ = 1, 5 do obs = env:step(0) end
    local vy5 = obs[4]
    for _ = 1, 20 do obs = env:step(0) end
    return (obs[4] - vy5) / 20
  end
  -- g dt scaled by (H/2)/FPS = 6.667/50 per step
  assert(math.abs(dvy(nil) - (-0.2 * 20 / 3 / 50)) < 0.02 * 0.2 * 20 / 3 / 50)
  assert(math.abs(dvy{gravity = -5} - (-0.1 * 20 / 3 / 50)) < 0.02 * 0.1 * 20 / 3 / 50)
  local windy <close> = envs.make(DISCRETE, {enable_wind = true, wind_power = 10, turbulence_power = 0.5})
  windy:reset(1)
end)

test("bad input raises clear errors", function()
  expect_error("unknown env 'LunarLander-v9'", envs.make, "LunarLander-v9")
  expect_error("unknown option 'gravty'", envs.make, DISCRETE, {gravty = -5})
  expect_error("gravity", envs.make, DISCRETE, {gravity = -20})
  expect_error("option gravity must be a number", envs.make, DISCRETE, {gravity = {}})
  local env <close> = envs.make(CONTINUOUS, {max_episode_steps = false})
  expect_error("before reset", env.step, env, {0, 0})
  env:reset{seed = 0}
  expect_error("action has 3 values, LunarLanderContinuous-v3 expects 2", env.step, env, {0, 0, 0})
  expect_error("action has 3 values", env.step, env, tensor.from{0, 0, 0})
  expect_error("NaN", env.step, env, {0 / 0, 0})
  expect_error("action[2] is a string", env.step, env, {0, "x"})
  expect_error("must be a number, a table of numbers or a mile tensor", env.step, env, true)
  local denv <close> = envs.make(DISCRETE)
  denv:reset{seed = 0}
  expect_error("not one of LunarLander-v3's actions", denv.step, denv, 4)
  expect_error("not one of LunarLander-v3's actions", denv.step, denv, 1.5)
  -- free fall ends in a crash (-100); stepping on is an error until reset
  local terminated, reward
  repeat
    _, reward, terminated = denv:step(0)
  until terminated
  assert(reward == -100)
  expect_error("episode ended", denv.step, denv, 0)
  denv:reset{seed = 1}
  denv:close()
  denv:close() -- idempotent
  expect_error("closed", denv.step, denv, 0)
end)

test("TimeLimit truncates at max_episode_steps", function()
  local env <close> = envs.make(DISCRETE, {max_episode_steps = 5})
  env:reset{seed = 0}
  for t = 1, 5 do
    local _, _, terminated, truncated = env:step(0)
    assert(not terminated and truncated == (t == 5))
  end
  expect_error("truncated by TimeLimit(5)", env.step, env, 0)
  env:reset{seed = 0}
  env:step(0)
  expect_error("max_steps must be a positive integer", envs.TimeLimit, env, 0)
end)

test("FrameStack concatenates the last k observations, oldest first", function()
  local plain <close> = envs.make(DISCRETE)
  local stacked <close> = envs.FrameStack(envs.make(DISCRETE), 4)
  assert(stacked.observation_space.shape[1] == 32 and #stacked.observation_space.low == 32)
  assert(stacked.action_space.n == 4)
  local history = {values((plain:reset{seed = 5}))}
  local s = values((stacked:reset{seed = 5}))
  assert(#s == 32)
  for f = 0, 3 do -- reset pads with copies of the first observation
    for i = 1, 8 do assert(s[f * 8 + i] == history[1][i]) end
  end
  for t = 1, 6 do
    local a = t % 4
    history[#history + 1] = values((plain:step(a)))
    s = values((stacked:step(a)))
    for f = 0, 3 do
      local frame = history[math.max(1, #history - 3 + f)]
      for i = 1, 8 do assert(s[f * 8 + i] == frame[i]) end
    end
  end
end)

test("RecordEpisodeStatistics reports return and length at the end", function()
  local env <close> = envs.RecordEpisodeStatistics(envs.make(DISCRETE))
  env:reset{seed = 2}
  local total, steps, info, terminated, truncated, reward = 0, 0, nil, false, false, nil
  repeat
    _, reward, terminated, truncated, info = env:step(0)
    total, steps = total + reward, steps + 1
    assert((info.episode ~= nil) == (terminated or truncated))
  until terminated or truncated
  assert(math.abs(info.episode.r - total) < 1e-9 and info.episode.l == steps)
end)

test("the scripted expert solves both variants (mean return >= 200)", function()
  for _, name in ipairs{DISCRETE, CONTINUOUS} do
    local env <close> = envs.make(name)
    local expert = envs.scripted_expert(env)
    local sum, episodes = 0, 10
    for seed = 0, episodes - 1 do
      local obs = env:reset{seed = seed}
      local done = false
      while not done do
        local reward, terminated, truncated
        obs, reward, terminated, truncated = env:step(expert:act(obs))
        sum = sum + reward
        done = terminated or truncated
      end
    end
    print(("       %s expert: mean return %.1f over %d episodes"):format(name, sum / episodes, episodes))
    assert(sum / episodes >= 200)
  end
end)

test("the expert reads the newest frame of a FrameStack observation", function()
  local plain <close> = envs.make(CONTINUOUS)
  local stacked <close> = envs.FrameStack(envs.make(CONTINUOUS), 3)
  local ep, es = envs.scripted_expert(plain), envs.scripted_expert(stacked)
  local op, os_ = plain:reset{seed = 4}, stacked:reset{seed = 4}
  for _ = 1, 30 do
    local ap, as = ep:act(op), es:act(os_)
    assert(same_values(values(ap), values(as)))
    op = plain:step(ap)
    os_ = stacked:step(as)
  end
end)

test("spaces sample and contain", function()
  local env <close> = envs.make(CONTINUOUS)
  math.randomseed(7)
  for _ = 1, 50 do
    local a = env.action_space:sample()
    assert(#a == 2 and env.action_space:contains(a))
  end
  assert(not env.action_space:contains{2, 0})
  local denv <close> = envs.make(DISCRETE)
  for _ = 1, 50 do
    local a = denv.action_space:sample()
    assert(math.type(a) == "integer" and a >= 0 and a < 4)
  end
  assert(not denv.action_space:contains(4) and denv.action_space:contains(3))
end)

test("render and save_png write a real PNG atomically", function()
  local env <close> = envs.make(DISCRETE)
  env:reset{seed = 0}
  local image = env:render()
  assert(image.width == 600 and image.height == 400 and #image.rgb == 600 * 400 * 3)
  local small = env:render(60, 40)
  assert(#small.rgb == 60 * 40 * 3)
  local path = os.tmpname()
  assert(envs.save_png(image, path))
  local f = assert(io.open(path, "rb"))
  local header = f:read(8)
  f:close()
  assert(header == "\137PNG\r\n\26\n")
  assert(io.open(path .. ".tmp", "rb") == nil)
  os.remove(path)
  local ok, err = envs.save_png(image, "/nonexistent-dir/x.png")
  assert(ok == nil and err:find("cannot write", 1, true))
  expect_error("bytes expected", envs.save_png, {rgb = "abc", width = 2, height = 2}, path)
  expect_error("width must be", env.render, env, 0, 10)
end)

test("save_episode_png writes one PNG per saved frame", function()
  local env <close> = envs.make(CONTINUOUS)
  local base = os.tmpname()
  os.remove(base)
  local dir, prefix = base:match("^(.*)/([^/]*)$")
  local total, steps, frames = envs.save_episode_png(env, envs.scripted_expert(env), dir,
                                                    {seed = 1, every = 25, width = 60, height = 40,
                                                     prefix = prefix .. "_"})
  assert(steps > 0 and total > 100 and frames == steps // 25 + 1)
  for t = 0, steps, 25 do
    local path = ("%s/%s_%05d.png"):format(dir, prefix, t)
    assert(io.open(path, "rb"), "missing " .. path):close()
    os.remove(path)
  end
end)

T.run()
