-- Error paths own nothing (issue 12): 10^5 failing calls of each binding leave RSS
-- within a few MiB, so a binding that allocates before an argument check raises
-- leaks visibly here (T.where boxing a number before its third argument failed used
-- to grow by ~30 MiB). RSS is meaningless under AddressSanitizer: labelled nosan.
local T = require "testing"
local tensor = require "mile.tensor"
local ag = require "mile.autograd"
local agcore = require "mile.autograd.core"
local iv = require "mile.intervention.core"
local optim = require "mile.optim.core"
local data = require "mile.data.core"
local envs = require "mile.envs.core"
local sys = require "mile.sys"

local N = 100000

local function rss_mib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) / 1024 end
  end
  error("no VmRSS in /proc/self/status")
end

local x = tensor.ones(4, 3)
local cond = tensor.ones(4, 3)
local lh, lm = tensor.zeros(4, 3), tensor.zeros(4, 3)
local p = tensor.ones(3):requires_grad(true)
p:set_grad(tensor.ones(3))
local m, v = tensor.zeros(3), tensor.zeros(3)
local attached = tensor.ones(2):requires_grad(true) * 2 -- has a grad_fn: attach refuses it
local ds = data.new(2, 1, true, false, 3)
local gen = tensor.Generator(1)

-- name -> a call that must raise
local cases = {
  { "where(cond, number, string)", function() return tensor.where(cond, 1, "not a tensor") end },
  { "where(cond, number, number) shape", function() return tensor.where(tensor.ones(2), 1, tensor.ones(3)) end },
  { "copy_(string)", function() return x:copy_("x") end },
  { "from(ragged)", function() return tensor.from { { 1, 2 }, { 3 } } end },
  { "from(bad element)", function() return tensor.from { { 1, 2 }, { 3, "x" } } end },
  { "view(bad shape)", function() return x:view { 5, 5 } end },
  { "permute(huge dim)", function() return x:permute { 4294967298, 1 } end },
  { "narrow(mininteger)", function() return x:narrow(1, math.mininteger, 1) end },
  { "cat(non-tensor)", function() return tensor.cat { x, "x" } end },
  { "gather(bad index)", function() return x:gather(2, { { 1 }, { "a" } }) end },
  { "index_select(out of range)", function() return x:index_select(1, { 9 }) end },
  { "add(string)", function() return x + "x" end },
  { "backward(non-scalar)", function() return x:backward() end },
  { "discrete(cost number, scale string)", function() return iv.discrete(lh, lm, 1, "x") end },
  { "take(bad action)", function() return iv.take(lh, tensor.full({ 4 }, 7), 0) end },
  { "attach(output with a grad_fn)", function() return agcore.attach(attached, { p }, function() end) end },
  { "adam(bad list)", function() return optim.adam({ p }, { m }, { "x" }, { 0 }, 0.1, 0.9, 0.999, 1e-8, 0, false) end },
  { "clip_grad_norm(bad list)", function() return optim.clip_grad_norm({ p, "x" }, 1) end },
  { "data.append(missing field)", function() return data.append(ds, { episode = 1, t = 1 }) end },
  { "data.subset(bad row)", function() return data.subset(ds, { 0 }) end },
  { "data.permutation(size)", function() return data.permutation(gen, -1) end },
  { "envs.make(unknown)", function() return envs.make("no-such-env") end },
  { "envs.make(bad option)", function() return envs.make("CartPole-v1", { bad = {} }) end },
  { "sys.set_num_threads(-1)", function() return sys.set_num_threads(-1) end },
}

T.test("10^5 failing calls of each binding keep RSS flat", function()
  local worst, lines = 0, {}
  for _, case in ipairs(cases) do
    local name, fn = case[1], case[2]
    local ok = pcall(fn)
    T.eq(ok, false, name .. " must raise")
    for _ = 1, 1000 do pcall(fn) end -- warm up: caches, interned strings, allocator arenas
    collectgarbage()
    collectgarbage()
    local before = rss_mib()
    for _ = 1, N do pcall(fn) end
    collectgarbage()
    collectgarbage()
    local grew = rss_mib() - before
    lines[#lines + 1] = ("# %-40s %+6.2f MiB"):format(name, grew)
    worst = math.max(worst, grew)
    T.truthy(grew < 4, ("%s: RSS grew by %.1f MiB over %d failing calls"):format(name, grew, N))
  end
  print(table.concat(lines, "\n"))
  print(("# worst growth %.2f MiB"):format(worst))
end)

T.test("custom ops whose ctx keeps their output keep RSS flat", function()
  local Keep = ag.Function {
    forward = function(ctx, a)
      local y = a * 2
      ctx.out = y
      return y
    end,
    backward = function(_, g) return g * 2 end,
  }
  local a = tensor.ones(64, 1024):requires_grad(true) -- each output 256 KiB
  for _ = 1, 200 do Keep(a) end
  collectgarbage()
  collectgarbage()
  local before = rss_mib()
  for _ = 1, 20000 do Keep(a) end -- 5 GiB of outputs if they were never freed
  collectgarbage()
  collectgarbage()
  local grew = rss_mib() - before
  print(("# 20,000 custom ops keeping their output in ctx: %+.2f MiB"):format(grew))
  T.truthy(grew < 16, ("RSS grew by %.1f MiB"):format(grew))
end)

T.run()
