-- driver_nn_load.lua - nn.load's reading of a checkpoint's mile.spec under
-- fuzz_nn_load (fuzz_lua.c).
--
-- The input is the JSON text of a module spec. It is stored as the "mile.spec"
-- metadata of a checkpoint whose tensors are those of the module the spec builds (when
-- it builds within 16 MiB; else none), and the checkpoint is loaded with nn.load. A
-- failure must be an error that starts with "nn.load: "; a module that loads must save
-- and load again (nn.save, nn.load) to the same state_dict names.
local mio = require "mile.io"
local T = require "mile.tensor"
local nn = require "mile.nn"

local BUILD_BUDGET = 16 * 1024 * 1024

local function is_module(m)
  return type(m) == "table" and type(m.spec) == "function" and type(m.state_dict) == "function"
end

-- the tensors of the module the spec builds, or {} (the build runs under a budget)
local function tensors_of(text)
  local ok, spec = pcall(mio.json_decode, text)
  if not ok or type(spec) ~= "table" then return {} end
  local before = T.alloc_budget(BUILD_BUDGET)
  local built, m = pcall(nn.from_spec, spec)
  T.alloc_budget(before)
  if not built or not is_module(m) then return {} end
  local got, sd = pcall(m.state_dict, m)
  return got and type(sd) == "table" and sd or {}
end

local function names(sd)
  local out = {}
  for k in pairs(sd) do out[#out + 1] = tostring(k) end
  table.sort(out)
  return table.concat(out, ",")
end

return function(data, dir)
  local path = dir .. "/ckpt.safetensors"
  local meta = { ["mile.format_version"] = "1", ["mile.spec"] = data }
  local saved = pcall(mio.save_safetensors, path, tensors_of(data), meta)
  if not saved then return end -- not UTF-8, or tensors the writer refuses
  local ok, module = pcall(nn.load, path)
  if not ok then
    if type(module) ~= "string" or module:sub(1, 9) ~= "nn.load: " then
      error("nn.load: unexpected error: " .. tostring(module), 0)
    end
    return
  end
  if not is_module(module) then error("nn.load returned a " .. type(module), 0) end
  local path2 = dir .. "/again.safetensors"
  local ok2, err = pcall(nn.save, path2, module)
  if not ok2 then error("nn.save of a module nn.load built: " .. tostring(err), 0) end
  local ok3, again = pcall(nn.load, path2)
  if not ok3 then error("nn.load of a module nn.save wrote: " .. tostring(again), 0) end
  if names(again:state_dict()) ~= names(module:state_dict()) then
    error("nn.save/nn.load round trip changed the state_dict names", 0)
  end
end
