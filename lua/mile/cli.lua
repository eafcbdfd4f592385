--- mile.cli: what the subcommands (scripts/cli/*.lua) share: strict option parsing,
--- one error convention, and the listing of config keys.
--
--   local args = cli.parse("eval", {...}, { usage = "usage: ...", positional = 1,
--     options = { round = "integer", episodes = "integer", plugin = "list", dry_run = "flag" } })
--   args[1], args.round, args.plugin (a list, {} when absent)
--
-- Option kinds: "flag" (no value), "value" (a string), "integer", "number" (finite),
-- "list" (repeatable; a string each time). `--name value` and `--name=value` both work,
-- anywhere among the arguments; option names with "_" are written with "-" (--dry-run).
-- A bad or missing value, an unknown option or too many positional arguments print
-- the error and the usage and exit with status 2; -h/--help prints the usage.
local M = {}

--- usage_error(cmd, msg [, usage]): print and exit 2.
function M.usage_error(cmd, msg, usage)
  io.stderr:write(("mile %s: %s\n"):format(cmd, msg))
  if usage or M.last_usage then io.stderr:write((usage or M.last_usage), "\n") end
  os.exit(2)
end

local function convert(cmd, name, kind, text, usage)
  if text == nil then M.usage_error(cmd, ("--%s needs a value"):format(name), usage) end
  if kind == "integer" then
    local v = math.tointeger(tonumber(text))
    if not v or not text:match("^%s*[-+]?%d+%s*$") then
      M.usage_error(cmd, ("--%s %s: not an integer"):format(name, text), usage)
    end
    return v
  elseif kind == "number" then
    local v = tonumber(text)
    if not v or v ~= v or v == math.huge or v == -math.huge then
      M.usage_error(cmd, ("--%s %s: not a finite number"):format(name, text), usage)
    end
    return v
  end
  return text
end

--- parse(cmd, argv, spec) -> args: positional arguments at 1.., options by name
--- (with "-" read as "_"); list options are {} when absent.
function M.parse(cmd, argv, spec)
  local usage, options = spec.usage, spec.options or {}
  M.last_usage = usage
  local args = {}
  for name, kind in pairs(options) do if kind == "list" then args[name] = {} end end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "-h" or a == "--help" then
      print(usage)
      os.exit(0)
    elseif a == "--" then
      for j = i + 1, #argv do args[#args + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" then
      local name, inline = a:sub(3):match("^([^=]+)=(.*)$")
      name = (name or a:sub(3)):gsub("-", "_")
      local kind = options[name]
      if not kind then M.usage_error(cmd, "unknown option " .. a, usage) end
      if kind == "flag" then
        if inline then M.usage_error(cmd, ("--%s takes no value"):format(name), usage) end
        args[name] = true
      else
        local text = inline
        if text == nil then
          text = argv[i + 1]
          if text ~= nil and text:sub(1, 2) == "--" and kind ~= "number" and kind ~= "integer" then text = nil end
          i = i + 1
        end
        local v = convert(cmd, name, kind, text, usage)
        if kind == "list" then table.insert(args[name], v) else args[name] = v end
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      M.usage_error(cmd, "unknown option " .. a, usage)
    else
      args[#args + 1] = a
    end
    i = i + 1
  end
  if #args > (spec.positional or 0) then
    M.usage_error(cmd, ("unexpected argument %s"):format(args[(spec.positional or 0) + 1]), usage)
  end
  return args
end

--- guard(cmd, fn): run fn; an error is printed as "mile <cmd>: message" and exits 1
--- (130 when interrupted).
function M.guard(cmd, fn)
  local ok, err = pcall(fn)
  if not ok then
    io.stderr:write(("mile %s: %s\n"):format(cmd, tostring(err)))
    os.exit(tostring(err):find("interrupted", 1, true) and 130 or 1)
  end
end

local function spec_line(key, s)
  local d = type(s.default) == "table" and table.concat(s.default, ",") or tostring(s.default)
  return ("  %-24s %-8s %s%s"):format(key, s.type, s.default ~= nil and ("default " .. d .. "  ") or "", s.doc or "")
end

local function sorted(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

--- keys_text() -> every config key: the protocol's, then each registered entry's.
function M.keys_text()
  local loop = require "mile.loop"
  local lines = { "the protocol (mile.loop):" }
  for _, k in ipairs(sorted(loop.schema)) do lines[#lines + 1] = spec_line(k, loop.schema[k]) end
  local registry = require "mile.registry"
  for _, kind in ipairs(sorted(registry.kinds)) do
    local R = registry.kinds[kind]
    local names = R.names()
    lines[#lines + 1] = ""
    lines[#lines + 1] = ("%ss (%s): %s"):format(kind, R.key, table.concat(names, ", "))
    for _, k in ipairs(sorted(R.schema)) do lines[#lines + 1] = spec_line(k, R.schema[k]) end
    for _, e in ipairs(R.entries()) do
      local keys = sorted(e.schema)
      if #keys > 0 or not e.builtin then
        lines[#lines + 1] = ("  %s: %s%s"):format(e.name, e.doc, e.builtin and "" or (" [" .. e.source .. "]"))
        for _, k in ipairs(keys) do lines[#lines + 1] = "  " .. spec_line(k, e.schema[k]) end
      end
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

return M
