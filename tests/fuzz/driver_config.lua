-- driver_config.lua - the config loader under fuzz_config (fuzz_lua.c).
--
-- The input is the text of a file, optionally followed by a NUL byte and --set
-- overrides, one "key=value" a line. The file is read the two ways mile reads config
-- files: as a user's config (config.load_file: Lua code with the globals; here a
-- sandbox of the pure ones, so that no input can touch the machine) and as a run
-- directory's stored config.lua/state.lua (rundir.read_data: data, no globals). A
-- table either returns is resolved as mile train resolves it, without loading code
-- (loop.resolve with no_code). Every failure must be a clear error: a message that
-- starts with "config: " or "rundir: "; anything else (a Lua error inside mile's own
-- code, a non-string error) is reported as a bug.
local config = require "mile.config"
local rundir = require "mile.rundir"
local loop = require "mile.loop"

-- the instruction budgets, much lower: an endless loop costs 10^5 instructions, not 10^8
local BUDGET = 100000
local run_budgeted = config.run_budgeted
config.run_budgeted = function(chunk, budget, name) return run_budgeted(chunk, math.min(budget, BUDGET), name) end

-- copies of the libraries, and no getmetatable (the string metatable leads to the real
-- string library): one input cannot change what the next one runs with
local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
local sandbox = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall, select = select,
  tonumber = tonumber, tostring = tostring, type = type, rawequal = rawequal, rawget = rawget, rawlen = rawlen,
  rawset = rawset, setmetatable = setmetatable, math = copy(math), string = copy(string), table = copy(table),
  utf8 = copy(utf8), coroutine = copy(coroutine),
  require = function(name) error("require is off under the fuzzer: " .. tostring(name)) end,
}

local function expected(err, prefixes)
  if type(err) ~= "string" then return false end
  for _, p in ipairs(prefixes) do
    if err:sub(1, #p) == p then return true end
  end
  return false
end

local function resolve(t, overrides, what)
  local ok, err = pcall(loop.resolve, t, overrides, nil, { no_code = true })
  if not ok and not expected(err, { "config: " }) then
    error(("loop.resolve of a table from %s: unexpected error: %s"):format(what, tostring(err)), 0)
  end
end

return function(data, dir)
  local text, sets = data, {}
  local nul = data:find("\0", 1, true)
  if nul then
    text = data:sub(1, nul - 1)
    for line in data:sub(nul + 1):gmatch("[^\n]+") do sets[#sets + 1] = line end
  end
  local path = dir .. "/config.lua"
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()

  -- a user's config file: Lua code, with the sandbox as its globals
  local env = copy(sandbox)
  env._G = env
  local real_G = _G._G
  _G._G = env
  local ok, t = pcall(config.load_file, path)
  _G._G = real_G
  if ok then
    if type(t) ~= "table" then error("config.load_file returned a " .. type(t), 0) end
    resolve(t, sets, "config.load_file")
  elseif not expected(t, { "config: " }) then
    error("config.load_file: unexpected error: " .. tostring(t), 0)
  end

  -- a run directory's file: data (resolved when it is not the table just resolved)
  local ok2, v = pcall(rundir.read_data, path)
  if ok2 then
    if type(v) == "table" and not ok then resolve(v, sets, "rundir.read_data") end
  elseif not expected(v, { "rundir: " }) then
    error("rundir.read_data: unexpected error: " .. tostring(v), 0)
  end
end
