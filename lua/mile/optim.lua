--- mile.optim: Adam, AdamW and SGD with fused C updates, gradient clipping and
--- learning-rate schedules, in the shape of torch.optim.
--
--   local optim = require "mile.optim"
--   local opt = optim.Adam(net:parameters(), {lr = 3e-4})
--   opt:set_schedule(optim.schedules.cosine(10000))       -- optional
--   for step = 1, 10000 do
--     opt:zero_grad()
--     local loss = ((net(x) - y) ^ 2):mean()
--     loss:backward()
--     optim.clip_grad_norm(net:parameters(), 1.0)          -- optional
--     opt:step()
--   end
--
-- The optimiser's state (moments, momentum buffers) is created with it, as zeros;
-- each step is one C call per parameter group that updates every parameter in
-- place with no allocation. Parameters without a gradient are skipped.
local T = require "mile.tensor"
local core = require "mile.optim.core"
local compile = require "mile.compile"

local M = {}
M.core = core

local is_tensor = T.is_tensor

--- ---------------------------------------------------------------------------
--- parameters and groups
--- ---------------------------------------------------------------------------

-- A module (anything with :parameters()), a list of tensors, or a list of groups
-- {params = ..., lr = ...} -> list of groups with their own param lists.
local function to_groups(fname, params)
  if type(params) == "table" and type(params.parameters) == "function" and not is_tensor(params) then
    params = params:parameters()
  end
  if type(params) ~= "table" then error(fname .. ": needs a list of parameters or of parameter groups", 4) end
  local groups = {}
  if type(params[1]) == "table" and not is_tensor(params[1]) then
    for i, g in ipairs(params) do
      if type(g) ~= "table" or g.params == nil then
        error(("%s: group %d needs a params field"):format(fname, i), 4)
      end
      local copy = {}
      for k, v in pairs(g) do copy[k] = v end
      if type(copy.params.parameters) == "function" then copy.params = copy.params:parameters() end
      groups[i] = copy
    end
  else
    groups[1] = { params = params }
  end
  local seen = {}
  for gi, g in ipairs(groups) do
    local list = {}
    for i, p in ipairs(g.params) do
      if not is_tensor(p) then error(("%s: parameter %d of group %d is %s, not a tensor"):format(fname, i, gi, type(p)), 4) end
      if not p.is_leaf then error(("%s: parameter %d of group %d is not a leaf tensor"):format(fname, i, gi), 4) end
      if not p:is_contiguous() then error(("%s: parameter %d of group %d is not contiguous"):format(fname, i, gi), 4) end
      if seen[p] then error(("%s: parameter %d of group %d appears twice"):format(fname, i, gi), 4) end
      seen[p] = true
      list[i] = p
    end
    g.params = list
  end
  return groups
end

local function fill_defaults(group, defaults)
  for k, v in pairs(defaults) do
    if group[k] == nil then
      if type(v) == "table" then
        local c = {}
        for i, x in ipairs(v) do c[i] = x end
        v = c
      end
      group[k] = v
    end
  end
end

local function zeros_like(p) return T.zeros(p:shape(), p:dtype()) end

local function check_nonneg(fname, what, v)
  if type(v) ~= "number" or not (v >= 0) then error(("%s: %s must be a number >= 0, got %s"):format(fname, what, tostring(v)), 5) end
end

--- ---------------------------------------------------------------------------
--- the optimiser base
--- ---------------------------------------------------------------------------

local Optimizer = {}
Optimizer.__index = Optimizer
M.Optimizer = Optimizer

local function new_optimizer(cls, name, params, opts, defaults)
  opts = opts or {}
  local self = setmetatable({ name = name, step_count = 0, defaults = {} }, cls)
  for k, v in pairs(defaults) do
    if opts[k] ~= nil then self.defaults[k] = opts[k] else self.defaults[k] = v end
  end
  for k in pairs(opts) do
    if defaults[k] == nil then error(("%s: unknown option %q"):format(name, tostring(k)), 3) end
  end
  self.param_groups = to_groups(name, params)
  for _, g in ipairs(self.param_groups) do
    fill_defaults(g, self.defaults)
    g.initial_lr = g.initial_lr or g.lr
    self:_check_group(g)
    g.steps = {}
    for i = 1, #g.params do g.steps[i] = 0 end
    self:_init_state(g)
  end
  return self
end

--- params() -> every parameter, group by group.
function Optimizer:params()
  local out = {}
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do out[#out + 1] = p end
  end
  return out
end

--- zero_grad(): drop every parameter's gradient (set to none, as PyTorch's default).
function Optimizer:zero_grad()
  for _, g in ipairs(self.param_groups) do
    local ps = g.params
    for i = 1, #ps do ps[i]:zero_grad() end
  end
end

--- set_schedule(fn or nil): from now on step() uses lr = group.lr * fn(t), t being
--- the number of steps taken before this one (0 on the first). nil removes it.
function Optimizer:set_schedule(fn)
  if fn ~= nil and type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error("set_schedule: needs a function step -> factor", 2)
  end
  self.schedule = fn
  return self
end

--- lr_factor() -> the schedule's factor for the next step (1 without a schedule).
function Optimizer:lr_factor()
  return self.schedule and self.schedule(self.step_count) or 1
end

--- get_lr() -> list of the learning rates the next step will use, per group.
function Optimizer:get_lr()
  local f, out = self:lr_factor(), {}
  for i, g in ipairs(self.param_groups) do out[i] = g.lr * f end
  return out
end

--- step(): update every parameter that has a gradient. Returns the number updated.
function Optimizer:step()
  local factor = self:lr_factor()
  local n = 0
  for _, g in ipairs(self.param_groups) do n = n + self:_update(g, g.lr * factor) end
  if compile.recording() then compile.note_optimizer(self) end -- before the count moves: what this step used
  self.step_count = self.step_count + 1
  return n
end

local HYPER_SKIP = { params = true, steps = true, exp_avgs = true, exp_avg_sqs = true, momentum_buffers = true }

--- state_dict() -> {type, step_count, param_groups = {{lr=, ... , n = #params}},
--- state = {{step =, <tensor name> = tensor}, ...}} with one state entry per
--- parameter in params() order. Tensors are the optimiser's own (save them, or
--- clone them to keep a snapshot).
function Optimizer:state_dict()
  local groups, state = {}, {}
  for gi, g in ipairs(self.param_groups) do
    local h = { n = #g.params }
    for k, v in pairs(g) do
      if not HYPER_SKIP[k] then
        if type(v) == "table" then
          local c = {}
          for i, x in ipairs(v) do c[i] = x end
          v = c
        end
        h[k] = v
      end
    end
    groups[gi] = h
    for i = 1, #g.params do
      local s = { step = g.steps[i] }
      for _, key in ipairs(self._state_keys) do s[key] = g[key .. "s"][i] end
      state[#state + 1] = s
    end
  end
  return { type = self.name, step_count = self.step_count, param_groups = groups, state = state }
end

--- load_state_dict(sd): restore hyperparameters, step counts and state tensors
--- (copied into this optimiser's tensors). The parameter layout must match;
--- every check runs before anything changes.
function Optimizer:load_state_dict(sd)
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    error("load_state_dict: not an optimiser state dict", 2)
  end
  if sd.type ~= self.name then
    error(("load_state_dict: state of %s given to %s"):format(tostring(sd.type), self.name), 2)
  end
  if #sd.param_groups ~= #self.param_groups then
    error(("load_state_dict: %d parameter groups saved, %d here"):format(#sd.param_groups, #self.param_groups), 2)
  end
  local k = 0
  for gi, g in ipairs(self.param_groups) do
    local h = sd.param_groups[gi]
    if h.n ~= #g.params then
      error(("load_state_dict: group %d has %d parameters saved, %d here"):format(gi, h.n or -1, #g.params), 2)
    end
    for i, p in ipairs(g.params) do
      k = k + 1
      local s = sd.state[k]
      if type(s) ~= "table" or math.type(s.step) ~= "integer" then
        error(("load_state_dict: state %d has no integer step"):format(k), 2)
      end
      for _, key in ipairs(self._state_keys) do
        local t = s[key]
        if not is_tensor(t) then error(("load_state_dict: state %d lacks tensor %s"):format(k, key), 2) end
        if table.concat(t:shape(), ",") ~= table.concat(p:shape(), ",") then
          error(("load_state_dict: state %d %s has shape {%s}, parameter {%s}"):format(k, key,
            table.concat(t:shape(), ","), table.concat(p:shape(), ",")), 2)
        end
      end
    end
  end
  k = 0
  for gi, g in ipairs(self.param_groups) do
    for key, v in pairs(sd.param_groups[gi]) do
      if key ~= "n" and not HYPER_SKIP[key] then
        if type(v) == "table" then
          local c = {}
          for i, x in ipairs(v) do c[i] = x end
          v = c
        end
        g[key] = v
      end
    end
    for i = 1, #g.params do
      k = k + 1
      local s = sd.state[k]
      g.steps[i] = s.step
      for _, key in ipairs(self._state_keys) do g[key .. "s"][i]:copy_(s[key]) end
    end
  end
  self.step_count = math.tointeger(sd.step_count) or 0
  return self
end

function Optimizer:__tostring()
  local keys = {}
  for key in pairs(self.defaults) do keys[#keys + 1] = key end
  table.sort(keys)
  local parts = {}
  for _, key in ipairs(keys) do
    local v = self.defaults[key]
    if type(v) == "table" then v = "{" .. table.concat(v, ", ") .. "}" end
    parts[#parts + 1] = key .. "=" .. tostring(v)
  end
  return ("%s(%s; %d parameters in %d group%s)"):format(self.name, table.concat(parts, ", "), #self:params(),
    #self.param_groups, #self.param_groups == 1 and "" or "s")
end

--- ---------------------------------------------------------------------------
--- Adam / AdamW
--- ---------------------------------------------------------------------------

local Adam = setmetatable({}, { __index = Optimizer })
Adam.__index = Adam
Adam.__tostring = Optimizer.__tostring
Adam._state_keys = { "exp_avg", "exp_avg_sq" }

function Adam:_check_group(g)
  check_nonneg(self.name, "lr", g.lr)
  check_nonneg(self.name, "eps", g.eps)
  check_nonneg(self.name, "weight_decay", g.weight_decay)
  local b = g.betas
  if type(b) ~= "table" or not (type(b[1]) == "number" and b[1] >= 0 and b[1] < 1)
      or not (type(b[2]) == "number" and b[2] >= 0 and b[2] < 1) then
    error(self.name .. ": betas must be {beta1, beta2} in [0, 1)", 4)
  end
end

function Adam:_init_state(g)
  g.exp_avgs, g.exp_avg_sqs = {}, {}
  for i, p in ipairs(g.params) do
    g.exp_avgs[i] = zeros_like(p)
    g.exp_avg_sqs[i] = zeros_like(p)
  end
end

function Adam:_update(g, lr)
  return core.adam(g.params, g.exp_avgs, g.exp_avg_sqs, g.steps, lr, g.betas[1], g.betas[2], g.eps,
    g.weight_decay, self.decoupled)
end

--- Adam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0}):
--- params is a list of tensors, a module, or a list of groups {params = ..., lr = ...}.
--- weight_decay adds weight_decay * param to the gradient (L2), as torch.optim.Adam.
function M.Adam(params, opts)
  local self = new_optimizer(Adam, "Adam", params, opts,
    { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0 })
  self.decoupled = false
  return self
end

--- AdamW(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 1e-2}):
--- decoupled weight decay (param *= 1 - lr * weight_decay before the Adam update).
function M.AdamW(params, opts)
  local self = new_optimizer(Adam, "AdamW", params, opts,
    { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 1e-2 })
  self.decoupled = true
  return self
end

--- ---------------------------------------------------------------------------
--- SGD
--- ---------------------------------------------------------------------------

local SGD = setmetatable({}, { __index = Optimizer })
SGD.__index = SGD
SGD.__tostring = Optimizer.__tostring
SGD._state_keys = { "momentum_buffer" }

function SGD:_check_group(g)
  check_nonneg("SGD", "lr", g.lr)
  check_nonneg("SGD", "momentum", g.momentum)
  check_nonneg("SGD", "dampening", g.dampening)
  check_nonneg("SGD", "weight_decay", g.weight_decay)
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    error("SGD: nesterov needs momentum > 0 and dampening 0", 4)
  end
end

-- Buffers exist for every parameter (zeros until the first step sets them), so the
-- state layout does not depend on the momentum value.
function SGD:_init_state(g)
  g.momentum_buffers = {}
  for i, p in ipairs(g.params) do g.momentum_buffers[i] = zeros_like(p) end
end

function SGD:_update(g, lr)
  return core.sgd(g.params, g.momentum_buffers, g.steps, lr, g.momentum, g.dampening, g.weight_decay,
    g.nesterov)
end

--- SGD(params, {lr = 1e-2, momentum = 0, dampening = 0, nesterov = false, weight_decay = 0}):
--- torch.optim.SGD's update (the momentum buffer starts as the first gradient).
function M.SGD(params, opts)
  return new_optimizer(SGD, "SGD", params, opts,
    { lr = 1e-2, momentum = 0, dampening = 0, nesterov = false, weight_decay = 0 })
end

--- ---------------------------------------------------------------------------
--- gradient clipping
--- ---------------------------------------------------------------------------

local function param_list(params)
  if type(params) == "table" and type(params.parameters) == "function" and not is_tensor(params) then
    return params:parameters()
  end
  if is_tensor(params) then return { params } end
  return params
end

--- clip_grad_norm(params, max_norm [, norm_type = 2]) -> the total norm of the
--- gradients of params (a list of tensors, or a module) before clipping. When it
--- exceeds max_norm every gradient is scaled in place by max_norm / (norm + 1e-6).
--- Use math.huge as norm_type for the max-abs norm.
function M.clip_grad_norm(params, max_norm, norm_type)
  return core.clip_grad_norm(param_list(params), max_norm, norm_type)
end

--- grad_norm(params [, norm_type = 2]) -> the total norm, without clipping.
function M.grad_norm(params, norm_type)
  return core.grad_norm(param_list(params), norm_type)
end

--- ---------------------------------------------------------------------------
--- learning-rate schedules: functions step -> factor of the base lr
--- ---------------------------------------------------------------------------

local schedules = {}
M.schedules = schedules

local function check_steps(fname, n)
  if math.type(n) ~= "integer" or n < 1 then
    error(("schedules.%s: total_steps must be a positive integer, got %s"):format(fname, tostring(n)), 3)
  end
end

-- Wrap `decay` (a function of the fraction done in [0, 1]) with a linear warmup over
-- the first `warmup` steps: factor (t + 1) / warmup at step t.
local function with_warmup(total, warmup, final, decay)
  warmup = warmup or 0
  if math.type(warmup) ~= "integer" or warmup < 0 or warmup >= total then
    error("schedules: warmup must be an integer in [0, total_steps)", 3)
  end
  local span = total - warmup
  return function(t)
    if t < warmup then return (t + 1) / warmup end
    if t >= total then return final end
    return decay((t - warmup) / span)
  end
end

--- constant([factor = 1]) -> t -> factor.
function schedules.constant(factor)
  factor = factor or 1
  return function() return factor end
end

--- linear(total_steps, {start = 1, final = 0, warmup = 0}) -> a factor going
--- linearly from start (at the end of warmup) to final (at total_steps), then final.
function schedules.linear(total_steps, opts)
  check_steps("linear", total_steps)
  opts = opts or {}
  local start, final = opts.start or 1, opts.final or 0
  return with_warmup(total_steps, opts.warmup, final, function(f) return start + (final - start) * f end)
end

--- cosine(total_steps, {final = 0, warmup = 0}) -> 1 at the end of warmup, falling
--- along half a cosine to final at total_steps (SGDR without restarts), then final.
function schedules.cosine(total_steps, opts)
  check_steps("cosine", total_steps)
  opts = opts or {}
  local final = opts.final or 0
  return with_warmup(total_steps, opts.warmup, final,
    function(f) return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * f)) end)
end

--- LambdaLR(opt, fn): a scheduler object like torch.optim.lr_scheduler.LambdaLR:
--- sets every group's lr to initial_lr * fn(epoch); epoch starts at 0 and
--- :step() advances it (call it after opt:step()).
local LambdaLR = {}
LambdaLR.__index = LambdaLR
--- LambdaLR(opt, fn) -> a scheduler: every group's lr = initial_lr * fn(epoch), epoch from 0.
M.LambdaLR = function(opt, fn)
  if type(fn) ~= "function" then error("LambdaLR: needs a function epoch -> factor", 2) end
  local self = setmetatable({ optimizer = opt, fn = fn, last_epoch = 0 }, LambdaLR)
  self:_apply()
  return self
end

function LambdaLR:_apply()
  for _, g in ipairs(self.optimizer.param_groups) do g.lr = g.initial_lr * self.fn(self.last_epoch) end
end

--- step(): advance the epoch by one and set the groups' lr (call it after opt:step()).
function LambdaLR:step()
  self.last_epoch = self.last_epoch + 1
  self:_apply()
end

--- get_last_lr() -> list of the groups' current lr.
function LambdaLR:get_last_lr()
  local out = {}
  for i, g in ipairs(self.optimizer.param_groups) do out[i] = g.lr end
  return out
end

function LambdaLR:state_dict() return { last_epoch = self.last_epoch } end
function LambdaLR:load_state_dict(sd)
  self.last_epoch = sd.last_epoch
  self:_apply()
end

return M
