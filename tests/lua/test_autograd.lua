-- mile.autograd from Lua: backward, .grad, no_grad, retain_graph, custom Lua ops,
-- errors inside a Lua backward, gradcheck against finite differences.
local T = require "testing"
local tensor = require "mile.tensor"
local ag = require "mile.autograd"

local gen = tensor.Generator(11)
local function leaf(shape) return tensor.randn(shape, gen, "float64"):requires_grad(true) end

T.test("backward of a scalar accumulates .grad of leaves (closed form)", function()
  local x = tensor.from({ 1, 2, 3 }, "float64"):requires_grad(true)
  local y = (x * x):sum() -- dy/dx = 2x
  y:backward()
  T.eq(x.grad:totable(), { 2, 4, 6 })
  ;(x * 3):sum():backward() -- accumulates
  T.eq(x.grad:totable(), { 5, 7, 9 })
  x:zero_grad()
  T.eq(x.grad, nil)
  T.eq(x.is_leaf, true)
  T.eq((x * 2).grad_fn, "mul")
end)

T.test("broadcasting reduces gradients back to the input's shape", function()
  local a = tensor.ones({ 2, 3 }, "float64"):requires_grad(true)
  local b = tensor.from({ 1, 2, 3 }, "float64"):requires_grad(true)
  ;(a * b):sum():backward()
  T.eq(b.grad:totable(), { 2, 2, 2 })
  T.eq(a.grad:totable(), { { 1, 2, 3 }, { 1, 2, 3 } })
end)

T.test("retain_graph allows a second backward; without it the graph is freed", function()
  local x = tensor.from({ 2 }, "float64"):requires_grad(true)
  local y = (x:exp() * x):sum()
  y:backward { retain_graph = true }
  y:backward()
  local want = 2 * (math.exp(2) + 2 * math.exp(2))
  T.near(x.grad:totable(), { want }, 1e-12)
  T.raises(function() y:backward() end, "already freed")
end)

T.test("explicit seed gradient for a non-scalar root", function()
  local x = tensor.from({ 1, 2 }, "float64"):requires_grad(true)
  local y = x * 3
  y:backward(tensor.from({ 1, 10 }, "float64"))
  T.eq(x.grad:totable(), { 3, 30 })
  T.raises(function() (x * 2):backward() end, "pass a gradient")
  T.raises(function() (x * 2):backward(tensor.zeros({ 3 }, "float64")) end, "gradient of shape {3}")
end)

T.test("no_grad records nothing, as a function and as a to-be-closed guard", function()
  local x = leaf { 3 }
  local y = ag.no_grad(function() return x * 2 end)
  T.eq(y:requires_grad(), false)
  do
    local _ <close> = ag.no_grad()
    T.eq(ag.grad_enabled(), false)
    T.eq((x + 1):requires_grad(), false)
  end
  T.eq(ag.grad_enabled(), true)
  pcall(ag.no_grad, function() error("boom") end)
  T.eq(ag.grad_enabled(), true) -- restored after an error
  T.eq(x:detach():requires_grad(), false)
end)

T.test("in-place change of a saved tensor is an error, not a wrong gradient", function()
  local x = leaf { 3 }
  local w = tensor.ones({ 3 }, "float64")
  local y = (x * w):sum()
  w:fill_(2)
  T.raises(function() y:backward() end, "modified in place")
end)

T.test("gradcheck passes for the differentiable ops, incl. broadcasting and strided inputs", function()
  local a, b, m = leaf { 3, 4 }, leaf { 4 }, leaf { 4, 2 }
  local pos = (tensor.rand({ 3, 4 }, gen, "float64") + 0.5):requires_grad(true)
  local cases = {
    { "add/mul broadcast", function(x, y) return x * y + y end, { a, b } },
    { "sub/div", function(x, y) return (x - y) / (y * y + 1) end, { a, b } },
    { "pow", function(x) return x ^ 3 end, { a } },
    { "pow exponent", function(x, y) return x ^ (y:sigmoid():view { 1, 4 }) end, { pos, b } },
    { "unary chain", function(x) return x:tanh() + x:sigmoid() + x:exp() * 0.1 + x:softplus() end, { a } },
    { "log family", function(x) return x:log() + x:log1p() + x:sqrt() + x:expm1() end, { pos } },
    { "normal cdf", function(x) return x:normal_cdf() + (x * 5 - 20):log_normal_cdf() end, { a } },
    { "abs/relu away from 0", function(x) return (x + 3):relu() + (x - 5):abs() end, { a } },
    { "maximum/minimum", function(x, y) return x:maximum(y) + x:minimum(y * 0.5) end, { a, b } },
    { "clamp", function(x) return x:clamp(-0.5, 0.5) end, { a } },
    { "where", function(x, y) return tensor.where(x:gt(0), x * 2, y) end, { a, b } },
    { "sum/mean dims", function(x) return x:sum(1) * x:mean(2, true) end, { a } },
    { "max/min dim", function(x) return x:max(2) + x:min(1):sum() end, { a } },
    { "logsumexp", function(x) return x:logsumexp(2) end, { a } },
    { "softmax", function(x) return x:softmax(2) * x end, { a } },
    { "log_softmax", function(x) return x:log_softmax(1) end, { a } },
    { "matmul", function(x, y) return x:matmul(y) end, { a, m } },
    { "matmul transposed", function(x, y) return y:t():matmul(x:t()) end, { a, m } },
    { "batched matmul", function(x, y) return x:view { 1, 3, 4 }:expand { 2, 3, 4 }:matmul(y) end, { a, m } },
    { "linear", function(x, w, bias) return x:linear(w, bias) end, { a, m:t():contiguous():detach():requires_grad(true), leaf { 2 } } },
    { "views", function(x) return x:t():narrow(1, 2, 2):select(2, 3) + x:view { 12 }:narrow(1, 1, 2) end, { a } },
    { "permute/reshape", function(x) return x:view { 3, 2, 2 }:permute { 3, 1, 2 }:reshape { 12 } end, { a } },
    { "unsqueeze/squeeze/expand", function(x) return x:unsqueeze(1):expand { 2, 3, 4 }:squeeze() end, { a } },
    { "gather", function(x) return x:gather(2, tensor.from({ { 1, 4 }, { 2, 2 }, { 3, 1 } }, "float64")) end, { a } },
    { "index_select", function(x) return x:index_select(1, { 3, 1, 3 }) end, { a } },
    { "cat", function(x, y) return tensor.cat({ x, y:view { 1, 4 } }, 1) end, { a, b } },
    { "dtype round trip", function(x) return x:float():double() * 1 end, { a } },
  }
  for _, c in ipairs(cases) do
    -- float32 in the middle of a computation needs a coarser step to be visible
    local coarse = c[1] == "dtype round trip"
    local ok, msg = ag.gradcheck(c[2], c[3], { eps = coarse and 1e-2 or 1e-6, atol = coarse and 1e-3 or 1e-6, rtol = 1e-4 })
    T.truthy(ok, c[1] .. ": " .. tostring(msg))
  end
end)

T.test("gradcheck catches a wrong gradient", function()
  local Wrong = ag.Function {
    forward = function(ctx, x) return x * x end,
    backward = function(ctx, g) return g end, -- should be 2 x g
  }
  local ok, msg = ag.gradcheck(function(x) return Wrong(x) end, { leaf { 3 } })
  T.eq(ok, false)
  T.truthy(msg:find("analytic"), msg)
end)

T.test("a Lua-defined softplus matches the built-in composition in value and gradient", function()
  local Softplus = ag.Function {
    name = "my_softplus",
    forward = function(ctx, x)
      ctx:save_for_backward(x)
      return (x:exp() + 1):log()
    end,
    backward = function(ctx, g) return g * ctx.saved[1]:sigmoid() end,
  }
  local x1 = tensor.from({ -3, -0.5, 0, 0.7, 4 }, "float64"):requires_grad(true)
  local x2 = x1:detach():clone():requires_grad(true)
  local y1, y2 = Softplus(x1), x2:softplus()
  T.eq(y1.grad_fn, "my_softplus")
  T.near(y1:totable(), y2:totable(), 1e-12)
  ;(y1 * y1):sum():backward()
  ;(y2 * y2):sum():backward()
  T.near(x1.grad:totable(), x2.grad:totable(), 1e-12)
  T.truthy(ag.gradcheck(function(x) return Softplus(x) end, { x1 }))
end)

T.test("a custom op with several inputs and a non-tensor argument", function()
  local Scale = ag.Function {
    forward = function(ctx, x, y, k)
      ctx:save_for_backward(x, y)
      ctx.k = k
      return x * y * k
    end,
    backward = function(ctx, g)
      local x, y = ctx.saved[1], ctx.saved[2]
      return g * y * ctx.k, g * x * ctx.k, nil
    end,
  }
  local x, y = leaf { 4 }, leaf { 4 }
  T.truthy(ag.gradcheck(function(a, b) return Scale(a, b, 2.5) end, { x, y }))
end)

T.test("an error inside a Lua backward becomes an error of backward(), and nothing leaks", function()
  local Bad = ag.Function {
    forward = function(ctx, x) return x * 1 end,
    backward = function(ctx, g) error("my backward broke") end,
  }
  local x = leaf { 2 }
  local y = Bad(x):sum()
  T.raises(function() y:backward() end, "my backward broke")
  local WrongShape = ag.Function {
    forward = function(ctx, x) return x * 1 end,
    backward = function(ctx, g) return tensor.zeros({ 5 }, "float64") end,
  }
  T.raises(function() WrongShape(x):sum():backward() end, "gradient of shape {5} for argument 1 of shape {2}")
  -- the graph is still usable by a healthy op afterwards
  ;(x * 2):sum():backward()
  T.eq(x.grad:totable(), { 2, 2 })
end)

T.test("requires_grad only on leaves", function()
  local x = leaf { 2 }
  T.raises(function() (x * 2):requires_grad(false) end, "only leaf tensors")
  T.raises(function() tensor.zeros(2):backward() end, "does not require grad")
end)

T.run()
