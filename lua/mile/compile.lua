--- mile.compile: a step recorded once and replayed from C.
--
--   local compile = require "mile.compile"
--   local step = compile(function(x, y)
--     opt:zero_grad()
--     local loss = ((net(x) - y) ^ 2):mean()
--     loss:backward()
--     opt:step()
--     return loss
--   end)
--   for ... do local loss = step(x, y) end
--
-- The first call with a given kind of arguments runs the function as usual while its
-- ops (forward, loss, backward, optimiser updates) are written to a tape; later calls
-- with tensors of the same shapes and dtypes replay the tape in C: no Lua per op, the
-- same results to the bit (the same kernels run in the same order).
--
-- What is part of the recording, as with torch.jit.trace: the step's control flow,
-- and every Lua value it used (numbers given to ops, lambda, cost, which parameters
-- exist). Non-tensor arguments of the step are guards: a call with other values, or
-- with other argument tables' keys, records anew (up to `max_recordings` kinds of
-- call; then the function just runs). Parameters are held by reference, so in-place
-- updates are seen; a parameter replaced by a new tensor is not (compile again).
--
-- A step that cannot be replayed runs as it is, every time, and `step.reason` says
-- why: it read a tensor's value into Lua (item, totable, t[i]), drew random numbers,
-- used a custom autograd op or an op outside the recorder (a data loader, a compiled
-- inference plan), or returned something that is not a tensor. An optimiser whose
-- learning rate (a schedule) or other hyperparameter changed makes the next call
-- record anew; its step counts may move outside the step (they are read at each
-- replay). Bad input (a NaN where the kernels refuse one) raises the op's own error,
-- prefixed by where in the tape it happened.
local core = require "mile.compile.core"
local T = require "mile.tensor"

local M = {}

local is_tensor = T.is_tensor
local MAX_RECORDINGS = 8

-- the optimisers stepped by the recording in progress (set by Optimizer:step)
local stepped = nil

-- The hyperparameters of the groups (betas, eps, momentum, weight decay, the learning
-- rate and the schedule's factor), skipping the parameters and their state.
local SKIP = { params = true, steps = true, initial_lr = true, exp_avgs = true, exp_avg_sqs = true,
               momentum_buffers = true }

--- hyperparameters(opt) -> what an optimiser's updates use now, as a snapshot for
-- same_hyperparameters (a recording bakes these values in; a replay needs the same).
-- A flat list of (table, key, value) triples, checked without building anything.
function M.hyperparameters(opt)
  local snap = { factor = opt:lr_factor(), n_groups = #opt.param_groups }
  for _, g in ipairs(opt.param_groups) do
    for k, v in pairs(g) do
      if not SKIP[k] then
        snap[#snap + 1], snap[#snap + 2], snap[#snap + 3] = g, k, v
        if type(v) == "table" then -- betas: each element too
          for i, x in ipairs(v) do snap[#snap + 1], snap[#snap + 2], snap[#snap + 3] = v, i, x end
        end
      end
    end
  end
  return snap
end

--- same_hyperparameters(opt, snap) -> true when opt's hyperparameters are still those of
-- the snapshot (M.hyperparameters).
function M.same_hyperparameters(opt, snap)
  if #opt.param_groups ~= snap.n_groups or opt:lr_factor() ~= snap.factor then return false end
  for i = 1, #snap, 3 do
    if snap[i][snap[i + 1]] ~= snap[i + 2] then return false end
  end
  return true
end

--- note_optimizer(opt): called by an optimiser's step(); while a step is being recorded,
-- its updates are on the tape, and replays check its hyperparameters and advance its count.
function M.note_optimizer(opt)
  if stepped and core.recording() then stepped[opt] = M.hyperparameters(opt) end
end

--- recording() -> true while a step is being recorded on this thread.
function M.recording() return core.recording() end

-- Flatten the arguments: tensors go to `inputs`, everything else into a key that
-- guards the recording. Tables are read one level deep, keys in sorted order.
local function scalar_key(v)
  local tv = type(v)
  if tv == "number" then return (math.type(v) == "integer" and "i" or "n") .. string.format("%.17g", v) end
  if tv == "string" then return "s" .. string.format("%q", v) end
  if tv == "boolean" or tv == "nil" then return tostring(v) end
  return nil
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    return a < b
  end)
  return keys
end

local function flatten(n, args)
  local inputs, key = {}, {}
  for i = 1, n do
    local v = args[i]
    if is_tensor(v) then
      inputs[#inputs + 1] = v
      key[#key + 1] = "T"
    elseif type(v) == "table" then
      key[#key + 1] = "{"
      for _, k in ipairs(sorted_keys(v)) do
        local x = v[k]
        local kk = scalar_key(k)
        if not kk then return nil, nil, "an argument table has a key that is not a number or a string" end
        key[#key + 1] = kk .. "="
        if is_tensor(x) then
          inputs[#inputs + 1] = x
          key[#key + 1] = "T"
        else
          local sk = scalar_key(x)
          if not sk then
            return nil, nil, ("argument %d.%s is a %s (only tensors, numbers, strings and booleans are guarded)"):format(
              i, tostring(k), type(x))
          end
          key[#key + 1] = sk
        end
      end
      key[#key + 1] = "}"
    else
      local sk = scalar_key(v)
      if not sk then
        return nil, nil, ("argument %d is a %s (only tensors, numbers, strings, booleans and tables of them are guarded)")
          :format(i, type(v))
      end
      key[#key + 1] = sk
    end
  end
  return inputs, table.concat(key, " ")
end

-- The results of a step as a flat list of tensors (nil kept), and a rebuild function.
local function flatten_results(n, res)
  local outs = {}
  for i = 1, n do
    local v = res[i]
    if v ~= nil and not is_tensor(v) then
      return nil, ("result %d is a %s; a compiled step returns tensors (call :item() outside it)"):format(i, type(v))
    end
    outs[i] = v or false
  end
  return outs
end

local Compiled = {}
Compiled.__index = Compiled

local function record(self, key, inputs, n, args)
  local prev = stepped
  stepped = {}
  core.begin(inputs)
  local res = table.pack(pcall(self.fn, table.unpack(args, 1, n)))
  local opts = stepped
  stepped = prev
  if not res[1] then
    core.abort()
    error(res[2], 0)
  end
  local results = table.pack(table.unpack(res, 2, res.n))
  local outs, why = flatten_results(results.n, results)
  local list = {}
  for i = 1, results.n do list[i] = outs and outs[i] or nil end
  if not outs then
    core.abort()
  else
    local tape, reason = core.finish(list)
    if tape then
      local guards = {}
      for opt, snap in pairs(opts) do guards[#guards + 1] = { opt = opt, hyper = snap } end
      local entry = { tape = tape, n_results = results.n, optimizers = guards }
      local entries = self.entries[key] or {}
      entries[#entries + 1] = entry
      self.entries[key] = entries
      self.reason = nil
      self.recorded = self.recorded + 1
      return table.unpack(results, 1, results.n)
    end
    why = reason
  end
  self.eager_keys[key] = why
  self.reason = why
  self.eager = self.eager + 1
  return table.unpack(results, 1, results.n)
end

-- the optimisers' hyperparameters are those the tape baked in (a schedule or the user
-- may have changed the learning rate); step counts need no guard, the replay reads
-- and writes back the optimiser's own
local function optimizers_match(entry)
  for _, g in ipairs(entry.optimizers) do
    if not M.same_hyperparameters(g.opt, g.hyper) then return false end
  end
  return true
end

-- after a replay: each optimiser's own count of steps, as its step() keeps it
local function advance_optimizers(entry)
  for _, g in ipairs(entry.optimizers) do g.opt.step_count = g.opt.step_count + 1 end
end

function Compiled:__call(...)
  if core.recording() then return self.fn(...) end -- inside another recording: its ops go there
  if self.off then
    self.reason, self.eager = "MILE_COMPILE=0", self.eager + 1
    return self.fn(...)
  end
  local n = select("#", ...)
  local args = { ... }
  local inputs, key, why = flatten(n, args)
  if not inputs then
    self.reason = why
    self.eager = self.eager + 1
    return self.fn(...)
  end
  if self.eager_keys[key] then
    self.reason = self.eager_keys[key]
    self.eager = self.eager + 1
    return self.fn(...)
  end
  local entries = self.entries[key]
  if entries then
    for i = #entries, 1, -1 do
      local entry = entries[i]
      if entry.tape:matches(inputs) then
        if optimizers_match(entry) then
          local outs = entry.tape:replay(inputs)
          advance_optimizers(entry)
          self.replayed = self.replayed + 1
          self.reason = nil
          return table.unpack(outs, 1, entry.n_results)
        end
        table.remove(entries, i) -- an optimiser's hyperparameters changed: record anew
        self.dropped = self.dropped + 1
      end
    end
  end
  local total = 0
  for _, list in pairs(self.entries) do total = total + #list end
  if total >= self.max_recordings then
    self.reason = ("more than %d kinds of call (shapes, dtypes, argument values); running as it is"):format(
      self.max_recordings)
    self.eager = self.eager + 1
    return self.fn(...)
  end
  return record(self, key, inputs, n, args)
end

--- The op names of the most recent recording (for a look at what replays).
function Compiled:ops()
  local last
  for _, list in pairs(self.entries) do last = list[#list] or last end
  return last and last.tape:ops() or {}
end

--- Counts: recorded, replayed, eager (ran as it is), dropped (recordings discarded
-- because an optimiser's hyperparameters changed).
function Compiled:stats()
  return { recorded = self.recorded, replayed = self.replayed, eager = self.eager, dropped = self.dropped,
           reason = self.reason }
end

--- compile(fn [, {max_recordings = 8}]) -> a callable that records fn once per kind of
-- call and replays it afterwards. MILE_COMPILE=0 in the environment turns recording off
-- everywhere (every call runs fn as it is, reason "MILE_COMPILE=0"), to compare.
function M.compile(fn, opts)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error("compile: needs a function", 2)
  end
  opts = opts or {}
  local max = opts.max_recordings or MAX_RECORDINGS
  if math.type(max) ~= "integer" or max < 1 then error("compile: max_recordings must be an integer >= 1", 2) end
  return setmetatable({ fn = fn, entries = {}, eager_keys = {}, recorded = 0, replayed = 0, eager = 0, dropped = 0,
                        max_recordings = max, off = os.getenv("MILE_COMPILE") == "0" }, Compiled)
end

return setmetatable(M, { __call = function(_, fn, opts) return M.compile(fn, opts) end })
