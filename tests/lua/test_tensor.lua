-- mile.tensor from Lua: constructors, views, ops, 1-based indexing, printing, errors.
-- Numbers are checked against plain Lua arithmetic, never against mile itself.
local T = require "testing"
local mile = require "mile"
local tensor = mile.tensor

-- plain Lua helpers: the independent side of every comparison
local function map2(a, b, f)
  local out = {}
  for i = 1, #a do
    out[i] = type(a[i]) == "table" and map2(a[i], b[i], f) or f(a[i], b[i])
  end
  return out
end

T.test("constructors give the requested shapes, dtypes and values", function()
  local z = tensor.zeros { 2, 3 }
  T.eq(z:shape(), { 2, 3 })
  T.eq(z:dtype(), "float32")
  T.eq(z:totable(), { { 0, 0, 0 }, { 0, 0, 0 } })
  T.eq(tensor.ones(2, 2, "float64"):totable(), { { 1, 1 }, { 1, 1 } })
  T.eq(tensor.ones(2, 2, "float64"):dtype(), "float64")
  T.eq(tensor.full({ 3 }, 7.5):totable(), { 7.5, 7.5, 7.5 })
  T.eq(tensor.arange(4):totable(), { 0, 1, 2, 3 })
  T.eq(tensor.arange(1, 2, 0.25):totable(), { 1, 1.25, 1.5, 1.75 })
  T.eq(tensor.from({ { 1, 2 }, { 3, 4 } }, "float64"):totable(), { { 1, 2 }, { 3, 4 } })
  T.eq(tensor.scalar(3):dim(), 0)
  T.eq(tensor.scalar(3):item(), 3)
  T.eq(tensor.from({}):shape(), { 0 })
end)

T.test("from rejects ragged tables and non-numbers with the element's path", function()
  T.raises(function() tensor.from { { 1, 2 }, { 3 } } end, "ragged")
  T.raises(function() tensor.from { 1, "x", 3 } end, "element %[2%] is string, not a number")
  T.raises(function() tensor.from { { 1, 2 }, { 3, {} } } end, "element %[2%]%[2%] is table")
  T.raises(function() tensor.from({ 1 }, "int8") end, "invalid option 'int8'")
end)

T.test("1-based indexing reads and writes elements and rows", function()
  local a = tensor.from { { 1, 2, 3 }, { 4, 5, 6 } }
  T.eq(#a, 2)
  T.eq(a[2]:totable(), { 4, 5, 6 })
  T.eq(a[2][3], 6)
  a[1][2] = 20
  T.eq(a:totable(), { { 1, 20, 3 }, { 4, 5, 6 } })
  a[2] = 0
  T.eq(a:totable(), { { 1, 20, 3 }, { 0, 0, 0 } })
  T.raises(function() return a[3] end, "index 3 out of range")
  T.raises(function() return a[0] end, "out of range")
  T.raises(function() return a[1][4] end, "out of range")
  T.raises(function() return a[1.5] end, "not an integer")
end)

T.test("views share storage; reshape copies only when needed", function()
  local a = tensor.arange(6):view { 2, 3 }
  local t = a:t()
  T.eq(t:shape(), { 3, 2 })
  T.eq(t:storage_id(), a:storage_id())
  T.eq(t:is_contiguous(), false)
  T.eq(t:totable(), { { 0, 3 }, { 1, 4 }, { 2, 5 } })
  T.raises(function() t:view { 6 } end, "use reshape")
  local r = t:reshape { 6 }
  T.eq(r:totable(), { 0, 3, 1, 4, 2, 5 })
  T.truthy(r:storage_id() ~= a:storage_id())
  T.eq(a:view { 3, -1 }:shape(), { 3, 2 })
  T.eq(a:narrow(2, 2, 2):totable(), { { 1, 2 }, { 4, 5 } })
  T.eq(a:select(1, 2):totable(), { 3, 4, 5 })
  T.eq(a:unsqueeze(1):shape(), { 1, 2, 3 })
  T.eq(a:unsqueeze(3):shape(), { 2, 3, 1 })
  T.eq(a:unsqueeze(1):squeeze():shape(), { 2, 3 })
  T.eq(tensor.from({ 1, 2 }):view { 2, 1 }:expand { 2, 3 }:totable(), { { 1, 1, 1 }, { 2, 2, 2 } })
  T.eq(tensor.arange(24):view { 2, 3, 4 }:permute { 3, 1, 2 }:shape(), { 4, 2, 3 })
  -- writes through a view reach the base
  a:narrow(1, 2, 1):fill_(9)
  T.eq(a:totable(), { { 0, 1, 2 }, { 9, 9, 9 } })
  -- a view outlives its base (the core's refcount keeps the storage)
  local v = tensor.arange(5):narrow(1, 2, 3)
  collectgarbage(); collectgarbage()
  T.eq(v:totable(), { 1, 2, 3 })
end)

T.test("elementwise ops broadcast like NumPy", function()
  local a = tensor.from({ { 1, 2, 3 }, { 4, 5, 6 } }, "float64")
  local row = tensor.from({ 10, 20, 30 }, "float64")
  local col = tensor.from({ { 1 }, { 2 } }, "float64")
  T.eq((a + row):totable(), { { 11, 22, 33 }, { 14, 25, 36 } })
  T.eq((a * col):totable(), { { 1, 2, 3 }, { 8, 10, 12 } })
  T.eq((a - 1):totable(), { { 0, 1, 2 }, { 3, 4, 5 } })
  T.eq((1 - a):totable(), { { 0, -1, -2 }, { -3, -4, -5 } })
  T.eq((2 / a)[1]:totable(), { 2, 1, 2 / 3 })
  T.eq((-a)[2]:totable(), { -4, -5, -6 })
  T.eq((a ^ 2)[1]:totable(), { 1, 4, 9 })
  T.eq((row + col):shape(), { 2, 3 })
  T.eq(a:gt(3):totable(), { { 0, 0, 0 }, { 1, 1, 1 } })
  T.eq(a:clamp(2, 5):totable(), { { 2, 2, 3 }, { 4, 5, 5 } })
  T.eq(a:clamp(nil, 2)[2]:totable(), { 2, 2, 2 })
  T.eq(tensor.where(a:gt(3), a, 0):totable(), { { 0, 0, 0 }, { 4, 5, 6 } })
  T.eq(a:maximum(row / 10 + 2):totable(), { { 3, 4, 5 }, { 4, 5, 6 } })
  local vals = { -2, -0.5, 0, 0.5, 3 }
  local x = tensor.from(vals, "float64")
  local function each(f) local out = {} for i, v in ipairs(vals) do out[i] = f(v) end return out end
  T.near(x:exp():totable(), each(math.exp), 1e-12)
  T.near(x:tanh():totable(), each(function(v) return (math.exp(2 * v) - 1) / (math.exp(2 * v) + 1) end), 1e-12)
  T.near(x:sigmoid():totable(), each(function(v) return 1 / (1 + math.exp(-v)) end), 1e-12)
  T.near(x:relu():totable(), each(function(v) return math.max(v, 0) end), 0)
  T.near(x:abs():totable(), each(math.abs), 0)
  T.near(x:softplus():totable(), each(function(v) return math.log(1 + math.exp(v)) end), 1e-12)
  T.near((x + 3):log():totable(), each(function(v) return math.log(v + 3) end), 1e-12)
  T.near((x + 3):sqrt():totable(), each(function(v) return math.sqrt(v + 3) end), 1e-12)
  T.raises(function() return a + tensor.zeros({ 4 }, "float64") end, "add: shapes {2,3} and {4} do not broadcast")
  T.raises(function() return a + tensor.zeros { 3 } end, "add: dtypes float64 and float32 differ")
  T.raises(function() return a + "x" end, "add: expected tensors or numbers")
end)

T.test("reductions over all dims and one dim, with keepdim and 1-based arg indices", function()
  local rows = { { 3, 1, 4 }, { 1, 5, 9 } }
  local a = tensor.from(rows, "float64")
  T.eq(a:sum():item(), 23)
  T.eq(a:sum(1):totable(), { 4, 6, 13 })
  T.eq(a:sum(2, true):totable(), { { 8 }, { 15 } })
  T.eq(a:mean(2):totable(), { 8 / 3, 5 })
  local v, i = a:max(2)
  T.eq(v:totable(), { 4, 9 })
  T.eq(i:totable(), { 3, 3 })
  local mv, mi = a:min(1)
  T.eq(mv:totable(), { 1, 1, 4 })
  T.eq(mi:totable(), { 2, 1, 1 })
  T.eq(a:argmax():item(), 6)
  T.eq(a:argmin(2):totable(), { 2, 1 })
  T.near(a:logsumexp(2):totable(), { math.log(math.exp(3) + math.exp(1) + math.exp(4)),
    math.log(math.exp(1) + math.exp(5) + math.exp(9)) }, 1e-12)
  T.eq(a:sum(-1):totable(), { 8, 15 })
  T.raises(function() a:sum(3) end, "dim 3 out of range for a 2%-d tensor")
end)

T.test("softmax and log_softmax match the textbook formulas, also for huge logits", function()
  local x = tensor.from({ { 1, 2, 3 }, { 1000, 1000, -1000 } }, "float64")
  local p = x:softmax(2):totable()
  local z = math.exp(1) + math.exp(2) + math.exp(3)
  T.near(p[1], { math.exp(1) / z, math.exp(2) / z, math.exp(3) / z }, 1e-12)
  T.near(p[2], { 0.5, 0.5, 0 }, 1e-12)
  T.near(x:log_softmax(2):totable()[2], { -math.log(2), -math.log(2), -2000 - math.log(2) }, 1e-9)
end)

T.test("gather, index_select and cat take 1-based indices", function()
  local a = tensor.from { { 10, 11, 12 }, { 20, 21, 22 } }
  T.eq(a:gather(2, tensor.from { { 3 }, { 1 } }):totable(), { { 12 }, { 20 } })
  T.eq(a:index_select(2, { 3, 1 }):totable(), { { 12, 10 }, { 22, 20 } })
  T.eq(a:index_select(1, tensor.from { 2 }):totable(), { { 20, 21, 22 } })
  T.raises(function() a:gather(2, tensor.from { { 4 }, { 1 } }) end, "out of range")
  T.eq(tensor.cat({ a, a:narrow(1, 1, 1) }):totable(), { { 10, 11, 12 }, { 20, 21, 22 }, { 10, 11, 12 } })
  T.eq(tensor.cat({ a, a }, 2):shape(), { 2, 6 })
  T.raises(function() tensor.cat { a, tensor.zeros { 2, 2 } } end, "cat: tensor 2 has shape {2,2}")
end)

T.test("matmul and linear against plain loops, 2-d and batched", function()
  local gen = tensor.Generator(7)
  local A = tensor.randn({ 4, 5 }, gen, "float64")
  local B = tensor.randn({ 5, 3 }, gen, "float64")
  local a, b = A:totable(), B:totable()
  local want = {}
  for i = 1, 4 do
    want[i] = {}
    for j = 1, 3 do
      local s = 0
      for k = 1, 5 do s = s + a[i][k] * b[k][j] end
      want[i][j] = s
    end
  end
  T.near(A:matmul(B):totable(), want, 1e-12)
  T.near(B:t():matmul(A:t()):t():totable(), want, 1e-12) -- transposed operands go to BLAS as transposes
  local bias = tensor.from({ 1, 2, 3 }, "float64")
  local lin = A:linear(B:t(), bias):totable()
  T.near(lin, map2(want, { { 1, 2, 3 }, { 1, 2, 3 }, { 1, 2, 3 }, { 1, 2, 3 } }, function(x, y) return x + y end), 1e-12)
  local batched = tensor.cat({ A:unsqueeze(1), (A * 2):unsqueeze(1) }):matmul(B)
  T.eq(batched:shape(), { 2, 4, 3 })
  T.near(batched[2]:totable(), map2(want, want, function(x, y) return x + y end), 1e-12)
  T.raises(function() A:matmul(A) end, "matmul: shapes {4,5} and {4,5} do not match")
  T.raises(function() A:linear(B) end, "linear: input {4,5} does not match weight {5,3}")
end)

T.test("dtype conversion and copies", function()
  local a = tensor.from({ 1.5, 2.25 }, "float64")
  T.eq(a:float():dtype(), "float32")
  T.eq(a:to("float32"):totable(), { 1.5, 2.25 })
  local b = tensor.zeros(2)
  b:copy_(a)
  T.eq(b:totable(), { 1.5, 2.25 })
  T.raises(function() b:copy_(tensor.zeros(3)) end, "copy: shapes {2} and {3} do not broadcast")
end)

T.test("random generators are explicit and reproducible", function()
  local g1, g2 = tensor.Generator(42), tensor.Generator(42)
  T.eq(tensor.randn({ 5 }, g1):totable(), tensor.randn({ 5 }, g2):totable())
  T.truthy(tensor.rand({ 5 }, g1):totable()[1] ~= tensor.rand({ 5 }, tensor.Generator(43)):totable()[1])
  local u = tensor.rand({ 10000 }, tensor.Generator(1), "float64")
  T.near(u:mean():item(), 0.5, 0.02)
  local n = tensor.randn({ 10000 }, tensor.Generator(2), "float64")
  T.near(n:mean():item(), 0, 0.03)
  T.near((n * n):mean():item(), 1, 0.05)
  local counts = { 0, 0, 0 }
  local g = tensor.Generator(3)
  local probs = tensor.from { { 0.2, 0.5, 0.3 } }
  for _ = 1, 3000 do
    local c = g:categorical(probs)[1] -- 0-based category, like an env action
    counts[c + 1] = counts[c + 1] + 1
  end
  T.near({ counts[1] / 3000, counts[2] / 3000, counts[3] / 3000 }, { 0.2, 0.5, 0.3 }, 0.03)
  local perm = g:permutation(10)
  table.sort(perm)
  T.eq(perm, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 })
end)

T.test("tostring prints values like Torch7 and summarises large tensors", function()
  local s = tostring(tensor.from { { 1, 2 }, { 3, 4 } })
  T.truthy(s:find("1  2\n", 1, true), s)
  T.truthy(s:find("[mile.tensor of size 2x2 float32]", 1, true), s)
  local big = tostring(tensor.zeros { 100, 100 })
  T.truthy(big:find("...", 1, true) and #big < 1000, "summarised: " .. #big .. " chars")
  T.truthy(tostring(tensor.zeros { 2, 2, 2 }):find("(2,.,.) =", 1, true))
end)

T.test("wrong argument types name the function and the argument", function()
  T.raises(function() tensor.zeros { 2, "a" } end, "shape entry 2 is string")
  T.raises(function() tensor.zeros(2).exp(3) end, "mile.tensor expected, got number")
  T.raises(function() tensor.zeros { -1 } end, "negative size")
  T.raises(function() tensor.zeros { 1, 1, 1, 1, 1, 1, 1, 1, 1 } end, "at most 8")
  T.raises(function() tensor.zeros(2, 3):view { 4 } end, "view")
  T.raises(function() tensor.zeros(2, 3):item() end, "item: tensor of shape {2,3} has 6 elements")
end)

T.run()
