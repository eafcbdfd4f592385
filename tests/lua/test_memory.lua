-- The Lua GC knows what tensors cost: a loop that drops a fresh 4 MB tensor
-- 20,000 times ends within a few tens of MB of where it started (RSS measured).
local T = require "testing"
local tensor = require "mile.tensor"
local ag = require "mile.autograd"
local nn = require "mile.nn"
local optim = require "mile.optim"
local compile = require "mile.compile"

local function rss_mib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) / 1024 end
  end
  error("no VmRSS in /proc/self/status")
end

T.test("20,000 dropped 4 MB tensors keep RSS flat", function()
  collectgarbage()
  local before, peak = rss_mib(), 0
  for i = 1, 20000 do
    local t = tensor.full({ 1024, 1024 }, i) -- 4 MiB, every page written
    if i % 1000 == 0 then peak = math.max(peak, rss_mib()) end
    t = nil
  end
  collectgarbage()
  local after = rss_mib()
  print(("# RSS before %.1f MiB, peak %.1f MiB, after %.1f MiB"):format(before, peak, after))
  T.truthy(peak - before < 96, ("peak grew by %.1f MiB"):format(peak - before))
  T.truthy(after - before < 64, ("RSS grew by %.1f MiB"):format(after - before))
end)

T.test("a long loop of forward + backward keeps RSS flat (graphs are freed)", function()
  local gen = tensor.Generator(1)
  local w = tensor.randn({ 256, 256 }, gen):requires_grad(true)
  local x = tensor.randn({ 64, 256 }, gen)
  local function step()
    local loss = x:matmul(w):tanh():matmul(w):sum()
    loss:backward()
    w:zero_grad()
  end
  for _ = 1, 200 do step() end
  collectgarbage()
  local before = rss_mib()
  for _ = 1, 3000 do step() end
  collectgarbage()
  local after = rss_mib()
  print(("# RSS before %.1f MiB, after %.1f MiB"):format(before, after))
  T.truthy(after - before < 16, ("RSS grew by %.1f MiB"):format(after - before))
  T.eq(ag.grad_enabled(), true)
end)

T.test("a compiled step replayed 2000 times at batch 1024 holds its memory flat", function()
  -- a replay frees everything it makes by itself; Lua sees only the loss. This used to
  -- grow by 0.7 MB a step: oneDNN's packing buffers left holes in glibc's heap.
  local gen = tensor.Generator(5)
  local net = nn.MLP { input = 8, hidden = { 256, 256 }, output = 4, generator = gen }
  local opt = optim.Adam(net:parameters(), { lr = 1e-3 })
  local step = compile(function(x, y)
    opt:zero_grad()
    local loss = ((net(x) - y) ^ 2):mean()
    loss:backward()
    opt:step()
    return loss
  end)
  local x, y = tensor.randn({ 1024, 8 }, gen), tensor.randn({ 1024, 4 }, gen)
  for _ = 1, 200 do step(x, y) end
  local before = rss_mib()
  for _ = 1, 2000 do step(x, y) end
  local after = rss_mib()
  print(("# RSS before %.1f MiB, after %.1f MiB"):format(before, after))
  T.truthy(after - before < 8, ("RSS grew by %.1f MiB"):format(after - before))
  if os.getenv("MILE_COMPILE") ~= "0" then T.eq(step:stats().replayed, 2199) end
end)

T.run()
