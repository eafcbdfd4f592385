--- mile.ffi: mile's C core under LuaJIT, through the FFI (no Lua 5.4 binding).
--
--   local M = require "mile.ffi"            -- LuaJIT only
--   local a = M.tensor({2, 3}, "float32")    -- a cdata mile_tensor*, freed by the GC
--   local c = M.call("matmul", a, M.t(b))    -- any mile_* function returning an out tensor
--
-- The declarations come from `mile.cdef`, generated at build time from the public
-- headers (core/include/mile/*.h preprocessed with -DMILE_CDEF), never copied by hand.
-- The library is $MILE_CORE_LIB when set, else "milecore" from the system paths.
local ffi = require "ffi"

ffi.cdef(require "mile.cdef")
local C = ffi.load(os.getenv("MILE_CORE_LIB") or "milecore")

local M = { C = C, ffi = ffi }

local function check(status, what)
  if status ~= 0 then error((what or "mile") .. ": " .. ffi.string(C.mile_last_error()), 3) end
end
M.check = check

-- Own a mile_tensor*: the LuaJIT GC releases it.
local function own(t) return ffi.gc(t, C.mile_tensor_release) end
M.own = own

local dtypes = { float32 = C.MILE_FLOAT32, float64 = C.MILE_FLOAT64 }

--- tensor(shape, dtype="float32" [, values]): zeros, or a copy of a flat Lua array.
function M.tensor(shape, dtype, values)
  local nd = #shape
  local cshape = ffi.new("int64_t[?]", math.max(nd, 1), shape)
  local out = ffi.new("mile_tensor*[1]")
  local dt = dtypes[dtype or "float32"] or error("tensor: unknown dtype " .. tostring(dtype), 2)
  if values then
    local buf = ffi.new("double[?]", #values, values)
    check(C.mile_from_data(out, dt, nd, cshape, buf, C.MILE_FLOAT64), "tensor")
  else
    check(C.mile_zeros(out, dt, nd, cshape), "tensor")
  end
  return own(out[0])
end

--- call(name, ...): run mile_<name>(&out, ...) and return the owned result.
function M.call(name, ...)
  local out = ffi.new("mile_tensor*[1]")
  check(C["mile_" .. name](out, ...), name)
  return own(out[0])
end

--- values(t): the elements of t as a flat Lua array (row-major).
function M.values(t)
  local n = tonumber(C.mile_numel(t))
  local buf = ffi.new("double[?]", math.max(n, 1))
  check(C.mile_to_doubles(t, buf), "values")
  local out = {}
  for i = 1, n do out[i] = buf[i - 1] end
  return out
end

--- shape(t): the shape as a Lua array.
function M.shape(t)
  local s = {}
  for i = 1, t.ndim do s[i] = tonumber(t.shape[i - 1]) end
  return s
end

return M
