-- scripts/main.lua - the main job of `make run`.
--
-- Until the MILE experiment lands (the experiment issue replaces this file), it is
-- a short demo of the stack underneath it: a two-layer network built from tensor
-- ops, trained with reverse-mode autograd and plain SGD to fit y = sin(3 x1) * x2.
local tensor = require "mile.tensor"
local ag = require "mile.autograd"
local sys = require "mile.sys"

local gen = tensor.Generator(2026)
local n, hidden, steps, lr = 512, 64, 2000, 0.1

-- data: x uniform in [-1, 1]^2, target sin(3 x1) * x2
local x = tensor.rand({ n, 2 }, gen) * 2 - 1
local y = ag.no_grad(function()
  local s = {}
  for i, row in ipairs(x:totable()) do s[i] = { math.sin(3 * row[1]) * row[2] } end
  return tensor.from(s)
end)

-- parameters, initialised like PyTorch's Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
local function uniform(shape, fan_in)
  local bound = 1 / math.sqrt(fan_in)
  return tensor.rand(shape, gen):mul(2 * bound):sub(bound):requires_grad(true)
end
local w1, b1 = uniform({ hidden, 2 }, 2), uniform({ hidden }, 2)
local w2, b2 = uniform({ 1, hidden }, hidden), uniform({ 1 }, hidden)
local params = { w1, b1, w2, b2 }

local function predict(input) return input:linear(w1, b1):tanh():linear(w2, b2) end

local t0 = sys.monotonic()
local loss
for step = 1, steps do
  loss = ((predict(x) - y) ^ 2):mean()
  for _, p in ipairs(params) do p:zero_grad() end
  loss:backward()
  ag.no_grad(function()
    for _, p in ipairs(params) do p:copy_(p - p.grad * lr) end
  end)
  if step == 1 or step % 500 == 0 then
    print(("step %4d  mse %.5f"):format(step, loss:item()))
  end
end
local elapsed = sys.monotonic() - t0
print(("trained %d steps on %d points in %.2f s (%.0f steps/s); final mse %.5f (target variance %.5f)")
  :format(steps, n, elapsed, steps / elapsed, loss:item(), ag.no_grad(function()
    return ((y - y:mean()) ^ 2):mean():item()
  end)))
