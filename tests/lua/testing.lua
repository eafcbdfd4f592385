-- testing.lua - the small test harness of mile's Lua tests (run by the `mile` host).
--
--   local T = require "testing"
--   T.test("sum of a row", function()
--     T.eq(1 + 1, 2)
--     T.near({0.1 + 0.2}, {0.3}, 1e-12)
--     T.raises(function() error("bad shape") end, "shape")
--   end)
--   T.run()   -- TAP-like report; exits with the status
--
-- Assertions raise errors pointing at the line of the test that called them.
-- Environment: MILE_TEST_FILTER=text runs only the tests whose name contains text;
-- MILE_TEST_GC=aggressive makes the collector run very often (and fully after each
-- test), so a missing reference from a view to its base shows up under valgrind/ASan.

local M = {}

local tests = {}
local cleanups = {}

local aggressive_gc = os.getenv("MILE_TEST_GC") == "aggressive"
if aggressive_gc then
  collectgarbage("incremental", 100, 1000)
end

-- A short, readable rendering of a value for failure messages.
local function show(v, depth)
  depth = depth or 0
  local tv = type(v)
  if tv == "string" then
    return string.format("%q", v)
  elseif tv == "number" then
    return math.type(v) == "integer" and tostring(v) or string.format("%.17g", v)
  elseif tv == "table" and getmetatable(v) == nil then
    if depth > 3 then return "{...}" end
    local parts, n = {}, #v
    for i = 1, n do parts[#parts + 1] = show(v[i], depth + 1) end
    local keys = {}
    for k in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = "[" .. show(k, depth + 1) .. "]=" .. show(v[k], depth + 1)
    end
    local s = "{" .. table.concat(parts, ", ") .. "}"
    return #s > 200 and s:sub(1, 197) .. "...}" or s
  end
  return tostring(v)
end
M.show = show

local function fail(msg, default)
  error((msg and msg .. ": " or "") .. default, 3)
end

local function is_nan(x) return x ~= x end

-- Where a and b differ, as "" (at the top) or "[2][1]", plus both values; nil when
-- they are equal. Plain tables compare by content; NaN equals NaN.
local function difference(a, b, path, depth)
  if a == b or (type(a) == "number" and type(b) == "number" and is_nan(a) and is_nan(b)) then
    return nil
  end
  if type(a) == "table" and type(b) == "table" and depth < 32
      and getmetatable(a) == nil and getmetatable(b) == nil then
    for k, bv in pairs(b) do
      local d = difference(a[k], bv, path .. "[" .. show(k) .. "]", depth + 1)
      if d then return d end
    end
    for k, av in pairs(a) do
      if b[k] == nil then
        return string.format("at %s: expected nothing, got %s", path .. "[" .. show(k) .. "]", show(av))
      end
    end
    return nil
  end
  return string.format("%sexpected %s, got %s", path ~= "" and "at " .. path .. ": " or "",
                       show(b), show(a))
end

-- T.eq(actual, expected, msg): equal values (tables compared by content).
function M.eq(a, b, msg)
  local d = difference(a, b, "", 0)
  if d then fail(msg, d) end
  return a
end

-- Values with a :totable() method (tensors) compare as their tables.
local function as_plain(v)
  if type(v) == "number" or (type(v) == "table" and getmetatable(v) == nil) then return v end
  local ok, t = pcall(function() return v:totable() end)
  if ok and type(t) == "table" then return t end
  return v
end

local function far(a, b, tol, path, depth)
  a, b = as_plain(a), as_plain(b)
  if type(a) == "number" and type(b) == "number" then
    if math.abs(a - b) <= tol then return nil end -- false for NaN: NaN is never near
    return string.format("%sexpected %s, got %s (difference %.3g > %.3g)",
                         path ~= "" and "at " .. path .. ": " or "", show(b), show(a),
                         math.abs(a - b), tol)
  end
  if type(a) == "table" and type(b) == "table" and depth < 32 then
    if #a ~= #b then
      return string.format("%slengths differ: expected %d, got %d",
                           path ~= "" and "at " .. path .. ": " or "", #b, #a)
    end
    for k, bv in pairs(b) do
      local d = far(a[k], bv, tol, path .. "[" .. show(k) .. "]", depth + 1)
      if d then return d end
    end
    for k in pairs(a) do
      if b[k] == nil then return "at " .. path .. "[" .. show(k) .. "]: unexpected value" end
    end
    return nil
  end
  return string.format("%sexpected a number or table like %s, got %s",
                       path ~= "" and "at " .. path .. ": " or "", show(b), show(a))
end

-- T.near(actual, expected, tol, msg): numbers, or nested tables of numbers (or
-- tensors with :totable()), within the absolute tolerance tol (default 1e-6).
function M.near(a, b, tol, msg)
  local d = far(a, b, tol or 1e-6, "", 0)
  if d then fail(msg, d) end
  return a
end

-- T.truthy(v, msg): v is neither nil nor false; returns v.
function M.truthy(v, msg)
  if not v then fail(msg, "expected a true value, got " .. show(v)) end
  return v
end

-- T.raises(fn, pattern): fn raises an error whose message matches the Lua pattern
-- (any error when pattern is nil); returns the message.
function M.raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then fail(nil, "expected an error" .. (pattern and " matching " .. show(pattern) or "")) end
  local msg = tostring(err)
  if pattern and not msg:find(pattern) then
    fail(nil, string.format("error %s does not match %s", show(msg), show(pattern)))
  end
  return msg
end

-- T.skip(reason): end the running test, reported as skipped.
local skip_mark = {}
function M.skip(reason)
  error(setmetatable({ reason = reason or "" }, skip_mark), 0)
end

-- T.test(name, fn): register a test; tests run in the order registered.
function M.test(name, fn)
  assert(type(name) == "string" and type(fn) == "function", "usage: test(name, fn)")
  tests[#tests + 1] = { name = name, fn = fn }
end

local function handler(err)
  if getmetatable(err) == skip_mark then return err end
  return debug.traceback(tostring(err), 2)
end

-- T.run(): run the registered tests (those matching MILE_TEST_FILTER), print a
-- TAP-like report, and exit with success only when none failed.
function M.run()
  local filter = os.getenv("MILE_TEST_FILTER")
  local selected = {}
  for _, t in ipairs(tests) do
    if not filter or filter == "" or t.name:find(filter, 1, true) then selected[#selected + 1] = t end
  end
  print("1.." .. #selected)
  local failures, skipped = 0, 0
  local start = os.clock()
  for i, t in ipairs(selected) do
    local ok, err = xpcall(t.fn, handler)
    if ok then
      print(string.format("ok %d - %s", i, t.name))
    elseif getmetatable(err) == skip_mark then
      skipped = skipped + 1
      print(string.format("ok %d - %s # SKIP %s", i, t.name, err.reason))
    else
      failures = failures + 1
      print(string.format("not ok %d - %s", i, t.name))
      for line in (tostring(err) .. "\n"):gmatch("(.-)\n") do print("#   " .. line) end
    end
    io.stdout:flush()
    if aggressive_gc then collectgarbage("collect") end
  end
  print(string.format("# %d test%s, %d passed, %d failed, %d skipped (%.2f s cpu)", #selected,
                      #selected == 1 and "" or "s", #selected - failures - skipped, failures,
                      skipped, os.clock() - start))
  io.stdout:flush()
  for i = #cleanups, 1, -1 do pcall(cleanups[i]) end
  os.exit(failures == 0, true) -- close the state: finalizers run, leak checkers see a clean exit
end

--- read_file(path) -> the file's text, or nil when it cannot be read.
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- write_file(path, text): write a whole file (raises on failure).
function M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  assert(f:close())
end

--- quote(s) -> s as one sh word.
function M.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- shell(dir, cmd [, env]) -> exit code, output (stdout and stderr): cmd run by sh in
--- dir, after the variable assignments env ("A=1 B=2").
function M.shell(dir, cmd, env)
  local p = io.popen(("cd %s && %s %s 2>&1; echo \"#exit=$?\""):format(M.quote(dir), env or "", cmd))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("#exit=(%d+)%s*$")), (out:gsub("#exit=%d+%s*$", ""))
end

--- cleanup(fn): run fn when the tests end (T.run exits the process).
function M.cleanup(fn) cleanups[#cleanups + 1] = fn end

--- tmpdir() -> a new temporary directory, removed when the tests end.
function M.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. M.quote(dir)), "cannot make " .. dir)
  M.cleanup(function() os.execute("rm -rf " .. M.quote(dir)) end)
  return dir
end

--- The ```lua blocks of a markdown file (between the `from` and `to` patterns when
--- given), in order.
function M.lua_blocks(path, from, to)
  local f = assert(io.open(path, "r"))
  local text = f:read("a")
  f:close()
  local a = from and text:find(from) or 1
  local b = to and text:find(to) or #text
  local out = {}
  for code in text:sub(a, b):gmatch("```lua\n(.-)```") do out[#out + 1] = code end
  return out
end

--- Register one test per Lua example of a document: each must run as written
--- (documentation that no test runs goes stale). Their printing is silenced.
--- Returns the number of examples.
function M.doc_examples(path, label, from, to)
  local blocks = M.lua_blocks(path, from, to)
  for i, code in ipairs(blocks) do
    M.test(("%s example %d runs"):format(label, i), function()
      local chunk = assert(load(code, "=" .. label .. " example " .. i))
      local real_print = print
      print = function() end
      local ok, err = pcall(chunk)
      print = real_print
      if not ok then error(err, 0) end
    end)
  end
  return #blocks
end

return M
