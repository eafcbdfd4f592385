--- mile.registry: the one shape of every extension point of the experiment layer.
--
-- Intervention models (mile.intervention), methods (mile.methods), cost schedules
-- (mile.schedules), memory models (mile.temporal) and tasks (mile.tasks) each keep a
-- registry made here. An entry is a table with
--
--   name    what configs call it ("probit", "mile", "linear", ...)
--   doc     one line for `mile train --keys`, help() and error messages
--   schema  the config keys it owns: {["key"] = {type=, default=, check=, choices=, doc=}}
--           (mile.config's spec; merged into a run's schema when a config uses the entry)
--
-- plus what its kind needs (build, train, init, ...). register() records the file that
-- registered the entry (its `source`), refuses a name registered twice and a config key
-- that another entry declares differently, naming both files.
--
--   local R = registry.new { kind = "schedule", key = "learner.schedule",
--                            builtins = { "mile.schedules.constant", ... } }
--   R.register { name = "mine", doc = "...", schema = {}, cost = function(self, round) ... end }
--   R.get("mine"), R.names(), R.entries()
--
-- Built-ins are modules loaded on first use (get, names, entries), so a registry
-- module never finds files through its own path and never loads what is not used.
local M = {}

--- Every registry, by kind (for tools that list everything: `mile train --keys`).
M.kinds = {}

-- Config keys declared by entries, across kinds: key -> {spec =, entry =, kind =}.
local owners = {}

--- The protocol's own keys (mile.loop's schema) are claimed too, so that no entry can
--- redeclare them.
function M.claim(schema, owner)
  for key, spec in pairs(schema) do owners[key] = { spec = spec, owner = owner } end
end

-- The files being loaded as plugins or built-ins (a stack): what registers while one
-- runs comes from it (debug information cannot tell when register is tail-called,
-- as in `return methods.register { ... }`).
local loading = {}

--- loading_file(path, fn, ...) -> fn(...): entries registered meanwhile come from path.
function M.loading_file(path, fn, ...)
  loading[#loading + 1] = path
  local res = table.pack(pcall(fn, ...))
  loading[#loading] = nil
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- Where register was called from: the file being loaded, else the calling function's.
local function caller_source(level)
  if #loading > 0 then return loading[#loading] end
  local info = debug.getinfo(level, "S")
  local src = info and info.source or "?"
  return src:sub(1, 1) == "@" and src:sub(2) or src
end

local function same_spec(a, b)
  if a == b then return true end
  if a.type ~= b.type or a.default ~= b.default then return false end
  local ca, cb = a.choices or {}, b.choices or {}
  if #ca ~= #cb then return false end
  for i = 1, #ca do if ca[i] ~= cb[i] then return false end end
  return true
end

local function describe(claim)
  if claim.owner then return claim.owner end
  return ("%s %q (%s)"):format(claim.kind, claim.entry.name, claim.entry.source)
end

--- new{kind=, key=, builtins={module names}, schema={keys of every entry of the kind},
---     check=function(entry) -> ok, why} -> registry
function M.new(opts)
  local R = { kind = opts.kind, key = opts.key, schema = opts.schema or {} }
  local entries, order = {}, {}
  local builtins_loaded = false
  local builtin_files -- the files of the built-in modules, found as require finds them
  M.kinds[opts.kind] = R
  M.claim(R.schema, ("every %s (%s)"):format(opts.kind, opts.key or opts.kind))

  local function load_builtins()
    if builtins_loaded then return end
    builtins_loaded = true
    for _, mod in ipairs(opts.builtins or {}) do
      if not package.loaded[mod] then M.loading_file(package.searchpath(mod, package.path) or mod, require, mod) end
    end
  end

  --- register(entry) -> entry. Errors name the registering file.
  function R.register(entry)
    local source = caller_source(3)
    local function fail(fmt, ...)
      error(("%s: %s: " .. fmt):format(source, opts.kind .. ".register", ...), 2)
    end
    if type(entry) ~= "table" then fail("expects a table {name=, doc=, schema=, ...}, got %s", type(entry)) end
    if type(entry.name) ~= "string" or not entry.name:match("^[%w_][%w_%-%.]*$") then
      fail("name must be a word (letters, digits, _ - .), got %s", tostring(entry.name))
    end
    if entry.name == "none" then fail("the name 'none' is reserved") end
    if type(entry.doc) ~= "string" or entry.doc == "" then fail("%s: doc must be a line of text", entry.name) end
    if entry.schema ~= nil and type(entry.schema) ~= "table" then fail("%s: schema must be a table", entry.name) end
    entry.schema = entry.schema or {}
    if not builtin_files then
      builtin_files = {}
      for _, mod in ipairs(opts.builtins or {}) do
        local path = package.searchpath(mod, package.path)
        if path then builtin_files[path] = true end
      end
    end
    local builtin = builtin_files[source] == true
    -- a plugin's names and keys are checked against every built-in, loaded or not yet
    if not builtin then for _, other in pairs(M.kinds) do other.names() end end
    local old = entries[entry.name]
    if old then
      fail("%s %q is registered twice (first by %s)", opts.kind, entry.name, old.source)
    end
    if opts.check then
      local ok, why = opts.check(entry)
      if not ok then fail("%s: %s", entry.name, why) end
    end
    for key, spec in pairs(entry.schema) do
      if type(key) ~= "string" or type(spec) ~= "table" or type(spec.type) ~= "string" then
        fail("%s: schema key %s needs a spec {type=, default=, doc=}", entry.name, tostring(key))
      end
      local claim = owners[key]
      -- entries of one kind may share a key declared alike (schedule.start of linear and
      -- exponential); anything else is a conflict
      if claim and not (claim.kind == opts.kind and same_spec(claim.spec, spec)) then
        fail("%s: config key '%s' is already declared by %s", entry.name, key, describe(claim))
      end
    end
    entry.source = entry.source or source
    entry.kind = opts.kind
    entry.builtin = builtin
    for key, spec in pairs(entry.schema) do
      owners[key] = owners[key] or { spec = spec, entry = entry, kind = opts.kind }
    end
    entries[entry.name] = entry
    order[#order + 1] = entry.name
    return entry
  end

  --- get(name) -> entry; an unknown name is an error listing the known ones.
  function R.get(name)
    load_builtins()
    local e = entries[name]
    if e then return e end
    error(("unknown %s %q (known: %s)"):format(opts.kind, tostring(name), table.concat(R.names(), ", ")), 2)
  end

  --- find(name) -> entry or nil.
  function R.find(name)
    load_builtins()
    return entries[name]
  end

  --- names() -> registered names, built-ins first, in registration order.
  function R.names()
    load_builtins()
    local out = {}
    for i, n in ipairs(order) do out[i] = n end
    return out
  end

  --- entries() -> the entries, in registration order.
  function R.entries()
    load_builtins()
    local out = {}
    for i, n in ipairs(order) do out[i] = entries[n] end
    return out
  end

  return R
end

--- owner(key) -> a description of the entry that declares config key `key`, or nil.
function M.owner(key)
  local claim = owners[key]
  return claim and describe(claim) or nil
end

--- spec(key) -> the spec of config key `key` as its owner declares it, or nil.
function M.spec(key)
  local claim = owners[key]
  return claim and claim.spec or nil
end

return M
