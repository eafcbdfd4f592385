-- mile.compile: steps recorded once and replayed from C. The replayed results are
-- checked bit for bit against the same step run as it is (the same kernels in the
-- same order), the replayed gradients against central finite differences in float64,
-- and the guards, fallbacks and errors against what the documentation promises.
local T = require "testing"
local tensor = require "mile.tensor"
local nn = require "mile.nn"
local optim = require "mile.optim"
local I = require "mile.intervention"
local ag = require "mile.autograd"
local compile = require "mile.compile"

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

-- MILE_COMPILE=0 (the whole suite run with recording off) turns every compiled function
-- into the plain one: that is checked, and the tests of replays are skipped.
if os.getenv("MILE_COMPILE") == "0" then
  T.test("MILE_COMPILE=0: compiled functions run as written, saying so", function()
    local step = compile(function(v) return v * 2 end)
    for _ = 1, 3 do T.eq(step(tensor.from { 1, 2 }):totable(), { 2, 4 }) end
    T.eq({ step:stats().recorded, step:stats().replayed, step:stats().eager }, { 0, 0, 3 })
    T.eq(step.reason, "MILE_COMPILE=0")
  end)
  local register = T.test -- the replay tests below are registered as skipped
  T.test = function(name) register(name, function() T.skip("replays are off (MILE_COMPILE=0)") end) end
end

local function same_params(pa, pb)
  T.eq(#pa, #pb)
  for i = 1, #pa do T.eq(max_abs_diff(pa[i], pb[i]), 0, "parameter " .. i) end
end

-- a fresh network and optimiser, identical for every call with the same seed
local function mlp(dtype, opt_kind)
  local gen = tensor.Generator(7)
  local net = nn.MLP { input = 6, hidden = { 16, 16 }, output = 3, generator = gen, dtype = dtype }
  local params = net:parameters()
  local opt = opt_kind == "sgd" and optim.SGD(params, { lr = 0.05, momentum = 0.9 }) or optim.Adam(params, { lr = 1e-2 })
  return net, opt
end

local function mse_step(net, opt)
  return function(x, y)
    opt:zero_grad()
    local loss = ((net(x) - y) ^ 2):mean()
    loss:backward()
    opt:step()
    return loss
  end
end

-- the same MSE step twice, from identical networks: run as written, and compiled
local function eager_and_compiled(opt_kind)
  local n1, o1 = mlp("float32", opt_kind)
  local n2, o2 = mlp("float32", opt_kind)
  return mse_step(n1, o1), compile(mse_step(n2, o2)), n1, o1, n2, o2
end

T.test("a replayed MLP step equals the eager step to the bit (float32, Adam and SGD)", function()
  for _, kind in ipairs { "adam", "sgd" } do
    local gen = tensor.Generator(1)
    local x, y = tensor.randn({ 32, 6 }, gen), tensor.randn({ 32, 3 }, gen)
    local eager, step, n1, o1, n2, o2 = eager_and_compiled(kind)
    for i = 1, 5 do
      local a, b = eager(x, y), step(x, y)
      T.eq(a:item(), b:item(), kind .. " loss at step " .. i)
    end
    same_params(n1:parameters(), n2:parameters())
    T.eq(o2.step_count, o1.step_count)
    T.eq(o2:state_dict().state[1].step, o1:state_dict().state[1].step)
    local s = step:stats()
    T.eq({ s.recorded, s.replayed, s.eager }, { 1, 4, 0 })
    T.eq(step.reason, nil)
    T.truthy(#step:ops() > 5)
  end
end)

-- The MILE step of mile.methods in both models, with the argument checks on: the
-- checks run as kernels (take, check_actions, the loss's nu test) inside the tape.
local function mile_step(kind, dtype)
  local gen = tensor.Generator(3)
  local obs, out = kind == "discrete" and 5 or 7, kind == "discrete" and 3 or 4
  local policy = nn.MLP { input = obs, hidden = { 12 }, output = out, generator = gen, dtype = dtype }
  local mental = nn.MLP { input = obs, hidden = { 12 }, output = out, generator = gen, dtype = dtype }
  local params = {}
  for _, net in ipairs { policy, mental } do
    for _, p in ipairs(net:parameters()) do params[#params + 1] = p end
  end
  local opt = optim.Adam(params, { lr = 1e-2 })
  local function model(po, mo)
    if kind == "discrete" then return I.discrete { policy_logits = po, mental_logits = mo, cost = 0.7, scale = 1.3 } end
    return I.gaussian { mu = po:narrow(2, 1, 2), log_sd = po:narrow(2, 3, 2), mental_mu = mo:narrow(2, 1, 2),
                        mental_log_sd = mo:narrow(2, 3, 2), cost = 0.7, scale = 1.3 }
  end
  local fn = function(x, nu, ah)
    opt:zero_grad()
    local l = I.loss { model = model(policy(x), mental(x)), variant = "paper", lambda = 0.4, nu = nu, human_action = ah }
    l.loss:backward()
    opt:step()
    return l.loss, l.j1, l.j2
  end
  return fn, params
end

local function mile_batch(kind, B, seed, dtype)
  dtype = dtype or "float32"
  local gen = tensor.Generator(seed)
  local x = tensor.randn({ B, kind == "discrete" and 5 or 7 }, gen, dtype)
  local nu, acts = {}, {}
  for i = 1, B do nu[i] = (i % 3 == 0) and 1 or 0; acts[i] = (i * 7) % 3 end
  local ah = kind == "discrete" and tensor.from(acts, dtype) or tensor.randn({ B, 2 }, gen, dtype)
  return x, tensor.from(nu, dtype), ah
end

T.test("the MILE step (discrete and Gaussian) replays to the bit, its checks included", function()
  for _, kind in ipairs { "discrete", "gaussian" } do
    local f1, p1 = mile_step(kind, "float32")
    local f2, p2 = mile_step(kind, "float32")
    local step = compile(f2)
    for i = 1, 4 do
      local x, nu, ah = mile_batch(kind, 24, i)
      local a = { f1(x, nu, ah) }
      local b = { step(x, nu, ah) }
      for k = 1, 3 do T.eq(a[k]:item(), b[k]:item(), kind .. " output " .. k .. " at step " .. i) end
    end
    same_params(p1, p2)
    T.eq(step:stats().replayed, 3, kind)
    T.eq(step.reason, nil, kind)
  end
end)

T.test("replayed gradients agree with central differences (float64)", function()
  local gen = tensor.Generator(11)
  local net = nn.MLP { input = 4, hidden = { 5 }, output = 2, activation = "tanh", generator = gen, dtype = "float64" }
  local params = net:parameters()
  local loss_of = function(x, y) return ((net(x) - y) ^ 2):sum() end
  local step = compile(function(x, y)
    for _, p in ipairs(params) do p:zero_grad() end
    local l = loss_of(x, y)
    l:backward()
    return l
  end)
  local x, y = tensor.randn({ 6, 4 }, gen, "float64"), tensor.randn({ 6, 2 }, gen, "float64")
  step(x, y) -- recorded
  local x2, y2 = tensor.randn({ 6, 4 }, gen, "float64"), tensor.randn({ 6, 2 }, gen, "float64")
  step(x2, y2) -- replayed: these gradients are checked
  T.eq(step:stats().replayed, 1)
  local h = 1e-6
  for pi, p in ipairs(params) do
    local g = p.grad:contiguous():view { -1 }:totable()
    local flat = p:view { -1 }
    for k = 1, math.min(flat:numel(), 6) do
      local v = flat[k]
      local fp, fm
      ag.no_grad(function()
        flat[k] = v + h; fp = loss_of(x2, y2):item()
        flat[k] = v - h; fm = loss_of(x2, y2):item()
        flat[k] = v
      end)
      T.near({ g[k] }, { (fp - fm) / (2 * h) }, 1e-7, ("parameter %d element %d"):format(pi, k))
    end
  end
end)

T.test("another shape or dtype records again; another value of a number argument too", function()
  local eager, step, n1, _, n2 = eager_and_compiled()
  local gen = tensor.Generator(2)
  for _, B in ipairs { 8, 8, 5, 8, 5 } do
    local x, y = tensor.randn({ B, 6 }, gen), tensor.randn({ B, 3 }, gen)
    T.eq(eager(x, y):item(), step(x, y):item(), "batch " .. B)
  end
  same_params(n1:parameters(), n2:parameters())
  T.eq({ step:stats().recorded, step:stats().replayed }, { 2, 3 })

  local scaled = compile(function(x, s) return (x * s):sum() end)
  local x = tensor.from { 1, 2, 3 }
  T.eq(scaled(x, 2):item(), 12)
  T.eq(scaled(x, 3):item(), 18)
  T.eq(scaled(x, 2):item(), 12)
  T.eq(scaled(x:double(), 2):item(), 12)
  T.eq({ scaled:stats().recorded, scaled:stats().replayed }, { 3, 1 })

  local keyed = compile(function(b) return (b.x * b.w):sum() end)
  T.eq(keyed { x = x, w = 2 }:item(), 12)
  T.eq(keyed { x = x + 1, w = 2 }:item(), 18)
  T.eq(keyed { x = x, w = 1 }:item(), 6)
  T.eq(keyed:stats().replayed, 1)

  -- the same tensor twice at the recording, two different ones later (and back)
  local diff = compile(function(a, b) return a - b end)
  local u, w = tensor.from { 1, 2 }, tensor.from { 5, 7 }
  T.eq(diff(u, u):totable(), { 0, 0 })
  T.eq(diff(u, w):totable(), { -4, -5 })
  T.eq(diff(w, w):totable(), { 0, 0 })
  T.eq(diff(w, u):totable(), { 4, 5 })
  T.eq({ diff:stats().recorded, diff:stats().replayed }, { 2, 2 })

  local capped = compile(function(v) return v * 2 end, { max_recordings = 1 })
  capped(tensor.zeros(2))
  T.eq(capped(tensor.ones(3)):totable(), { 2, 2, 2 })
  T.truthy(capped.reason:find("more than 1 kinds of call"), capped.reason)
end)

T.test("steps that cannot be replayed run as they are and say why", function()
  local x = tensor.from { 1, 2, 3 }
  local cases = {
    { function(v) local s = v:sum():item(); return v * s end, "item%(%) reads a tensor's value" },
    { function(v) return v + tensor.randn({ 3 }, tensor.Generator(1)) end, "a random draw" },
    { function(v) local t = v:clone(); t[1] = 5; return t end, "writes tensor elements from Lua" },
    { function(v) return v:sum():item() end, "result 1 is a number" },
    { function(v) local _ = tostring(v); return v * 2 end, "tostring" },
    { function(v) return v + v[2] end, "t%[i%] reads" },
    { function(v) return v:index_select(1, tensor.from { 3, 1 }) end, "builds a tensor from Lua values" },
    { function(v) return v:gather(1, { 2, 2 }) end, "builds a tensor from Lua values" },
  }
  for i, c in ipairs(cases) do
    local step = compile(c[1])
    local a = c[1](x)
    for _ = 1, 3 do
      local b = step(x)
      if tensor.is_tensor(a) then T.eq(b:totable(), a:totable(), "case " .. i) else T.eq(b, a, "case " .. i) end
    end
    T.truthy(step.reason and step.reason:find(c[2]), ("case %d: %s"):format(i, tostring(step.reason)))
    T.eq(step:stats().replayed, 0)
    T.eq(step:stats().eager, 3)
  end
  -- a tensor made by an unrecorded C function (a compiled inference plan)
  local net = nn.MLP { input = 3, hidden = { 4 }, output = 2, generator = tensor.Generator(1) }
  local plan = tensor.mlp_plan { { net.modules[1].weight, net.modules[1].bias, "relu" } }
  local step = compile(function(v) return plan(v) * 2 end)
  ag.no_grad(function()
    step(tensor.ones(1, 3)); step(tensor.ones(1, 3))
  end)
  T.truthy(step.reason:find("made a tensor that the recorder cannot replay"), step.reason)
  -- an argument that is not guarded
  local f = compile(function(v, g) return v * 2 end)
  f(x, function() end)
  T.truthy(f.reason:find("argument 2 is a function"), f.reason)
end)

T.test("bad input in a replay raises the kernel's error; the next call is unaffected", function()
  local f1, p1 = mile_step("discrete", "float64")
  local f2, p2 = mile_step("discrete", "float64")
  local step = compile(f2)
  local x, nu, ah = mile_batch("discrete", 12, 1, "float64")
  f1(x, nu, ah); step(x, nu, ah)
  local bad = nu:clone()
  bad[4] = 2
  T.raises(function() step(x, bad, ah) end,
    "replay of intervention_loss %(op %d+ of %d+%): intervention_loss: nu must be 0 or 1, got 2 at sample 3 %(0%-based%)")
  local bad_action = ah:clone()
  bad_action[3] = 7
  T.raises(function() step(x, nu, bad_action) end, "sample 3 has action value 7")
  -- the failed calls stopped before the optimiser: both runs still agree
  local x2, nu2, ah2 = mile_batch("discrete", 12, 2, "float64")
  local a, b = f1(x2, nu2, ah2), step(x2, nu2, ah2)
  T.eq(a:item(), b:item())
  same_params(p1, p2)
  T.eq(step:stats().replayed, 1)

  local g1, q1 = mile_step("gaussian", "float64")
  local g2 = compile(g1)
  local gx, gnu, gah = mile_batch("gaussian", 9, 3, "float64")
  g2(gx, gnu, gah)
  local inf_action = gah:clone()
  inf_action[3] = tensor.from { 1 / 0, 0 }:double()
  T.raises(function() g2(gx, gnu, inf_action) end, "human_action must be finite on intervention steps: sample 3, dimension 1")
  T.truthy(q1)
end)

T.test("an optimiser moved outside the step, or a new learning rate, makes it record anew", function()
  local eager, step, n1, o1, n2, o2 = eager_and_compiled()
  local gen = tensor.Generator(4)
  local x, y = tensor.randn({ 8, 6 }, gen), tensor.randn({ 8, 3 }, gen)
  eager(x, y); step(x, y); eager(x, y); step(x, y)
  -- one eager update of each, outside the compiled step
  for _, pair in ipairs { { n1, o1 }, { n2, o2 } } do
    local net, opt = pair[1], pair[2]
    opt:zero_grad()
    local l = ((net(x) - y) ^ 2):sum()
    l:backward()
    opt:step()
  end
  T.eq(eager(x, y):item(), step(x, y):item())
  T.eq(step:stats().dropped, 0) -- step counts are read at each replay
  T.eq(step:stats().replayed, 2)
  for _, opt in ipairs { o1, o2 } do opt:set_schedule(function(k) return 1 / (1 + k) end) end
  for _ = 1, 3 do T.eq(eager(x, y):item(), step(x, y):item()) end
  same_params(n1:parameters(), n2:parameters())
  T.eq(o1:state_dict().state[2].step, o2:state_dict().state[2].step)
  T.eq(step:stats().dropped, 3) -- each new learning rate drops the recording that baked in the old one
end)

T.test("errors inside a recording propagate and leave no recording behind", function()
  local step = compile(function(v) return v:matmul(v) end)
  T.raises(function() step(tensor.zeros(2, 3)) end, "matmul")
  T.eq(compile.recording(), false)
  T.eq(step(tensor.ones(2, 2)):totable(), { { 2, 2 }, { 2, 2 } })
  -- a compiled function called while another records runs inside that recording
  local inner = compile(function(v) return v * 3 end)
  local outer = compile(function(v) return inner(v) + 1 end)
  local v = tensor.from { 1, 2 }
  for _ = 1, 3 do T.eq(outer(v):totable(), { 4, 7 }) end
  T.eq(outer:stats().replayed, 2)
  T.eq(inner:stats().replayed, 0)
  T.raises(function() compile(42) end, "needs a function")
end)

T.test("mile train replays each round's step (every method) and writes the metrics of the unreplayed run", function()
  local loop = require "mile.loop"
  local made = {}
  local orig = compile.compile
  compile.compile = function(fn, o)
    local c = orig(fn, o)
    made[#made + 1] = c
    return c
  end
  local function metrics(method, on)
    local dir = os.tmpname()
    os.remove(dir)
    made = {}
    local base = { env = "LunarLander-v3", rounds = 2, episodes_per_round = 1, epochs = 2, batch_size = 32,
                   eval_episodes = 2, max_episode_steps = 60, seed = 3 }
    loop.run(base, { overrides = { "method=" .. method, "progress=false", "train.compile=" .. tostring(on) }, dir = dir })
    local f = assert(io.open(dir .. "/metrics.csv"))
    local text = f:read("a")
    f:close()
    os.execute("rm -rf '" .. dir .. "'")
    local replayed = 0
    for _, c in ipairs(made) do
      replayed = replayed + c:stats().replayed
      T.eq(c.reason, nil, method .. ": " .. tostring(c.reason))
    end
    -- every column but the wall-clock seconds
    local rows, drop = {}, nil
    for line in text:gmatch("[^\n]+") do
      local cells = {}
      for cell in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = cell end
      if not drop then
        for k, name in ipairs(cells) do if name == "seconds" then drop = k end end
      end
      if drop then table.remove(cells, drop) end
      rows[#rows + 1] = table.concat(cells, ",")
    end
    T.truthy(#rows >= 3, "metrics.csv has a header and a line per round")
    return table.concat(rows, "\n"), replayed
  end
  for _, method in ipairs { "mile", "hg_dagger", "iwr", "bc" } do
    local replayed_text, replayed = metrics(method, true)
    local eager_text, none = metrics(method, false)
    T.truthy(replayed > 0, method .. " replayed no step")
    T.eq(none, 0)
    T.eq(replayed_text, eager_text, method)
  end
  compile.compile = orig
end)

T.run()
