--- mile.plugins: loading the Lua files and modules that register models, methods,
--- schedules, memory models and tasks, and recording what a run loaded.
--
--   local plugins = require "mile.plugins"
--   plugins.load("my_logistic.lua")       -- a file (relative to the working directory)
--   plugins.load("mylab.models.logistic") -- a module on package.path
--
-- A plugin is ordinary Lua that calls the registries' register functions
-- (docs/extending.md). A spec with a "/" or ending in ".lua" is a file; anything else
-- a module name for require. Each plugin loads once per process (files by absolute
-- path), and each is recorded {spec, kind = "file" | "module", path (absolute),
-- sha256 of its text} so that a run directory can keep a copy and load it again
-- (mile.rundir).
local sys = require "mile.sys"
local registry = require "mile.registry"

local M = {}

local loaded, order = {}, {}

--- is_file_spec(spec) -> whether spec names a file rather than a module.
function M.is_file_spec(spec)
  return spec:find("/", 1, true) ~= nil or spec:match("%.lua$") ~= nil
end

--- absolute(path [, base]) -> path made absolute against base (default: the working directory).
function M.absolute(path, base)
  if path:sub(1, 1) == "/" then return path end
  base = base or assert(sys.getcwd())
  return (base:gsub("/+$", "") .. "/" .. path:gsub("^%./", ""))
end

--- read(path) -> the whole text of the file, or nil when it cannot be opened.
local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.read = read

--- hash(path) -> sha256 hex of the file's text, or nil when it cannot be read.
function M.hash(path)
  local text = read(path)
  return text and sys.sha256(text) or nil
end

-- Run a plugin file: a syntax or run-time error names the file.
local function run_file(path, text, label)
  local chunk, err = load(text, "@" .. path, "t")
  if not chunk then error(("plugin %s: %s"):format(label, err), 0) end
  local ok, res = xpcall(registry.loading_file, debug.traceback, path, chunk, path)
  if not ok then error(("plugin %s: %s"):format(label, tostring(res)), 0) end
end

--- load(spec [, opts]) -> record. opts.base: the directory relative file specs are
--- resolved against (default: the working directory); opts.path: load the file's text
--- from this path instead (a run directory's copy) while recording it under spec.
function M.load(spec, opts)
  opts = opts or {}
  if type(spec) ~= "string" or spec == "" then
    error(("plugins: a plugin is a file path or a module name, got %s"):format(tostring(spec)), 2)
  end
  if M.is_file_spec(spec) then
    local path = M.absolute(spec, opts.base)
    if loaded[path] then return loaded[path] end
    local from = opts.path or path
    local text = read(from)
    if not text then error(("plugin %s: cannot read %s"):format(spec, from), 0) end
    local rec = { spec = path, kind = "file", path = path, sha256 = sys.sha256(text), from_copy = opts.path ~= nil }
    loaded[path] = rec -- before running: a plugin that loads itself again does not loop
    local ok, err = pcall(run_file, from, text, spec)
    if not ok then loaded[path] = nil; error(err, 0) end
    order[#order + 1] = rec
    if not opts.path then M.trust(rec.sha256, path) end
    return rec
  end
  if loaded[spec] then return loaded[spec] end
  local path = package.searchpath(spec, package.path)
  local rec
  if opts.path and not package.loaded[spec] then -- a run directory's copy of the module
    local text = read(opts.path)
    if not text then error(("plugin %s: cannot read %s"):format(spec, opts.path), 0) end
    rec = { spec = spec, kind = "module", path = path, sha256 = sys.sha256(text), from_copy = true }
    loaded[spec] = rec
    local chunk, err = load(text, "@" .. opts.path, "t")
    local ok, res = chunk ~= nil, err
    if chunk then ok, res = xpcall(registry.loading_file, debug.traceback, path or opts.path, chunk, spec, opts.path) end
    if not ok then loaded[spec] = nil; error(("plugin %s: %s"):format(spec, tostring(res)), 0) end
    package.loaded[spec] = res == nil and true or res
    order[#order + 1] = rec
    return rec
  end
  local ok, err = pcall(registry.loading_file, path or spec, require, spec)
  if not ok then error(("plugin %s: %s"):format(spec, tostring(err)), 0) end
  rec = { spec = spec, kind = "module", path = path, sha256 = path and M.hash(path) or nil }
  if rec.sha256 then M.trust(rec.sha256, path) end
  loaded[spec] = rec
  order[#order + 1] = rec
  return rec
end

-- ---- trust ------------------------------------------------------------------------------------
--
-- Plugin code runs when the user names it (--plugin, a config's `plugins`). A run
-- directory someone else made carries copies of its plugins: those run only when the
-- user allows it (mile.rundir). What the user has run on this machine is remembered by
-- sha256 in a trust file ($MILE_TRUST_FILE, default $XDG_DATA_HOME/mile/trusted-plugins
-- or ~/.local/share/mile/trusted-plugins; one "sha256 path" line each, appended), so
-- resuming one's own runs needs no flag.

--- trust_file() -> the path of the trust file.
function M.trust_file()
  local explicit = os.getenv("MILE_TRUST_FILE")
  if explicit and explicit ~= "" then return explicit end
  local base = os.getenv("XDG_DATA_HOME")
  if not base or base == "" then base = (os.getenv("HOME") or ".") .. "/.local/share" end
  return base .. "/mile/trusted-plugins"
end

local function in_trust_file(sha)
  local text = read(M.trust_file())
  return text ~= nil and text:find(sha .. " ", 1, true) ~= nil
end

--- trusted(sha256) -> whether the user has run plugin code with this hash here (in this
--- process, or as recorded in the trust file).
function M.trusted(sha)
  for _, r in ipairs(order) do if r.sha256 == sha and not r.from_copy then return true end end
  return in_trust_file(sha)
end

--- trust(sha256, path): remember plugin code the user ran (best effort: a trust file
--- that cannot be written only means a later --resume asks for --trust).
function M.trust(sha, path)
  if in_trust_file(sha) then return end
  local file = M.trust_file()
  local dir = file:match("^(.*)/[^/]*$")
  if dir then sys.mkdir(dir) end
  local f = io.open(file, "a") -- one short line per append: never half-written by a concurrent job
  if f then
    f:write(sha, " ", (tostring(path):gsub("[\n\r]", "?")), "\n")
    f:close()
  end
end

--- find(spec [, base]) -> the record of a loaded plugin, or nil.
function M.find(spec, base)
  if M.is_file_spec(spec) then return loaded[M.absolute(spec, base)] end
  return loaded[spec]
end

--- loaded() -> the records of every plugin loaded in this process, in load order.
function M.loaded()
  local out = {}
  for i, r in ipairs(order) do out[i] = r end
  return out
end

return M
