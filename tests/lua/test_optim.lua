-- mile.optim: the fused Adam/AdamW/SGD kernels against hand-written float64
-- references (plain Lua numbers), gradient clipping against a direct norm, state
-- dicts, schedules, and two small training problems.
local T = require "testing"
local tensor = require "mile.tensor"
local nn = require "mile.nn"
local optim = require "mile.optim"

-- Three steps of gradients for a 4-element parameter (some negative, one zero,
-- magnitudes over several decades).
local P0 = { 0.5, -1.25, 2.0, 0.0 }
local GRADS = {
  { 0.1, -0.2, 3.0, 0.0 },
  { -0.05, 0.4, 1.0, 1e-3 },
  { 0.3, 0.0, -2.0, -0.5 },
}

-- Drive an optimiser over GRADS on a float64 parameter; returns the parameter after
-- each step as Lua lists.
local function run(make, dtype)
  local p = tensor.from(P0, dtype or "float64"):requires_grad(true)
  local opt = make { p }
  local out = {}
  for k, g in ipairs(GRADS) do
    p:set_grad(tensor.from(g, dtype or "float64"))
    T.eq(opt:step(), 1)
    out[k] = p:totable()
  end
  return out, opt, p
end

-- Textbook Adam (Kingma & Ba, with PyTorch's L2 / decoupled decay), one element
-- at a time, in float64.
local function adam_reference(lr, b1, b2, eps, wd, decoupled)
  local p, m, v, out = {}, {}, {}, {}
  for i, x in ipairs(P0) do p[i], m[i], v[i] = x, 0, 0 end
  for t, g in ipairs(GRADS) do
    for i = 1, #p do
      local gi = g[i]
      if decoupled then p[i] = p[i] - lr * wd * p[i] else gi = gi + wd * p[i] end
      m[i] = b1 * m[i] + (1 - b1) * gi
      v[i] = b2 * v[i] + (1 - b2) * gi * gi
      local mhat = m[i] / (1 - b1 ^ t)
      local vhat = v[i] / (1 - b2 ^ t)
      p[i] = p[i] - lr * mhat / (math.sqrt(vhat) + eps)
    end
    out[t] = { table.unpack(p) }
  end
  return out
end

local function sgd_reference(lr, momentum, dampening, wd, nesterov)
  local p, buf, out = {}, {}, {}
  for i, x in ipairs(P0) do p[i] = x end
  for t, g in ipairs(GRADS) do
    for i = 1, #p do
      local d = g[i] + wd * p[i]
      if momentum ~= 0 then
        if t == 1 then buf[i] = d else buf[i] = momentum * buf[i] + (1 - dampening) * d end
        d = nesterov and d + momentum * buf[i] or buf[i]
      end
      p[i] = p[i] - lr * d
    end
    out[t] = { table.unpack(p) }
  end
  return out
end

T.test("Adam: three steps match the float64 textbook reference", function()
  local got = run(function(ps) return optim.Adam(ps, { lr = 0.1 }) end)
  T.near(got, adam_reference(0.1, 0.9, 0.999, 1e-8, 0, false), 1e-6)
  -- the first Adam step moves each element by about lr against the gradient's sign
  T.near(got[1][1], P0[1] - 0.1, 1e-6)
  T.near(got[1][2], P0[2] + 0.1, 1e-6)
  T.eq(got[1][4], P0[4], "a zero gradient does not move the element")
  -- other hyperparameters, with L2 weight decay folded into the gradient
  got = run(function(ps) return optim.Adam(ps, { lr = 0.03, betas = { 0.5, 0.9 }, eps = 1e-3, weight_decay = 0.1 }) end)
  T.near(got, adam_reference(0.03, 0.5, 0.9, 1e-3, 0.1, false), 1e-6)
end)

T.test("AdamW: decoupled weight decay matches the reference", function()
  local got = run(function(ps) return optim.AdamW(ps, { lr = 0.05 }) end)
  T.near(got, adam_reference(0.05, 0.9, 0.999, 1e-8, 1e-2, true), 1e-6)
  got = run(function(ps) return optim.AdamW(ps, { lr = 0.05, weight_decay = 0.5, betas = { 0.8, 0.99 } }) end)
  T.near(got, adam_reference(0.05, 0.8, 0.99, 1e-8, 0.5, true), 1e-6)
  -- AdamW and Adam differ once there is decay
  local adam = run(function(ps) return optim.Adam(ps, { lr = 0.05, weight_decay = 0.5, betas = { 0.8, 0.99 } }) end)
  T.truthy(math.abs(adam[3][3] - got[3][3]) > 1e-4)
end)

T.test("Adam in float32 follows the float64 reference to float precision", function()
  local got = run(function(ps) return optim.Adam(ps, { lr = 0.1 }) end, "float32")
  T.near(got, adam_reference(0.1, 0.9, 0.999, 1e-8, 0, false), 1e-5)
end)

T.test("SGD: plain, momentum, dampening, nesterov and weight decay match the reference", function()
  local cases = {
    { lr = 0.1 },
    { lr = 0.1, momentum = 0.9 },
    { lr = 0.05, momentum = 0.8, dampening = 0.3 },
    { lr = 0.1, momentum = 0.9, nesterov = true },
    { lr = 0.2, momentum = 0.5, weight_decay = 0.1, nesterov = true },
    { lr = 0.2, weight_decay = 0.3 },
  }
  for i, o in ipairs(cases) do
    local got = run(function(ps) return optim.SGD(ps, o) end)
    local want = sgd_reference(o.lr, o.momentum or 0, o.dampening or 0, o.weight_decay or 0, o.nesterov or false)
    T.near(got, want, 1e-12, "case " .. i)
  end
  -- plain SGD by hand: p - lr * g
  local got = run(function(ps) return optim.SGD(ps, { lr = 0.5 }) end)
  T.near(got[1], { 0.5 - 0.05, -1.25 + 0.1, 2.0 - 1.5, 0.0 }, 1e-12)
end)

T.test("parameters without a gradient are skipped and keep their step count", function()
  local a = tensor.from({ 1, 2 }, "float64"):requires_grad(true)
  local b = tensor.from({ 3, 4 }, "float64"):requires_grad(true)
  local opt = optim.Adam({ a, b }, { lr = 0.1 })
  a:set_grad(tensor.from({ 1, 1 }, "float64"))
  T.eq(opt:step(), 1)
  T.eq(b:totable(), { 3, 4 })
  T.eq(opt:state_dict().state[1].step, 1)
  T.eq(opt:state_dict().state[2].step, 0)
  b:set_grad(tensor.from({ 1, -1 }, "float64"))
  opt:step()
  -- b's first update is a first Adam step (bias correction with t = 1): a move of lr
  T.near(b:totable(), { 2.9, 4.1 }, 1e-6)
  T.eq(opt:state_dict().state[2].step, 1)
  T.eq(opt:state_dict().state[1].step, 2)
  opt:zero_grad()
  T.eq(a.grad, nil)
  T.eq(opt:step(), 0)
end)

T.test("an optimiser step invalidates graphs that saved the old parameter values", function()
  local lin = nn.Linear(2, 1, { dtype = "float64" })
  local opt = optim.SGD(lin, { lr = 0.1 })
  local loss = lin(tensor.ones({ 3, 2 }, "float64")):sum()
  loss:backward { retain_graph = true }
  opt:step()
  T.raises(function() loss:backward() end, "modified in place")
end)

T.test("clip_grad_norm: the total norm equals a direct computation; clipping scales to max_norm", function()
  local gen = tensor.Generator(2)
  local ps, direct = {}, 0
  for i, shape in ipairs { { 3, 4 }, { 4 }, { 2, 2, 2 } } do
    ps[i] = tensor.zeros(shape, "float64"):requires_grad(true)
    local g = tensor.randn(shape, gen, "float64")
    ps[i]:set_grad(g)
    for _, v in ipairs(g:contiguous():view({ -1 }):totable()) do direct = direct + v * v end
  end
  direct = math.sqrt(direct)
  local none = tensor.zeros({ 5 }, "float64"):requires_grad(true) -- no gradient: ignored
  ps[#ps + 1] = none
  T.near(optim.grad_norm(ps), direct, 1e-12)
  local before = ps[1].grad:totable()
  T.near(optim.clip_grad_norm(ps, direct * 2), direct, 1e-12, "returns the norm")
  T.eq(ps[1].grad:totable(), before, "below max_norm: untouched")
  local total = optim.clip_grad_norm(ps, 1.5)
  T.near(total, direct, 1e-12)
  T.near(optim.grad_norm(ps), 1.5 * direct / (direct + 1e-6), 1e-9, "clipped to max_norm")
  local scale = 1.5 / (direct + 1e-6)
  T.near(ps[1].grad:totable()[1][1], before[1][1] * scale, 1e-12)
  -- max-abs norm
  local m = 0
  for i = 1, 3 do
    for _, v in ipairs(ps[i].grad:contiguous():view({ -1 }):totable()) do m = math.max(m, math.abs(v)) end
  end
  T.near(optim.grad_norm(ps, math.huge), m, 1e-15)
  -- a module works as the parameter list; float32 gradients
  local lin = nn.Linear(3, 2)
  lin(tensor.ones { 4, 3 }):sum():backward()
  local w = lin.weight.grad:totable() -- every entry 4, bias grads 4
  T.near(optim.clip_grad_norm(lin, 1e9), math.sqrt(8 * 16), 1e-4)
  T.eq(w[1][1], 4)
  T.raises(function() optim.clip_grad_norm(ps, -1) end, "max_norm")
end)

T.test("state_dict / load_state_dict: a restored optimiser continues identically", function()
  local function make_net() return nn.MLP { input = 3, hidden = { 5 }, output = 2, seed = 4, dtype = "float64" } end
  local x = tensor.randn({ 8, 3 }, tensor.Generator(1), "float64")
  local function train(net, opt, steps)
    for _ = 1, steps do
      opt:zero_grad()
      local y = net(x)
      ;(y * y):mean():backward()
      opt:step()
    end
  end
  for _, make in ipairs {
    function(p) return optim.Adam(p, { lr = 0.01 }) end,
    function(p) return optim.AdamW(p, { lr = 0.01 }) end,
    function(p) return optim.SGD(p, { lr = 0.1, momentum = 0.9, nesterov = true }) end,
  } do
    local a = make_net()
    local oa = make(a)
    train(a, oa, 3)
    local sd = oa:state_dict()
    T.eq(sd.step_count, 3)
    T.eq(#sd.state, 2 * 2)
    -- restore into a fresh network + optimiser
    local b = make_net()
    b:load_state_dict(a:state_dict())
    local ob = make(b)
    ob:load_state_dict(sd)
    T.eq(ob:state_dict().state[1].step, 3)
    train(a, oa, 4)
    train(b, ob, 4)
    for i, p in ipairs(a:parameters()) do T.near(b:parameters()[i]:totable(), p:totable(), 1e-14, sd.type) end
    -- the restored optimiser copied the values into its own tensors
    local key = oa._state_keys[1]
    T.truthy(sd.state[1][key]:storage_id() ~= ob:state_dict().state[1][key]:storage_id())
  end
  local adam = optim.Adam(make_net(), { lr = 0.01 })
  local sgd = optim.SGD(make_net(), { lr = 0.01 })
  T.raises(function() adam:load_state_dict(sgd:state_dict()) end, "state of SGD given to Adam")
  local small = optim.Adam(nn.Linear(3, 2), { lr = 0.01 })
  T.raises(function() adam:load_state_dict(small:state_dict()) end, "has 2 parameters saved, 4 here")
  local sd = adam:state_dict()
  sd.state[1].exp_avg = tensor.zeros { 1 }
  T.raises(function() adam:load_state_dict(sd) end, "state 1 exp_avg has shape {1}")
end)

T.test("options: defaults, groups, validation", function()
  local p = tensor.zeros({ 2 }, "float64"):requires_grad(true)
  local q = tensor.zeros({ 2 }, "float64"):requires_grad(true)
  local adamw = optim.AdamW { p }
  T.eq(adamw.param_groups[1].weight_decay, 1e-2)
  T.eq(adamw.param_groups[1].lr, 1e-3)
  T.eq(optim.Adam({ p }).param_groups[1].weight_decay, 0)
  T.eq(optim.Adam({ p }).param_groups[1].betas, { 0.9, 0.999 })
  -- groups with their own lr
  local opt = optim.SGD({ { params = { p }, lr = 1 }, { params = { q } } }, { lr = 0.1 })
  p:set_grad(tensor.ones({ 2 }, "float64"))
  q:set_grad(tensor.ones({ 2 }, "float64"))
  opt:step()
  T.eq(p:totable(), { -1, -1 })
  T.near(q:totable(), { -0.1, -0.1 }, 1e-15)
  T.truthy(tostring(opt):find("^SGD%("))
  T.raises(function() optim.Adam({ p }, { learning_rate = 1 }) end, "unknown option \"learning_rate\"")
  T.raises(function() optim.Adam({ p }, { lr = -1 }) end, "lr must be a number >= 0")
  T.raises(function() optim.Adam({ p }, { betas = { 1, 0.9 } }) end, "betas")
  T.raises(function() optim.SGD({ p }, { nesterov = true }) end, "nesterov needs momentum")
  T.raises(function() optim.SGD({ p, p }) end, "appears twice")
  T.raises(function() optim.SGD({ p * 2 }) end, "not a leaf")
  T.raises(function() optim.SGD({ 3 }) end, "not a tensor")
  -- a bad entry in the state lists is refused before any parameter moves
  local r = tensor.zeros({ 3 }, "float64"):requires_grad(true)
  local o2 = optim.Adam({ p, r })
  p:set_grad(tensor.ones({ 2 }, "float64"))
  r:set_grad(tensor.ones({ 3 }, "float64"))
  o2.param_groups[1].exp_avgs[2] = tensor.zeros { 3 } -- float32 for a float64 parameter
  local before = p:totable()
  T.raises(function() o2:step() end, "exp_avgs%[2%] must be a contiguous tensor")
  T.eq(p:totable(), before)
end)

T.test("the C kernels refuse bad arguments with clear errors", function()
  local core = optim.core
  local p = tensor.zeros({ 3 }, "float64")
  local g = tensor.ones({ 3 }, "float64")
  local m, v = tensor.zeros({ 3 }, "float64"), tensor.zeros({ 3 }, "float64")
  core.adam_step(p, g, m, v, 1, 0.1, 0.9, 0.999, 1e-8)
  T.near(p:totable(), { -0.1, -0.1, -0.1 }, 1e-7)
  T.raises(function() core.adam_step(p, g, m, v, 0, 0.1, 0.9, 0.999, 1e-8) end, "steps count from 1")
  T.raises(function() core.adam_step(p, g, m, tensor.zeros { 3 }, 1, 0.1, 0.9, 0.999, 1e-8) end, "exp_avg_sq is float32")
  T.raises(function() core.adam_step(p, g, m, tensor.zeros({ 4 }, "float64"), 1, 0.1, 0.9, 0.999, 1e-8) end,
    "exp_avg_sq has shape {4}")
  T.raises(function() core.adam_step(p, g, m, m, 1, 0.1, 0.9, 0.999, 1e-8) end, "must not share storage")
  T.raises(function() core.adam_step(p, g, m, v, 1, 0.1, 1.0, 0.999, 1e-8) end, "betas")
  local wide = tensor.zeros({ 3, 2 }, "float64")
  T.raises(function() core.adam_step(wide:select(2, 1), g, m, v, 1, 0.1, 0.9, 0.999, 1e-8) end, "not contiguous")
  core.sgd_step(p, g, nil, false, 0.5)
  T.near(p:totable(), { -0.6, -0.6, -0.6 }, 1e-7)
  T.raises(function() core.sgd_step(p, g, nil, true, 0.5, 0.9) end, "momentum buffer is NULL")
  -- a strided gradient is made contiguous by the list binding
  local q = tensor.zeros({ 3 }, "float64"):requires_grad(true)
  q:set_grad(tensor.from({ { 1, 9 }, { 2, 9 }, { 3, 9 } }, "float64"):select(2, 1))
  optim.SGD({ q }, { lr = 1 }):step()
  T.eq(q:totable(), { -1, -2, -3 })
end)

T.test("schedules: constant, linear and cosine factors; set_schedule and LambdaLR", function()
  T.eq(optim.schedules.constant()(123), 1)
  T.eq(optim.schedules.constant(0.5)(0), 0.5)
  local lin = optim.schedules.linear(10)
  T.near({ lin(0), lin(5), lin(10), lin(50) }, { 1, 0.5, 0, 0 }, 1e-15)
  local lin2 = optim.schedules.linear(10, { start = 1, final = 0.1, warmup = 2 })
  T.near({ lin2(0), lin2(1), lin2(2), lin2(6), lin2(10) }, { 0.5, 1, 1, 1 - 0.9 * 0.5, 0.1 }, 1e-15)
  local cos = optim.schedules.cosine(100, { final = 0.2 })
  T.near({ cos(0), cos(50), cos(100), cos(1000) }, { 1, 0.6, 0.2, 0.2 }, 1e-15)
  T.near(cos(25), 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)), 1e-15)
  T.raises(function() optim.schedules.cosine(0) end, "positive integer")
  T.raises(function() optim.schedules.linear(5, { warmup = 5 }) end, "warmup")

  -- set_schedule: step t uses lr * fn(t)
  local p = tensor.zeros({ 1 }, "float64"):requires_grad(true)
  local opt = optim.SGD({ p }, { lr = 1 }):set_schedule(optim.schedules.linear(4))
  local moves = {}
  for t = 1, 5 do
    p:set_grad(tensor.ones({ 1 }, "float64"))
    local before = p:totable()[1]
    T.near(opt:get_lr()[1], math.max(0, 1 - (t - 1) / 4), 1e-15)
    opt:step()
    moves[t] = before - p:totable()[1]
  end
  T.near(moves, { 1, 0.75, 0.5, 0.25, 0 }, 1e-15)
  -- LambdaLR changes the groups' lr itself
  local q = tensor.zeros({ 1 }, "float64"):requires_grad(true)
  local o2 = optim.SGD({ q }, { lr = 0.1 })
  local sched = optim.LambdaLR(o2, function(epoch) return 0.5 ^ epoch end)
  T.near(sched:get_last_lr(), { 0.1 }, 1e-15)
  sched:step()
  sched:step()
  T.near(o2.param_groups[1].lr, 0.025, 1e-15)
  T.eq(sched:state_dict(), { last_epoch = 2 })
end)

-- ---------------------------------------------------------------------------
-- training
-- ---------------------------------------------------------------------------

T.test("training: an MLP fits y = sin(3 x1) x2 on 256 points to MSE < 1e-3 in 500 Adam steps", function()
  local gen = tensor.Generator(1)
  local xs, ys, mean = {}, {}, 0
  for i = 1, 256 do
    local x1, x2 = gen:uniform(-1, 1), gen:uniform(-1, 1)
    xs[i], ys[i] = { x1, x2 }, { math.sin(3 * x1) * x2 }
    mean = mean + ys[i][1] / 256
  end
  local var = 0
  for i = 1, 256 do var = var + (ys[i][1] - mean) ^ 2 / 256 end
  local x, y = tensor.from(xs), tensor.from(ys)
  local net = nn.MLP { input = 2, hidden = { 64, 64 }, output = 1, activation = "tanh", generator = gen }
  local opt = optim.Adam(net, { lr = 1e-2 })
  local loss
  for _ = 1, 500 do
    opt:zero_grad()
    local d = net(x) - y
    loss = (d * d):mean()
    loss:backward()
    opt:step()
  end
  T.truthy(loss:item() < 1e-3, ("final MSE %.3g (target variance %.3g)"):format(loss:item(), var))
end)

T.test("training: a Categorical head learns a 4-class toy problem to > 95% accuracy", function()
  local gen = tensor.Generator(2)
  local function data(n)
    local xs, ys = {}, {}
    for i = 1, n do
      local a, b = gen:uniform(-1, 1), gen:uniform(-1, 1)
      xs[i] = { a, b }
      -- ring x XOR: 0..3 as env action values
      ys[i] = (a * a + b * b < 0.5 and 0 or 2) + (a * b > 0 and 1 or 0)
    end
    return tensor.from(xs), tensor.from(ys)
  end
  local x, y = data(1024)
  local policy = nn.Sequential(nn.MLP { input = 2, hidden = { 64, 64 }, output = 4, generator = gen },
    nn.CategoricalHead())
  local opt = optim.Adam(policy, { lr = 1e-2 })
  for _ = 1, 400 do
    opt:zero_grad()
    local nll = -policy(x):log_prob(y):mean()
    nll:backward()
    optim.clip_grad_norm(policy, 10)
    opt:step()
  end
  policy:eval()
  local xt, yt = data(1024)
  local acc = policy(xt):mode():eq(yt):mean():item()
  T.truthy(acc > 0.95, ("held-out accuracy %.3f"):format(acc))
end)

T.run()
