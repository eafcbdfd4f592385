-- Hostile arguments at the edges of int64 (issue 12): sizes, dims and indices that
-- overflow are clear errors, never wrapped values that reach memory; custom
-- autograd ops whose ctx keeps their output are collected. Each case here crashed,
-- was silently accepted or leaked before the fix.
local T = require "testing"
local tensor = require "mile.tensor"
local ag = require "mile.autograd"

local BIG = 1 << 62

T.test("permute: dims that do not fit an int are errors, not truncated", function()
  local t = tensor.zeros(2, 3)
  T.raises(function() return t:permute { 4294967298, 1 } end, "permute: dim 4294967298 out of range")
  T.raises(function() return t:permute { math.mininteger, 1 } end, "out of range")
  T.raises(function() return t:permute { 1, 1 } end, "permutation")
  T.eq(t:permute { 2, 1 }:shape(), { 3, 2 })
end)

T.test("narrow: starts and lengths that overflow are errors", function()
  local t = tensor.zeros(4)
  T.raises(function() return t:narrow(1, math.mininteger, 1) end, "narrow: start")
  T.raises(function() return t:narrow(1, math.maxinteger, 1) end, "narrow: start")
  T.raises(function() return t:narrow(1, 2, math.maxinteger) end, "narrow")
  T.raises(function() return t:narrow(1, 2, math.mininteger) end, "narrow")
  T.eq(t:narrow(1, 5, 0):numel(), 0)
  T.eq(t:narrow(1, 2, 3):numel(), 3)
  T.raises(function() return t:select(1, math.mininteger) end, "select: index")
  T.raises(function() return t[math.maxinteger] end, "out of range")
  T.raises(function() return t:unsqueeze(math.mininteger) end, "unsqueeze")
  T.raises(function() return t:size(math.mininteger) end, "out of range")
end)

T.test("view, reshape and expand to shapes whose element count wraps are errors", function()
  local t = tensor.zeros(4)
  -- (2^62 + 1) * 4 wraps to 4 in int64
  T.raises(function() return t:view { BIG + 1, 4 } end, "view")
  T.raises(function() return t:reshape { BIG + 1, 4 } end, "reshape")
  T.raises(function() return t:view { -1, BIG, 4 } end, "view")
  T.raises(function() return tensor.zeros(1, 1):expand { BIG + 1, 4 } end, "expand")
  T.raises(function() return tensor.zeros(1):expand { 1 << 41 } end, "2%^40")
  T.eq(tensor.zeros(1, 1):expand { 1 << 20, 1 << 20 }:numel(), 1 << 40) -- a view: no memory
end)

T.test("constructors refuse more than 2^40 elements with a clear error", function()
  T.raises(function() return tensor.zeros { 1 << 21, 1 << 21 } end, "2%^40 elements")
  T.raises(function() return tensor.empty(BIG, BIG, 4) end, "2%^40")
  T.raises(function() return tensor.arange(0, 1e13) end, "too many")
  -- nested tables sharing one row: 1000^7 values wraps int64 (used to overflow the heap)
  local level = {}
  for i = 1, 1000 do level[i] = 0 end
  for _ = 1, 6 do
    local up = {}
    for i = 1, 1000 do up[i] = level end
    level = up
  end
  T.raises(function() return tensor.from(level) end, "2%^40")
end)

T.test("Generator:integer covers the whole int64 range without dividing by zero", function()
  local g = tensor.Generator(3)
  local neg, pos = 0, 0
  for _ = 1, 200 do
    local v = g:integer(math.mininteger, math.maxinteger)
    T.eq(math.type(v), "integer")
    if v < 0 then neg = neg + 1 else pos = pos + 1 end
  end
  T.truthy(neg > 50 and pos > 50, ("signs %d / %d"):format(neg, pos))
  for _ = 1, 100 do
    local v = g:integer(math.maxinteger - 2, math.maxinteger)
    T.truthy(v >= math.maxinteger - 2)
    v = g:integer(math.mininteger, math.mininteger + 1)
    T.truthy(v <= math.mininteger + 1)
    v = g:integer(-3, 3)
    T.truthy(v >= -3 and v <= 3)
  end
  T.eq(g:integer(5, 5), 5)
  T.raises(function() return g:integer(2, 1) end, "interval is empty")
end)

T.test("Generator:permutation of a size whose bytes overflow is an error", function()
  local g = tensor.Generator(1)
  T.raises(function() return g:permutation(1 << 61) end, "too large")
  T.raises(function() return g:permutation(math.maxinteger) end, "too large")
  T.eq(#g:permutation(5), 5)
end)

T.test("bindings range-check integers before narrowing them", function()
  local optim = require "mile.optim.core"
  local p = tensor.ones(2):requires_grad(true)
  p:set_grad(tensor.ones(2))
  local m, v = tensor.zeros(2), tensor.zeros(2)
  T.raises(function() return optim.adam({ p }, { m }, { v }, { math.maxinteger }, 0.1, 0.9, 0.999, 1e-8, 0, false) end,
    "steps%[1%]")
  T.eq(p:totable(), { 1, 1 }) -- checked before anything was updated
  local iv = require "mile.intervention.core"
  local packed, act = tensor.zeros(3, 4), tensor.zeros(3)
  T.raises(function() return iv.take(packed, act, math.mininteger) end, "offset out of range")
  T.raises(function() return iv.take(packed, act, 2, nil, math.maxinteger) end, "width out of range")
  T.eq(iv.take(packed, act, 2, nil, 2):shape(), { 3 })
  local sys = require "mile.sys"
  T.eq(sys.isatty(math.maxinteger), false)
end)

T.test("a custom op whose ctx keeps its output is collected with its graph", function()
  local finalized = 0
  local Keep = ag.Function {
    name = "keep",
    forward = function(ctx, x)
      local y = x * 2
      ctx.out = y                                 -- the docs allow any field
      ctx.saved_out = { y }
      ctx.fn = function() return y end            -- an upvalue too
      ctx.sentinel = setmetatable({}, { __gc = function() finalized = finalized + 1 end })
      return y
    end,
    backward = function(ctx, g)
      T.truthy(tensor.is_tensor(ctx.out))
      return g * 2
    end,
  }
  local x = tensor.ones(8):requires_grad(true)
  collectgarbage()
  for _ = 1, 500 do
    local y = Keep(x)
    T.eq(y.grad_fn, "keep")
  end
  collectgarbage()
  collectgarbage()
  T.truthy(finalized >= 490, ("only %d of 500 contexts were collected"):format(finalized))
  -- the graph still works when only a downstream tensor holds the output
  local z = Keep(x):sum()
  collectgarbage()
  collectgarbage()
  z:backward()
  T.eq(x.grad:totable(), { 2, 2, 2, 2, 2, 2, 2, 2 })
  -- forward returning its input as it is still gets a node of its own
  local Same = ag.Function { forward = function(_, a) return a end, backward = function(_, g) return g end }
  x:zero_grad()
  Same(x):sum():backward()
  T.eq(x.grad:totable(), { 1, 1, 1, 1, 1, 1, 1, 1 })
  T.eq(x.is_leaf, true)
end)

T.test("nn.load refuses a tiny checkpoint whose spec builds a huge module, before allocating it", function()
  local nn, mio = require "mile.nn", require "mile.io"
  local dir = os.tmpname()
  os.remove(dir)
  local path = dir .. ".safetensors"
  -- 4 GiB of weights named by a file of a few hundred bytes
  T.truthy(mio.save_safetensors(path, { weight = tensor.zeros(2) }, {
    ["mile.format_version"] = "1",
    ["mile.spec"] = '{"type":"Linear","args":[32768,32768],"n":2}',
  }))
  local f = io.open(path, "rb")
  T.truthy(f:seek("end") < 400)
  f:close()
  local clock = os.clock()
  T.raises(function() return nn.load(path) end, "needs more memory than the file's 8 bytes of tensors")
  T.truthy(os.clock() - clock < 1, "refused without initialising 4 GiB")
  T.eq(tensor.alloc_budget(nil), nil) -- the budget was lifted again
  T.eq(tensor.zeros(8 << 20):numel(), 8 << 20) -- 32 MiB: allocations are unbounded again
  -- a spec nested in a Sequential is bounded the same way
  T.truthy(mio.save_safetensors(path, { ["1.weight"] = tensor.zeros(2) }, {
    ["mile.format_version"] = "1",
    ["mile.spec"] = '{"type":"Sequential","args":[{"__module":{"type":"Linear","args":[32768,32768],"n":2}}],"n":1}',
  }))
  T.raises(function() return nn.load(path) end, "refusing to build it")
  -- a genuine checkpoint still loads, and an enclosing budget is charged what it used
  local net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
  nn.save(path, net)
  tensor.alloc_budget(1 << 20)
  local back = nn.load(path)
  local left = tensor.alloc_budget(nil)
  T.eq(back:state_dict()["1.weight"]:totable(), net:state_dict()["1.weight"]:totable())
  T.truthy(left < 1 << 20 and left > (1 << 20) - 4096, "left " .. tostring(left))
  os.remove(path)
end)

T.test("alloc_budget bounds new tensors with a clear error", function()
  T.eq(tensor.alloc_budget(100), nil)
  T.eq(tensor.zeros(10):numel(), 10) -- 40 bytes
  T.raises(function() return tensor.zeros(16) end, "exceeds the allocation budget %(60 bytes left%)")
  T.eq(tensor.alloc_budget(nil), 60)
  T.eq(tensor.zeros(1 << 20):numel(), 1 << 20)
  T.raises(function() return tensor.alloc_budget(-1) end, "byte count")
end)

T.run()
