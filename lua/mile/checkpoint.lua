--- mile.checkpoint: modules saved as safetensors files (nn.save / nn.load).
--
--   nn.save("run/policy.safetensors", policy)            -- or checkpoint.save
--   local policy2, meta = nn.load("run/policy.safetensors")
--
-- A checkpoint is a plain safetensors file (see docs/io.md): the tensors are the
-- module's state_dict() (parameters and buffers under dotted names, sorted), and the
-- header's "__metadata__" holds
--   "mile.format_version"  "1"
--   "mile.spec"            the module's spec() as JSON: what nn.from_spec rebuilds
-- plus any string entries the caller adds. PyTorch/NumPy read the tensors with
-- safetensors.torch.load_file / safetensors.numpy.load_file.
--
-- Both functions raise on every failure (a file that cannot be written or read
-- included), with a message that names the file and the problem, as torch.save
-- and torch.load do. mile.io.load_safetensors is the nil, message variant.
local mio = require "mile.io"
local T = require "mile.tensor"

local M = {}

--- The format version written in "mile.format_version", and the only one read.
M.FORMAT_VERSION = "1"
M.VERSION_KEY = "mile.format_version"
M.SPEC_KEY = "mile.spec"

local MAX_DEPTH = 100

-- Rebuilding a module from a file's spec allocates what the spec asks for before the
-- tensors can be compared with the file's: a 120-byte file naming Linear(32768, 32768)
-- would make 4 GiB. The build runs under an allocation budget instead: the file's
-- tensor bytes (what a matching module holds) twice over, for temporaries of a
-- constructor, plus this much.
M.BUILD_SLACK_BYTES = 16 * 1024 * 1024

-- nn.from_spec(spec) with new tensors bounded to `budget` bytes (and to an enclosing
-- budget, which is charged what the build used); the budget is restored on errors too.
local function build_bounded(nn, spec, budget)
  local outer = T.alloc_budget(nil)
  local limit = outer and math.min(outer, budget) or budget
  T.alloc_budget(limit)
  local ok, module = pcall(nn.from_spec, spec)
  local left = T.alloc_budget(nil) or 0
  if outer then T.alloc_budget(math.max(outer - (limit - left), 0)) end
  return ok, module
end

local function tensor_bytes(t) return t:numel() * (t:dtype() == "float64" and 8 or 4) end

-- JSON cannot hold nil: a constructor argument that spec() dropped (a generator)
-- leaves a hole in the args array, written as null and turned back into a hole on
-- load. Other tables go through unchanged (json_encode rejects what it cannot hold).
local function to_json(v, depth)
  if type(v) ~= "table" then return v end
  if depth > MAX_DEPTH then error("spec tables nested too deeply (a cycle?)", 0) end
  local count, max, all_ints = 0, 0, true
  for k in pairs(v) do
    count = count + 1
    if math.type(k) == "integer" and k >= 1 then
      if k > max then max = k end
    else
      all_ints = false
    end
  end
  local out = {}
  if all_ints and count > 0 and max ~= count then
    if max > 2 * count + 16 then error("spec holds a sparse array (key " .. max .. ")", 0) end
    for i = 1, max do
      if v[i] == nil then out[i] = mio.null else out[i] = to_json(v[i], depth + 1) end
    end
  else
    for k, x in pairs(v) do out[k] = to_json(x, depth + 1) end
  end
  return out
end

local function from_json(v)
  if v == mio.null then return nil end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = from_json(x) end -- a nil leaves the hole it was
  return out
end

-- Error messages of the C functions, without a position: called through pcall, the
-- C function has no Lua caller to point at; error(msg, 3) then names the user's line.
local function call(fname, path, f, ...)
  local res = table.pack(pcall(f, ...))
  if not res[1] then
    local msg = tostring(res[2]):gsub("^[%w_]+_safetensors: ", "")
    error(("%s: %s"):format(fname, msg), 3)
  end
  return table.unpack(res, 2, res.n)
end

local function shape_str(t) return "{" .. table.concat(t:shape(), ",") .. "}" end

local function is_module(m)
  return type(m) == "table" and type(m.spec) == "function" and type(m.state_dict) == "function"
end

--- save(path, module [, metadata]): write module's state_dict and spec to path,
-- atomically (a temporary file in the same directory, fsync, rename).
-- metadata: optional {key = string} stored next to mile's own entries; keys starting
-- with "mile." are reserved. Returns true; raises on failure.
function M.save(path, module, metadata)
  local fname = "nn.save"
  if type(path) ~= "string" then error(("%s: path must be a string, got %s"):format(fname, type(path)), 2) end
  if not is_module(module) then
    error(("%s: %s: expected a module (with :spec() and :state_dict()), got %s"):format(fname, path, type(module)), 2)
  end
  local meta = {}
  if metadata ~= nil then
    if type(metadata) ~= "table" then
      error(("%s: %s: metadata must be a table {key = string}, got %s"):format(fname, path, type(metadata)), 2)
    end
    for k, v in pairs(metadata) do
      if type(k) ~= "string" or type(v) ~= "string" then
        error(("%s: %s: metadata must map strings to strings (key %s holds a %s)"):format(
          fname, path, tostring(k), type(v)), 2)
      end
      if k:sub(1, 5) == "mile." then
        error(("%s: %s: metadata key %q: keys starting with \"mile.\" are reserved"):format(fname, path, k), 2)
      end
      meta[k] = v
    end
  end
  local ok, spec = pcall(function() return mio.json_encode(to_json(module:spec(), 0)) end)
  if not ok then
    error(("%s: %s: the module's spec cannot be stored as JSON: %s"):format(fname, path, tostring(spec)), 2)
  end
  meta[M.VERSION_KEY] = M.FORMAT_VERSION
  meta[M.SPEC_KEY] = spec
  local done, err = call(fname, path, mio.save_safetensors, path, module:state_dict(), meta)
  if not done then error(("%s: %s"):format(fname, (tostring(err):gsub("^save_safetensors: ", ""))), 2) end
  return true
end

--- load(path) -> module, metadata: rebuild the module from the file's spec and load
-- its tensors. The file's tensors must be exactly the rebuilt module's state_dict:
-- same names, shapes and dtypes. The module is in training mode, like a new one.
-- metadata is the whole "__metadata__" table (mile's entries included). Raises on
-- failure: missing file, malformed file, not a mile checkpoint, another format
-- version, a spec that does not rebuild, tensors that do not match. The module is
-- built under an allocation budget of twice the file's tensor bytes (plus
-- M.BUILD_SLACK_BYTES): a spec that asks for more cannot match the file, and is
-- refused before its tensors are allocated.
function M.load(path)
  local fname = "nn.load"
  if type(path) ~= "string" then error(("%s: path must be a string, got %s"):format(fname, type(path)), 2) end
  local tensors, meta = call(fname, path, mio.load_safetensors, path)
  if not tensors then error(("%s: %s"):format(fname, (tostring(meta):gsub("^load_safetensors: ", ""))), 2) end

  local version, spec_json = meta[M.VERSION_KEY], meta[M.SPEC_KEY]
  if version == nil or spec_json == nil then
    error(("%s: %s: not a mile checkpoint (its metadata has no %q / %q; read the tensors with "
      .. "mile.io.load_safetensors)"):format(fname, path, M.VERSION_KEY, M.SPEC_KEY), 2)
  end
  if version ~= M.FORMAT_VERSION then
    error(("%s: %s: checkpoint format version %q, this mile reads version %q"):format(
      fname, path, version, M.FORMAT_VERSION), 2)
  end
  local ok, spec = pcall(mio.json_decode, spec_json)
  if not ok then error(("%s: %s: %s is not valid JSON: %s"):format(fname, path, M.SPEC_KEY, tostring(spec)), 2) end
  spec = from_json(spec)
  if type(spec) ~= "table" or type(spec.type) ~= "string" then
    error(("%s: %s: %s is not a module spec {type = ..., args = ...}"):format(fname, path, M.SPEC_KEY), 2)
  end

  local nn = require "mile.nn"
  local file_bytes = 0
  for _, t in pairs(tensors) do file_bytes = file_bytes + tensor_bytes(t) end
  local built, module = build_bounded(nn, spec, 2 * file_bytes + M.BUILD_SLACK_BYTES)
  if not built then
    if tostring(module):find("exceeds the allocation budget", 1, true) then
      error(("%s: %s: the %s module of the spec needs more memory than the file's %d bytes of tensors "
        .. "can fill; refusing to build it (%s)"):format(fname, path, spec.type, file_bytes, tostring(module)), 2)
    end
    error(("%s: %s: cannot rebuild the %s module of the spec: %s"):format(fname, path, spec.type,
      tostring(module)), 2)
  end

  -- the file's tensors against the rebuilt module's: names, shapes, dtypes
  local own = module:state_dict()
  local missing, unexpected, problems = {}, {}, {}
  for name, t in pairs(own) do
    local f = tensors[name]
    if f == nil then
      missing[#missing + 1] = name
    elseif shape_str(f) ~= shape_str(t) then
      problems[#problems + 1] = ("%s has shape %s in the file, %s in the module"):format(
        name, shape_str(f), shape_str(t))
    elseif f:dtype() ~= t:dtype() then
      problems[#problems + 1] = ("%s is %s in the file, %s in the module"):format(name, f:dtype(), t:dtype())
    end
  end
  for name in pairs(tensors) do
    if own[name] == nil then unexpected[#unexpected + 1] = name end
  end
  table.sort(missing)
  table.sort(unexpected)
  table.sort(problems)
  if #missing > 0 then table.insert(problems, 1, "missing from the file: " .. table.concat(missing, ", ")) end
  if #unexpected > 0 then table.insert(problems, 1, "not in the module: " .. table.concat(unexpected, ", ")) end
  if #problems > 0 then
    error(("%s: %s: the tensors do not match the %s module its spec builds: %s"):format(
      fname, path, spec.type, table.concat(problems, "; ")), 2)
  end
  module:load_state_dict(tensors)
  return module, meta
end

return M
