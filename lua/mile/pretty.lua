--- mile.pretty: values as the REPL prints them, in the manner of Torch's trepl.
--   pretty.format({3, {a = 1}}) -->
--   {
--     1 : 3
--     2 : {
--       a : 1
--     }
--   }
-- Keys sorted (numbers first), nested tables indented, a table met again on the
-- way down marked as a cycle, long tables cut, depth bounded; short lists of
-- numbers or strings on one line ({2, 3}: a shape), tensors as their summary line.
local M = {}

M.max_items = 40 -- entries shown per table
M.max_depth = 4 -- nesting shown
M.max_inline = 12 -- a list of at most this many scalars prints on one line

local function is_tensor(v)
  local T = package.loaded["mile.tensor"]
  return T ~= nil and T.is_tensor(v)
end

local function scalar_text(v)
  if type(v) == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if math.type(v) == "float" then return string.format("%.6g", v) end
  return tostring(v)
end

-- the last line of a tensor's tostring: "[mile.tensor of size 2x3 float32]"
local function tensor_text(t)
  return tostring(t):match("([^\n]*)$")
end

-- keys: numbers ascending, then the others by their text
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local na, nb = type(a) == "number", type(b) == "number"
    if na ~= nb then return na end
    if na then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- {2, 3}: a sequence of at most max_inline numbers/strings/booleans and nothing else
local function inline(t)
  local n = #t
  if n == 0 or n > M.max_inline then return nil end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  if count ~= n then return nil end
  local parts = {}
  for i = 1, n do
    local v, tv = t[i], type(t[i])
    if tv ~= "number" and tv ~= "string" and tv ~= "boolean" then return nil end
    parts[i] = scalar_text(v)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

local function format(v, indent, seen, depth, out)
  local tv = type(v)
  if tv ~= "table" or has_tostring(v) then
    if is_tensor(v) then
      out[#out + 1] = tensor_text(v)
    elseif tv == "table" or tv == "userdata" then
      out[#out + 1] = (tostring(v):gsub("\n", "\n" .. indent))
    else
      out[#out + 1] = scalar_text(v)
    end
    return
  end
  if seen[v] then
    out[#out + 1] = "<cycle: " .. tostring(v):gsub("^table: ", "table ") .. ">"
    return
  end
  if next(v) == nil then
    out[#out + 1] = "{}"
    return
  end
  local line = inline(v)
  if line then
    out[#out + 1] = line
    return
  end
  if depth >= M.max_depth then
    out[#out + 1] = "{...}"
    return
  end
  seen[v] = true
  out[#out + 1] = "{\n"
  local keys, inner = sorted_keys(v), indent .. "  "
  for i, k in ipairs(keys) do
    if i > M.max_items then
      out[#out + 1] = ("%s... (%d more)\n"):format(inner, #keys - M.max_items)
      break
    end
    local kt = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. scalar_text(k) .. "]"
    if type(k) == "number" then kt = scalar_text(k) end
    out[#out + 1] = inner .. kt .. " : "
    format(v[k], inner, seen, depth + 1, out)
    out[#out + 1] = "\n"
  end
  out[#out + 1] = indent .. "}"
  seen[v] = nil
end

--- format(v) -> the text the REPL prints for v: tables nested and sorted (trepl style),
--- tensors as their summary line, other values as tostring does.
function M.format(v)
  local out = {}
  format(v, "", {}, 0, out)
  return table.concat(out)
end

return M
