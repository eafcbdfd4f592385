-- bench/intervention.lua - a full MILE training step and batch-1 inference.
--   mile bench/intervention.lua [--threads N] [--steps N] [NAME ...]
-- Prints one JSON object per line:
--   {"bench": NAME, "ms": median ms per step, "p10_ms": .., "p90_ms": .., "batch": ..,
--    "iv_ms": .., "threads": .., "gflop": .., "bound_ms": .., "ratio_to_bound": ..}
-- NAMEs:
--   discrete_train_b1024, discrete_train_b64  policy + mental model (each an MLP 8 ->
--       [256, 256] -> 4 logits), intervention model, loss "paper", backward, Adam
--       over both networks
--   gaussian_train_b1024, gaussian_train_b64  the same with obs 156 and a diagonal
--       Gaussian of 4 dims (each MLP outputs mean and log-std: 156 -> [256, 256] -> 8),
--       p(s) by quadrature
--   inference_3nets_b1  what the simulated human does at each rollout step: forward of
--       the robot policy, the expert and the ground-truth mental model at batch 1, and
--       the intervention probability, under no_grad; each network compiled
--       (compile_forward, as mile.policy runs them in rollouts)
--   inference_3nets_b1_uncompiled  the same with the networks' ordinary forward
-- Each training case is followed by NAME_compiled: the same step through mile.compile
-- (recorded once, replayed from C), timed alternately with the ordinary step
-- (eager_ms) so that drift of the machine hits both; speedup is the median of the
-- per-pair ratio ordinary / replayed.
-- iv_ms is the intervention part alone (model + loss forward and backward on the
-- networks' outputs, detached), so the remainder is networks and optimiser.
-- gflop: the step's matrix products (forward, weight gradients, input gradients but
-- the first layer's) in GFLOP; bound_ms: that work at the peak float32 rate of the
-- largest of them (1024x256 . 256x256), measured in this process at start-up (the
-- first line, "peak_sgemm", gives it); ratio_to_bound = ms / bound_ms. gemm_ms: the same
-- products called alone (plain matmuls of the same shapes), gemm_ratio_to_bound its
-- ratio: the lowest ratio the step could reach with these products on this machine.
-- Compare with PyTorch: /usr/bin/python3 bench/pytorch_intervention.py (same cases).
-- Threads: automatic (mile/compute.h) unless --threads N fixes the count.
local T = require "mile.tensor"
local nn = require "mile.nn"
local optim = require "mile.optim"
local ag = require "mile.autograd"
local I = require "mile.intervention"
local sys = require "mile.sys"
local compile = require "mile.compile"

local threads, steps_override, only = nil, nil, {}
do
  local i = 1
  while i <= #arg do
    if arg[i] == "--threads" then threads = tonumber(arg[i + 1]); i = i + 1
    elseif arg[i] == "--steps" then steps_override = tonumber(arg[i + 1]); i = i + 1
    else only[arg[i]] = true end
    i = i + 1
  end
end
if threads then sys.set_num_threads(threads) end

local function quantile(xs, q)
  local s = {}
  for i, v in ipairs(xs) do s[i] = v end
  table.sort(s)
  local pos = 1 + (#s - 1) * q
  local lo = math.floor(pos)
  local hi = math.min(lo + 1, #s)
  return s[lo] + (s[hi] - s[lo]) * (pos - lo)
end

-- median, p10, p90 of the per-step time in ms (steps timed one by one after a warm-up)
local function time_steps(step, n, warmup)
  for _ = 1, warmup do step() end
  collectgarbage("collect")
  local ms = {}
  for i = 1, n do
    local t0 = sys.monotonic()
    step()
    ms[i] = (sys.monotonic() - t0) * 1e3
  end
  return quantile(ms, 0.5), quantile(ms, 0.1), quantile(ms, 0.9)
end

-- two steps timed alternately, step by step (machine drift hits both alike): the
-- medians (ms) of each, and the median of the per-pair ratio a / b
local function time_pair(a, b, n, warmup)
  for _ = 1, warmup do a(); b() end
  collectgarbage("collect")
  local ta, tb, r = {}, {}, {}
  for i = 1, n do
    local t0 = sys.monotonic()
    a()
    local t1 = sys.monotonic()
    b()
    local t2 = sys.monotonic()
    ta[i], tb[i], r[i] = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t1 - t0) / (t2 - t1)
  end
  return quantile(ta, 0.5), quantile(tb, 0.5), quantile(r, 0.5), quantile(tb, 0.1), quantile(tb, 0.9)
end

-- batch-1 steps are timed in groups (the clock's own cost would show)
local function time_grouped(step, n, group)
  for _ = 1, 200 do step() end
  local ms = {}
  for i = 1, n do
    local t0 = sys.monotonic()
    for _ = 1, group do step() end
    ms[i] = (sys.monotonic() - t0) * 1e3 / group
  end
  return quantile(ms, 0.5), quantile(ms, 0.1), quantile(ms, 0.9)
end

local function emit(name, fields)
  local parts = { ('"bench": "%s"'):format(name) }
  for _, kv in ipairs(fields) do
    local v = kv[2]
    parts[#parts + 1] = ('"%s": %s'):format(kv[1], math.type(v) == "integer" and tostring(v) or ("%.4g"):format(v))
  end
  print("{" .. table.concat(parts, ", ") .. "}")
  io.stdout:flush()
end

local function random_actions(gen, B, A)
  local v = {}
  for i = 1, B do v[i] = gen:integer(0, A - 1) end
  return T.from(v)
end

local function flags(gen, B)
  local v = {}
  for i = 1, B do v[i] = gen:uniform() < 0.3 and 1 or 0 end
  return T.from(v)
end

-- one training step of MILE: returns step() and iv_step() (the intervention part alone)
local function setup_train(kind, B)
  local gen = T.Generator(1)
  local obs, out = kind == "discrete" and 8 or 156, kind == "discrete" and 4 or 8
  local policy = nn.MLP { input = obs, hidden = { 256, 256 }, output = out, generator = gen }
  local mental = nn.MLP { input = obs, hidden = { 256, 256 }, output = out, generator = gen }
  local params = policy:parameters()
  for _, p in ipairs(mental:parameters()) do params[#params + 1] = p end
  local opt = optim.Adam(params, { lr = 1e-4 })
  local x = T.randn({ B, obs }, gen)
  local nu = flags(gen, B)
  local ah = kind == "discrete" and random_actions(gen, B, 4) or T.randn({ B, 4 }, gen)
  local function model(po, mo)
    if kind == "discrete" then
      return I.discrete { policy_logits = po, mental_logits = mo, cost = 1.0, scale = 1.0 }
    end
    return I.gaussian { mu = po:narrow(2, 1, 4), log_sd = po:narrow(2, 5, 4), mental_mu = mo:narrow(2, 1, 4),
                        mental_log_sd = mo:narrow(2, 5, 4), cost = 1.0, scale = 1.0 }
  end
  local function body(x, nu, ah)
    opt:zero_grad()
    local m = model(policy(x), mental(x))
    local l = I.loss { model = m, variant = "paper", lambda = 0.5, nu = nu, human_action = ah }
    l.loss:backward()
    opt:step()
    return l.loss
  end
  local replayed = compile(body)
  local function step() body(x, nu, ah) end
  local function compiled_step() replayed(x, nu, ah) end
  local po = ag.no_grad(function() return policy(x) end):requires_grad(true)
  local mo = ag.no_grad(function() return mental(x) end):requires_grad(true)
  local function iv_step()
    po:zero_grad(); mo:zero_grad()
    local l = I.loss { model = model(po, mo), variant = "paper", lambda = 0.5, nu = nu, human_action = ah }
    l.loss:backward()
  end
  return step, iv_step, compiled_step, replayed
end

local function setup_inference(compiled)
  local gen = T.Generator(2)
  local robot = nn.MLP { input = 8, hidden = { 256, 256 }, output = 4, generator = gen }
  local expert = nn.MLP { input = 8, hidden = { 256, 256 }, output = 4, generator = gen }
  local mental = nn.MLP { input = 8, hidden = { 256, 256 }, output = 4, generator = gen }
  if compiled then
    robot, expert, mental = robot:compile_forward(), expert:compile_forward(), mental:compile_forward()
  end
  local x = T.randn({ 1, 8 }, gen)
  local sink = 0
  return function()
    local _ <close> = ag.no_grad()
    local a = robot(x)
    local m = I.discrete { policy_logits = expert(x), mental_logits = mental(x), cost = 1.0, scale = 1.0 }
    sink = sink + m.logp[1] + a[1][1]
  end
end

-- the peak float32 product rate (GFLOP/s) at the largest shape of the steps
local function peak_sgemm_gflops()
  local gen = T.Generator(3)
  local a, b = T.randn({ 1024, 256 }, gen), T.randn({ 256, 256 }, gen)
  for _ = 1, 20 do a:matmul(b) end
  local best = math.huge
  for _ = 1, 200 do
    local t0 = sys.monotonic()
    a:matmul(b)
    best = math.min(best, sys.monotonic() - t0)
  end
  return 2 * 1024 * 256 * 256 / best * 1e-9
end

-- The step's matrix products alone (both networks: forward, weight gradients, input
-- gradients of every layer but the first), as plain matmuls of the same shapes and
-- layouts: the floor the step cannot go below with these products.
local function gemm_only(kind, B)
  local gen = T.Generator(4)
  local dims = kind == "discrete" and { 8, 256, 256, 4 } or { 156, 256, 256, 8 }
  local layers = {}
  for net = 1, 2 do
    for l = 1, 3 do
      local x, w, g = T.randn({ B, dims[l] }, gen), T.randn({ dims[l + 1], dims[l] }, gen), T.randn({ B, dims[l + 1] }, gen)
      layers[#layers + 1] = { x = x, w = w, wt = w:t(), g = g, gt = g:t(), first = l == 1 }
    end
  end
  return function()
    for _, L in ipairs(layers) do
      L.x:matmul(L.wt)
      L.gt:matmul(L.x)
      if not L.first then L.g:matmul(L.w) end
    end
  end
end

-- matrix-product FLOPs of one step of two MLPs in -> 256 -> 256 -> out at batch B
-- (forward, weight gradients, input gradients of every layer but the first)
local function step_flops(kind, B)
  local dims = kind == "discrete" and { 8, 256, 256, 4 } or { 156, 256, 256, 8 }
  local f = 0
  for i = 1, #dims - 1 do
    local mn = dims[i] * dims[i + 1]
    f = f + 2 * B * mn * (i == 1 and 2 or 3)
  end
  return 2 * f
end

local BENCHES = {
  { name = "discrete_train_b1024", kind = "discrete", batch = 1024, steps = 200 },
  { name = "discrete_train_b64", kind = "discrete", batch = 64, steps = 1000 },
  { name = "gaussian_train_b1024", kind = "gaussian", batch = 1024, steps = 200 },
  { name = "gaussian_train_b64", kind = "gaussian", batch = 64, steps = 1000 },
  { name = "inference_3nets_b1", kind = "inference", batch = 1, steps = 200, compiled = true },
  { name = "inference_3nets_b1_uncompiled", kind = "inference", batch = 1, steps = 200 },
}

local nthreads = sys.num_threads()
local peak = peak_sgemm_gflops()
emit("peak_sgemm", { { "gflops", peak }, { "m", 1024 }, { "n", 256 }, { "k", 256 }, { "threads", nthreads } })
for _, b in ipairs(BENCHES) do
  if next(only) == nil or only[b.name] then
    local n = steps_override or b.steps
    if b.kind == "inference" then
      local med, p10, p90 = time_grouped(setup_inference(b.compiled), n, 100)
      local flops = 3 * 2 * (8 * 256 + 256 * 256 + 256 * 4)
      emit(b.name, { { "ms", med }, { "p10_ms", p10 }, { "p90_ms", p90 }, { "batch", 1 }, { "threads", nthreads },
                     { "us", med * 1e3 }, { "gflop", flops * 1e-9 }, { "bound_ms", flops / peak * 1e-6 },
                     { "ratio_to_bound", med / (flops / peak * 1e-6) } })
    else
      local step, iv_step, compiled_step, replayed = setup_train(b.kind, b.batch)
      local med, p10, p90 = time_steps(step, n, 20)
      local pair_eager, cmed, speedup, cp10, cp90 = time_pair(step, compiled_step, n, 20)
      local iv = time_steps(iv_step, n, 20)
      local bound = step_flops(b.kind, b.batch) / peak * 1e-6
      local gemm = time_steps(gemm_only(b.kind, b.batch), n, 20)
      emit(b.name, { { "ms", med }, { "p10_ms", p10 }, { "p90_ms", p90 }, { "batch", b.batch }, { "iv_ms", iv },
                     { "threads", nthreads }, { "gflop", step_flops(b.kind, b.batch) * 1e-9 }, { "bound_ms", bound },
                     { "ratio_to_bound", med / bound }, { "gemm_ms", gemm }, { "gemm_ratio_to_bound", gemm / bound } })
      if replayed.reason then error("the compiled step did not replay: " .. replayed.reason) end
      emit(b.name .. "_compiled", { { "ms", cmed }, { "p10_ms", cp10 }, { "p90_ms", cp90 }, { "batch", b.batch },
                     { "threads", nthreads }, { "bound_ms", bound }, { "ratio_to_bound", cmed / bound },
                     { "eager_ms", pair_eager }, { "speedup", speedup }, { "ops", #replayed:ops() } })
    end
  end
end
