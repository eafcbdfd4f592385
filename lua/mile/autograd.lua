--- mile.autograd: grad mode, custom ops written in Lua, and a gradient checker.
--
--   local ag = require "mile.autograd"
--   local y = ag.no_grad(function() return net(x) end)    -- no graph recorded
--   do local _ <close> = ag.no_grad() ... end              -- same, for a block
--   local Softplus = ag.Function{
--     forward  = function(ctx, x) ctx:save_for_backward(x); return (x:exp() + 1):log() end,
--     backward = function(ctx, g) local x = ctx.saved[1]; return g * x:sigmoid() end,
--   }
--   local y = Softplus(x)
local core = require "mile.autograd.core"
local T = require "mile.tensor"

local M = {}

M.grad_enabled = core.grad_enabled
M.set_grad_enabled = core.set_grad_enabled

-- A to-be-closed guard that restores the previous grad mode, even on error.
local function mode_guard(enabled)
  local previous = core.set_grad_enabled(enabled)
  return setmetatable({}, { __close = function() core.set_grad_enabled(previous) end })
end

local function with_mode(enabled, fn, ...)
  if fn == nil then return mode_guard(enabled) end
  local _ <close> = mode_guard(enabled)
  return fn(...)
end

--- no_grad(fn, ...) runs fn with grad mode off and returns its results;
--- no_grad() returns a guard for `local _ <close> = ag.no_grad()`.
function M.no_grad(fn, ...) return with_mode(false, fn, ...) end
--- enable_grad: the opposite, e.g. inside a no_grad region.
function M.enable_grad(fn, ...) return with_mode(true, fn, ...) end

--- Function{forward = f(ctx, ...), backward = b(ctx, grad_output), name = "softplus"}
-- forward runs with grad mode off and returns one tensor; backward returns one
-- gradient per forward argument (nil for arguments that are not tensors or need none).
-- ctx:save_for_backward(...) keeps tensors in ctx.saved; ctx.needs_input_grad[i]
-- tells which arguments require grad. Other fields of ctx are free for the op's use,
-- the forward's output included: the caller gets a new tensor sharing its storage
-- (the one the graph node hangs on), so ctx cannot keep its own node alive.
function M.Function(def)
  assert(type(def) == "table" and type(def.forward) == "function" and type(def.backward) == "function",
    "Function: needs a table with forward and backward functions")
  local name = def.name or "lua_function"
  local F = { forward = def.forward, backward = def.backward, name = name }

  function F.apply(...)
    local n = select("#", ...)
    local args = { ... }
    local ctx = { saved = {}, needs_input_grad = {} }
    function ctx.save_for_backward(self, ...) self.saved = { ... } end
    local inputs, positions = {}, {}
    for i = 1, n do
      local a = args[i]
      if T.is_tensor(a) then
        inputs[#inputs + 1] = a
        positions[#inputs] = i
        ctx.needs_input_grad[i] = a:requires_grad()
      else
        ctx.needs_input_grad[i] = false
      end
    end
    local out = M.no_grad(def.forward, ctx, table.unpack(args, 1, n))
    if not T.is_tensor(out) then
      error(name .. ": forward must return a tensor, got " .. type(out), 2)
    end
    if not core.grad_enabled() or #inputs == 0 then return out end
    -- The node goes on a fresh alias of out that only the caller holds. The node keeps
    -- the backward closure (and ctx) through the registry, where the collector cannot
    -- trace it: had ctx (a field, ctx.saved, an upvalue) reached the node's own tensor,
    -- tensor -> node -> closure -> ctx -> tensor would never be collected. The alias
    -- also covers a forward that returned an input as it is.
    out = out:detach()
    core.attach(out, inputs, function(g)
      local grads = table.pack(def.backward(ctx, g))
      local per_input = {}
      for k, pos in ipairs(positions) do
        local gk = grads[pos]
        if gk ~= nil and not T.is_tensor(gk) then
          error(string.format("%s: backward returned %s for argument %d, expected a tensor or nil", name, type(gk), pos))
        end
        if gk ~= nil then
          local want, got = inputs[k]:shape(), gk:shape()
          if #want ~= #got or table.concat(want, ",") ~= table.concat(got, ",") then
            error(string.format("%s: backward returned a gradient of shape {%s} for argument %d of shape {%s}",
              name, table.concat(got, ","), pos, table.concat(want, ",")))
          end
        end
        per_input[k] = gk
      end
      return table.unpack(per_input, 1, #positions)
    end, name)
    return out
  end

  return setmetatable(F, { __call = function(_, ...) return F.apply(...) end })
end

--- grad(outputs_fn, inputs): gradients of the scalar fn(inputs...) w.r.t. inputs,
--- as a list of tensors (a convenience over backward + .grad).
function M.grad(fn, inputs)
  for _, x in ipairs(inputs) do x:zero_grad() end
  local y = fn(table.unpack(inputs))
  y:backward()
  local out = {}
  for i, x in ipairs(inputs) do out[i] = x.grad end
  return out
end

--- gradcheck(f, inputs, {eps=1e-6, atol=1e-5, rtol=1e-3}): compares the analytic
-- gradient of sum(f(inputs...) * w) (w a fixed random weight, so every output
-- element matters) with central finite differences in float64. Inputs must be
-- float64 leaves that require grad. Returns true, or false and a message naming the
-- input, element and both values.
function M.gradcheck(f, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  for i, x in ipairs(inputs) do
    if x:dtype() ~= "float64" then return false, ("gradcheck: input %d is %s, needs float64"):format(i, x:dtype()) end
  end
  local gen = T.Generator(opts.seed or 1234)
  local probe = f(table.unpack(inputs))
  local w = T.rand(probe:shape(), gen, "float64") + 0.5
  local function objective()
    return M.no_grad(function() return (f(table.unpack(inputs)) * w):sum():item() end)
  end
  for _, x in ipairs(inputs) do x:zero_grad() end
  local y = (f(table.unpack(inputs)) * w):sum()
  y:backward()
  for i, x in ipairs(inputs) do
    if x:requires_grad() then
      local analytic = x.grad
      local flat = x:contiguous():view { -1 } -- a view of x when x is contiguous
      if flat:storage_id() ~= x:storage_id() then
        return false, ("gradcheck: input %d must be contiguous"):format(i)
      end
      for k = 1, x:numel() do
        local orig = flat[k]
        flat[k] = orig + eps
        local up = objective()
        flat[k] = orig - eps
        local down = objective()
        flat[k] = orig
        local numeric = (up - down) / (2 * eps)
        local a = analytic and analytic:contiguous():view { -1 }[k] or 0
        if math.abs(a - numeric) > atol + rtol * math.abs(numeric) then
          return false, ("gradcheck: input %d element %d: analytic %.10g, numeric %.10g"):format(i, k, a, numeric)
        end
      end
    end
  end
  return true
end

return M
