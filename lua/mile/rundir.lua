--- mile.rundir: the one owner of the run-directory format.
--
--   <dir>/config.lua              the resolved config (a Lua table, read as data)
--   <dir>/plugins.lua             the plugins the run needs: {spec, kind, path, sha256, copy}
--   <dir>/plugins/<k>_<name>.lua  a copy of each plugin file, loaded on resume / open
--   <dir>/state.lua               the commit point: format, round, episodes, rows (dataset
--                                 rows committed), generators, metrics, initial,
--                                 schedule, checkpoint (relative to dir); after
--                                 mile rescore, eval_episodes (the scores' count)
--   <dir>/checkpoints/round_NNN/  policy, mental model, memory, optimiser states
--   <dir>/dataset.csv, metrics.csv, report.md and plots
--
-- Every file is written whole (temporary file, fsync, rename); state.lua is written
-- last and names what the round committed, so a run killed at any point resumes from
-- its last committed round. Paths inside the directory are stored relative to it, so
-- a run directory can be moved or copied. config.lua and state.lua are read as data:
-- in an empty environment, with an instruction budget (a malicious or broken file
-- gets an error, not a hang).
local sys = require "mile.sys"
local config = require "mile.config"
local plugins = require "mile.plugins"

local M = {}

--- The format written in state.lua, and the only one read (1: before plugins and
--- relative paths; such directories are refused with a clear error).
M.FORMAT = 2

local Dir = {}
Dir.__index = Dir
M.Dir = Dir

local function fail(fmt, ...) error("rundir: " .. fmt:format(...), 0) end

local function write(path, text)
  local ok, err = sys.write_atomic(path, text)
  if not ok then fail("%s", err) end
end

-- Instructions a data file may run (a table constructor of a long run's metrics is
-- far below this).
local BUDGET = 50000000

--- read_data(path) -> the value a Lua data file returns, read without access to
--- anything (no globals but math.huge) and within an instruction budget.
function M.read_data(path)
  local chunk, err = loadfile(path, "t", { math = { huge = math.huge } })
  if not chunk then fail("%s", err) end
  local ok, v = config.run_budgeted(chunk, BUDGET, path)
  if not ok then fail("%s", tostring(v)) end
  return v
end

--- is_rundir(dir) -> whether dir holds a run (its config.lua).
function M.is_rundir(dir)
  return type(dir) == "string" and sys.stat(dir .. "/config.lua") == "file"
end

local function new(dir)
  return setmetatable({ dir = (dir:gsub("/+$", "")) }, Dir)
end

--- create(dir, cfg, records) -> Dir: a new run directory with its resolved config and
--- a copy of each plugin (records as mile.plugins gives them). Refuses a directory
--- that already holds a run.
function M.create(dir, cfg, records)
  local d = new(dir)
  if M.is_rundir(d.dir) then fail("%s already holds a run (resume it with --resume)", d.dir) end
  assert(sys.mkdir(d.dir))
  d:remove_temporaries() -- of a creation killed before config.lua
  local manifest = {}
  for k, rec in ipairs(records or {}) do
    local text = rec.path and plugins.read(rec.path)
    if not text then fail("plugin %s: cannot read %s to keep a copy", rec.spec, tostring(rec.path)) end
    local base = (rec.path:match("([^/]+)%.lua$") or "plugin"):gsub("[^%w_%-]", "_")
    local copy = ("plugins/%d_%s.lua"):format(k, base)
    assert(sys.mkdir(d.dir .. "/plugins"))
    write(d:path(copy), text)
    manifest[k] = { spec = rec.spec, kind = rec.kind, path = rec.path, sha256 = sys.sha256(text), copy = copy }
  end
  write(d:path("plugins.lua"), "-- the plugins of this run (mile.rundir)\nreturn " .. config.serialize(manifest) .. "\n")
  d:write_config(cfg)
  return d
end

--- open(dir) -> Dir of an existing run directory (an error names what is wrong).
function M.open(dir)
  if type(dir) ~= "string" or dir == "" then fail("expects the path of a run directory, got %s", tostring(dir)) end
  local d = new(dir)
  if not M.is_rundir(d.dir) then fail("%s is not a run directory (no config.lua)", d.dir) end
  local st = d:state()
  if st and st.format ~= M.FORMAT then
    fail("%s: state.lua has format %s, this mile reads format %d (a run of an older mile: rerun it)", d.dir,
      tostring(st.format or 1), M.FORMAT)
  end
  return d
end

-- Names of the temporary files of an interrupted atomic write (sys.write_atomic,
-- the safetensors and CSV writers, mile.plot).
local function is_temporary(name)
  return name:match("%.tmp[%.%-][%d%-]+$") ~= nil or name:match("%.part%.%w+$") ~= nil
end

--- remove_temporaries(): delete what writes killed before their rename left behind
--- (the run directory and its checkpoint directories); returns how many.
function Dir:remove_temporaries()
  local n = 0
  local function sweep(dir, depth)
    for _, name in ipairs(sys.listdir(dir) or {}) do
      local path = dir .. "/" .. name
      local kind = sys.stat(path)
      if kind == "file" and is_temporary(name) then
        if os.remove(path) then n = n + 1 end
      elseif kind == "directory" and depth < 2 and (name == "checkpoints" or name:match("^round_%d+$")) then
        sweep(path, depth + 1)
      end
    end
  end
  sweep(self.dir, 0)
  return n
end

--- path(name) -> dir/name.
function Dir:path(name) return self.dir .. "/" .. name end

--- write(name, text): a file of the run directory, written whole.
function Dir:write(name, text) write(self:path(name), text) end

--- config() -> the stored config (a nested table; mile.loop resolves it).
function Dir:config()
  local t = M.read_data(self:path("config.lua"))
  if type(t) ~= "table" then fail("%s: config.lua must return a table", self.dir) end
  return t
end

--- write_config(cfg): store the resolved (flat) config.
function Dir:write_config(cfg) write(self:path("config.lua"), config.to_source(cfg)) end

--- state() -> the last commit (a table), or nil before the first round committed.
function Dir:state()
  local path = self:path("state.lua")
  if sys.stat(path) ~= "file" then return nil end
  local st = M.read_data(path)
  if type(st) ~= "table" then fail("%s: state.lua must return a table", self.dir) end
  return st
end

--- checkpoint(r) -> the relative name of round r's checkpoint directory.
function Dir.checkpoint_name(r) return ("checkpoints/round_%03d"):format(r) end

--- checkpoint(r [, create]) -> the path of round r's checkpoint directory.
function Dir:checkpoint(r, create)
  local path = self:path(Dir.checkpoint_name(r))
  if create then assert(sys.mkdir(path)) end
  return path
end

--- commit(state): write state.lua (the commit point), with the format version.
function Dir:commit(state)
  state.format = M.FORMAT
  write(self:path("state.lua"), "return " .. config.serialize(state) .. "\n")
end

--- plugins() -> the manifest: {spec, kind, path, sha256, copy} per plugin.
function Dir:plugins()
  if sys.stat(self:path("plugins.lua")) ~= "file" then return {} end
  return M.read_data(self:path("plugins.lua"))
end

--- load_plugins([opts]) -> records: load the run's plugins from the copies it keeps
--- (the code the run was trained with). Nothing runs unless every copy is trusted: code
--- the user has run on this machine (plugins.trusted), a module on package.path with
--- the same text, or opts.trust = true (--trust); otherwise an error names the files
--- that would run. A plugin whose original file changed since is named in a warning
--- (opts.warn(msg), default: stderr); a missing copy is an error.
function Dir:load_plugins(opts)
  opts = opts or {}
  local warn = opts.warn or function(msg) io.stderr:write("mile: warning: ", msg, "\n") end
  local out, untrusted, records = {}, {}, self:plugins()
  for _, rec in ipairs(records) do
    local copy = self:path(rec.copy)
    local text = plugins.read(copy)
    if not text then
      fail("%s: the copy %s of plugin %s is missing (config key 'plugins')", self.dir, rec.copy, rec.spec)
    end
    if sys.sha256(text) ~= rec.sha256 then
      fail("%s: the copy %s of plugin %s does not match its recorded sha256", self.dir, rec.copy, rec.spec)
    end
    local on_path = rec.kind == "module" and package.searchpath(rec.spec, package.path)
    if not (opts.trust or plugins.trusted(rec.sha256) or (on_path and plugins.hash(on_path) == rec.sha256)) then
      untrusted[#untrusted + 1] = ("%s (a copy of %s, sha256 %s)"):format(copy, rec.path or rec.spec,
        rec.sha256:sub(1, 16))
    end
  end
  if #untrusted > 0 then
    fail("%s needs plugin code that has not run on this machine: %s. Read it; then allow it with --trust "
      .. "(mile.open(dir, {trust = true})) or by naming the same file with --plugin", self.dir,
      table.concat(untrusted, "; "))
  end
  for _, rec in ipairs(records) do
    local copy = self:path(rec.copy)
    if opts.trust then plugins.trust(rec.sha256, rec.path or rec.spec) end
    if not plugins.find(rec.spec) then
      local now = rec.path and plugins.hash(rec.path)
      if now and now ~= rec.sha256 then
        warn(("plugin %s changed since run %s started; the run uses its own copy %s"):format(rec.path, self.dir,
          copy))
      end
    end
    out[#out + 1] = plugins.load(rec.spec, { path = copy, kind = rec.kind })
  end
  return out
end

return M
