-- bench/train.lua - one training step of a policy network: forward + backward + Adam
-- of a 2x[256,256] MLP (input 8 or 39, output 4) at batch 1024, 64 and 1.
--   mile bench/train.lua [--threads N] [--rss-steps N]
-- Prints one JSON object per line:
--   {"bench":"train_step", "input":8, "batch":64, "loss":"mse", "steps_per_s":..,
--    "median_ms":.., "gemm_ms":.., "ratio_to_gemm":.., "threads":..}
--     gemm_ms: the same 8 matrix products a step does (3 forward, 3 weight
--     gradients, 2 input gradients), called alone as plain tensor matmuls;
--     ratio_to_gemm = median_ms / gemm_ms (1 would mean zero overhead).
--   {"bench":"train_rss", "steps":10000, "rss_before_mib":.., "rss_after_mib":.., ...}
--     resident memory (VmRSS of /proc/self/status) before and after a long loop:
--     it must stay flat.
local tensor = require "mile.tensor"
local nn = require "mile.nn"
local optim = require "mile.optim"

local ok_sys, sys = pcall(require, "mile.sys")
local now = ok_sys and sys.monotonic or os.clock -- wall clock when the host has one

local threads, rss_steps = nil, 10000
for i = 1, #arg do
  if arg[i] == "--threads" then threads = tonumber(arg[i + 1]) end
  if arg[i] == "--rss-steps" then rss_steps = tonumber(arg[i + 1]) end
end
if threads and ok_sys then sys.set_num_threads(threads) end

local function rss_mib()
  local f = io.open("/proc/self/status", "r")
  if not f then return -1 end
  local kb
  for line in f:lines() do
    kb = kb or tonumber(line:match("^VmRSS:%s*(%d+)"))
  end
  f:close()
  return kb and kb / 1024 or -1
end

local function emit(fields)
  local parts = {}
  for _, kv in ipairs(fields) do
    local v = kv[2]
    local s
    if type(v) == "string" then s = string.format("%q", v)
    elseif math.type(v) == "integer" then s = tostring(v)
    else s = string.format("%.6g", v) end
    parts[#parts + 1] = string.format("%q: %s", kv[1], s)
  end
  print("{" .. table.concat(parts, ", ") .. "}")
  io.stdout:flush()
end

local function median(xs)
  table.sort(xs)
  local n = #xs
  return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local HIDDEN, OUTPUT = 256, 4

-- A network, an optimiser, a batch and a step function.
local function setup(input, batch, loss_kind)
  local gen = tensor.Generator(1)
  local net = nn.MLP { input = input, hidden = { HIDDEN, HIDDEN }, output = OUTPUT, generator = gen }
  local opt = optim.Adam(net, { lr = 1e-4 })
  local x = tensor.randn({ batch, input }, gen)
  local step
  if loss_kind == "nll" then
    local head = nn.CategoricalHead()
    local actions = tensor.from((function()
      local a = {}
      for i = 1, batch do a[i] = gen:integer(0, OUTPUT - 1) end
      return a
    end)())
    step = function()
      opt:zero_grad()
      local loss = -head(net(x)):log_prob(actions):mean()
      loss:backward()
      opt:step()
    end
  else
    local y = tensor.randn({ batch, OUTPUT }, gen)
    step = function()
      opt:zero_grad()
      local d = net(x) - y
      local loss = (d * d):mean()
      loss:backward()
      opt:step()
    end
  end
  return step
end

-- The matrix products of one step, as plain matmuls of the same shapes and layouts.
local function gemm_only(input, batch)
  local gen = tensor.Generator(2)
  local sizes = { input, HIDDEN, HIDDEN, OUTPUT }
  local layers = {}
  for l = 1, 3 do
    local fan_in, fan_out = sizes[l], sizes[l + 1]
    layers[l] = {
      x = tensor.randn({ batch, fan_in }, gen),  -- the layer's input
      w = tensor.randn({ fan_out, fan_in }, gen), -- its weight
      g = tensor.randn({ batch, fan_out }, gen),  -- the gradient of its output
    }
    layers[l].wt = layers[l].w:t()
    layers[l].gt = layers[l].g:t()
  end
  return function()
    for l = 1, 3 do local L = layers[l]; L.x:matmul(L.wt) end   -- forward
    for l = 3, 1, -1 do
      local L = layers[l]
      L.gt:matmul(L.x)                                            -- dW = g^T x
      if l > 1 then L.g:matmul(L.w) end                           -- dx = g W
    end
  end
end

-- Median seconds per call, each call timed alone, after a warm-up.
local function time_calls(fn, calls, warmup)
  for _ = 1, warmup do fn() end
  local times = {}
  local t0 = now()
  for i = 1, calls do
    local t = now()
    fn()
    times[i] = now() - t
  end
  local total = now() - t0
  return median(times), calls / total
end

local CALLS = { [1024] = 200, [64] = 2000, [1] = 5000 }

for _, input in ipairs { 8, 39 } do
  for _, batch in ipairs { 1024, 64, 1 } do
    for _, loss_kind in ipairs { "mse", "nll" } do
      if loss_kind == "mse" or input == 8 then
        local step = setup(input, batch, loss_kind)
        local calls = CALLS[batch]
        local med, per_s = time_calls(step, calls, calls // 10)
        local gemm = time_calls(gemm_only(input, batch), calls, calls // 10)
        emit {
          { "bench", "train_step" }, { "input", input }, { "batch", batch }, { "loss", loss_kind },
          { "steps_per_s", per_s }, { "median_ms", med * 1e3 }, { "gemm_ms", gemm * 1e3 },
          { "ratio_to_gemm", med / gemm }, { "threads", ok_sys and sys.num_threads() or -1 },
        }
        collectgarbage()
      end
    end
  end
end

-- Memory over a long loop: batch 64, input 8, the Categorical loss.
do
  local step = setup(8, 64, "nll")
  for _ = 1, 200 do step() end
  collectgarbage()
  local before, lua_before = rss_mib(), collectgarbage("count") / 1024
  local peak = before
  local t0 = now()
  for i = 1, rss_steps do
    step()
    if i % 500 == 0 then peak = math.max(peak, rss_mib()) end
  end
  local elapsed = now() - t0
  local after = rss_mib()
  collectgarbage()
  emit {
    { "bench", "train_rss" }, { "input", 8 }, { "batch", 64 }, { "steps", rss_steps },
    { "rss_before_mib", before }, { "rss_after_mib", after }, { "rss_peak_mib", peak },
    { "lua_heap_before_mib", lua_before }, { "lua_heap_after_mib", collectgarbage("count") / 1024 },
    { "steps_per_s", rss_steps / elapsed },
  }
end
