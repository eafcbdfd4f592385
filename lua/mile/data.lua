--- mile.data: intervention datasets (one row per environment step) and their CSV files.
--
--   local data = require "mile.data"
--   local ds = data.new{obs_dim = 8, n_actions = 4}            -- discrete actions 0..3
--   ds:append{episode = 0, t = 0, obs = obs, robot_action = 2, nu = 0,
--             reward = -0.5, done = false, success = false}    -- human_action: robot's
--   ds:append{episode = 0, t = 1, obs = obs2, robot_action = 2, human_action = 1, nu = 1,
--             reward = 0.1, done = false, success = false}
--   assert(ds:save("run/data.csv"))                            -- atomic
--   local back = assert(data.load("run/data.csv", {n_actions = 4}))
--   local g = require("mile.tensor").Generator(0)
--   for batch in ds:batches{batch_size = 256, generator = g} do
--     -- batch.obs [B, 8], batch.human_action [B], batch.nu [B], ... batch.index [B]
--   end
--
-- The file format, the checks and the crash-safety of the writers are in docs/data.md
-- (and core/include/mile/data.h). In short: CSV with a header
-- `episode,t,s_0..s_{n-1},ar,ah,nu,reward,done,success[,p]` (continuous actions:
-- `ar_0..ar_{d-1},ah_0..ah_{d-1}`); on a step without intervention (nu = 0) the
-- human action columns hold the robot action; every field a finite number.
--
-- Errors, as mile.io: a file that cannot be opened, read or written gives
-- `nil, message`; a malformed file raises "<file>:<line>:<column>: <problem>"; misuse
-- raises. Row indices are 1-based; discrete action values are the env's (0..A-1).
local core = require "mile.data.core"
local tensor = require "mile.tensor"

local M = {}

local Dataset = {}
Dataset.__index = Dataset
M.Dataset = Dataset

local Sampler = {}
Sampler.__index = Sampler
M.Sampler = Sampler

-- The columns of tensors(), in the canonical order.
local FIELDS = { "episode", "t", "obs", "robot_action", "human_action", "nu", "reward", "done",
                 "success", "p" }

local function fail(fmt, ...)
  error(string.format(fmt, ...), 3)
end

-- A Dataset object around a core box.
local function wrap(box)
  local obs_dim, action_dim, discrete, has_p, n_actions = core.layout(box)
  return setmetatable({
    _box = box,
    _written = {}, -- path -> rows this object has written there (save / append_to)
    obs_dim = obs_dim,
    action_dim = action_dim,
    discrete = discrete,
    has_p = has_p,
    n_actions = n_actions > 0 and n_actions or nil,
  }, Dataset)
end

local function check_dim(v, name)
  if math.type(v) ~= "integer" or v < 1 then
    fail("data.new: %s must be a positive integer, got %s", name, tostring(v))
  end
  return v
end

--- data.new{obs_dim=, n_actions= | action_dim=, discrete=, has_p=} -> an empty Dataset.
-- Discrete datasets (n_actions given, or discrete = true) have one action column each
-- (`ar`, `ah`) holding action values 0..n_actions-1; n_actions may be left out when
-- unknown (values are then only checked to be non-negative integers). Continuous
-- datasets need action_dim. has_p = true adds the `p` column (the simulated human's
-- intervention probability); then every appended step must give p.
function M.new(opts)
  if type(opts) ~= "table" then fail("data.new: expected a table of options") end
  local obs_dim = check_dim(opts.obs_dim, "obs_dim")
  local discrete = opts.discrete
  if discrete == nil then discrete = opts.action_dim == nil end
  local action_dim, n_actions = 1, 0
  if discrete then
    if opts.action_dim ~= nil and opts.action_dim ~= 1 then
      fail("data.new: a discrete dataset has one action column (action_dim = 1), got action_dim = %s",
           tostring(opts.action_dim))
    end
    if opts.n_actions ~= nil then n_actions = check_dim(opts.n_actions, "n_actions") end
  else
    if opts.n_actions ~= nil then fail("data.new: n_actions is for discrete datasets (discrete = false given)") end
    action_dim = check_dim(opts.action_dim, "action_dim")
  end
  return wrap(core.new(obs_dim, action_dim, discrete, opts.has_p and true or false, n_actions))
end

--- data.load(path [, expect]) -> Dataset | nil, message
-- Reads and checks a dataset CSV. A malformed file raises "<path>:<line>:<column>:
-- <problem>"; a file that cannot be opened or read returns nil, message. expect
-- (optional): {n_actions=, obs_dim=, action_dim=, discrete=, has_p=, float=,
-- max_bytes=}; n_actions checks every discrete action against it (with line and
-- column), obs_dim .. has_p are compared with the file's layout (an error names both).
-- Lossless or refused: numbers in the exact columns (episode, t, nu, done, success,
-- discrete ar/ah) must be exactly the integer stored ("9007199254740993", beyond
-- 2^53, is an error, not 2^53); float = {"t", ...} declares such columns float, so
-- their numbers are rounded to the nearest double instead (the observation, reward,
-- p and continuous action columns are floats already). max_bytes caps the table's
-- memory (rows x columns x 8 bytes): a longer file raises before it is read whole.
function M.load(path, expect)
  if type(path) ~= "string" then fail("data.load: path must be a string, got %s", type(path)) end
  expect = expect or {}
  if expect.float ~= nil and type(expect.float) ~= "table" then
    fail("data.load: float must be a list of column names, got %s", type(expect.float))
  end
  local box, err = core.load(path, expect.n_actions, expect.float, expect.max_bytes)
  if not box then return nil, err end
  local ds = wrap(box)
  for _, k in ipairs { "obs_dim", "action_dim", "discrete", "has_p" } do
    if expect[k] ~= nil and expect[k] ~= ds[k] then
      fail("data.load: %s: the file has %s = %s, expected %s", path, k, tostring(ds[k]), tostring(expect[k]))
    end
  end
  return ds
end

--- Number of rows (also `#ds`).
function Dataset:size() return core.rows(self._box) end
Dataset.__len = Dataset.size

--- Number of rows with nu = 1.
function Dataset:n_interventions() return core.n_interventions(self._box) end

--- The column names of the file, in order ({"episode", "t", "s_0", ...}).
function Dataset:column_names() return core.columns(self._box) end

function Dataset:__tostring()
  local kind = self.discrete and ("discrete" .. (self.n_actions and (", " .. self.n_actions .. " actions") or ""))
      or ("continuous, action_dim " .. self.action_dim)
  return string.format("mile.data.Dataset: %d rows (%d interventions), obs_dim %d, %s%s", self:size(),
                       self:n_interventions(), self.obs_dim, kind, self.has_p and ", with p" or "")
end

--- Set (or with 0, forget) the number of discrete actions; every stored action must be
--- below it.
function Dataset:set_n_actions(n)
  core.set_n_actions(self._box, n)
  self.n_actions = n > 0 and n or nil
  return self
end

--- ds:append{episode=, t=, obs=, robot_action=, human_action=, nu=, reward=, done=,
--- success=, p=} appends one step.
-- obs: a tensor or table of obs_dim numbers; actions: a number (discrete: the action
-- value) or a tensor/table of action_dim numbers; nu, done, success: 0/1 or booleans;
-- human_action may be left out when nu = 0 (the robot action is stored, as the format
-- says) and must then equal robot_action if given; p is required exactly when the
-- dataset has a p column. Unknown keys raise (a typo is not ignored). Returns ds.
function Dataset:append(step)
  core.append(self._box, step)
  return self
end

-- A value of append_batch as a float64 tensor [B, width].
local function batch_column(v, name, B, width)
  local t
  if type(v) == "number" then
    t = tensor.full({ B, width }, v, "float64")
  elseif type(v) == "boolean" then
    t = tensor.full({ B, width }, v and 1 or 0, "float64")
  elseif type(v) == "table" then
    t = tensor.from(v, "float64")
  elseif tensor.is_tensor(v) then
    t = v:double()
  else
    fail("append_batch: %s is a %s, expected a number, a table or a tensor", name, type(v))
  end
  if t:numel() ~= B * width then
    fail("append_batch: %s has %d values, expected %d (%d rows x %d)", name, t:numel(), B * width, B, width)
  end
  return t:reshape { B, width }
end

--- ds:append_batch{episode=, t=, obs=[B, obs_dim], robot_action=, human_action=, nu=, ...}
-- appends B steps at once. Each field is a tensor (or table) with B rows, or a number
-- or boolean used for every row. human_action may be left out only when no row has
-- nu = 1; when given, its nu = 0 rows must equal robot_action (use
-- `tensor.where(nu, human, robot)`). All rows are checked before any is added.
function Dataset:append_batch(cols)
  if type(cols) ~= "table" then fail("append_batch: expected a table of columns") end
  for k in pairs(cols) do
    local known = false
    for _, f in ipairs(FIELDS) do known = known or k == f end
    if not known then fail("append_batch: unknown field '%s'", tostring(k)) end
  end
  if not tensor.is_tensor(cols.obs) and type(cols.obs) ~= "table" then
    fail("append_batch: obs must be a tensor or a table with one row per step")
  end
  local obs = tensor.is_tensor(cols.obs) and cols.obs or tensor.from(cols.obs, "float64")
  local B = obs:dim() >= 1 and obs:size(1) or 1
  local widths = { episode = 1, t = 1, obs = self.obs_dim, robot_action = self.action_dim,
                   human_action = self.action_dim, nu = 1, reward = 1, done = 1, success = 1, p = 1 }
  local parts = {}
  for _, f in ipairs(FIELDS) do
    local v = cols[f]
    if f == "human_action" and v == nil then
      local nu = batch_column(cols.nu, "nu", B, 1)
      if B > 0 and nu:max():item() ~= 0 then
        fail("append_batch: human_action is missing (it is required when some row has nu = 1)")
      end
      v = cols.robot_action
    end
    if f == "p" and not self.has_p then
      if v ~= nil then fail("append_batch: p given, but the dataset has no p column (create it with has_p = true)") end
    else
      if v == nil then fail("append_batch: %s is missing", f) end
      parts[#parts + 1] = batch_column(v, f, B, widths[f])
    end
  end
  if B > 0 then core.append_rows(self._box, tensor.cat(parts, 2)) end
  return self
end

--- Append every row of another dataset with the same columns (ds:extend(ds) doubles it).
function Dataset:extend(other)
  if getmetatable(other) ~= Dataset then fail("extend: expected a mile.data.Dataset") end
  core.extend(self._box, other._box)
  return self
end

local DTYPES = { float32 = true, float64 = true }

local function dtype_of(opts, fname)
  local dtype = opts and opts.dtype or "float32"
  if not DTYPES[dtype] then fail("%s: dtype must be \"float32\" or \"float64\", got %s", fname, tostring(dtype)) end
  return dtype
end

--- ds:tensors{dtype = "float32"} -> {episode=[N], t=[N], obs=[N, obs_dim],
--- robot_action=, human_action= ([N] discrete, [N, action_dim] continuous), nu=[N],
--- reward=[N], done=[N], success=[N], p=[N] (only with a p column)}
-- New tensors (copies), float32 unless dtype = "float64" (float32 holds integers
-- exactly up to 2^24: episode and t numbers beyond that need float64).
function Dataset:tensors(opts)
  local dtype = dtype_of(opts, "tensors")
  local out = {}
  for _, f in ipairs(FIELDS) do
    if f ~= "p" or self.has_p then out[f] = core.field(self._box, f, dtype) end
  end
  return out
end

--- One field as a tensor (see tensors): ds:column("nu"), ds:column("obs", "float64").
function Dataset:column(name, dtype)
  return core.field(self._box, name, dtype_of({ dtype = dtype }, "column"))
end

--- Write the whole dataset to path, atomically (temporary file, fsync, rename).
--- Returns true, or nil, message when the file cannot be written.
function Dataset:save(path)
  local ok, err = core.save(self._box, path)
  if ok then self._written[path] = self:size() end
  return ok, err
end

--- ds:append_to(path [, from_row]) appends rows from_row..#ds to the dataset file at
-- path (creating it, with the header, when missing): the per-round append of a
-- training loop. The file's header must match the dataset's columns. The new file is
-- a temporary copy of the old one plus the new rows, renamed over it, so a crash
-- never leaves a half-written row (docs/data.md). from_row defaults to the row after
-- the last one this object wrote to path with save or append_to (an error when it
-- has not written there). Returns true, or nil, message on an I/O failure.
function Dataset:append_to(path, from_row)
  if from_row == nil then
    local written = self._written[path]
    if written == nil then
      fail("append_to: from_row is required (this dataset has not written %s before)", tostring(path))
    end
    from_row = written + 1
  end
  local ok, err = core.append_to(self._box, path, from_row)
  if ok then self._written[path] = self:size() end
  return ok, err
end

--- A new dataset with the rows at the given 1-based indices (a tensor or table; in
--- that order; repeats allowed).
function Dataset:subset(indices)
  local ds = wrap(core.subset(self._box, indices))
  return ds
end

--- ds:filter(mask) or ds:filter(fn) -> a new dataset with the rows where mask is
-- nonzero (true). mask: a tensor with one value per row, or a table of booleans or
-- numbers. fn(columns) receives ds:tensors{dtype="float64"} and returns such a mask,
-- computed with tensor ops, e.g. ds:filter(function(c) return c.nu:eq(1) end).
function Dataset:filter(mask)
  if type(mask) == "function" then mask = mask(self:tensors { dtype = "float64" }) end
  if type(mask) == "table" and not tensor.is_tensor(mask) then
    local n = self:size()
    if #mask ~= n then fail("filter: the mask has %d values, the dataset %d rows", #mask, n) end
    local keep = {}
    for i = 1, n do
      local v = mask[i]
      if v == true or (type(v) == "number" and v ~= 0) then keep[#keep + 1] = i end
    end
    return self:subset(keep)
  end
  if not tensor.is_tensor(mask) then fail("filter: expected a mask (tensor or table) or a function") end
  return wrap(core.filter(self._box, mask))
end

--- The intervention steps only (nu = 1), e.g. for HG-DAgger.
function Dataset:interventions()
  return wrap(core.filter(self._box, core.field(self._box, "nu", "float32")))
end

--- Per-row weights that balance intervention and non-intervention steps (each class
--- gets half the total mass, as in IWR), float64 [N], summing to 1 (or to 1 over the
--- only class present).
function Dataset:intervention_weights()
  local nu = self:column("nu", "float64")
  local n, ni = self:size(), self:n_interventions()
  if n == 0 then return nu end
  if ni == 0 or ni == n then return tensor.full({ n }, 1 / n, "float64") end
  return tensor.where(nu, 0.5 / ni, 0.5 / (n - ni))
end

-- Columns of the batch for the 1-based index tensor idx.
local function take(cols, idx, weights)
  local batch = { index = idx }
  for k, c in pairs(cols) do batch[k] = c:index_select(1, idx) end
  if weights then batch.weights = weights:index_select(1, idx) end
  return batch
end

local function check_generator(g, fname)
  local mt = getmetatable(g)
  if g == nil or mt == nil or mt.__name ~= "mile.Generator" then
    fail("%s: generator must be a mile Generator (mile.tensor.Generator(seed)), got %s", fname, type(g))
  end
end

local function check_weights(w, n, fname)
  if not tensor.is_tensor(w) then fail("%s: weights must be a tensor, got %s", fname, type(w)) end
  if w:numel() ~= n then fail("%s: weights has %d values, the dataset %d rows", fname, w:numel(), n) end
  return w:reshape { n }
end

--- for batch in ds:batches{batch_size=256, generator=g, shuffle=true, drop_last=false,
---                         weights=nil, dtype="float32"} do ... end
-- One epoch: every row exactly once, in an order drawn from the generator (shuffle;
-- the same generator state gives the same batches) or in row order (shuffle = false,
-- no generator needed). Each batch is a table of tensors as ds:tensors() for its rows,
-- plus `index` (the 1-based rows, float64) and, when weights (a tensor [N]) is given,
-- `weights` (the rows' weights, e.g. for a weighted loss). drop_last drops a last
-- batch smaller than batch_size. The rows are those of the dataset when batches() is
-- called; the work per batch is index_select on tensors.
function Dataset:batches(opts)
  opts = opts or {}
  local bs = opts.batch_size or 256
  if math.type(bs) ~= "integer" or bs < 1 then fail("batches: batch_size must be a positive integer") end
  local shuffle = opts.shuffle
  if shuffle == nil then shuffle = true end
  local n = self:size()
  local order
  if shuffle then
    check_generator(opts.generator, "batches")
    order = core.permutation(opts.generator, n)
  else
    order = tensor.arange(1, n + 1, "float64")
  end
  local weights = opts.weights and check_weights(opts.weights, n, "batches")
  local cols = self:tensors { dtype = opts.dtype }
  local drop_last = opts.drop_last and true or false
  local pos = 0
  return function()
    local len = math.min(bs, n - pos)
    if len <= 0 or (drop_last and len < bs) then return nil end
    local idx = order:narrow(1, pos + 1, len)
    pos = pos + len
    return take(cols, idx, weights)
  end
end

--- ds:sampler{weights=tensor [N], generator=g, batch_size=256, dtype="float32"}
-- -> a Sampler drawing rows with replacement, row i with probability
-- weights[i] / sum(weights) (weights finite, >= 0, positive sum), e.g. for IWR with
-- ds:intervention_weights(). s:sample([batch_size]) -> a batch (as batches; `index`
-- holds the rows drawn); `for batch in s:batches(k)` gives k batches. The sampler
-- keeps the rows and weights of the moment it was made.
function Dataset:sampler(opts)
  opts = opts or {}
  local n = self:size()
  if n == 0 then fail("sampler: the dataset is empty") end
  local w = check_weights(opts.weights, n, "sampler")
  check_generator(opts.generator, "sampler")
  local bs = opts.batch_size or 256
  if math.type(bs) ~= "integer" or bs < 1 then fail("sampler: batch_size must be a positive integer") end
  return setmetatable({
    _s = core.sampler(w),
    _cols = self:tensors { dtype = opts.dtype },
    generator = opts.generator,
    batch_size = bs,
    size = n,
  }, Sampler)
end

--- A batch of batch_size (default: the sampler's) rows drawn with replacement.
function Sampler:sample(batch_size)
  batch_size = batch_size or self.batch_size
  if math.type(batch_size) ~= "integer" or batch_size < 1 then fail("sample: batch_size must be a positive integer") end
  local idx = core.sampler_draw(self._s, self.generator, batch_size)
  return take(self._cols, idx)
end

--- Only the 1-based row indices of a draw (float64 tensor [count]).
function Sampler:draw(count)
  return core.sampler_draw(self._s, self.generator, count or self.batch_size)
end

--- for batch in s:batches(k) do ... end: k batches of the sampler's batch_size.
function Sampler:batches(k)
  if math.type(k) ~= "integer" or k < 0 then fail("batches: the number of batches must be a non-negative integer") end
  local i = 0
  return function()
    if i >= k then return nil end
    i = i + 1
    return self:sample()
  end
end

return M
