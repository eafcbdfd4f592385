--- mile.envs: Gymnasium-style environments over mile's C simulators.
--
--   local envs = require "mile.envs"
--   local env = envs.make("LunarLander-v3")          -- TimeLimit(1000) applied, like gym.make
--   local obs, info = env:reset{seed = 0}            -- obs: a 1-d float64 mile tensor
--   local obs, reward, terminated, truncated, info = env:step(2)
--   info.success                                     -- the task's success rule (boolean)
--
-- Actions: a number (discrete: 0..n-1, Gymnasium's numbering), a table of numbers or
-- a mile tensor (box; values outside the bounds are clipped by the env). Everything
-- else about the C side is in docs/envs.md. Pure Lua over `mile.envs.core`.
local core = require "mile.envs.core"

local envs = {}

-- Spaces ------------------------------------------------------------------------------

local Space = {}
Space.__index = Space

-- Wraps a space table of the core ({type="discrete", n=} or {type="box", shape={n},
-- low=, high=}) with sample/contains.
local function new_space(raw)
  raw.dtype = raw.type == "box" and "float64" or "int64"
  return setmetatable(raw, Space)
end

--- A random element: an integer 0..n-1, or a table of uniform values in [low, high].
--- Draws from gen (a mile.tensor Generator) when given, else from math.random.
function Space:sample(gen)
  local function uniform() return gen and gen:uniform() or math.random() end
  if self.type == "discrete" then
    return gen and gen:integer(0, self.n - 1) or math.random(0, self.n - 1)
  end
  local a = {}
  for i = 1, self.shape[1] do a[i] = self.low[i] + (self.high[i] - self.low[i]) * uniform() end
  return a
end

--- Whether x is an element: an integer in 0..n-1, or n values within the bounds.
function Space:contains(x)
  if self.type == "discrete" then
    return math.type(x) ~= nil and x == math.floor(x) and x >= 0 and x < self.n
  end
  if type(x) ~= "table" and type(x) ~= "userdata" then return false end
  if #x ~= self.shape[1] then return false end
  for i = 1, #x do
    if not (x[i] >= self.low[i] and x[i] <= self.high[i]) then return false end
  end
  return true
end

-- The base env ----------------------------------------------------------------------

local Env = {}
Env.__index = Env

local function check_seed(seed)
  local s = math.tointeger(seed)
  if s == nil then error(("env.reset: seed must be an integer, got %s"):format(tostring(seed)), 3) end
  return s
end

--- env:reset{seed=} (or env:reset(seed)) -> obs, info. Without a seed the episode seeds
--- continue from the last one (seed + 1, seed + 2, ...); the very first unseeded reset
--- draws its seed from math.random. info.seed is the seed used.
function Env:reset(opts)
  local seed
  if type(opts) == "table" then
    seed = opts.seed
  elseif opts ~= nil then
    seed = opts
  end
  if seed == nil then
    seed = self._next_seed or math.random(0, math.maxinteger)
  else
    seed = check_seed(seed)
  end
  self._next_seed = seed + 1
  local obs = self.sim:reset(seed)
  return obs, {seed = seed}
end

--- env:step(action) -> obs, reward, terminated, truncated, info ({success = boolean}).
function Env:step(action)
  local obs, reward, terminated, truncated, success = self.sim:step(action)
  return obs, reward, terminated, truncated, {success = success}
end

--- env:render([width, height]) -> an image {width=, height=, rgb=} where rgb is a string
--- of width*height*3 bytes, row-major, top row first (default 600 x 400).
function Env:render(width, height)
  local rgb, w, h = self.sim:render(width, height)
  return {width = w, height = h, rgb = rgb}
end

--- Frees the simulator now (the GC would do it later); idempotent. Also runs at the
--- end of the scope of `local env <close> = envs.make(...)`.
function Env:close() self.sim:close() end
Env.__close = Env.close

function Env:__tostring() return ("Env(%s)"):format(self.spec.id) end

-- Wrappers ----------------------------------------------------------------------------

-- A wrapper class: its own methods first, then the wrapped env's fields (observation
-- space, spec, unwrapped, ...). An inherited method runs on the wrapped env.
local function wrapper_class(name)
  local class = {name = name}
  class.__index = function(self, key)
    local own = class[key]
    if own ~= nil then return own end
    local inner = self.env[key]
    if type(inner) == "function" then
      local env = self.env
      return function(first, ...)
        if first == self then return inner(env, ...) end
        return inner(first, ...)
      end
    end
    return inner
  end
  class.__tostring = function(self) return ("%s(%s)"):format(name, tostring(self.env)) end
  function class.reset(self, opts) return self.env:reset(opts) end
  function class.step(self, action) return self.env:step(action) end
  function class.render(self, width, height) return self.env:render(width, height) end
  function class.close(self) return self.env:close() end
  class.__close = class.close
  return class
end

local TimeLimit = wrapper_class("TimeLimit")

--- Truncates episodes after max_steps steps (truncated = true on the last one, as
--- Gymnasium's TimeLimit); stepping on after that is an error until reset.
function envs.TimeLimit(env, max_steps)
  local n = math.tointeger(max_steps)
  if n == nil or n < 1 then error("envs.TimeLimit: max_steps must be a positive integer", 2) end
  return setmetatable({env = env, max_episode_steps = n, elapsed_steps = false}, TimeLimit)
end

function TimeLimit:reset(opts)
  self.elapsed_steps = 0
  return self.env:reset(opts)
end

function TimeLimit:step(action)
  if not self.elapsed_steps then error("env.step: called before reset", 2) end
  if self.elapsed_steps >= self.max_episode_steps then
    error(("env.step: the episode was truncated by TimeLimit(%d); call reset"):format(self.max_episode_steps), 2)
  end
  local obs, reward, terminated, truncated, info = self.env:step(action)
  self.elapsed_steps = self.elapsed_steps + 1
  if self.elapsed_steps >= self.max_episode_steps then truncated = true end
  return obs, reward, terminated, truncated, info
end

local FrameStack = wrapper_class("FrameStack")

--- Observations become the last k observations concatenated into one 1-d tensor of
--- k * obs_dim values, oldest first, newest last; after reset the stack holds k copies
--- of the first observation (Gymnasium's FrameStackObservation, padding "reset").
function envs.FrameStack(env, k)
  local n = math.tointeger(k)
  if n == nil or n < 1 or n > 16 then error("envs.FrameStack: k must be an integer 1..16", 2) end
  local inner = env.observation_space
  if inner.type ~= "box" or #inner.shape ~= 1 then
    error("envs.FrameStack: needs a 1-d box observation space", 2)
  end
  local dim = inner.shape[1]
  local low, high = {}, {}
  for f = 0, n - 1 do
    for i = 1, dim do
      low[f * dim + i], high[f * dim + i] = inner.low[i], inner.high[i]
    end
  end
  local space = new_space {type = "box", shape = {n * dim}, low = low, high = high}
  return setmetatable({env = env, k = n, frames = {}, observation_space = space, stacked_frames = n}, FrameStack)
end

function FrameStack:reset(opts)
  local obs, info = self.env:reset(opts)
  for i = 1, self.k do self.frames[i] = obs end
  return core.concat(table.unpack(self.frames, 1, self.k)), info
end

function FrameStack:step(action)
  local obs, reward, terminated, truncated, info = self.env:step(action)
  table.remove(self.frames, 1)
  self.frames[self.k] = obs
  return core.concat(table.unpack(self.frames, 1, self.k)), reward, terminated, truncated, info
end

local RecordEpisodeStatistics = wrapper_class("RecordEpisodeStatistics")

--- Adds info.episode = {r = return, l = length, t = seconds} on the step that ends an
--- episode (terminated or truncated).
function envs.RecordEpisodeStatistics(env)
  return setmetatable({env = env, episode_return = 0, episode_length = 0, started = os.clock()},
                      RecordEpisodeStatistics)
end

function RecordEpisodeStatistics:reset(opts)
  self.episode_return, self.episode_length, self.started = 0, 0, os.clock()
  return self.env:reset(opts)
end

function RecordEpisodeStatistics:step(action)
  local obs, reward, terminated, truncated, info = self.env:step(action)
  self.episode_return = self.episode_return + reward
  self.episode_length = self.episode_length + 1
  if terminated or truncated then
    info.episode = {r = self.episode_return, l = self.episode_length, t = os.clock() - self.started}
  end
  return obs, reward, terminated, truncated, info
end

-- Construction ----------------------------------------------------------------------

--- envs.make(name [, options]) -> env. options go to the simulator (LunarLander:
--- gravity, enable_wind, wind_power, turbulence_power), except max_episode_steps: the
--- TimeLimit to apply (default: the env's registered limit; false or 0: none).
function envs.make(name, options)
  if type(name) ~= "string" then error("envs.make: name must be a string", 2) end
  if options ~= nil and type(options) ~= "table" then error("envs.make: options must be a table", 2) end
  local sim_options, max_steps = {}, nil
  for key, value in pairs(options or {}) do
    if key == "max_episode_steps" then
      max_steps = value
    else
      sim_options[key] = value
    end
  end
  local sim = core.make(name, sim_options)
  local env = setmetatable({
    sim = sim,
    observation_space = new_space(sim:observation_space()),
    action_space = new_space(sim:action_space()),
    spec = {id = sim:name(), max_episode_steps = sim:max_episode_steps()},
  }, Env)
  env.unwrapped = env
  if max_steps == nil then max_steps = env.spec.max_episode_steps end
  if max_steps and max_steps ~= 0 then env = envs.TimeLimit(env, max_steps) end
  return env
end

--- The registered env names.
function envs.list() return core.names() end

--- The task's scripted expert for env (wrapped or not): expert:act(obs) -> action, on
--- the observations env returns (a FrameStack's stacked ones included).
function envs.scripted_expert(env)
  local frames, e = 1, env
  while e ~= e.unwrapped do -- find a FrameStack in the chain
    local mt = getmetatable(e)
    if mt == FrameStack then frames = e.k end
    e = e.env
  end
  local sim = env.unwrapped.sim
  return {act = function(_, obs) return sim:expert_act(obs, frames) end}
end

--- Writes an image from env:render() as a PNG file, atomically (a temporary file beside
--- it, then a rename). Returns true, or nil and a message.
function envs.save_png(image, path)
  if type(image) ~= "table" or type(image.rgb) ~= "string" then
    error("envs.save_png: expected an image {width=, height=, rgb=} from env:render()", 2)
  end
  return core.save_png(image.rgb, image.width, image.height, path)
end

--- Runs one episode and saves every `every`-th frame as dir/<prefix>00000.png, ...
--- (the directory must exist). policy: a function obs -> action or an object with
--- :act(obs). opts: seed, width, height, every (1), prefix ("frame_"), max_steps.
--- Returns the episode's return, its length and the number of PNG files written.
function envs.save_episode_png(env, policy, dir, opts)
  opts = opts or {}
  local act = policy
  if type(policy) == "table" then act = function(obs) return policy:act(obs) end end
  if type(act) ~= "function" then error("envs.save_episode_png: policy must be a function or have :act", 2) end
  local every, prefix = opts.every or 1, opts.prefix or "frame_"
  local max_steps = opts.max_steps or math.huge
  local frames = 0
  local function save(t)
    if t % every ~= 0 then return end
    local path = ("%s/%s%05d.png"):format(dir, prefix, t)
    local ok, err = envs.save_png(env:render(opts.width, opts.height), path)
    if not ok then error(err, 3) end
    frames = frames + 1
  end
  local obs = env:reset{seed = opts.seed}
  save(0)
  local total, t, done = 0, 0, false
  while not done and t < max_steps do
    local reward, terminated, truncated
    obs, reward, terminated, truncated = env:step(act(obs))
    t = t + 1
    total = total + reward
    done = terminated or truncated
    save(t)
  end
  return total, t, frames
end

envs.concat = core.concat

return envs
