-- test_data.lua - mile.data: datasets from Lua, files, errors, minibatches, sampling.
local T = require "testing"
local data = require "mile.data"
local tensor = require "mile.tensor"

local function tmpfile()
  local path = os.tmpname() -- an empty file: save and append_to take it as new
  return path
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- A discrete dataset of n steps; obs[1] is the row number, so rows can be recognised.
local function discrete_dataset(n, opts)
  opts = opts or {}
  local ds = data.new { obs_dim = 3, n_actions = 4, has_p = opts.has_p }
  for i = 1, n do
    local nu = (i % 4 == 0) and 1 or 0
    ds:append {
      episode = (i - 1) // 10, t = (i - 1) % 10, obs = { i, i * 0.5, -i / 3 },
      robot_action = i % 4, human_action = nu == 1 and (i + 1) % 4 or nil, nu = nu,
      reward = i / 7, done = i % 10 == 0, success = i % 20 == 0,
      p = opts.has_p and (i % 5) / 5 or nil,
    }
  end
  return ds
end

local function same_tensors(a, b)
  T.eq(a:shape(), b:shape())
  T.eq(a:totable(), b:totable())
end

T.test("new, append and the column tensors", function()
  local ds = discrete_dataset(12, { has_p = true })
  T.eq(ds:size(), 12)
  T.eq(#ds, 12)
  T.eq(ds:n_interventions(), 3)
  T.eq(ds.obs_dim, 3)
  T.eq(ds.discrete, true)
  T.eq(ds.n_actions, 4)
  T.eq(ds:column_names(), { "episode", "t", "s_0", "s_1", "s_2", "ar", "ah", "nu", "reward", "done",
                            "success", "p" })
  local c = ds:tensors()
  T.eq(c.obs:shape(), { 12, 3 })
  T.eq(c.obs:dtype(), "float32")
  T.eq(c.robot_action:shape(), { 12 })
  T.eq(c.human_action:shape(), { 12 })
  T.eq(c.nu:totable(), { 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1 })
  -- without an intervention the human action is the robot's
  T.eq(c.human_action:totable(), { 1, 2, 3, 1, 1, 2, 3, 1, 1, 2, 3, 1 })
  T.eq(c.robot_action:totable(), { 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0 })
  T.eq(c.done:totable()[10], 1)
  local c64 = ds:tensors { dtype = "float64" }
  T.eq(c64.reward:dtype(), "float64")
  T.eq(c64.reward:totable()[3], 3 / 7)
  T.eq(c64.p:totable()[4], 0.8)
  T.truthy(tostring(ds):find("12 rows %(3 interventions%), obs_dim 3, discrete, 4 actions, with p"))
  T.eq(data.new { obs_dim = 2, action_dim = 2 }:tensors().robot_action:shape(), { 0, 2 })
end)

T.test("append accepts tensors, tables, numbers and booleans", function()
  local ds = data.new { obs_dim = 2, action_dim = 2 }
  ds:append { episode = 0, t = 0, obs = tensor.from { 1, 2 }, robot_action = tensor.from({ 0.5, -0.5 }, "float64"),
              nu = false, reward = 1, done = false, success = false }
  ds:append { episode = 0, t = 1, obs = { 3, 4 }, robot_action = { 0.25, 0.75 }, human_action = tensor.from { 1, 1 },
              nu = true, reward = -1, done = 1, success = 0 }
  local c = ds:tensors { dtype = "float64" }
  T.eq(c.human_action:totable(), { { 0.5, -0.5 }, { 1, 1 } })
  T.eq(c.nu:totable(), { 0, 1 })
  T.eq(c.obs:totable(), { { 1, 2 }, { 3, 4 } })
end)

T.test("append rejects bad steps and names the problem", function()
  local ds = data.new { obs_dim = 2, n_actions = 3 }
  local step = { episode = 0, t = 0, obs = { 1, 2 }, robot_action = 1, nu = 0, reward = 0, done = false,
                 success = false }
  local function with(changes)
    local s = {}
    for k, v in pairs(step) do s[k] = v end
    for k, v in pairs(changes) do s[k] = v end
    return s
  end
  T.raises(function() ds:append(with { rewrd = 1 }) end, "^append: unknown field 'rewrd'")
  T.raises(function() ds:append(with { nu = 2 }) end, "^append: column 'nu': must be 0 or 1, got 2")
  T.raises(function() ds:append(with { nu = 1 }) end, "^append: human_action is missing %(it is required when nu = 1%)")
  T.raises(function() ds:append(with { human_action = 2 }) end, "^append: column 'ah': nu = 0 but ah = 2 differs from ar = 1")
  T.raises(function() ds:append(with { robot_action = 3 }) end, "^append: column 'ar': action 3 out of range 0..2")
  T.raises(function() ds:append(with { t = -1 }) end, "column 't': must be a non%-negative integer, got %-1")
  T.raises(function() ds:append(with { obs = { 1, 2, 3 } }) end, "^append: obs has 3 values, expected 2")
  T.raises(function() ds:append(with { obs = { 1, 0 / 0 } }) end, "column 's_1': NaN is not a finite number")
  T.raises(function() ds:append(with { p = 0.5 }) end, "p given, but the dataset has no p column")
  T.raises(function() ds:append(with { reward = "x" }) end, "reward is a string")
  local no_success = with {}
  no_success.success = nil
  T.raises(function() ds:append(no_success) end, "^append: success is missing")
  T.eq(ds:size(), 0)
  ds:append(step)
  T.eq(ds:size(), 1)
  T.raises(function() data.new { obs_dim = 0, n_actions = 2 } end, "obs_dim must be a positive integer")
  T.eq(data.new { obs_dim = 2 }.discrete, true) -- neither n_actions nor action_dim: discrete, A unknown
  T.eq(data.new { obs_dim = 2 }.n_actions, nil)
  T.raises(function() data.new { obs_dim = 2, discrete = false } end, "action_dim must be a positive integer")
  T.raises(function() data.new { obs_dim = 2, action_dim = 2, discrete = true } end, "one action column")
end)

T.test("save and load round trip, bit-exact (discrete, with p)", function()
  local ds = discrete_dataset(57, { has_p = true })
  -- values a sloppy printer would round
  ds:append { episode = 9, t = 0, obs = { 0.1, 1 / 3, 5e-324 }, robot_action = 0, nu = 0, reward = 1e22,
              done = false, success = false, p = 0.30000000000000004 }
  local path = tmpfile()
  T.eq(ds:save(path), true)
  local back = data.load(path, { n_actions = 4 })
  T.eq(back:size(), 58)
  T.eq(back.n_actions, 4)
  local a, b = ds:tensors { dtype = "float64" }, back:tensors { dtype = "float64" }
  for k, v in pairs(a) do same_tensors(b[k], v) end
  T.eq(b.obs:totable()[58][3], 5e-324)
  T.eq(b.p:totable()[58], 0.30000000000000004)
  os.remove(path)
end)

T.test("append_batch and a continuous round trip without p", function()
  local g = tensor.Generator(5)
  local B = 40
  local ds = data.new { obs_dim = 4, action_dim = 2 }
  local nu_t = {}
  for i = 1, B do nu_t[i] = i % 3 == 0 and 1 or 0 end
  local nu = tensor.from(nu_t, "float64")
  local robot = tensor.randn({ B, 2 }, g, "float64")
  local human = tensor.randn({ B, 2 }, g, "float64")
  ds:append_batch {
    episode = 3, t = tensor.arange(B, "float64"), obs = tensor.randn({ B, 4 }, g, "float64"),
    robot_action = robot, human_action = tensor.where(nu:unsqueeze(2), human, robot), nu = nu,
    reward = tensor.randn({ B }, g, "float64"), done = false, success = 0,
  }
  T.eq(ds:size(), B)
  T.eq(ds:n_interventions(), 13)
  -- human_action may be left out when no row intervenes
  ds:append_batch { episode = 4, t = 0, obs = { { 1, 2, 3, 4 } }, robot_action = { { 0.5, 0.5 } }, nu = 0,
                    reward = 0, done = true, success = true }
  T.eq(ds:size(), B + 1)
  T.raises(function()
    ds:append_batch { episode = 4, t = 1, obs = { { 1, 2, 3, 4 } }, robot_action = { { 0.5, 0.5 } }, nu = 1,
                      reward = 0, done = true, success = true }
  end, "human_action is missing")
  T.raises(function()
    ds:append_batch { episode = 4, t = 1, obs = tensor.zeros { 2, 4 }, robot_action = tensor.zeros { 2, 2 },
                      human_action = tensor.ones { 2, 2 }, nu = tensor.from { 1, 0 }, reward = 0, done = 0,
                      success = 0 }
  end, "^append_batch: column 'ah_0': nu = 0 but ah_0 = 1 differs from ar_0 = 0 %(.*%) %(row 1 of 2, 0%-based%)$")
  T.raises(function()
    ds:append_batch { episode = 4, t = 1, obs = tensor.zeros { 2, 4 }, robot_action = tensor.zeros { 3, 2 },
                      nu = 0, reward = 0, done = 0, success = 0 }
  end, "robot_action has 6 values, expected 4")
  T.eq(ds:size(), B + 1) -- failed batches add nothing
  local path = tmpfile()
  assert(ds:save(path))
  local back = data.load(path, { discrete = false, action_dim = 2 })
  local a, b = ds:tensors { dtype = "float64" }, back:tensors { dtype = "float64" }
  for k, v in pairs(a) do same_tensors(b[k], v) end
  T.eq(b.p, nil)
  T.eq(read(path):match("^[^\n]*"), "episode,t,s_0,s_1,s_2,s_3,ar_0,ar_1,ah_0,ah_1,nu,reward,done,success")
  T.raises(function() data.load(path, { obs_dim = 5 }) end, "the file has obs_dim = 4, expected 5")
  os.remove(path)
end)

T.test("load: errors name file:line:column, I/O failures return nil, message", function()
  local path = tmpfile()
  write(path, "episode,t,s_0,s_1,s_2,ar,ah,nu,reward,done,success\n" ..
              "0,0,1,2,3,1,1,0,0,0,0\n" ..
              "0,1,1,2,abc,1,1,0,0,0,0\n")
  local msg = T.raises(function() data.load(path) end)
  T.eq(msg, path .. ":3:5: column 's_2': \"abc\" is not a number")
  write(path, "episode,t,s_0,ar,ah,nu,reward,done,success\r\n0,0,1,1,1,2,0,0,0\r\n")
  T.eq(T.raises(function() data.load(path) end), path .. ":2:6: column 'nu': must be 0 or 1, got 2")
  write(path, "episode,t,s_0,ar,ah,nu,reward,done,success\n0,0,1,1,5,1,0,0,0\n")
  T.eq(T.raises(function() data.load(path, { n_actions = 4 }) end),
       path .. ":2:5: column 'ah': action 5 out of range 0..3 (n_actions = 4)")
  T.eq(data.load(path):size(), 1) -- without n_actions only non-negative integers are required
  write(path, "")
  T.eq(T.raises(function() data.load(path) end), path .. ":1:1: empty file: no header row")
  os.remove(path)
  local ds, err = data.load(path)
  T.eq(ds, nil)
  T.eq(err, path .. ": No such file or directory")
  local ok, err2 = discrete_dataset(3):save("/nonexistent-dir/x.csv")
  T.eq(ok, nil)
  T.truthy(err2:find("^/nonexistent%-dir/x.csv: cannot create a temporary file"))
end)

T.test("load: exact columns are lossless or refused; float declares rounding; max_bytes caps", function()
  local path = tmpfile()
  local header = "episode,t,s_0,ar,ah,nu,reward,done,success\n"
  -- 9007199254740993 used to load as 2^53 without a word
  write(path, header .. "0,9007199254740993,9007199254740993,1,1,0,0.1,0,0\n")
  T.eq(T.raises(function() data.load(path) end), path .. ":2:2: column 't': \"9007199254740993\" is an integer " ..
       "beyond 2^53, which a double cannot hold exactly (it would be read as 9007199254740992); declare the column " ..
       "float to accept the rounding")
  local ds = data.load(path, { float = { "t" } }) -- s_0 and reward are floats by nature
  local cols = ds:tensors { dtype = "float64" }
  T.eq(cols.t[1], 2 ^ 53)
  T.eq(cols.obs[1][1], 2 ^ 53)
  T.eq(cols.reward[1], 0.1)
  write(path, header .. "0,0,0,1,1,1.0000000000000001,0,0,0\n")
  T.raises(function() data.load(path) end, ":2:6: column 'nu': \"1.0000000000000001\" is not an integer, but " ..
           "would be read as 1")
  T.eq(data.load(path, { float = { "nu", "t" } }):n_interventions(), 1)
  T.raises(function() data.load(path, { float = { "x" } }) end, ":1:1: float column \"x\" is not a column of the file")
  T.raises(function() data.load(path, { float = "nu" }) end, "float must be a list of column names")
  T.raises(function() data.load(path, { float = { 1 } }) end, "float must be a list of column names")
  -- max_bytes: 3 rows of 9 columns take 216 bytes
  write(path, header .. "0,0,0,1,1,0,0,0,0\n0,1,0,1,1,0,0,0,0\n0,2,0,1,1,0,0,0,0\n")
  T.eq(data.load(path, { max_bytes = 216 }):size(), 3)
  T.raises(function() data.load(path, { max_bytes = 215 }) end, ":4:1: the dataset exceeds max_bytes = 215")
  T.raises(function() data.load(path, { max_bytes = 0 }) end, "max_bytes must be a positive integer")
  -- a header naming s_1048575 among nine columns is refused before it sizes anything
  write(path, "episode,t,s_1048575,ar,ah,nu,reward,done,success\n")
  T.raises(function() data.load(path) end, ":1:3: column 's_1048575': the header has 1 's_<i>' column, too few")
  -- what mile writes it reads back bit for bit, exact and float columns alike
  local big = data.new { obs_dim = 2, action_dim = 2, discrete = false, has_p = true }
  big:append { episode = 2 ^ 53, t = 2 ^ 53 - 1, obs = { 0.1, 1 / 3 }, robot_action = { -0.0, 5e-324 },
               nu = 0, reward = 1e300, done = true, success = false, p = 0.3 }
  big:append { episode = 4503599627370497, t = 0, obs = { 2 ^ 53 + 2, -1e-300 }, robot_action = { 0.7, 1.1 },
               human_action = { 1 / 7, 2 ^ 60 }, nu = 1, reward = -2.5, done = false, success = true, p = 1 }
  assert(big:save(path))
  local back = data.load(path)
  for name, t in pairs(big:tensors { dtype = "float64" }) do
    local u = back:tensors { dtype = "float64" }[name]
    T.eq(string.pack(">d", t:sum():item()), string.pack(">d", u:sum():item()), name)
    same_tensors(t, u)
  end
  os.remove(path)
end)

T.test("append_to: per-round appends, header checks", function()
  local ds = discrete_dataset(30, { has_p = true })
  local path = tmpfile()
  local round1 = ds:subset(tensor.arange(1, 11, "float64"))
  assert(round1:save(path))
  -- round 2 and 3 from a dataset holding everything
  assert(ds:append_to(path, 11))
  T.eq(data.load(path):size(), 30)
  for i = 31, 35 do
    ds:append { episode = 3, t = i - 31, obs = { i, 0, 0 }, robot_action = 0, nu = 0, reward = 0, done = false,
                success = false, p = 0.5 }
  end
  assert(ds:append_to(path)) -- from the row after the last one this object wrote
  local back = data.load(path)
  T.eq(back:size(), 35)
  same_tensors(back:column("obs", "float64"), ds:column("obs", "float64"))
  assert(ds:append_to(path)) -- nothing new: nothing changes
  T.eq(data.load(path):size(), 35)
  T.raises(function() discrete_dataset(3):append_to(path) end, "from_row is required")
  T.raises(function() ds:append_to(path, 37) end, "from_row 37 out of range 1..36")
  -- another layout: refused, with the column
  local other = discrete_dataset(3) -- no p column
  T.eq(T.raises(function() other:append_to(path, 1) end),
       path .. ":1:12: header does not match the dataset: the file has column \"p\", the dataset only 11 columns")
  -- a new file is created with the header
  os.remove(path)
  assert(ds:append_to(path, 31))
  T.eq(data.load(path):size(), 5)
  os.remove(path)
end)

T.test("subset and filter", function()
  local ds = discrete_dataset(20)
  local s = ds:subset { 3, 1, 3 }
  T.eq(s:column("obs", "float64"):select(2, 1):totable(), { 3, 1, 3 })
  T.eq(s.n_actions, 4)
  T.eq(ds:subset(tensor.from { 20, 19 }):column("t"):totable(), { 9, 8 })
  T.eq(ds:subset({}):size(), 0)
  T.raises(function() ds:subset { 0 } end, "row index 0 out of range 1..20")
  T.raises(function() ds:subset { 21 } end, "out of range 1..20")
  T.raises(function() ds:subset { 1.5 } end, "out of range")
  local iv = ds:filter(function(c) return c.nu:eq(1) end)
  T.eq(iv:size(), 5)
  T.eq(iv:n_interventions(), 5)
  T.eq(iv:column("obs", "float64"):select(2, 1):totable(), { 4, 8, 12, 16, 20 })
  T.eq(ds:interventions():column("obs"):totable(), iv:column("obs"):totable())
  local mask = {}
  for i = 1, 20 do mask[i] = i <= 2 end
  T.eq(ds:filter(mask):size(), 2)
  T.eq(ds:filter(ds:column("t"):lt(3)):size(), 6)
  T.raises(function() ds:filter(tensor.ones { 3 }) end, "the mask has 3 values, the dataset 20 rows")
  local e = discrete_dataset(2)
  e:extend(iv)
  T.eq(e:size(), 7)
  e:extend(e)
  T.eq(e:size(), 14)
end)

-- Row numbers (obs[1]) of a batch, as a Lua list.
local function rows_of(batch)
  return batch.obs:select(2, 1):totable()
end

T.test("batches: every row once per epoch, shuffled, reproducible", function()
  local n, bs = 1000, 64
  local ds = discrete_dataset(n)
  local function epoch(seed, opts)
    opts = opts or {}
    local seen, order, sizes = {}, {}, {}
    for batch in ds:batches { batch_size = bs, generator = tensor.Generator(seed), drop_last = opts.drop_last,
                              shuffle = opts.shuffle, weights = opts.weights } do
      local rows = rows_of(batch)
      sizes[#sizes + 1] = #rows
      T.eq(batch.index:totable(), rows) -- index is the 1-based row
      T.eq(batch.robot_action:shape(), { #rows })
      if opts.weights then T.eq(batch.weights:totable(), batch.index:totable()) end
      for _, r in ipairs(rows) do
        T.eq(seen[r], nil, "row " .. r .. " twice")
        seen[r] = true
        order[#order + 1] = r
      end
    end
    return order, sizes, seen
  end
  local order, sizes, seen = epoch(42)
  T.eq(#order, n)
  for i = 1, n do T.truthy(seen[i], "row " .. i .. " missing") end
  T.eq(#sizes, 16)
  T.eq(sizes[16], n - 15 * bs)
  local in_order = 0
  for i = 1, n do in_order = in_order + (order[i] == i and 1 or 0) end
  T.truthy(in_order < 20, "the epoch is not shuffled")
  T.eq(epoch(42), order)             -- same seed, same order
  T.truthy(epoch(43)[1] ~= order[1] or epoch(43)[2] ~= order[2])
  local dropped, dsizes = epoch(42, { drop_last = true })
  T.eq(#dsizes, 15)
  T.eq(#dropped, 15 * bs)
  for i = 1, #dropped do T.eq(dropped[i], order[i]) end
  local plain = epoch(0, { shuffle = false, weights = tensor.arange(1, n + 1, "float64") })
  for i = 1, n do T.eq(plain[i], i) end
  T.raises(function() ds:batches { batch_size = 8 } end, "generator must be a mile Generator")
  T.raises(function() ds:batches { batch_size = 0, generator = tensor.Generator(1) } end, "batch_size")
  -- an empty dataset has no batches
  local count = 0
  for _ in data.new { obs_dim = 1, n_actions = 2 }:batches { generator = tensor.Generator(1) } do count = count + 1 end
  T.eq(count, 0)
end)

T.test("weighted sampler: frequencies follow the weights", function()
  local ds = discrete_dataset(5)
  local w = tensor.from({ 0, 1, 2, 3, 4 }, "float64")
  local s = ds:sampler { weights = w, generator = tensor.Generator(7), batch_size = 500 }
  local count, draws = { 0, 0, 0, 0, 0 }, 0
  for batch in s:batches(40) do
    for _, r in ipairs(rows_of(batch)) do
      count[r] = count[r] + 1
      draws = draws + 1
    end
  end
  T.eq(draws, 20000)
  T.eq(count[1], 0) -- weight 0: never drawn
  for i = 2, 5 do
    local p = (i - 1) / 10
    local sd = math.sqrt(draws * p * (1 - p))
    T.truthy(math.abs(count[i] - draws * p) < 5 * sd, ("row %d drawn %d times, expected %.0f"):format(i, count[i], draws * p))
  end
  -- reproducible from the seed
  local a = ds:sampler { weights = w, generator = tensor.Generator(9) }:draw(50):totable()
  local b = ds:sampler { weights = w, generator = tensor.Generator(9) }:draw(50):totable()
  T.eq(a, b)
  -- IWR: intervention and other steps get half the mass each
  local big = discrete_dataset(400) -- 100 interventions
  local iw = big:intervention_weights()
  T.near(iw:sum():item(), 1, 1e-12)
  local batch = big:sampler { weights = iw, generator = tensor.Generator(3), batch_size = 20000 }:sample()
  local frac = batch.nu:mean():item()
  T.truthy(math.abs(frac - 0.5) < 5 * math.sqrt(0.25 / 20000), "intervention fraction " .. frac)
  T.raises(function() ds:sampler { weights = tensor.from { 1, 2 }, generator = tensor.Generator(1) } end,
           "weights has 2 values, the dataset 5 rows")
  T.raises(function() ds:sampler { weights = tensor.from { 1, -1, 0, 0, 0 }, generator = tensor.Generator(1) } end,
           "weights must be finite and >= 0")
  T.raises(function() ds:sampler { weights = tensor.zeros { 5 }, generator = tensor.Generator(1) } end, "sum to 0")
end)

T.run()
