-- mile.nn: modules, parameters, state dicts, specs, policy heads and RunningNorm,
-- each checked against a second computation (plain Lua arithmetic, closed forms,
-- finite differences).
local T = require "testing"
local tensor = require "mile.tensor"
local ag = require "mile.autograd"
local nn = require "mile.nn"

local LOG_2PI = math.log(2 * math.pi)

local function flat(t) -- a tensor's values as a flat Lua list
  local out = {}
  local v = t:contiguous():view { -1 }
  for i = 1, v:numel() do out[i] = v[i] end
  return out
end

local function max_abs_diff(a, b)
  local x, y, m = flat(a), flat(b), 0
  assert(#x == #y, "sizes differ")
  for i = 1, #x do m = math.max(m, math.abs(x[i] - y[i])) end
  return m
end

-- ---------------------------------------------------------------------------
-- Linear
-- ---------------------------------------------------------------------------

T.test("Linear init: PyTorch's U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, seeded", function()
  local lin = nn.Linear(64, 200, { generator = tensor.Generator(3) })
  T.eq(lin.weight:shape(), { 200, 64 })
  T.eq(lin.bias:shape(), { 200 })
  T.eq(lin.weight:dtype(), "float32")
  local bound = 1 / math.sqrt(64)
  for _, name in ipairs { "weight", "bias" } do
    local v = flat(lin[name])
    local lo, hi, sum = math.huge, -math.huge, 0
    for _, x in ipairs(v) do lo, hi, sum = math.min(lo, x), math.max(hi, x), sum + x end
    T.truthy(lo >= -bound and hi <= bound, name .. " within the bound")
    -- uniform over the whole interval: the extremes come close to the bound
    local n = #v
    T.truthy(hi > bound * (1 - 20 / n) and lo < -bound * (1 - 20 / n), name .. " covers the interval")
    T.truthy(math.abs(sum / n) < 4 * bound / math.sqrt(3 * n), name .. " mean near 0")
  end
  -- a uniform's variance is bound^2 / 3
  local v, ss = flat(lin.weight), 0
  for _, x in ipairs(v) do ss = ss + x * x end
  T.near(ss / #v, bound * bound / 3, 0.05 * bound * bound / 3)
  -- same seed, same weights; the weights are drawn before the bias
  local again = nn.Linear(64, 200, { generator = tensor.Generator(3) })
  T.eq(max_abs_diff(again.weight, lin.weight), 0)
  local other = nn.Linear(64, 200, { generator = tensor.Generator(4) })
  T.truthy(max_abs_diff(other.weight, lin.weight) > 0)
  T.eq(max_abs_diff(nn.Linear(64, 200, { seed = 3 }).weight, lin.weight), 0)
end)

T.test("Linear forward is x W^T + b (plain Lua reference); options", function()
  local gen = tensor.Generator(5)
  local lin = nn.Linear(3, 2, { generator = gen, dtype = "float64" })
  local x = tensor.randn({ 4, 3 }, gen, "float64")
  local y = lin(x)
  local W, b, X = lin.weight:totable(), lin.bias:totable(), x:totable()
  local want = {}
  for i = 1, 4 do
    want[i] = {}
    for j = 1, 2 do
      local s = b[j]
      for k = 1, 3 do s = s + X[i][k] * W[j][k] end
      want[i][j] = s
    end
  end
  T.near(y:totable(), want, 1e-12)
  T.eq(y:dtype(), "float64")
  -- leading batch dims pass through
  T.eq(lin(tensor.zeros({ 5, 2, 3 }, "float64")):shape(), { 5, 2, 2 })
  local nobias = nn.Linear(3, 2, { bias = false })
  T.eq(nobias.bias, nil)
  T.eq(#nobias:parameters(), 1)
  T.near(nobias(tensor.zeros { 1, 3 }):totable(), { { 0, 0 } }, 0)
  T.raises(function() nn.Linear(0, 2) end, "in_features must be a positive integer")
  T.raises(function() nn.Linear(2, 2, { dtype = "int8" }) end, "dtype")
  T.eq(tostring(lin), "Linear(in=3, out=2, bias=true)")
end)

-- ---------------------------------------------------------------------------
-- Module protocol
-- ---------------------------------------------------------------------------

T.test("named_parameters, parameters, children, tostring of an MLP", function()
  local net = nn.MLP { input = 8, hidden = { 16, 32 }, output = 4, generator = tensor.Generator(1) }
  local names, shapes = {}, {}
  for i, p in ipairs(net:named_parameters()) do names[i], shapes[i] = p[1], p[2]:shape() end
  T.eq(names, { "1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias" })
  T.eq(shapes, { { 16, 8 }, { 16 }, { 32, 16 }, { 32 }, { 4, 32 }, { 4 } })
  for _, p in ipairs(net:parameters()) do
    T.truthy(p:requires_grad() and p.is_leaf)
  end
  T.eq(net:num_parameters(), 8 * 16 + 16 + 16 * 32 + 32 + 32 * 4 + 4)
  T.eq(#net, 5)
  T.eq(net:get(2).__name, "ReLU")
  T.eq(net(tensor.zeros { 7, 8 }):shape(), { 7, 4 })
  T.eq(tostring(net), table.concat({
    "MLP(",
    "  (1): Linear(in=8, out=16, bias=true)",
    "  (2): ReLU()",
    "  (3): Linear(in=16, out=32, bias=true)",
    "  (4): ReLU()",
    "  (5): Linear(in=32, out=4, bias=true)",
    ")" }, "\n"))
  local tanh_net = nn.MLP { input = 2, hidden = {}, output = 3, output_activation = "tanh" }
  T.eq(#tanh_net, 2)
  T.raises(function() nn.MLP { input = 2, output = 3, activation = "swish" } end, "unknown activation")
  T.raises(function() nn.Sequential(nn.ReLU(), 3) end, "argument 2 is number, not a module")
end)

T.test("nested modules get dotted names; assignment registers children and parameters", function()
  local Net = nn.class("TestTwoTower")
  function Net:__init(n)
    self.body = nn.Sequential(nn.Linear(n, 4, { seed = 1 }), nn.Tanh())
    self.head = nn.Linear(4, 2, { seed = 2 })
    self.scale = tensor.ones({ 2 }):requires_grad(true)
    self.note = "not a parameter"
  end
  function Net:forward(x) return self.head(self.body(x)) * self.scale end
  local net = Net(3)
  local names = {}
  for i, p in ipairs(net:named_parameters()) do names[i] = p[1] end
  T.eq(names, { "scale", "body.1.weight", "body.1.bias", "head.weight", "head.bias" })
  T.eq(net(tensor.zeros { 2, 3 }):shape(), { 2, 2 })
  local rebuilt = nn.from_spec(net:spec())
  T.eq(getmetatable(rebuilt), Net)
  T.eq(#rebuilt:parameters(), 5)
end)

T.test("train/eval reach every descendant; zero_grad drops gradients", function()
  local net = nn.Sequential(nn.MLP { input = 2, hidden = { 3 }, output = 2 }, nn.RunningNorm(2))
  T.eq(net.training, true)
  net:eval()
  for _, m in ipairs { net, net:get(1), net:get(1):get(1), net:get(2) } do T.eq(m.training, false) end
  net:train()
  for _, m in ipairs { net, net:get(1), net:get(1):get(3), net:get(2) } do T.eq(m.training, true) end
  T.eq(net:train(false).training, false)
  net:train()
  net(tensor.ones { 4, 2 }):sum():backward()
  for _, p in ipairs(net:parameters()) do T.truthy(p.grad ~= nil) end
  net:zero_grad()
  for _, p in ipairs(net:parameters()) do T.eq(p.grad, nil) end
  local visited = 0
  net:apply(function() visited = visited + 1 end)
  T.eq(visited, 6) -- Sequential, MLP, Linear, ReLU, Linear, RunningNorm
end)

-- ---------------------------------------------------------------------------
-- state dicts and specs
-- ---------------------------------------------------------------------------

T.test("state_dict round trip: a fresh module loads the values and computes the same", function()
  local a = nn.MLP { input = 4, hidden = { 8, 8 }, output = 3, seed = 1 }
  local b = nn.MLP { input = 4, hidden = { 8, 8 }, output = 3, seed = 2 }
  local x = tensor.randn({ 5, 4 }, tensor.Generator(9))
  T.truthy(max_abs_diff(a(x), b(x)) > 1e-3)
  local sd = a:state_dict()
  local keys = {}
  for k, v in pairs(sd) do
    keys[#keys + 1] = k
    T.eq(v:requires_grad(), false, "state dict tensors are detached")
  end
  table.sort(keys)
  T.eq(keys, { "1.bias", "1.weight", "3.bias", "3.weight", "5.bias", "5.weight" })
  T.eq(sd["1.weight"]:storage_id(), a:get(1).weight:storage_id(), "a view of the parameter")
  b:load_state_dict(sd)
  T.eq(max_abs_diff(a(x), b(x)), 0)
  -- a copy, not an alias: changing the source afterwards leaves b alone
  sd["1.weight"]:fill_(0)
  T.truthy(max_abs_diff(b:get(1).weight, a:get(1).weight) > 0)
  T.truthy(b:get(1).weight:storage_id() ~= a:get(1).weight:storage_id())
  -- dtype converts on load
  local c = nn.MLP { input = 4, hidden = { 8, 8 }, output = 3, dtype = "float64" }
  c:load_state_dict(b:state_dict())
  T.near(c(x:double()):totable(), b(x):totable(), 1e-6)
  T.eq(a:state_keys(), { "1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias" })
end)

T.test("load_state_dict: missing, unexpected and mis-shaped entries are clear errors, nothing is copied", function()
  local net = nn.MLP { input = 2, hidden = { 3 }, output = 1, seed = 1 }
  local before = flat(net:get(1).weight)
  local sd = net:state_dict()
  local function without(k)
    local c = {}
    for name, t in pairs(sd) do if name ~= k then c[name] = t:clone() end end
    return c
  end
  local missing = without("3.bias")
  missing["1.weight"]:fill_(7)
  T.raises(function() net:load_state_dict(missing) end, "missing keys: 3%.bias")
  T.eq(flat(net:get(1).weight), before, "nothing copied after an error")
  local extra = without()
  extra["2.weight"] = tensor.zeros { 1 }
  extra["1.weight"]:fill_(7)
  T.raises(function() net:load_state_dict(extra) end, "unexpected keys: 2%.weight")
  T.eq(flat(net:get(1).weight), before)
  local wrong = without()
  wrong["3.weight"] = tensor.zeros { 3, 1 }
  T.raises(function() net:load_state_dict(wrong) end, "size mismatch for 3%.weight: checkpoint {3,1}, model {1,3}")
  local notensor = without()
  notensor["1.bias"] = { 1, 2, 3 }
  T.raises(function() net:load_state_dict(notensor) end, "1%.bias is table, not a tensor")
  T.raises(function() net:load_state_dict(nil) end, "needs a table")
  -- strict = false loads what matches and reports the rest
  local m, u = net:load_state_dict(extra, false)
  T.eq(m, {})
  T.eq(u, { "2.weight" })
  T.eq(flat(net:get(1).weight)[1], 7)
end)

local function is_plain(v, depth)
  depth = depth or 0
  local tv = type(v)
  if tv == "number" or tv == "string" or tv == "boolean" then return true end
  if tv ~= "table" or getmetatable(v) ~= nil or depth > 20 then return false end
  for k, x in pairs(v) do
    if not (type(k) == "string" or math.type(k) == "integer") or not is_plain(x, depth + 1) then return false end
  end
  return true
end

T.test("spec() is plain data and from_spec rebuilds the architecture", function()
  local gen = tensor.Generator(2)
  local policy = nn.Sequential(
    nn.RunningNorm(6, { clip = 5 }),
    nn.MLP { input = 6, hidden = { 16, 16 }, output = 4, activation = "elu", generator = gen },
    nn.DiagGaussianHead(2, { log_std = "output", max_log_std = 1 }))
  local spec = policy:spec()
  T.truthy(is_plain(spec), "spec holds only numbers, strings, booleans and tables")
  T.eq(spec.type, "Sequential")
  T.eq(spec.args[2].__module.type, "MLP")
  T.eq(spec.args[2].__module.args[1].generator, nil, "the generator is not part of the spec")
  local rebuilt = nn.from_spec(spec)
  T.eq(tostring(rebuilt), tostring(policy))
  T.eq(rebuilt:state_keys(), policy:state_keys())
  T.eq(rebuilt:get(3).max_log_std, 1)
  T.eq(rebuilt:get(1).clip, 5)
  -- same values after loading the state: same outputs
  rebuilt:load_state_dict(policy:state_dict())
  policy:eval()
  rebuilt:eval()
  local x = tensor.randn({ 3, 6 }, gen)
  T.eq(max_abs_diff(rebuilt(x).mean, policy(x).mean), 0)
  -- clone does both steps
  local twin = policy:clone()
  T.eq(max_abs_diff(twin(x).log_std, policy(x).log_std), 0)
  T.eq(twin.training, false)
  -- a spec survives a text round trip (what a checkpoint header does)
  local function dump(v)
    if type(v) == "table" then
      local parts = {}
      for k, x in pairs(v) do parts[#parts + 1] = ("[%s]=%s"):format(dump(k), dump(x)) end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    return type(v) == "string" and ("%q"):format(v) or tostring(v)
  end
  local reread = load("return " .. dump(spec))()
  T.eq(tostring(nn.from_spec(reread)), tostring(policy))
  T.raises(function() nn.from_spec { type = "NoSuchModule" } end, "unknown module type")
  T.raises(function() nn.from_spec(3) end, "needs a table")
end)

-- ---------------------------------------------------------------------------
-- activations and gradients
-- ---------------------------------------------------------------------------

T.test("activations against closed forms; ELU has no NaN gradient for large inputs", function()
  local xs = { -30, -2, -0.5, 0.25, 1, 3, 500 }
  local x = tensor.from(xs, "float64")
  local function apply(f) local out = {} for i, v in ipairs(xs) do out[i] = f(v) end return out end
  T.near(nn.ReLU()(x):totable(), apply(function(v) return math.max(v, 0) end), 0)
  T.near(nn.Tanh()(x):totable(), apply(function(v) return (math.exp(2 * math.min(v, 50)) - 1) / (math.exp(2 * math.min(v, 50)) + 1) end), 1e-12)
  T.near(nn.Sigmoid()(x):totable(), apply(function(v) return 1 / (1 + math.exp(-v)) end), 1e-12)
  T.near(nn.ELU(0.7)(x):totable(), apply(function(v) return v > 0 and v or 0.7 * (math.exp(v) - 1) end), 1e-12)
  T.near(nn.Identity()(x):totable(), xs, 0)
  local leaf = tensor.from(xs, "float64"):requires_grad(true)
  nn.ELU(0.7)(leaf):sum():backward()
  T.near(leaf.grad:totable(), apply(function(v) return v > 0 and 1 or 0.7 * math.exp(v) end), 1e-12)
end)

T.test("gradcheck: an MLP end to end (inputs and every parameter), float64", function()
  for _, act in ipairs { "tanh", "elu", "sigmoid" } do
    local gen = tensor.Generator(7)
    local net = nn.MLP { input = 3, hidden = { 5, 4 }, output = 2, activation = act, dtype = "float64", generator = gen }
    local x = tensor.randn({ 4, 3 }, gen, "float64"):requires_grad(true)
    local inputs = { x }
    for _, p in ipairs(net:parameters()) do inputs[#inputs + 1] = p end
    local ok, msg = ag.gradcheck(function(xx) return net(xx) end, inputs)
    T.truthy(ok, act .. ": " .. tostring(msg))
  end
end)

-- ---------------------------------------------------------------------------
-- Categorical
-- ---------------------------------------------------------------------------

local LOGITS = { { 0.5, -1.0, 2.0, 0.0 }, { -3.0, 1.5, 1.5, 0.25 }, { 10.0, -10.0, 0.0, 3.0 } }

local function ref_log_softmax(row)
  local m = -math.huge
  for _, v in ipairs(row) do m = math.max(m, v) end
  local s = 0
  for _, v in ipairs(row) do s = s + math.exp(v - m) end
  local out = {}
  for i, v in ipairs(row) do out[i] = v - m - math.log(s) end
  return out
end

T.test("Categorical: log_prob of 0-based action values, entropy, mode, probs (closed forms)", function()
  local d = nn.Categorical(tensor.from(LOGITS, "float64"))
  local actions = { 2, 0, 3 } -- env values
  local want_lp, want_h, want_lps = {}, {}, {}
  for i, row in ipairs(LOGITS) do
    local lp = ref_log_softmax(row)
    want_lps[i] = lp
    want_lp[i] = lp[actions[i] + 1]
    local h = 0
    for _, l in ipairs(lp) do h = h - math.exp(l) * l end
    want_h[i] = h
  end
  T.near(d:log_prob(tensor.from(actions, "float64")):totable(), want_lp, 1e-12)
  T.near(d:log_prob(actions):totable(), want_lp, 1e-12, "a Lua list works too")
  T.near(d:log_probs():totable(), want_lps, 1e-12)
  T.near(d:entropy():totable(), want_h, 1e-12)
  T.eq(d:mode():totable(), { 2, 1, 0 }, "first maximum on ties, 0-based")
  local p = d:probs():totable()
  for i = 1, 3 do T.near(p[i][1], math.exp(want_lps[i][1]), 1e-12) end
  T.eq(d:n_actions(), 4)
  T.eq(d:batch_shape(), { 3 })
  -- uniform logits: entropy ln A
  T.near(nn.Categorical(tensor.zeros { 5 }):entropy():item(), math.log(5), 1e-6)
  -- unbatched logits and a number action
  local single = nn.Categorical(tensor.from(LOGITS[1], "float64"))
  T.near(single:log_prob(2):item(), want_lp[1], 1e-12)
  T.raises(function() d:log_prob { 2, 0, 4 } end, "action value 4 outside 0%.%.3")
  T.raises(function() d:log_prob { 2, -1, 1 } end, "action value %-1 outside")
  T.raises(function() d:log_prob { 1, 2 } end, "actions of shape {2} for logits of batch shape {3}")
end)

T.test("Categorical.sample draws 0-based values with the right frequencies", function()
  local probs = { 0.1, 0.2, 0.3, 0.4 }
  local logits = {}
  for i, p in ipairs(probs) do logits[i] = math.log(p) + 1.5 end -- shift: softmax is invariant
  local n = 40000
  local row = {}
  for i = 1, n do row[i] = logits end
  local d = nn.Categorical(tensor.from(row))
  local s = d:sample(tensor.Generator(21))
  T.eq(s:shape(), { n })
  local counts = { [0] = 0, 0, 0, 0 }
  for _, v in ipairs(s:totable()) do counts[v] = counts[v] + 1 end
  for a = 0, 3 do
    local sd = math.sqrt(probs[a + 1] * (1 - probs[a + 1]) / n)
    T.truthy(math.abs(counts[a] / n - probs[a + 1]) < 5 * sd, ("frequency of action %d"):format(a))
  end
  -- same generator seed, same draws
  T.eq(d:sample(tensor.Generator(21)):totable(), s:totable())
end)

T.test("gradcheck: Categorical log_prob and entropy in the logits", function()
  local gen = tensor.Generator(3)
  local logits = tensor.randn({ 5, 4 }, gen, "float64"):requires_grad(true)
  local actions = tensor.from({ 0, 3, 1, 2, 3 }, "float64")
  T.truthy(ag.gradcheck(function(l) return nn.Categorical(l):log_prob(actions) end, { logits }))
  T.truthy(ag.gradcheck(function(l) return nn.Categorical(l):entropy() end, { logits }))
  -- closed form: d log pi(a) / d logits = onehot(a) - softmax
  logits:zero_grad()
  nn.Categorical(logits):log_prob(actions):sum():backward()
  local g, l = logits.grad:totable(), logits:totable()
  for i = 1, 5 do
    local lp = ref_log_softmax(l[i])
    for k = 1, 4 do
      local onehot = (k - 1 == actions[i]) and 1 or 0
      T.near(g[i][k], onehot - math.exp(lp[k]), 1e-12)
    end
  end
end)

-- ---------------------------------------------------------------------------
-- DiagGaussian
-- ---------------------------------------------------------------------------

local function ref_gauss_log_prob(a, mu, log_std)
  local s = 0
  for d = 1, #a do
    local sd = math.exp(log_std[d])
    s = s - (a[d] - mu[d]) ^ 2 / (2 * sd * sd) - math.log(sd) - 0.5 * math.log(2 * math.pi)
  end
  return s
end

T.test("DiagGaussian: log_prob and entropy against closed forms (free and per-sample log-std)", function()
  local mu = { { 0.5, -1.0 }, { 2.0, 0.0 }, { -0.3, 0.8 } }
  local a = { { 0.0, 0.0 }, { 1.5, -2.0 }, { -0.3, 0.9 } }
  local shared = { 0.2, -0.7 }
  local per = { { 0.1, 0.3 }, { -1.0, 0.5 }, { 0.0, -0.2 } }
  local dist = nn.DiagGaussian(tensor.from(mu, "float64"), tensor.from(shared, "float64"))
  local want, want_h = {}, {}
  for i = 1, 3 do
    want[i] = ref_gauss_log_prob(a[i], mu[i], shared)
    want_h[i] = shared[1] + shared[2] + (1 + LOG_2PI) -- two dims, each ln sd + (1 + ln 2 pi) / 2
  end
  T.near(dist:log_prob(tensor.from(a, "float64")):totable(), want, 1e-12)
  T.near(dist:entropy():totable(), want_h, 1e-12)
  T.eq(dist:mode():totable(), mu)
  T.near(dist:std():totable(), { math.exp(0.2), math.exp(-0.7) }, 1e-12)
  local d2 = nn.DiagGaussian(tensor.from(mu, "float64"), tensor.from(per, "float64"))
  for i = 1, 3 do
    want[i] = ref_gauss_log_prob(a[i], mu[i], per[i])
    want_h[i] = per[i][1] + per[i][2] + (1 + LOG_2PI)
  end
  T.near(d2:log_prob(a):totable(), want, 1e-12)
  T.near(d2:entropy():totable(), want_h, 1e-12)
  -- a number log-std
  T.near(nn.DiagGaussian(tensor.zeros { 3 }, 0):entropy():item(), 1.5 * (1 + LOG_2PI), 1e-5)
  T.raises(function() nn.DiagGaussian(tensor.zeros { 2, 3 }, tensor.zeros { 2 }) end, "log_std has 2 dims per action, mean 3")
end)

T.test("DiagGaussian.sample: reparameterised draws with the right moments and gradients", function()
  local n = 20000
  local mean = tensor.full({ n, 2 }, 0, "float64")
  local dist = nn.DiagGaussian(mean, tensor.from({ math.log(0.5), math.log(2.0) }, "float64"))
  local s = dist:sample(tensor.Generator(4)):totable()
  local m, v = { 0, 0 }, { 0, 0 }
  for i = 1, n do for d = 1, 2 do m[d] = m[d] + s[i][d] / n end end
  for i = 1, n do for d = 1, 2 do v[d] = v[d] + (s[i][d] - m[d]) ^ 2 / n end end
  T.near(m, { 0, 0 }, 5 * 2 / math.sqrt(n))
  T.near({ math.sqrt(v[1]), math.sqrt(v[2]) }, { 0.5, 2.0 }, 0.03)
  -- gradients flow into mean (1 per element) and log_std (std * eps = sample - mean)
  local gen_seed = 8
  local mu = tensor.randn({ 3, 2 }, tensor.Generator(1), "float64"):requires_grad(true)
  local ls = tensor.from({ 0.3, -0.4 }, "float64"):requires_grad(true)
  T.truthy(ag.gradcheck(function(a, b) return nn.DiagGaussian(a, b):sample(tensor.Generator(gen_seed)) end, { mu, ls }))
  local x = nn.DiagGaussian(mu, ls):sample(tensor.Generator(gen_seed))
  mu:zero_grad(); ls:zero_grad()
  x:sum():backward()
  T.near(mu.grad:totable(), { { 1, 1 }, { 1, 1 }, { 1, 1 } }, 0)
  local xs, ms = x:totable(), mu:totable()
  local want = { 0, 0 }
  for i = 1, 3 do for d = 1, 2 do want[d] = want[d] + (xs[i][d] - ms[i][d]) end end
  T.near(ls.grad:totable(), want, 1e-12)
end)

T.test("gradcheck: DiagGaussian log_prob and entropy in mean and log-std", function()
  local gen = tensor.Generator(6)
  local mean = tensor.randn({ 4, 3 }, gen, "float64"):requires_grad(true)
  local log_std = (tensor.randn({ 3 }, gen, "float64") * 0.3):detach():requires_grad(true)
  local per = (tensor.randn({ 4, 3 }, gen, "float64") * 0.3):detach():requires_grad(true)
  local a = tensor.randn({ 4, 3 }, gen, "float64")
  T.truthy(ag.gradcheck(function(m, s) return nn.DiagGaussian(m, s):log_prob(a) end, { mean, log_std }))
  T.truthy(ag.gradcheck(function(m, s) return nn.DiagGaussian(m, s):log_prob(a) end, { mean, per }))
  T.truthy(ag.gradcheck(function(m, s) return nn.DiagGaussian(m, s):entropy() end, { mean, log_std }))
end)

T.test("policy heads: CategoricalHead and DiagGaussianHead (parameter and output log-std)", function()
  local gen = tensor.Generator(12)
  local policy = nn.Sequential(nn.MLP { input = 3, hidden = { 8 }, output = 4, generator = gen }, nn.CategoricalHead())
  local dist = policy(tensor.randn({ 6, 3 }, gen))
  T.eq(getmetatable(dist), nn.Categorical)
  T.eq(dist:log_prob { 0, 1, 2, 3, 0, 1 }:shape(), { 6 })

  local head = nn.DiagGaussianHead(2, { log_std_init = -0.5, dtype = "float64" })
  T.eq(head:named_parameters()[1][1], "log_std")
  T.near(head.log_std:totable(), { -0.5, -0.5 }, 0)
  local g = head(tensor.zeros({ 5, 2 }, "float64"))
  T.near(g:entropy():totable()[1], 2 * (-0.5 + 0.5 * (1 + LOG_2PI)), 1e-12)
  g:log_prob(tensor.ones({ 5, 2 }, "float64")):sum():backward()
  T.truthy(head.log_std.grad ~= nil, "the free log-std is trained")

  local out = nn.DiagGaussianHead(2, { log_std = "output", min_log_std = -1, max_log_std = 0.5 })
  T.eq(#out:parameters(), 0)
  T.eq(out:input_size(), 4)
  local d = out(tensor.from { { 1, 2, -5, 3 } })
  T.eq(d.mean:totable(), { { 1, 2 } })
  T.eq(d.log_std:totable(), { { -1, 0.5 } }, "clamped")
  T.raises(function() out(tensor.zeros { 1, 3 }) end, "input has 3 features, expected 4")
  T.raises(function() nn.DiagGaussianHead(2, { log_std = "learned" }) end, "\"parameter\" or \"output\"")
end)

-- ---------------------------------------------------------------------------
-- RunningNorm
-- ---------------------------------------------------------------------------

T.test("RunningNorm: running mean/var equal a two-pass computation over all batches", function()
  local gen = tensor.Generator(30)
  local norm = nn.RunningNorm(3)
  local all = {}
  for _, b in ipairs { 1, 7, 64, 2, 33 } do
    -- float32 observations (what environments give); the reference reads the same values
    local x = (tensor.randn({ b, 3 }, gen, "float64") * tensor.from({ 1, 10, 0.1 }, "float64")
      + tensor.from({ 5, -2, 100 }, "float64")):float()
    norm(x)
    for _, row in ipairs(x:totable()) do all[#all + 1] = row end
  end
  local n = #all
  local mean, var = { 0, 0, 0 }, { 0, 0, 0 }
  for _, row in ipairs(all) do for d = 1, 3 do mean[d] = mean[d] + row[d] end end
  for d = 1, 3 do mean[d] = mean[d] / n end
  for _, row in ipairs(all) do for d = 1, 3 do var[d] = var[d] + (row[d] - mean[d]) ^ 2 end end
  for d = 1, 3 do var[d] = var[d] / n end
  T.eq(norm.count:item(), n)
  for d = 1, 3 do
    T.near(norm.mean:totable()[d], mean[d], 1e-10 * math.max(1, math.abs(mean[d])))
    T.near(norm.var:totable()[d], var[d], 1e-10 * math.max(1, var[d]))
  end
  T.eq(norm.mean:dtype(), "float64")
end)

T.test("RunningNorm: output, train/eval behaviour, clip, state dict", function()
  local norm = nn.RunningNorm(2, { clip = 3 })
  local x = tensor.from({ { 1, 10 }, { 3, 30 }, { 5, 20 } }, "float64")
  local y = norm(x) -- train: the batch is folded in first
  local m, v = { 3, 20 }, { 8 / 3, 200 / 3 }
  local want = {}
  for i, row in ipairs(x:totable()) do
    want[i] = {}
    for d = 1, 2 do want[i][d] = (row[d] - m[d]) / math.sqrt(v[d] + 1e-8) end
  end
  T.near(y:totable(), want, 1e-9)
  T.eq(y:dtype(), "float64")
  -- eval: frozen statistics
  norm:eval()
  local probe = tensor.from({ { 100, -100 } }, "float64")
  local z = norm(probe)
  T.eq(norm.count:item(), 3)
  T.near(norm.mean:totable(), m, 1e-12)
  T.eq(z:totable(), { { 3, -3 } }, "clipped to [-3, 3]")
  -- a float32 input gets a float32 output
  T.eq(norm(tensor.zeros { 1, 2 }):dtype(), "float32")
  -- train again: the statistics move
  norm:train()
  norm(probe)
  T.eq(norm.count:item(), 4)
  -- state dict holds the buffers; loading refreshes the normalisation
  local sd = norm:state_dict()
  T.eq(norm:state_keys(), { "mean", "var", "count" })
  local fresh = nn.RunningNorm(2, { clip = 3 }):eval()
  T.truthy(max_abs_diff(fresh(x), norm:eval()(x)) > 0.1)
  fresh:load_state_dict(sd)
  T.eq(max_abs_diff(fresh(x), norm(x)), 0)
  T.eq(#fresh:parameters(), 0)
  -- unbatched input and gradients through the normalisation
  local leaf = tensor.from({ 1, 2 }, "float64"):requires_grad(true)
  fresh(leaf):sum():backward()
  local var = fresh.var:totable()
  T.near(leaf.grad:totable(), { 1 / math.sqrt(var[1] + 1e-8), 1 / math.sqrt(var[2] + 1e-8) }, 1e-12)
  T.raises(function() fresh(tensor.zeros { 1, 3 }) end, "input has 3 features, expected 2")
end)

-- ---------------------------------------------------------------------------
-- documentation
-- ---------------------------------------------------------------------------

T.test("docs/nn.md examples run as written and print what they say", function()
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local f = io.open(here .. "/../../docs/nn.md", "r")
  if not f then T.skip("docs/nn.md not found from " .. here) end
  local text = f:read("a")
  f:close()
  -- one chunk: the first block's locals (T, nn, optim) are seen by the others
  local parts, n = {}, 0
  for block in text:gmatch("```lua\n(.-)```") do
    n = n + 1
    -- `print(expr) --> value` lines become checks of the printed text
    block = block:gsub("print%((.-)%)%s*%-%->%s*([^\n]*)", function(expr, want)
      return ("__check(%q, %s)"):format(want, expr)
    end)
    parts[#parts + 1] = n == 1 and block or ("do\n" .. block .. "\nend")
  end
  T.truthy(n >= 6, "found the examples")
  local checks = 0
  local env = setmetatable({
    print = function() end,
    __check = function(want, ...)
      local got = {}
      for i = 1, select("#", ...) do got[i] = tostring((select(i, ...))) end
      T.eq(table.concat(got, "\t"), want)
      checks = checks + 1
    end,
  }, { __index = _G })
  local chunk = assert(load(table.concat(parts, "\n"), "=docs/nn.md", "t", env))
  chunk()
  T.truthy(checks >= 8, "checked the printed values")
end)

-- ---------------------------------------------------------------------------
-- Fused Linear + activation (Sequential runs them as one x:linear(W, b, act))
-- ---------------------------------------------------------------------------

-- outputs and parameter gradients of one forward/backward, as flat lists
local function run_once(net, x, seed)
  net:zero_grad()
  local y = net(x)
  y:backward(seed)
  local grads = {}
  for _, p in ipairs(net:parameters()) do grads[#grads + 1] = flat(p.grad) end
  return flat(y), grads, y
end

T.test("Sequential fuses Linear + ReLU/Tanh/Sigmoid: the same bits as the modules in turn", function()
  local sys = require "mile.sys"
  for _, backend in ipairs { "onednn", "openblas" } do
    sys.gemm_backend(backend)
    for _, act in ipairs { "relu", "tanh", "sigmoid" } do
      for _, dtype in ipairs { "float32", "float64" } do
        local gen = tensor.Generator(11)
        local net = nn.MLP { input = 8, hidden = { 32, 24 }, output = 4, activation = act,
                             output_activation = act, dtype = dtype, generator = gen }
        local x = tensor.randn({ 40, 8 }, gen):to(dtype)
        local seed = tensor.randn({ 40, 4 }, gen):to(dtype)
        nn.fuse = true
        local y1, g1, yt = run_once(net, x, seed)
        T.eq(yt.grad_fn, "linear_act", "the last layer ran fused")
        nn.fuse = false
        local y0, g0, yt0 = run_once(net, x, seed)
        T.truthy(yt0.grad_fn ~= "linear_act", "unfused runs the modules one by one")
        nn.fuse = true
        local what = ("%s %s %s"):format(backend, act, dtype)
        T.eq(#y1, #y0)
        for i = 1, #y0 do
          if y1[i] ~= y0[i] then T.eq(y1[i], y0[i], what .. ": output " .. i) end
        end
        for k = 1, #g0 do
          for i = 1, #g0[k] do
            if g1[k][i] ~= g0[k][i] then T.eq(g1[k][i], g0[k][i], what .. (": grad %d[%d]"):format(k, i)) end
          end
        end
      end
    end
  end
  sys.gemm_backend("onednn")
end)

T.test("x:linear(W, b, act) against plain Lua arithmetic; an unknown activation is refused", function()
  local x = tensor.from { { 1, -2 }, { 0.5, 3 } }:to("float64")
  local w = tensor.from { { 0.25, -1 }, { 2, 0.5 } }:to("float64")
  local b = tensor.from { -0.5, 0.25 }:to("float64")
  local y = x:linear(w, b, "tanh")
  for i = 1, 2 do
    for j = 1, 2 do
      local z = x[i][1] * w[j][1] + x[i][2] * w[j][2] + b[j]
      T.near(y[i][j], math.tanh(z), 1e-15)
    end
  end
  T.raises(function() return x:linear(w, b, "gelu") end, "invalid option 'gelu'")
end)

T.test("compile_forward: the same bits as forward, sees parameter updates, falls back with a reason", function()
  local gen = tensor.Generator(12)
  local mlp = nn.MLP { input = 8, hidden = { 64, 48 }, output = 4, generator = gen }
  local f = mlp:compile_forward()
  T.eq(f.compiled, 3)
  T.eq(f.reason, nil)
  local function same(a, b, what)
    local x, y = flat(a), flat(b)
    T.eq(#x, #y, what)
    for i = 1, #x do
      if x[i] ~= y[i] then T.eq(x[i], y[i], what .. ": element " .. i) end
    end
  end
  for _, B in ipairs { 1, 7 } do
    local x = tensor.randn({ B, 8 }, gen)
    same(f(x), ag.no_grad(function() return mlp(x) end), "batch " .. B)
    T.eq(f(x).grad_fn, nil, "no graph")
  end
  local x = tensor.randn({ 1, 8 }, gen)
  -- in place (an optimiser step) and replaced (a new tensor) parameters are both seen
  ag.no_grad(function() mlp.modules[1].weight:copy_(mlp.modules[1].weight * 2) end)
  same(f(x), ag.no_grad(function() return mlp(x) end), "after an in-place update")
  mlp.modules[3]:register_parameter("weight", tensor.randn({ 48, 64 }, gen))
  same(f(x), ag.no_grad(function() return mlp(x) end), "after a parameter was replaced")
  -- a policy: the head runs uncompiled after the chain
  local pol = nn.Sequential(mlp, nn.CategoricalHead())
  local g = pol:compile_forward()
  T.eq(g.compiled, 3)
  T.truthy(g.reason:find("CategoricalHead", 1, true), g.reason)
  same(g(x).logits, ag.no_grad(function() return pol(x).logits end), "policy logits")
  -- nothing to compile: the ordinary forward, and why
  local odd = nn.Sequential(nn.Tanh(), nn.Linear(8, 3, { generator = gen }))
  local h = odd:compile_forward()
  T.eq(h.compiled, 0)
  T.truthy(h.reason:find("does not start with a Linear", 1, true), h.reason)
  same(h(x), ag.no_grad(function() return odd(x) end), "uncompiled")
  -- bad input
  T.raises(function() return f(tensor.randn({ 1, 7 }, gen)) end, "expected %[%.%.%., 8%]")
  T.raises(function() return f(tensor.randn({ 1, 8 }, gen):to("float64")) end, "input is float64")
end)

T.run()
