--- mile.nn: neural-network modules in the style of torch/nn (PyTorch's names).
--
--   local T, nn = require "mile.tensor", require "mile.nn"
--   local gen = T.Generator(1)
--   local net = nn.Sequential(nn.Linear(8, 64, {generator = gen}), nn.ReLU(),
--                             nn.Linear(64, 4, {generator = gen}))
--   local y = net(T.randn({32, 8}, gen))                   -- same as net:forward(x)
--   local policy = nn.Sequential(nn.MLP{input = 8, hidden = {256, 256}, output = 4},
--                                nn.CategoricalHead())
--   local dist = policy(obs)                               -- a Categorical
--   local nll = -dist:log_prob(actions):mean()             -- actions: env values 0..3
--
-- Modules are tables whose metatable is their class. A class is made with
-- nn.class(name [, parent]) and constructed by calling it; the constructor runs
-- :__init(...) and records a spec (type name + constructor arguments) from which
-- nn.from_spec rebuilds the architecture (nn.save / nn.load build on it).
-- forward returns fresh tensors: no module keeps or reuses its output.
local T = require "mile.tensor"
local compile = require "mile.compile"
local ag = require "mile.autograd"

local M = {}

local is_tensor = T.is_tensor
local LOG_2PI = math.log(2 * math.pi)

--- ---------------------------------------------------------------------------
--- classes
--- ---------------------------------------------------------------------------

local classes = {}   -- type name -> class, for from_spec
M.classes = classes

--- True when x is a module instance.
local function is_module(x)
  return type(x) == "table" and rawget(x, "_param_names") ~= nil
end
M.is_module = is_module

-- Spec arguments: plain values are deep-copied, modules become {__module = spec},
-- values that cannot be serialised (generators, tensors, functions) are dropped, so
-- a rebuilt module falls back to its defaults for them (its weights come from a
-- state dict anyway).
local function to_spec_value(v)
  local tv = type(v)
  if tv == "number" or tv == "string" or tv == "boolean" then return v end
  if tv ~= "table" then return nil end
  if is_module(v) then return { __module = v:spec() } end
  if getmetatable(v) ~= nil then return nil end
  local out = {}
  for k, x in pairs(v) do
    if type(k) == "string" or math.type(k) == "integer" then out[k] = to_spec_value(x) end
  end
  return out
end

local function from_spec_value(v)
  if type(v) ~= "table" then return v end
  if v.__module ~= nil then return M.from_spec(v.__module) end
  local out = {}
  for k, x in pairs(v) do out[k] = from_spec_value(x) end
  return out
end

local function construct(cls, ...)
  local self = setmetatable({}, cls)
  rawset(self, "_param_names", {})
  rawset(self, "_buffer_names", {})
  rawset(self, "_child_names", {})
  rawset(self, "training", true)
  local n = select("#", ...)
  local args = {}
  for i = 1, n do args[i] = to_spec_value((select(i, ...))) end
  rawset(self, "_spec", { type = cls.__name, args = args, n = n })
  self:__init(...)
  return self
end

-- Metamethods are looked up raw in the metatable (the class), so every class
-- carries its own copy of the base's.
local METAMETHODS = { "__call", "__tostring", "__newindex", "__len" }

--- nn.class(name [, parent = nn.Module]) -> a new module class, registered under
--- `name` for from_spec. Define :__init(...) and :forward(...) on it.
function M.class(name, parent)
  assert(type(name) == "string", "nn.class: needs a type name")
  parent = parent or M.Module
  local cls = { __name = name }
  cls.__index = cls
  if parent then
    for _, k in ipairs(METAMETHODS) do cls[k] = rawget(parent, k) end
  end
  setmetatable(cls, { __index = parent, __call = construct })
  classes[name] = cls
  return cls
end

--- nn.from_spec(spec) -> a module with spec's architecture (fresh parameters).
function M.from_spec(spec)
  if type(spec) ~= "table" or type(spec.type) ~= "string" then
    error("from_spec: needs a table {type = <class name>, args = {...}}", 2)
  end
  local cls = classes[spec.type]
  if not cls then error(("from_spec: unknown module type %q (define it with nn.class)"):format(spec.type), 2) end
  local args = from_spec_value(spec.args or {})
  return cls(table.unpack(args, 1, spec.n or #args))
end

--- ---------------------------------------------------------------------------
--- Module
--- ---------------------------------------------------------------------------

local Module = M.class("Module", false)
M.Module = Module

function Module:__init() end

--- forward(...) -> the output: each module class defines it (the base raises).
function Module:forward()
  error(self.__name .. ": forward is not defined", 2)
end

function Module:__call(...) return self:forward(...) end

-- Registering by assignment, as in PyTorch: a module stored under a new key becomes
-- a child, a leaf tensor that requires grad becomes a parameter.
function Module:__newindex(k, v)
  if type(k) == "string" then
    if is_module(v) then
      local names = rawget(self, "_child_names")
      names[#names + 1] = k
    elseif is_tensor(v) and v:requires_grad() and v.is_leaf then
      local names = rawget(self, "_param_names")
      names[#names + 1] = k
    end
  end
  rawset(self, k, v)
end

local function add_name(list, name)
  for _, n in ipairs(list) do if n == name then return end end
  list[#list + 1] = name
end

--- register_parameter(name, tensor): a leaf that the optimiser updates (requires_grad set).
function Module:register_parameter(name, t)
  assert(is_tensor(t), "register_parameter: needs a tensor")
  if not t:requires_grad() then t:requires_grad(true) end
  add_name(self._param_names, name)
  rawset(self, name, t)
  return t
end

--- register_buffer(name, tensor): state saved in the state dict but not trained
--- (running statistics).
function Module:register_buffer(name, t)
  assert(is_tensor(t), "register_buffer: needs a tensor")
  add_name(self._buffer_names, name)
  rawset(self, name, t)
  return t
end

--- add_module(name, module): a named child.
function Module:add_module(name, m)
  assert(is_module(m), "add_module: needs a module")
  add_name(self._child_names, name)
  rawset(self, name, m)
  return m
end

--- named_children() -> ordered list of {name, module}.
function Module:named_children()
  local out = {}
  for _, name in ipairs(self._child_names) do
    local m = self[name]
    if m ~= nil then out[#out + 1] = { name, m } end
  end
  return out
end

--- children() -> ordered list of the direct child modules.
function Module:children()
  local out = {}
  for i, c in ipairs(self:named_children()) do out[i] = c[2] end
  return out
end

local function collect(self, kind, prefix, out)
  for _, name in ipairs(self[kind]) do
    local t = self[name]
    if t ~= nil then out[#out + 1] = { prefix .. name, t } end
  end
  for _, c in ipairs(self:named_children()) do collect(c[2], kind, prefix .. c[1] .. ".", out) end
  return out
end

--- named_parameters() -> ordered list of {dotted name, tensor}: own parameters
--- first, then each child's ("1.weight", "1.bias", "3.weight", ...).
function Module:named_parameters() return collect(self, "_param_names", "", {}) end

--- named_buffers() -> ordered list of {dotted name, tensor}.
function Module:named_buffers() return collect(self, "_buffer_names", "", {}) end

--- parameters() -> list of the parameter tensors (leaves with requires_grad).
function Module:parameters()
  local out = {}
  for i, p in ipairs(self:named_parameters()) do out[i] = p[2] end
  return out
end

--- num_parameters() -> number of trainable scalars.
function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

-- self and every descendant, depth first
local function all_modules(self, out)
  out = out or {}
  out[#out + 1] = self
  for _, c in ipairs(self:named_children()) do all_modules(c[2], out) end
  return out
end

--- apply(fn): call fn(m) on every descendant, children first, then on self
--- (PyTorch's order); returns self. Handy for custom initialisation.
function Module:apply(fn)
  for _, c in ipairs(self:named_children()) do c[2]:apply(fn) end
  fn(self)
  return self
end

--- train([mode = true]) / eval(): set .training on this module and its descendants.
function Module:train(mode)
  mode = mode ~= false
  for _, m in ipairs(all_modules(self)) do rawset(m, "training", mode) end
  return self
end
--- eval() -> self, in evaluation mode (train(false)): training-only behaviour off.
function Module:eval() return self:train(false) end

--- zero_grad(): drop every parameter's gradient (the next backward starts anew).
function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p:zero_grad() end
  return self
end

--- state_dict() -> {name = tensor}: parameters (detached views sharing their
--- storage) and buffers, under dotted names.
function Module:state_dict()
  local sd = {}
  for _, p in ipairs(self:named_parameters()) do sd[p[1]] = p[2]:detach() end
  for _, b in ipairs(self:named_buffers()) do sd[b[1]] = b[2] end
  return sd
end

--- state_keys() -> the names of state_dict() in their module order.
function Module:state_keys()
  local keys = {}
  for _, p in ipairs(self:named_parameters()) do keys[#keys + 1] = p[1] end
  for _, b in ipairs(self:named_buffers()) do keys[#keys + 1] = b[1] end
  return keys
end

local function shape_str(t) return "{" .. table.concat(t:shape(), ",") .. "}" end

--- load_state_dict(sd [, strict = true]): copy values into this module's tensors
--- (converting dtype). Missing or unexpected names (strict) and shape mismatches
--- are errors, raised before anything is copied.
function Module:load_state_dict(sd, strict)
  if type(sd) ~= "table" then error("load_state_dict: needs a table name -> tensor", 2) end
  strict = strict ~= false
  local own = {}
  for _, p in ipairs(self:named_parameters()) do own[#own + 1] = p end
  for _, b in ipairs(self:named_buffers()) do own[#own + 1] = b end
  local missing, unexpected, known, problems = {}, {}, {}, {}
  for _, e in ipairs(own) do
    local name, t = e[1], e[2]
    known[name] = true
    local src = sd[name]
    if src == nil then
      missing[#missing + 1] = name
    elseif not is_tensor(src) then
      problems[#problems + 1] = ("%s is %s, not a tensor"):format(name, type(src))
    elseif shape_str(src) ~= shape_str(t) then
      problems[#problems + 1] = ("size mismatch for %s: checkpoint %s, model %s"):format(name, shape_str(src), shape_str(t))
    end
  end
  for k in pairs(sd) do
    if not known[k] then unexpected[#unexpected + 1] = tostring(k) end
  end
  table.sort(missing)
  table.sort(unexpected)
  if strict and #missing > 0 then problems[#problems + 1] = "missing keys: " .. table.concat(missing, ", ") end
  if strict and #unexpected > 0 then problems[#problems + 1] = "unexpected keys: " .. table.concat(unexpected, ", ") end
  if #problems > 0 then error("load_state_dict: " .. table.concat(problems, "; "), 2) end
  for _, e in ipairs(own) do
    local src = sd[e[1]]
    if src ~= nil then e[2]:copy_(src) end
  end
  for _, m in ipairs(all_modules(self)) do
    if m._state_loaded then m:_state_loaded() end
  end
  return missing, unexpected
end

--- spec() -> a plain table (numbers, strings, booleans, tables) that nn.from_spec
--- turns back into a module of the same architecture.
function Module:spec()
  local s = self._spec
  return { type = s.type, args = to_spec_value(s.args), n = s.n }
end

--- clone() -> a new module of the same architecture and values (no shared storage).
function Module:clone()
  local m = M.from_spec(self:spec())
  m:load_state_dict(self:state_dict())
  return m:train(self.training)
end

--- extra_repr() -> the text between the parentheses of tostring(module).
--- extra_repr() -> the text inside the parentheses when the module prints ("" here).
function Module:extra_repr() return "" end

function Module:__tostring()
  local head = self.__name .. "(" .. self:extra_repr()
  local kids = self:named_children()
  if #kids == 0 then return head .. ")" end
  local lines = { head }
  for _, c in ipairs(kids) do
    local sub = tostring(c[2]):gsub("\n", "\n  ")
    lines[#lines + 1] = ("  (%s): %s"):format(c[1], sub)
  end
  lines[#lines + 1] = ")"
  return table.concat(lines, "\n")
end

--- ---------------------------------------------------------------------------
--- layers
--- ---------------------------------------------------------------------------

local function check_size(fname, what, v)
  if math.type(v) ~= "integer" or v < 1 then
    error(("%s: %s must be a positive integer, got %s"):format(fname, what, tostring(v)), 4)
  end
end

local function check_dtype(fname, dtype)
  dtype = dtype or "float32"
  if dtype ~= "float32" and dtype ~= "float64" then
    error(("%s: dtype %q (float32 or float64)"):format(fname, tostring(dtype)), 4)
  end
  return dtype
end

--- Linear(in, out, {bias = true, dtype = "float32", generator = gen, seed = 0}):
--- y = x W^T + b with W [out, in], in one fused gemm. PyTorch's default init:
--- W and b ~ U(-1/sqrt(in), 1/sqrt(in)), drawn from `generator` (or a new
--- generator seeded with `seed`; pass one generator to every layer of a network).
local Linear = M.class("Linear")
M.Linear = Linear

function Linear:__init(in_features, out_features, opts)
  opts = opts or {}
  check_size("Linear", "in_features", in_features)
  check_size("Linear", "out_features", out_features)
  local dtype = check_dtype("Linear", opts.dtype)
  local gen = opts.generator or T.Generator(opts.seed or 0)
  local bound = 1 / math.sqrt(in_features)
  rawset(self, "in_features", in_features)
  rawset(self, "out_features", out_features)
  self:register_parameter("weight", T.empty({ out_features, in_features }, dtype):uniform_(gen, -bound, bound))
  if opts.bias ~= false then
    self:register_parameter("bias", T.empty({ out_features }, dtype):uniform_(gen, -bound, bound))
  end
end

--- forward(x) -> x W^T + b for x of shape {batch, in_features}.
function Linear:forward(x) return x:linear(self.weight, self.bias) end

--- extra_repr() -> "in=…, out=…, bias=true|false".
function Linear:extra_repr()
  return ("in=%d, out=%d, bias=%s"):format(self.in_features, self.out_features, tostring(self.bias ~= nil))
end

--- Activations. ---------------------------------------------------------------

local function activation_class(name, fn)
  local cls = M.class(name)
  --- forward(x) -> the activation applied elementwise.
  cls.forward = function(_, x) return fn(x) end
  M[name] = cls
  return cls
end

activation_class("ReLU", function(x) return x:relu() end)
activation_class("Tanh", function(x) return x:tanh() end)
activation_class("Sigmoid", function(x) return x:sigmoid() end)
activation_class("Softplus", function(x) return x:softplus() end)
activation_class("Identity", function(x) return x end)

--- ELU(alpha = 1): x for x > 0, alpha (e^x - 1) otherwise. The exponential sees
--- min(x, 0), so a large positive x cannot overflow it into a NaN gradient.
local ELU = M.class("ELU")
M.ELU = ELU
function ELU:__init(alpha)
  rawset(self, "alpha", alpha or 1.0)
end
--- forward(x) -> x where x > 0, alpha (e^x - 1) elsewhere.
function ELU:forward(x)
  local neg = x:minimum(0):expm1()
  if self.alpha ~= 1 then neg = neg * self.alpha end
  return T.where(x:gt(0), x, neg)
end
--- extra_repr() -> "alpha=…".
function ELU:extra_repr() return "alpha=" .. tostring(self.alpha) end

local ACTIVATIONS = {
  relu = M.ReLU, tanh = M.Tanh, sigmoid = M.Sigmoid, elu = M.ELU, softplus = M.Softplus,
  identity = M.Identity, linear = M.Identity, none = M.Identity,
}

--- nn.activation(name) -> a new activation module ("relu", "tanh", "sigmoid",
--- "elu", "softplus", "identity").
function M.activation(name)
  local cls = ACTIVATIONS[name]
  if not cls then error(("activation: unknown name %q"):format(tostring(name)), 2) end
  return cls()
end

--- Sequential(m1, m2, ...): applies its modules in order. Children are named
--- "1", "2", ... (parameter names "1.weight"); seq.modules is the list.
local Sequential = M.class("Sequential")
M.Sequential = Sequential

function Sequential:__init(...)
  local mods = { ... }
  for i = 1, select("#", ...) do
    if not is_module(mods[i]) then
      error(("Sequential: argument %d is %s, not a module"):format(i, type(mods[i])), 3)
    end
  end
  rawset(self, "modules", mods)
end

-- A Linear followed by one of these activations runs as one fused op,
-- x:linear(W, b, act): the same bits as the two modules in turn, with fewer passes
-- over memory and one autograd node (docs/performance.md). nn.fuse = false (or
-- MILE_FUSE=0 in the environment) runs every module on its own.
local FUSED_ACTIVATIONS = { [M.ReLU.forward] = "relu", [M.Tanh.forward] = "tanh", [M.Sigmoid.forward] = "sigmoid" }
M.fuse = os.getenv("MILE_FUSE") ~= "0"

--- forward(x) -> x passed through each module in order.
function Sequential:forward(x)
  local mods, i = self.modules, 1
  local n = #mods
  while i <= n do
    local m, after = mods[i], mods[i + 1]
    local act = M.fuse and after and m.forward == Linear.forward and FUSED_ACTIVATIONS[after.forward]
    if act then
      x = x:linear(m.weight, m.bias, act)
      i = i + 2
    else
      x = m:forward(x)
      i = i + 1
    end
  end
  return x
end

-- The leaf modules of nested plain Sequentials (and MLPs), in order.
local function flatten(seq, leaves)
  for _, m in ipairs(seq.modules) do
    if m.forward == Sequential.forward and m.modules then flatten(m, leaves) else leaves[#leaves + 1] = m end
  end
  return leaves
end

--- compile_forward() -> f, a callable: f(x) is this network's forward for inference
--- (no autograd graph). Its leading chain of Linear layers with their activations
--- (ReLU, Tanh, Sigmoid, Identity; nested Sequentials and MLPs included) runs as one
--- compiled call into preallocated buffers (tensor.mlp_plan): the same bits as the
--- ordinary forward, none of its per-layer calls and tensors. The modules after the
--- chain (a policy head, say) run as usual. f.compiled counts the compiled layers and
--- f.reason says what runs uncompiled (nil when nothing does). In-place updates of
--- the parameters (optimiser steps, load_state_dict) are seen; a parameter replaced
--- by another tensor is noticed and the chain compiled again.
function Sequential:compile_forward()
  local leaves = flatten(self, {})
  local layers, i = {}, 1
  while leaves[i] and leaves[i].forward == Linear.forward do
    local after = leaves[i + 1]
    local act = after and FUSED_ACTIVATIONS[after.forward]
    local paired = act or (after and after.forward == M.Identity.forward)
    layers[#layers + 1] = { module = leaves[i], act = act or "none" }
    i = i + (paired and 2 or 1)
  end
  local rest = table.move(leaves, i, #leaves, 1, {})
  local reason
  if #layers == 0 then
    reason = ("%s does not start with a Linear layer: the whole forward runs uncompiled"):format(
      leaves[1] and leaves[1].__name or "an empty network")
  elseif #rest > 0 then
    local names = {}
    for k, m in ipairs(rest) do names[k] = m.__name or "?" end
    reason = "runs uncompiled after the compiled chain: " .. table.concat(names, ", ")
  end
  local plan
  local function compile()
    local spec = {}
    for k, l in ipairs(layers) do
      l.weight, l.bias = rawget(l.module, "weight"), rawget(l.module, "bias")
      spec[k] = { l.weight, l.bias, l.act }
    end
    plan = T.mlp_plan(spec)
  end
  if #layers > 0 then compile() end
  local function tail(y)
    for k = 1, #rest do y = rest[k]:forward(y) end
    return y
  end
  local function run(x)
    local y = x
    if plan then
      for k = 1, #layers do
        local l = layers[k]
        if rawget(l.module, "weight") ~= l.weight or rawget(l.module, "bias") ~= l.bias then
          compile()
          break
        end
      end
      y = plan(x)
    end
    if #rest == 0 then return y end
    return ag.no_grad(tail, y)
  end
  return setmetatable({ compiled = #layers, reason = reason }, { __call = function(_, x) return run(x) end })
end

--- add(module): append; returns self (torch/nn style).
function Sequential:add(m)
  if not is_module(m) then error("Sequential.add: needs a module", 2) end
  self.modules[#self.modules + 1] = m
  return self
end

--- get(i) -> the i-th module.
function Sequential:get(i) return self.modules[i] end

function Sequential:__len() return #self.modules end

--- named_children() -> ordered list of {name, module}: {"1", first}, {"2", second}, ...
function Sequential:named_children()
  local out = {}
  for i, m in ipairs(self.modules) do out[i] = { tostring(i), m } end
  return out
end

-- A plain Sequential is rebuilt from its children; a subclass (MLP, or yours) from
-- its own constructor arguments.
function Sequential:spec()
  if getmetatable(self) ~= Sequential then return Module.spec(self) end
  local args = {}
  for i, m in ipairs(self.modules) do args[i] = { __module = m:spec() } end
  return { type = self._spec.type, args = args, n = #args }
end

--- MLP{input = 8, hidden = {256, 256}, output = 4, activation = "relu",
---     output_activation = nil, bias = true, dtype = "float32", generator = gen, seed = 0}:
--- a Sequential of Linear layers with the activation between them (and after the
--- last one when output_activation is given). One generator initialises every layer.
local MLP = M.class("MLP", Sequential)
M.MLP = MLP

function MLP:__init(opts)
  if type(opts) ~= "table" then error("MLP: needs an options table {input=, hidden=, output=}", 3) end
  check_size("MLP", "input", opts.input)
  check_size("MLP", "output", opts.output)
  local hidden = opts.hidden or {}
  for i, h in ipairs(hidden) do check_size("MLP", ("hidden[%d]"):format(i), h) end
  local act = opts.activation or "relu"
  if not ACTIVATIONS[act] then error(("MLP: unknown activation %q"):format(tostring(act)), 3) end
  if opts.output_activation and not ACTIVATIONS[opts.output_activation] then
    error(("MLP: unknown output_activation %q"):format(tostring(opts.output_activation)), 3)
  end
  local gen = opts.generator or T.Generator(opts.seed or 0)
  local lin = { bias = opts.bias, dtype = check_dtype("MLP", opts.dtype), generator = gen }
  local mods, width = {}, opts.input
  for _, h in ipairs(hidden) do
    mods[#mods + 1] = Linear(width, h, lin)
    mods[#mods + 1] = M.activation(act)
    width = h
  end
  mods[#mods + 1] = Linear(width, opts.output, lin)
  if opts.output_activation then mods[#mods + 1] = M.activation(opts.output_activation) end
  rawset(self, "modules", mods)
end

--- ---------------------------------------------------------------------------
--- distributions (policy outputs)
--- ---------------------------------------------------------------------------

-- Actions given as a number, a Lua list or a tensor, as a tensor of `dtype`.
local function as_tensor(a, dtype)
  if is_tensor(a) then return a end
  if type(a) == "number" then return T.scalar(a, dtype) end
  if type(a) == "table" then return T.from(a, dtype) end
  error("expected a tensor, a number or a list of numbers, got " .. type(a), 3)
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

--- Categorical(logits [..., A]): a distribution over the action values 0..A-1 (the
--- environment's own numbers) for each row. Differentiable in the logits.
local Categorical = {}
Categorical.__index = Categorical
Categorical.__name = "Categorical"
M.Categorical = setmetatable(Categorical, {
  __call = function(_, logits)
    if not is_tensor(logits) or logits:dim() < 1 then error("Categorical: needs a logits tensor [..., A]", 2) end
    return setmetatable({ logits = logits }, Categorical)
  end,
})

--- n_actions() -> A.
function Categorical:n_actions() return self.logits:size(-1) end

--- batch_shape() -> the logits' shape without the last dim.
function Categorical:batch_shape()
  local s = self.logits:shape()
  s[#s] = nil
  return s
end

--- log_probs() -> [..., A]: ln pi(a) for every a (log-softmax, computed once).
function Categorical:log_probs()
  local lp = self._log_probs
  if not lp then
    lp = self.logits:log_softmax(-1)
    self._log_probs = lp
  end
  return lp
end

--- probs() -> [..., A] (softmax, computed once).
function Categorical:probs()
  local p = self._probs
  if not p then
    p = self.logits:softmax(-1)
    self._probs = p
  end
  return p
end

--- log_prob(actions) -> [...]: ln pi(a) of 0-based action values (tensor of the
--- batch shape, a list, or a number for unbatched logits).
function Categorical:log_prob(actions)
  local lp = self:log_probs()
  actions = as_tensor(actions, lp:dtype())
  local batch = self:batch_shape()
  if not same_shape(actions:shape(), batch) then
    error(("Categorical.log_prob: actions of shape {%s} for logits of batch shape {%s}"):format(
      table.concat(actions:shape(), ","), table.concat(batch, ",")), 2)
  end
  -- a step being recorded (mile.compile) cannot read values back: gather's own range
  -- check (in the kernel, so also on replay) stands in for this friendlier message
  if actions:numel() > 0 and not compile.recording() then
    local lo, hi = actions:min():item(), actions:max():item()
    local n = lp:size(-1)
    if lo < 0 or hi > n - 1 then
      error(("Categorical.log_prob: action value %g outside 0..%d (actions are 0-based env values)"):format(
        lo < 0 and lo or hi, n - 1), 2)
    end
  end
  return lp:gather(-1, (actions + 1):unsqueeze(-1)):squeeze(-1)
end

--- sample(gen) -> [...]: 0-based action values drawn from gen (not differentiable).
function Categorical:sample(gen)
  return gen:categorical(self.logits:detach():softmax(-1))
end

--- mode() -> [...]: the most likely action value (0-based; first on ties).
function Categorical:mode()
  return self.logits:detach():argmax(-1) - 1
end

--- entropy() -> [...]: -sum_a pi(a) ln pi(a).
function Categorical:entropy()
  return -(self:probs() * self:log_probs()):sum(-1)
end

function Categorical:__tostring()
  return ("Categorical(batch={%s}, actions=%d)"):format(table.concat(self:batch_shape(), ","), self:n_actions())
end

--- DiagGaussian(mean [..., D], log_std [..., D] or [D]): independent normals per
--- action dim. Differentiable in mean and log_std.
local DiagGaussian = {}
DiagGaussian.__index = DiagGaussian
DiagGaussian.__name = "DiagGaussian"
M.DiagGaussian = setmetatable(DiagGaussian, {
  __call = function(_, mean, log_std)
    if not is_tensor(mean) or mean:dim() < 1 then error("DiagGaussian: needs a mean tensor [..., D]", 2) end
    if type(log_std) == "number" then log_std = T.full({ mean:size(-1) }, log_std, mean:dtype()) end
    if not is_tensor(log_std) then error("DiagGaussian: log_std must be a tensor or a number", 2) end
    if log_std:size(-1) ~= mean:size(-1) then
      error(("DiagGaussian: log_std has %d dims per action, mean %d"):format(log_std:size(-1), mean:size(-1)), 2)
    end
    return setmetatable({ mean = mean, log_std = log_std }, DiagGaussian)
  end,
})

--- action_dim() -> D.
function DiagGaussian:action_dim() return self.mean:size(-1) end

--- std() -> exp(log_std) (computed once).
function DiagGaussian:std()
  local s = self._std
  if not s then
    s = self.log_std:exp()
    self._std = s
  end
  return s
end

-- log_std at the mean's full shape (a free parameter [D] is shared by the batch).
function DiagGaussian:_full_log_std()
  local ls = self.log_std
  if not same_shape(ls:shape(), self.mean:shape()) then ls = ls:expand_as(self.mean) end
  return ls
end

--- log_prob(a [..., D]) -> [...]: sum_d ln N(a_d; mean_d, std_d^2).
function DiagGaussian:log_prob(a)
  a = as_tensor(a, self.mean:dtype())
  local z = (a - self.mean) / self:std()
  local lp = (z * z) * -0.5 - self.log_std
  return lp:sum(-1) - 0.5 * LOG_2PI * self:action_dim()
end

--- sample(gen) -> [..., D]: mean + std * eps with eps ~ N(0, I) from gen
--- (reparameterised: differentiable in mean and log_std; detach it for a plain draw).
function DiagGaussian:sample(gen)
  local mean = self.mean
  local eps = T.randn(mean:shape(), gen, mean:dtype())
  return mean + self:std() * eps
end
DiagGaussian.rsample = DiagGaussian.sample

--- mode() -> the mean.
function DiagGaussian:mode() return self.mean end

--- entropy() -> [...]: sum_d (ln std_d + (1 + ln 2 pi) / 2).
function DiagGaussian:entropy()
  return self:_full_log_std():sum(-1) + 0.5 * (1 + LOG_2PI) * self:action_dim()
end

function DiagGaussian:__tostring()
  return ("DiagGaussian(mean={%s})"):format(table.concat(self.mean:shape(), ","))
end

--- ---------------------------------------------------------------------------
--- policy heads (modules that turn network outputs into distributions)
--- ---------------------------------------------------------------------------

--- CategoricalHead(): forward(logits [..., A]) -> Categorical. Put it after the
--- network that computes the logits: nn.Sequential(nn.MLP{...}, nn.CategoricalHead()).
local CategoricalHead = M.class("CategoricalHead")
M.CategoricalHead = CategoricalHead
--- forward(logits) -> a Categorical distribution over the actions.
function CategoricalHead:forward(logits) return M.Categorical(logits) end

--- DiagGaussianHead(D, {log_std = "parameter" | "output", log_std_init = 0,
---                      min_log_std = -20, max_log_std = 2, dtype = "float32"}):
--- "parameter" (state-independent): forward(mean [..., D]) with a free, trained
---   log-std vector of size D (self.log_std, started at log_std_init);
--- "output" (state-dependent): forward(x [..., 2D]) takes the mean from the first D
---   entries and the log-std from the last D, clamped to [min_log_std, max_log_std].
local DiagGaussianHead = M.class("DiagGaussianHead")
M.DiagGaussianHead = DiagGaussianHead

function DiagGaussianHead:__init(action_dim, opts)
  opts = opts or {}
  check_size("DiagGaussianHead", "action_dim", action_dim)
  local mode = opts.log_std or "parameter"
  if mode ~= "parameter" and mode ~= "output" then
    error(("DiagGaussianHead: log_std = %q (\"parameter\" or \"output\")"):format(tostring(mode)), 3)
  end
  rawset(self, "action_dim", action_dim)
  rawset(self, "mode", mode)
  rawset(self, "min_log_std", opts.min_log_std or -20)
  rawset(self, "max_log_std", opts.max_log_std or 2)
  if mode == "parameter" then
    local dtype = check_dtype("DiagGaussianHead", opts.dtype)
    self:register_parameter("log_std", T.full({ action_dim }, opts.log_std_init or 0, dtype))
  end
end

--- input_size() -> the size of the last dim forward expects (D or 2D).
function DiagGaussianHead:input_size()
  return self.mode == "output" and 2 * self.action_dim or self.action_dim
end

--- forward(x) -> a diagonal Gaussian distribution: the mean from x; the log-sds from the
--- log_std parameter (log_std = "parameter") or from x's second half ("output").
function DiagGaussianHead:forward(x)
  local d = self.action_dim
  if x:size(-1) ~= self:input_size() then
    error(("DiagGaussianHead: input has %d features, expected %d (log_std = %q)"):format(
      x:size(-1), self:input_size(), self.mode), 2)
  end
  if self.mode == "parameter" then return M.DiagGaussian(x, self.log_std) end
  local mean = x:narrow(-1, 1, d)
  local log_std = x:narrow(-1, d + 1, d):clamp(self.min_log_std, self.max_log_std)
  return M.DiagGaussian(mean, log_std)
end

--- extra_repr() -> "action_dim=…, log_std=parameter|output".
function DiagGaussianHead:extra_repr()
  return ("action_dim=%d, log_std=%s"):format(self.action_dim, self.mode)
end

--- ---------------------------------------------------------------------------
--- RunningNorm
--- ---------------------------------------------------------------------------

--- RunningNorm(dim, {eps = 1e-8, clip = nil}): y = (x - mean) / sqrt(var + eps),
--- clamped to [-clip, clip] when clip is set. In train mode each forward first folds
--- its batch ([..., dim]) into the running mean and (population) variance
--- (Welford/Chan update in float64); in eval mode the statistics are frozen.
--- Buffers: mean [dim], var [dim], count (0-d), all float64.
local RunningNorm = M.class("RunningNorm")
M.RunningNorm = RunningNorm

function RunningNorm:__init(dim, opts)
  opts = opts or {}
  check_size("RunningNorm", "dim", dim)
  rawset(self, "dim", dim)
  rawset(self, "eps", opts.eps or 1e-8)
  rawset(self, "clip", opts.clip)
  self:register_buffer("mean", T.zeros({ dim }, "float64"))
  self:register_buffer("var", T.ones({ dim }, "float64"))
  self:register_buffer("count", T.scalar(0, "float64"))
  rawset(self, "_cache", {}) -- dtype -> {mean, inv_std} in that dtype
end

--- update(x): fold the batch x [..., dim] into the statistics (whatever the mode).
function RunningNorm:update(x)
  local xb = x:detach():double():reshape { -1, self.dim }
  local b = xb:size(1)
  if b == 0 then return self end
  local bm = xb:mean(1)
  local dev = xb - bm
  local bv = (dev * dev):mean(1)
  local n = self.count:item()
  local total = n + b
  local delta = bm - self.mean
  local m2 = self.var * n + bv * b + (delta * delta) * (n * b / total)
  self.mean:copy_(self.mean + delta * (b / total))
  self.var:copy_(m2 / total)
  self.count:fill_(total)
  rawset(self, "_cache", {})
  return self
end

function RunningNorm:_stats(dtype)
  local c = self._cache[dtype]
  if not c then
    c = { self.mean:to(dtype), (self.var + self.eps):sqrt():pow(-1):to(dtype) }
    self._cache[dtype] = c
  end
  return c[1], c[2]
end

function RunningNorm:_state_loaded() rawset(self, "_cache", {}) end

--- forward(x) -> (x - mean) / sd with the running statistics (updated from x in training mode).
function RunningNorm:forward(x)
  if x:size(-1) ~= self.dim then
    error(("RunningNorm: input has %d features, expected %d"):format(x:size(-1), self.dim), 2)
  end
  if self.training then self:update(x) end
  local mean, inv_std = self:_stats(x:dtype())
  local y = (x - mean) * inv_std
  if self.clip then y = y:clamp(-self.clip, self.clip) end
  return y
end

--- extra_repr() -> "dim=…" (and ", clip=…" when clipping).
function RunningNorm:extra_repr()
  return ("dim=%d%s"):format(self.dim, self.clip and (", clip=" .. tostring(self.clip)) or "")
end

-- nn.save(path, module [, metadata]) / nn.load(path) -> module, metadata: checkpoints
-- as safetensors files with the spec in the metadata (lua/mile/checkpoint.lua, docs/io.md)
M.save = require("mile.checkpoint").save
M.load = require("mile.checkpoint").load

return M
