-- The Lua examples of docs/intervention.md run as written (documentation that a
-- test does not run goes stale).
local T = require "testing"

local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
local DOC = here .. "/../../docs/intervention.md"

local function blocks()
  local f = assert(io.open(DOC, "r"))
  local text = f:read("a")
  f:close()
  local out = {}
  for code in text:gmatch("```lua\n(.-)```") do out[#out + 1] = code end
  return out
end

T.test("docs/intervention.md has Lua examples", function()
  T.truthy(#blocks() >= 2)
end)

for i, code in ipairs(blocks()) do
  T.test(("docs/intervention.md example %d runs"):format(i), function()
    local chunk = assert(load(code, "=docs/intervention.md example " .. i))
    local real_print = print
    print = function() end -- keep the report clean
    local ok, err = pcall(chunk)
    print = real_print
    if not ok then error(err, 0) end
  end)
end

T.run()
