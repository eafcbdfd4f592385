-- bench/tensor.lua - tensor core speed: matmul against a direct cblas_sgemm call of
-- the same shape (the ratio is the figure; aim >= 0.95), elementwise add/exp in GB/s.
-- usage: mile bench/tensor.lua [--threads N]     prints one JSON object per line
local tensor = require "mile.tensor"
local sys = require "mile.sys"

local threads
for i = 1, #arg do
  if arg[i] == "--threads" then threads = tonumber(arg[i + 1]) end
end
if threads then sys.set_num_threads(threads) end

-- Median seconds per call of fn, over `repeats` timed batches of `inner` calls.
local function median_time(fn, inner, repeats)
  repeats = repeats or 15
  for _ = 1, inner do fn() end -- warm up
  local times = {}
  for r = 1, repeats do
    local t0 = sys.monotonic()
    for _ = 1, inner do fn() end
    times[r] = (sys.monotonic() - t0) / inner
  end
  table.sort(times)
  return times[(repeats + 1) // 2]
end

local function emit(fields)
  local parts = {}
  for _, kv in ipairs(fields) do
    local v = kv[2]
    parts[#parts + 1] = string.format("%q: %s", kv[1], type(v) == "string" and string.format("%q", v) or string.format("%.6g", v))
  end
  print("{" .. table.concat(parts, ", ") .. "}")
end

-- the direct BLAS call, built next to the mile program
local exe_dir = (arg[-1] or "mile"):match("^(.*)/[^/]*$") or "."
local function blas_seconds(m, n, k)
  local p = io.popen(("%s/mile_bench_gemm %d %d %d"):format(exe_dir, m, n, k))
  local out = p and p:read("a") or ""
  if p then p:close() end
  return tonumber(out:match('"seconds": ([%d.eE+-]+)'))
end

local gen = tensor.Generator(1)
for _, shape in ipairs { { 1024, 256, 256 }, { 64, 256, 256 } } do
  local m, n, k = shape[1], shape[2], shape[3]
  local a, b = tensor.randn({ m, k }, gen), tensor.randn({ k, n }, gen)
  local inner = m >= 1024 and 20 or 200
  local t_mile = median_time(function() return a:matmul(b) end, inner)
  local t_blas = blas_seconds(m, n, k)
  local flops = 2 * m * n * k
  emit { { "bench", ("matmul_%dx%dx%d"):format(m, k, n) }, { "gflops", flops / t_mile / 1e9 },
    { "blas_gflops", t_blas and flops / t_blas / 1e9 or 0 }, { "ratio", t_blas and t_blas / t_mile or 0 },
    { "threads", sys.num_threads() } }
end

local n = 1 << 20
local x, y = tensor.randn({ n }, gen), tensor.randn({ n }, gen)
local t_add = median_time(function() return x + y end, 50)
emit { { "bench", "add_1M_float32" }, { "gbps", 3 * 4 * n / t_add / 1e9 }, { "ms", t_add * 1e3 } }
local t_exp = median_time(function() return x:exp() end, 50)
emit { { "bench", "exp_1M_float32" }, { "gbps", 2 * 4 * n / t_exp / 1e9 }, { "ms", t_exp * 1e3 } }
