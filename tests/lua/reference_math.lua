-- reference_math.lua - plain-Lua math the tests compare mile against: written
-- without mile's kernels, so that an agreement means something.
local M = {}

--- Phi(x) by Simpson's rule on the normal density (independent of mile's normal_cdf).
function M.Phi(x)
  if x < -12 then return 0 end
  if x > 12 then return 1 end
  local n, a = 4000, -12
  local h = (x - a) / n
  local function phi(t) return math.exp(-t * t / 2) / math.sqrt(2 * math.pi) end
  local s = phi(a) + phi(x)
  for i = 1, n - 1 do s = s + (i % 2 == 1 and 4 or 2) * phi(a + i * h) end
  return s * h / 3
end

--- softmax of a Lua list.
function M.softmax(l)
  local mx, z, out = -math.huge, 0, {}
  for _, v in ipairs(l) do mx = math.max(mx, v) end
  for i, v in ipairs(l) do
    out[i] = math.exp(v - mx)
    z = z + out[i]
  end
  for i = 1, #out do out[i] = out[i] / z end
  return out
end

return M
