-- LuaJIT FFI test: load the generated header, create tensors through the C API,
-- multiply them and check the numbers against a product computed here in Lua.
-- usage: luajit test_ffi.lua <sizes-program>
local M = require "mile.ffi"
local ffi, C = M.ffi, M.C

local failures = 0
local function check(cond, msg)
  if not cond then
    failures = failures + 1
    io.stderr:write("not ok - ", msg, "\n")
  else
    print("ok - " .. msg)
  end
end

-- struct layouts agree with the C compiler's
local sizes = assert(io.popen(arg[1])):read("a")
for name, size in sizes:gmatch("(%S+) (%d+)") do
  local struct, field = name:match("^([%w_]+)%.([%w_]+)$")
  local got = field and ffi.offsetof(struct, field) or ffi.sizeof(name)
  check(got == tonumber(size), ("layout of %s: ffi %d, C %s"):format(name, got, size))
end

-- a [2,3] x [3,2] product, both dtypes, checked against a plain Lua loop
for _, dtype in ipairs { "float32", "float64" } do
  local av, bv = { 1, 2, 3, 4, 5, 6 }, { 0.5, -1, 2, 0.25, -3, 1.5 }
  local a, b = M.tensor({ 2, 3 }, dtype, av), M.tensor({ 3, 2 }, dtype, bv)
  local c = M.call("matmul", a, b)
  check(table.concat(M.shape(c), ",") == "2,2", dtype .. " matmul shape")
  local got = M.values(c)
  for i = 0, 1 do
    for j = 0, 1 do
      local want = 0
      for k = 0, 2 do want = want + av[i * 3 + k + 1] * bv[k * 2 + j + 1] end
      check(math.abs(got[i * 2 + j + 1] - want) < 1e-5, ("%s c[%d][%d] = %g (want %g)"):format(dtype, i, j, got[i * 2 + j + 1], want))
    end
  end
  -- a transposed view goes to BLAS without a copy and gives a^T a
  local at = M.call("transpose", a, 0, 1)
  local g = M.values(M.call("matmul", at, a))
  check(math.abs(g[1] - (1 * 1 + 4 * 4)) < 1e-5 and math.abs(g[9] - (3 * 3 + 6 * 6)) < 1e-5, dtype .. " transposed matmul")
end

-- errors come back as a status and a message, not a crash
local out = ffi.new("mile_tensor*[1]")
local st = C.mile_matmul(out, M.tensor({ 2, 3 }), M.tensor({ 2, 3 }))
check(st == C.MILE_ERR_SHAPE and out[0] == nil, "shape mismatch returns MILE_ERR_SHAPE")
check(ffi.string(C.mile_last_error()):find("do not match", 1, true) ~= nil, "error message: " .. ffi.string(C.mile_last_error()))
local ok, err = pcall(M.call, "matmul", M.tensor({ 2, 3 }), M.tensor({ 2, 3 }))
check(not ok and err:find("matmul", 1, true), "mile.ffi raises a Lua error")

if failures > 0 then
  io.stderr:write(failures, " failures\n")
  os.exit(1)
end
