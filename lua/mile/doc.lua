--- mile.doc: the documentation of mile's functions, for help(f) and ?f in the REPL.
-- A Lua function's documentation is the comment block right above its definition
-- (the `---` lines; plain `--` lines of the same block count too); a C function's is
-- the entry of mile.cdoc for the name it is registered under (mile.tensor.zeros,
-- Tensor:shape, ...). `require("mile").doc[f]` reads through get(f).
--
--   local doc = require "mile.doc"
--   print(doc.get(require("mile.loop").run))
--   doc.undocumented()      --> names of exported functions without documentation
local M = {}

local sources = {} -- path -> array of lines (false: unreadable)

local function lines_of(path)
  local t = sources[path]
  if t == nil then
    local f = io.open(path)
    t = false
    if f then
      t = {}
      for line in f:lines() do t[#t + 1] = line end
      f:close()
    end
    sources[path] = t
  end
  return t or nil
end

-- The comment block ending on the line above `line` of path, without the dashes.
local function comment_above(path, line)
  local lines = lines_of(path)
  if not lines then return nil end
  local out, i = {}, line - 1
  while i >= 1 and lines[i]:match("^%s*%-%-") and not lines[i]:match("^%s*%-%-%[%[") do
    table.insert(out, 1, (lines[i]:gsub("^%s*%-%-+ ?", "")))
    i = i - 1
  end
  if #out == 0 then return nil end
  local text = table.concat(out, "\n"):gsub("^%s+", ""):gsub("%s+$", "")
  return text ~= "" and text or nil
end

-- C function -> its documentation, from mile.cdoc
local function c_index()
  local index, cdoc = {}, require "mile.cdoc"
  local function add(fn, doc)
    if type(fn) == "function" and index[fn] == nil then index[fn] = doc end
  end
  local T = require "mile.tensor"
  local probe, gen = T.zeros(1), T.Generator(0)
  for name, doc in pairs(cdoc.Tensor) do add(probe[name], doc) end
  for name, doc in pairs(cdoc.Generator) do add(gen[name], doc) end
  for modname, docs in pairs(cdoc.modules) do
    local ok, mod = pcall(require, modname)
    if ok and type(mod) == "table" then
      for name, doc in pairs(docs) do add(rawget(mod, name), doc) end
    end
  end
  return index
end

local c_docs -- built on first use

--- get(f) -> the documentation of the function f (a string), or nil when it has none.
function M.get(f)
  if type(f) ~= "function" then return nil end
  local info = debug.getinfo(f, "S")
  if info.what == "C" then
    c_docs = c_docs or c_index()
    return c_docs[f]
  end
  local path = info.source:match("^@(.*)")
  if not path or info.linedefined < 1 then return nil end
  return comment_above(path, info.linedefined)
end

-- The public functions of mile: every function field of the modules mile.modules()
-- lists and of the tables they export (classes: nn.Linear, optim.Adam, ...; tensor
-- methods are mile.tensor's functions), and the methods of generators. Returns a
-- sorted array of {name, fn}.
local function public_functions()
  local mile = require "mile"
  local out, seen = {}, {}
  local function add(name, fn)
    if not seen[fn] then
      seen[fn] = true
      out[#out + 1] = { name = name, fn = fn }
    end
  end
  -- a module's functions, and those of the tables it exports (classes: nn.Linear, ...)
  local function walk(prefix, tbl, depth)
    local keys = {}
    for k in pairs(tbl) do if type(k) == "string" and not k:match("^_") then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = rawget(tbl, k)
      if type(v) == "function" then
        add(prefix .. "." .. k, v)
      elseif type(v) == "table" and depth == 0 and not package.loaded[prefix .. "." .. k] then
        walk(prefix .. "." .. k, v, 1)
      end
    end
  end
  for _, name in ipairs(mile.modules()) do
    local mod = mile[name]
    if type(mod) == "table" then walk("mile." .. name, mod, 0) end
  end
  -- tensor methods are mile.tensor's functions too; a generator's are its own
  local gmt = getmetatable(require("mile.tensor").Generator(0))
  local gmethods = type(gmt.__index) == "table" and gmt.__index or {}
  for name, fn in pairs(gmethods) do
    if type(fn) == "function" and not name:match("^_") then add("Generator:" .. name, fn) end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

--- undocumented() -> the sorted names of mile's public functions without documentation
--- (the test test_doc requires none), and the number of public functions.
function M.undocumented()
  local missing, all = {}, public_functions()
  for _, e in ipairs(all) do
    if not M.get(e.fn) then missing[#missing + 1] = e.name end
  end
  return missing, #all
end

--- registry() -> a table whose index is get: `registry[f]` is f's documentation (what
--- require("mile").doc is, and what help(f) in the REPL looks up).
function M.registry()
  return setmetatable({}, { __index = function(_, f) return M.get(f) end, __mode = "k" })
end

return M
