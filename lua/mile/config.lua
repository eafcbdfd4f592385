--- mile.config: experiment configurations as Lua tables, checked against a schema.
--
-- A config file returns a table (nested tables for dotted keys: `loss = {variant =
-- "paper"}` is `loss.variant`). `config.resolve(schema, user, overrides)` fills
-- defaults, applies `--set key=value` overrides and rejects unknown keys and values
-- of the wrong type with an error naming the key.
local M = {}

-- Flatten nested tables into dotted keys ("loss.lambda" = 0.5). Lists stay values.
local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local function flatten(t, prefix, out)
  out = out or {}
  for k, v in pairs(t) do
    if type(k) ~= "string" then error(("config: key %s%s is not a string"):format(prefix, tostring(k)), 0) end
    local key = prefix .. k
    if type(v) == "table" and not is_list(v) and next(v) ~= nil then flatten(v, key .. ".", out)
    else out[key] = v end
  end
  return out
end
M.flatten = flatten

--- Build the nested table back from dotted keys.
function M.unflatten(flat)
  local out = {}
  for key, v in pairs(flat) do
    local node = out
    local parts = {}
    for part in key:gmatch("[^.]+") do parts[#parts + 1] = part end
    for i = 1, #parts - 1 do
      node[parts[i]] = node[parts[i]] or {}
      node = node[parts[i]]
    end
    node[parts[#parts]] = v
  end
  return out
end

-- Closest schema key to a misspelt one (for "did you mean").
local function closest(key, schema)
  local best, best_d = nil, 4 -- only suggest keys within 3 edits
  local a, n = { key:byte(1, -1) }, #key
  for k in pairs(schema) do
    -- edit distance with a cut-off: a length difference of best_d or more cannot win,
    -- and a row whose minimum reaches best_d ends the comparison
    local m = #k
    if math.abs(m - n) < best_d then
      local b = { k:byte(1, -1) }
      local prev = {}
      for j = 0, m do prev[j] = j end
      local d = 0
      for i = 1, n do
        local cur, row_min = { [0] = i }, i
        local ai = a[i]
        for j = 1, m do
          local v = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ai == b[j] and 0 or 1))
          cur[j] = v
          if v < row_min then row_min = v end
        end
        prev = cur
        if row_min >= best_d then d = best_d break end
        d = nil
      end
      d = d or prev[m]
      if n == 0 then d = m end
      if d < best_d then best, best_d = k, d end
    end
  end
  return best
end

local function type_of(v)
  if math.type(v) == "integer" then return "integer" end
  if is_list(v) and type(v) == "table" then return "list" end
  return type(v)
end

-- Does value v fit the declared type?
local function fits(spec_type, v)
  local t = type_of(v)
  if spec_type == "number" then return t == "number" or t == "integer" end
  if spec_type == "list" then return type(v) == "table" end
  return t == spec_type
end

-- Numbers are finite unless the key's spec says `infinite = true`; NaN never is a value.
local function finite_ok(spec, v)
  if type(v) ~= "number" or math.type(v) == "integer" then return true end
  if v ~= v then return false end
  return spec.infinite or (v ~= math.huge and v ~= -math.huge)
end

local function check(schema, key, v, origin, explain)
  local spec = schema[key]
  if not spec then
    local why = explain and explain(key)
    if why then error(("config: key '%s'%s: %s"):format(key, origin or "", why), 0) end
    local hint = closest(key, schema)
    error(("config: unknown key '%s'%s%s"):format(key, origin or "", hint and (" (did you mean '" .. hint .. "'?)") or ""), 0)
  end
  if v == nil then return end
  if not fits(spec.type, v) then
    error(("config: '%s' must be %s, got %s%s"):format(key, spec.type, type_of(v), origin or ""), 0)
  end
  if not finite_ok(spec, v) then
    error(("config: '%s' must be a finite number, got %s%s"):format(key, tostring(v), origin or ""), 0)
  end
  if spec.choices then
    local ok = false
    for _, c in ipairs(spec.choices) do ok = ok or c == v end
    if not ok then
      error(("config: '%s' must be one of %s, got %s%s"):format(key, table.concat(spec.choices, ", "), tostring(v), origin or ""), 0)
    end
  end
  if spec.check then
    local ok, why = spec.check(v)
    if not ok then error(("config: '%s' = %s: %s%s"):format(key, tostring(v), why, origin or ""), 0) end
  end
end

--- Parse the text of a --set value by the key's declared type.
function M.parse_value(schema, key, text, explain)
  local spec = schema[key]
  if not spec then check(schema, key, nil, " (from --set)", explain) end
  if spec.type == "number" or spec.type == "integer" then
    local v = tonumber(text)
    if v == nil then error(("config: --set %s=%s: not a number"):format(key, text), 0) end
    if spec.type == "integer" then
      -- exactly an integer of Lua's range: 1e20 or 2^63 are refused, not rounded or wrapped
      local i = math.tointeger(v)
      if i == nil then error(("config: --set %s=%s: not an integer (of -2^63 .. 2^63-1)"):format(key, text), 0) end
      v = i
    end
    return v
  elseif spec.type == "boolean" then
    if text == "true" then return true elseif text == "false" then return false end
    error(("config: --set %s=%s: expected true or false"):format(key, text), 0)
  elseif spec.type == "list" then
    local items = {}
    for item in text:gmatch("[^,]+") do items[#items + 1] = tonumber(item) or item end
    return items
  end
  return text
end

--- resolve(schema, user_table, overrides [, opts]) -> flat table of every schema key.
-- overrides: list of "key=value" strings (from --set); they replace the file's values
-- before anything is validated (a file value that --set replaces is never checked).
-- opts.explain(key) -> a reason for an unknown key (e.g. the plugin that owns it), or nil.
function M.resolve(schema, user, overrides, opts)
  local explain = opts and opts.explain
  local set = {}
  for _, item in ipairs(overrides or {}) do
    local key, text = item:match("^([%w_.]+)=(.*)$")
    if not key then error(("config: --set %s: expected key=value"):format(item), 0) end
    set[key] = M.parse_value(schema, key, text, explain)
  end
  local flat = {}
  for key, spec in pairs(schema) do flat[key] = spec.default end
  for key, v in pairs(flatten(user or {}, "")) do
    if set[key] == nil then check(schema, key, v, nil, explain) end
    flat[key] = v
  end
  for key, v in pairs(set) do
    check(schema, key, v, " (from --set)", explain)
    flat[key] = v
  end
  return flat
end

--- run_budgeted(chunk, budget, name) -> ok, value: call chunk in a coroutine that
--- stops with an error after `budget` VM instructions (a config or data file that
--- loops forever gets an error naming it, not a hang).
function M.run_budgeted(chunk, budget, name)
  local co = coroutine.create(chunk)
  debug.sethook(co, function() error(("%s: stopped after %d instructions (an endless loop?)"):format(name, budget), 0) end,
    "", budget)
  local ok, v = coroutine.resume(co)
  if ok and coroutine.status(co) ~= "dead" then return false, name .. ": must not yield" end
  return ok, v
end

-- Instructions a config file may run (requiring mile's own modules takes ~10^6).
M.FILE_BUDGET = 200000000

--- Load a config file (a Lua file returning a table). It may `require` modules (to
--- build values); relative paths in its `plugins` list are taken relative to the file.
function M.load_file(path)
  local env = setmetatable({}, { __index = _G })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then error("config: " .. err, 0) end
  local ok, t = M.run_budgeted(chunk, M.FILE_BUDGET, path)
  if not ok then error("config: " .. tostring(t):gsub("^" .. path:gsub("%p", "%%%0") .. ": ", "") .. " (" .. path .. ")", 0) end
  if type(t) ~= "table" then error(("config: %s must return a table, got %s"):format(path, type(t)), 0) end
  if type(t.plugins) == "table" then
    local dir = path:match("^(.*)/[^/]*$") or "."
    for i, p in ipairs(t.plugins) do
      if type(p) == "string" and (p:find("/", 1, true) or p:match("%.lua$")) and p:sub(1, 1) ~= "/" then
        t.plugins[i] = dir .. "/" .. p
      end
    end
  end
  return t
end

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat return then true until while")
    :gmatch("%a+") do KEYWORDS[w] = true end

-- Lua source for a value (sorted keys: same config, same bytes).
local function serialize(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v then return "0/0" end
    if v == math.huge then return "math.huge" elseif v == -math.huge then return "-math.huge" end
    local short = string.format("%.15g", v) -- shortest text that reads back the same value
    return tonumber(short) == v and short or string.format("%.17g", v)
  end
  if t == "boolean" then return tostring(v) end
  if t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    if is_list(v) then
      local parts = {}
      for i = 1, #v do parts[i] = serialize(v[i], indent) end
      return "{ " .. table.concat(parts, ", ") .. " }"
    end
    local lines = {}
    for _, k in ipairs(keys) do
      local plain = type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k]
      local name = plain and k or ("[" .. serialize(k) .. "]")
      lines[#lines + 1] = indent .. "  " .. name .. " = " .. serialize(v[k], indent .. "  ") .. ","
    end
    return "{\n" .. table.concat(lines, "\n") .. "\n" .. indent .. "}"
  end
  error("config: cannot serialize a " .. t, 0)
end
M.serialize = serialize

--- The resolved (flat) config as the text of a Lua file that returns it nested.
function M.to_source(flat)
  return "-- resolved mile config\nreturn " .. serialize(M.unflatten(flat)) .. "\n"
end

return M
