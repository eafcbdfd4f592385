--- mile.batch: ablation batches. A grid of config settings x seeds; each job is a
--- separate `mile train` process with its own run directory and log, run by a backend
--- (local processes here), resumable, aggregated into one table with 95% intervals.
--
--   mile batch scripts/batches/lambda_sweep.lua [--out DIR] [--workers N]
--   mile batch scripts/batches/lambda_sweep.lua --backend slurm [--partition P] [--detach]
--
--   local batch = require "mile.batch"
--   local spec = batch.load_spec("scripts/batches/lambda_sweep.lua")
--   local summary = batch.run(spec, {out = "runs/lambda", workers = 2})
--
-- A spec (a Lua file returning a table; docs/research.md):
--   name   = "lambda-sweep"                       -- default: the file's name
--   base   = "scripts/configs/lunarlander.lua"    -- or a config table
--   set    = { rounds = 6 }                       -- settings of every job (optional)
--   grid   = { ["loss.lambda"] = {0.25, 0.5, 0.75},        -- axis = config key: values
--              cost = { {label = "c10", ["human.cost"] = 10, ["learner.cost"] = 10}, ... } }
--                                                 -- any other axis: tables of settings
--   axes   = { "loss.lambda", "cost" }            -- axis order (default: sorted names)
--   seeds  = { 0, 1, 2 }                          -- default {0}
--   backend = "slurm", slurm = { partition = "cpu", time = "2:00:00", ... }
--                                                 -- where jobs run (default "local")
--
-- Jobs are the grid's cells x seeds. The batch directory (default runs/<name>) holds
-- base.lua (the base config), batch.lua (the plan: cells, jobs, settings), jobs/<id>/
-- (each job's run directory), logs/<id>.log, jobs.csv (state of every job), and
-- aggregate.csv, aggregate.md, success_vs_round.png, success_vs_interventions.png.
--
-- Resuming: a job is finished when its run directory's state.lua holds its last round;
-- running the same batch again skips finished jobs, continues interrupted ones with
-- `mile train --resume` (a resumed run ends with the same metrics as an uninterrupted
-- one) and starts the rest, so a killed batch ends with the same aggregate.
--
-- Backends: an object with
--   workers                 how many jobs may run at once
--   submit(self, job) -> handle
--                           start job = {id, argv (list of strings: the command), dir (its
--                           run directory), log (path: stdout and stderr, appended), env
--                           (table of environment variables)}; must not block
--   poll(self, handle) -> nil while the job runs, else its exit status (0: success)
--   cancel(self, handle)    stop it (the batch was interrupted); optional
--   adopt(self, job) -> handle | nil
--                           a process of an earlier, killed driver still working on job
--                           (the batch waits for it instead of starting a second one);
--                           optional
--                           job.resume_argv, when given, continues the job's run directory
--                           instead: for a backend that may start a job again itself (a
--                           scheduler's requeue after preemption or a node failure)
--   submit_all(self, jobs) -> handles
--                           optional: start all of them at once (a scheduler's job
--                           array; each job also has `index`, its place in the plan);
--                           `workers` is then the scheduler's business
--   check(self)             optional: raise a clear error when the backend cannot work
--                           (a missing tool, an unreachable scheduler), before anything
--                           is written or submitted
--   states(self) -> {[job id] = {state, slurm, elapsed, reason}}   optional (--status)
--   cancel_all(self) -> ids optional (--cancel)
--   keep_on_interrupt       true: an interrupted driver leaves the jobs running
-- M.backends["local"] runs processes on this machine, M.backends.slurm job arrays on a
-- Slurm cluster (mile.batch.slurm); another backend is a table of the same shape, given
-- as batch.run(spec, {backend = ...}) or registered in M.backends.
local sys = require "mile.sys"
local config = require "mile.config"
local rundir = require "mile.rundir"
local plot = require "mile.plot"

local M = {}

-- ---- statistics ------------------------------------------------------------------------------

-- ln Gamma(x), x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative).
local LANCZOS = { 0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
  -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7 }
local function log_gamma(x)
  if x < 0.5 then return math.log(math.pi / math.abs(math.sin(math.pi * x))) - log_gamma(1 - x) end
  x = x - 1
  local a, t = LANCZOS[1], x + 7.5
  for i = 2, 9 do a = a + LANCZOS[i] / (x + i - 1) end
  return 0.5 * math.log(2 * math.pi) + (x + 0.5) * math.log(t) - t + math.log(a)
end

-- Continued fraction of the incomplete beta function (modified Lentz).
local function beta_cf(a, b, x)
  local tiny = 1e-300
  local qab, qap, qam = a + b, a + 1, a - 1
  local c, d = 1, 1 - qab * x / qap
  if math.abs(d) < tiny then d = tiny end
  d = 1 / d
  local h = d
  for m = 1, 300 do
    local m2 = 2 * m
    local aa = m * (b - m) * x / ((qam + m2) * (a + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    h = h * d * c
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    local del = d * c
    h = h * del
    if math.abs(del - 1) < 1e-16 then break end
  end
  return h
end

-- The regularized incomplete beta function I_x(a, b).
local function inc_beta(x, a, b)
  if x <= 0 then return 0 elseif x >= 1 then return 1 end
  local lbt = log_gamma(a + b) - log_gamma(a) - log_gamma(b) + a * math.log(x) + b * math.log(1 - x)
  if x < (a + 1) / (a + b + 2) then return math.exp(lbt) * beta_cf(a, b, x) / a end
  return 1 - math.exp(lbt) * beta_cf(b, a, 1 - x) / b
end

--- t_cdf(t, df): P(T <= t) for Student's t with df degrees of freedom.
function M.t_cdf(t, df)
  local tail = 0.5 * inc_beta(df / (df + t * t), df / 2, 0.5)
  return t >= 0 and 1 - tail or tail
end

--- t_quantile(p, df): the p-quantile of Student's t (bisection on t_cdf; ~1e-12).
function M.t_quantile(p, df)
  assert(p > 0 and p < 1 and df > 0, "t_quantile: needs 0 < p < 1 and df > 0")
  if p < 0.5 then return -M.t_quantile(1 - p, df) end
  local lo, hi = 0, 1
  while M.t_cdf(hi, df) < p do lo, hi = hi, hi * 2 end
  for _ = 1, 200 do
    local mid = (lo + hi) / 2
    if M.t_cdf(mid, df) < p then lo = mid else hi = mid end
    if hi - lo < 1e-13 * math.max(1, hi) then break end
  end
  return (lo + hi) / 2
end

--- summary(values) -> mean, sd (sample), ci95 (half-width: t_{0.975, n-1} sd / sqrt(n)), n.
-- sd and ci95 are NaN for fewer than 2 values (mean too for none).
function M.summary(values)
  local n, s = #values, 0
  for _, v in ipairs(values) do s = s + v end
  local mean = s / n
  if n < 2 then return mean, 0 / 0, 0 / 0, n end
  local ss = 0
  for _, v in ipairs(values) do ss = ss + (v - mean) ^ 2 end
  local sd = math.sqrt(ss / (n - 1))
  return mean, sd, M.t_quantile(0.975, n - 1) * sd / math.sqrt(n), n
end

-- ---- specs and plans -------------------------------------------------------------------------

local SPEC_KEYS = { name = true, base = true, set = true, grid = true, axes = true, seeds = true, workers = true,
  out = true, backend = true, slurm = true }

--- load_spec(path) -> the spec table (spec.path and spec.dir set).
function M.load_spec(path)
  local chunk, err = loadfile(path, "t", setmetatable({}, { __index = _G }))
  if not chunk then error("batch: " .. err, 0) end
  local ok, spec = pcall(chunk)
  if not ok then error("batch: " .. path .. ": " .. tostring(spec), 0) end
  if type(spec) ~= "table" then error(("batch: %s must return a table, got %s"):format(path, type(spec)), 0) end
  spec.path = path
  spec.dir = path:match("^(.*)/[^/]*$") or "."
  if spec.name == nil then spec.name = path:match("([^/]+)%.lua$") or path end
  return spec
end

-- A setting's value as the text of `--set key=value`.
local function value_text(v)
  if type(v) == "number" then return config.serialize(v) end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = value_text(x) end
    return table.concat(parts, ",")
  end
  return tostring(v)
end

-- A label safe in a file name.
local function clean(s) return (tostring(s):gsub("[^%w%.%+%-=]", "-")) end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Settings of a flat table {key = value} as "key=value" strings, sorted by key.
local function settings_of(t)
  local flat, out = config.flatten(t, ""), {}
  for _, k in ipairs(sorted_keys(flat)) do out[#out + 1] = k .. "=" .. value_text(flat[k]) end
  return out
end

-- The base config as a table: a file (found relative to the working directory, then
-- the spec's directory, then mile's own tree) or the table itself.
local function base_table(spec)
  local base = spec.base
  if type(base) == "table" then return base end
  if type(base) ~= "string" then error("batch: spec.base must be a config file or a table", 0) end
  -- mile's own tree: <root>/scripts/configs/... in the repository and the installation
  -- alike, under the mile host and a stock lua5.4 (mile.paths)
  local root = require("mile.paths").scripts_dir:match("^(.*)/scripts/*$")
  for _, path in ipairs { base, spec.dir and (spec.dir .. "/" .. base), root and (root .. "/" .. base) } do
    if path and sys.stat(path) == "file" then return config.load_file(path) end
  end
  error(("batch: base config %s not found"):format(base), 0)
end

--- plan(spec [, overrides]) -> {name, axes, cells = {{id, labels = {axis = label}, settings}},
--- seeds, jobs = {{id, cell, seed, settings, config}}, base}: the jobs of a spec, each
--- one's config resolved (an unknown key or a bad value is an error naming the job).
--- overrides: "key=value" strings for every job, after spec.set (`mile batch --set`);
--- extra_plugins: plugin specs (`mile batch --plugin`) added to the base config's
--- `plugins`, so that every job (a separate process) loads them.
function M.plan(spec, overrides, extra_plugins)
  for k in pairs(spec) do
    if not SPEC_KEYS[k] and k ~= "path" and k ~= "dir" then
      error(("batch: unknown spec key '%s' (known: base, set, grid, axes, seeds, name, workers, out, backend, " ..
        "slurm)"):format(k), 0)
    end
  end
  if type(spec.name) ~= "string" or spec.name == "" then error("batch: spec.name must be a non-empty string", 0) end
  local loop = require "mile.loop"
  local plugins = require "mile.plugins"
  local base = {}
  for k, v in pairs(base_table(spec)) do base[k] = v end
  local list = {}
  for _, p in ipairs(type(base.plugins) == "table" and base.plugins or {}) do list[#list + 1] = p end
  for _, p in ipairs(extra_plugins or {}) do list[#list + 1] = p end
  for i, p in ipairs(list) do -- absolute: the jobs run in other processes
    if type(p) == "string" and plugins.is_file_spec(p) then list[i] = plugins.absolute(p) end
  end
  if #list > 0 then base.plugins = list end
  local grid = spec.grid or {}
  local axes = spec.axes or sorted_keys(grid)
  for _, a in ipairs(axes) do
    if type(grid[a]) ~= "table" or #grid[a] == 0 then
      error(("batch: grid axis '%s' needs a non-empty list of values"):format(tostring(a)), 0)
    end
  end
  for a in pairs(grid) do
    local listed = false
    for _, b in ipairs(axes) do listed = listed or a == b end
    if not listed then error(("batch: grid axis '%s' is missing from spec.axes"):format(a), 0) end
  end
  local seeds = spec.seeds or { 0 }
  for _, s in ipairs(seeds) do
    if math.type(s) ~= "integer" then error("batch: seeds must be integers", 0) end
  end
  -- every cell: one value per axis, first axis outermost
  local cells = { { labels = {}, settings = {}, parts = {} } }
  for _, a in ipairs(axes) do
    local next_cells = {}
    for _, cell in ipairs(cells) do
      for _, v in ipairs(grid[a]) do
        local labels, settings, parts = {}, {}, {}
        for k, x in pairs(cell.labels) do labels[k] = x end
        for k, x in pairs(cell.settings) do settings[k] = x end
        for i, x in ipairs(cell.parts) do parts[i] = x end
        local label
        if type(v) == "table" then
          local vals = {}
          for _, k in ipairs(sorted_keys(v)) do
            if k ~= "label" then settings[k] = v[k]; vals[#vals + 1] = value_text(v[k]) end
          end
          label = v.label or table.concat(vals, "-")
        else
          settings[a] = v
          label = value_text(v)
        end
        labels[a] = tostring(label)
        parts[#parts + 1] = clean(a) .. "=" .. clean(label)
        next_cells[#next_cells + 1] = { labels = labels, settings = settings, parts = parts }
      end
    end
    cells = next_cells
  end
  local ids = {}
  for _, cell in ipairs(cells) do
    cell.id = #cell.parts > 0 and table.concat(cell.parts, "_") or "base"
    cell.parts = nil
    if ids[cell.id] then error(("batch: two cells are both named %s (give table values distinct labels)"):format(cell.id), 0) end
    ids[cell.id] = true
  end
  local jobs, unused_by = {}, {} -- a --set key: the jobs whose selected entries do not own it
  for _, seed in ipairs(seeds) do
    for _, cell in ipairs(cells) do
      local id = ("%s_seed=%d"):format(cell.id, seed)
      local settings = settings_of(spec.set or {})
      for _, s in ipairs(overrides or {}) do settings[#settings + 1] = s end
      for _, s in ipairs(settings_of(cell.settings)) do settings[#settings + 1] = s end
      settings[#settings + 1] = "seed=" .. seed
      settings[#settings + 1] = "name=" .. id
      settings[#settings + 1] = "progress=false"
      local unused = {}
      local ok, cfg = pcall(loop.resolve, base, settings, nil, { unused = unused })
      if not ok then error(("batch: job %s: %s"):format(id, tostring(cfg)), 0) end
      for k, owner in pairs(unused) do
        unused_by[k] = unused_by[k] or { owner = owner, n = 0 }
        unused_by[k].n = unused_by[k].n + 1
      end
      jobs[#jobs + 1] = { id = id, cell = cell.id, seed = seed, settings = settings, config = cfg }
    end
  end
  -- a setting for some of the grid's methods (bc.steps beside BC) is no mistake; one that
  -- no job uses is worth one warning, not one per job
  for _, k in ipairs(sorted_keys(unused_by)) do
    if unused_by[k].n == #jobs then
      io.stderr:write(("mile: warning: batch %s: %s belongs to %s, which no job of the batch uses\n"):format(
        spec.name, k, unused_by[k].owner))
    end
  end
  return { name = spec.name, axes = axes, cells = cells, seeds = seeds, jobs = jobs, base = base }
end

-- ---- the local backend -----------------------------------------------------------------------

--- sh_quote(s) -> s as one word for sh.
local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- read_file(path) -> the file's text, or nil when it cannot be read.
local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- cores() -> the number of processors this process may use (nproc), at least 1.
function M.cores()
  local p = io.popen("nproc 2>/dev/null")
  local n = p and tonumber(p:read("a"):match("%d+"))
  if p then p:close() end
  return n or 1
end

M.backends = {}

--- backends["local"]{workers=}: jobs as processes of this machine. The job's command
-- runs under a small sh wrapper (started with io.popen, a child of the driver) that
-- writes the job's pid to <log>.pid and, when it ends, its exit status to <log>.exit
-- (written whole, by rename); poll reads that file, without blocking.
M.backends["local"] = function(opts)
  opts = opts or {}
  local b = { name = "local", workers = opts.workers or M.cores() }
  local function files(job)
    local stem = job.log:gsub("%.log$", "")
    return stem .. ".pid", stem .. ".exit"
  end
  function b:submit(job)
    local pid_file, exit_file = files(job)
    os.remove(exit_file)
    os.remove(pid_file)
    local words = {}
    for k, v in pairs(job.env or {}) do words[#words + 1] = k .. "=" .. sh_quote(v) end
    table.sort(words)
    for _, a in ipairs(job.argv) do words[#words + 1] = sh_quote(a) end
    -- a child of this process (io.popen), so that closing the pipe reaps it: no zombie
    -- is left to an init that does not reap orphans
    local cmd = ("{ %s >>%s 2>&1 </dev/null & echo $! >%s.part && mv %s.part %s; wait $!; " ..
      "echo $? >%s.part && mv %s.part %s; } >/dev/null 2>&1 </dev/null"):format(table.concat(words, " "),
      sh_quote(job.log), sh_quote(pid_file), sh_quote(pid_file), sh_quote(pid_file), sh_quote(exit_file),
      sh_quote(exit_file), sh_quote(exit_file))
    local pipe = io.popen(cmd, "r")
    if not pipe then error("batch: could not start job " .. job.id, 0) end
    return { id = job.id, pid_file = pid_file, exit_file = exit_file, dir = job.dir, pipe = pipe }
  end
  -- the job's process, when it is alive and still the job's (not a reused pid)
  local function alive(pid, dir)
    local cmdline = pid and read_file("/proc/" .. pid .. "/cmdline")
    return cmdline ~= nil and cmdline:find(dir, 1, true) ~= nil
  end
  function b:poll(h)
    local text = read_file(h.exit_file)
    if text then
      if h.pipe then h.pipe:close(); h.pipe = nil end -- the wrapper is ending: wait for it
      return tonumber(text:match("%-?%d+")) or -1
    end
    if h.adopted and not alive(h.pid, h.dir) then return -1 end -- its wrapper died with the old driver
    return nil
  end
  function b:cancel(h)
    local pid = h.pid or tonumber(read_file(h.pid_file) or "")
    if pid and alive(pid, h.dir) then os.execute("kill -TERM " .. pid .. " 2>/dev/null") end
  end
  function b:adopt(job)
    local pid_file, exit_file = files(job)
    local pid = tonumber(read_file(pid_file) or "")
    if pid and alive(pid, job.dir) then
      return { id = job.id, pid = pid, pid_file = pid_file, exit_file = exit_file, dir = job.dir, adopted = true }
    end
    return nil
  end
  return b
end

--- backends.slurm{out=, name=, slurm = {partition=, time=, cpus=, mem=, account=, qos=,
-- max_running=, sbatch_flags=, prologue=}}: one Slurm job array per submission
-- (mile.batch.slurm).
M.backends.slurm = function(opts) return require("mile.batch.slurm").new(opts) end

-- ---- running a batch -------------------------------------------------------------------------

-- A data file of a batch or run directory (nil when absent or unreadable).
local function read_lua(path)
  if sys.stat(path) ~= "file" then return nil end
  local ok, v = pcall(rundir.read_data, path)
  return ok and v or nil
end

--- write_file(path, text): write a whole file atomically (an error names the path).
local function write(path, text)
  local ok, err = sys.write_atomic(path, text)
  if not ok then error("batch: " .. err, 0) end
end

local function paths(out, job)
  return out .. "/jobs/" .. job.id, out .. "/logs/" .. job.id .. ".log"
end

--- job_state(out, job) -> "finished" | "partial" (a run directory exists) | "new",
--- and the state.lua table when there is one.
function M.job_state(out, job)
  local dir = paths(out, job)
  local st = read_lua(dir .. "/state.lua")
  if st and st.round and st.round >= job.config.rounds then return "finished", st end
  if sys.stat(dir .. "/config.lua") == "file" then return "partial", st end
  return "new", nil
end

-- A job directory made with another config (the spec changed under the same job id).
local IGNORED = { out = true, progress = true }
local function check_same_config(out, job)
  local dir = paths(out, job)
  if sys.stat(dir .. "/config.lua") ~= "file" then return end
  local old = config.flatten(rundir.open(dir):config(), "")
  for _, k in ipairs(sorted_keys(job.config)) do
    local function text(v) return v == nil and "nil" or config.serialize(v) end
    local a, b = text(old[k]), text(job.config[k])
    if not IGNORED[k] and a ~= b then
      error(("batch: %s was run with %s = %s, the spec now gives %s; use another --out (or remove that job's " ..
        "directory)"):format(dir, k, a, b), 0)
    end
  end
end

-- The mile program: this process's executable when it is mile, else arg[-1].
local function mile_program()
  local p = io.popen("readlink -f /proc/" .. sys.getpid() .. "/exe 2>/dev/null")
  local exe = p and p:read("l")
  if p then p:close() end
  if exe and exe:match("/mile$") then return exe end
  return arg and arg[-1] or "mile"
end

local function sleep(seconds)
  local ok, how = os.execute(("sleep %g"):format(seconds))
  if not ok and how == "signal" then error("interrupted!", 0) end
end

--- last_lines(path, n) -> the file's last n lines (a list; none for a missing file).
local function last_lines(path, n)
  local lines = {}
  for line in (read_file(path) or ""):gmatch("[^\n]+") do
    lines[#lines + 1] = line
    if #lines > n then table.remove(lines, 1) end
  end
  return lines
end

local function fmt_number(v)
  if v ~= v then return "nan" end
  if math.type(v) == "integer" then return tostring(v) end
  return ("%.6g"):format(v)
end

local function csv_field(s)
  s = tostring(s)
  if s:find('[,"\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- jobs.csv: the state of every job (this driver's timings where it ran them).
local function write_jobs_csv(out, plan, info)
  local lines = { "job,cell,seed,state,exit,seconds,log" }
  for _, job in ipairs(plan.jobs) do
    local i = info[job.id] or {}
    local state = i.state
    if state ~= "running" and state ~= "failed" then state = M.job_state(out, job) end
    local _, log = paths(out, job)
    lines[#lines + 1] = table.concat({ csv_field(job.id), csv_field(job.cell), job.seed, state,
      i.exit and tostring(i.exit) or "", i.seconds and ("%.1f"):format(i.seconds) or "", csv_field(log) }, ",")
  end
  write(out .. "/jobs.csv", table.concat(lines, "\n") .. "\n")
end

--- out_dir(spec [, opts]) -> the batch directory: opts.out, spec.out or runs/<name>.
function M.out_dir(spec, opts)
  return ((opts and opts.out) or spec.out or ("runs/" .. clean(spec.name))):gsub("/+$", "")
end

-- The exit statuses and timings an earlier driver recorded in jobs.csv, by job id.
local function read_jobs_csv(out)
  local info, header = {}, nil
  for line in (read_file(out .. "/jobs.csv") or ""):gmatch("[^\n]+") do
    local fields, pos = {}, 1
    while pos <= #line + 1 do -- fields, quoted ones included
      local q = line:match('^"', pos)
      if q then
        local s, e = pos + 1, pos + 1
        local buf = {}
        while true do
          local j = line:find('"', e, true)
          if not j then e = #line + 1; buf[#buf + 1] = line:sub(s); break end
          if line:sub(j + 1, j + 1) == '"' then buf[#buf + 1] = line:sub(s, j); s, e = j + 2, j + 2
          else buf[#buf + 1] = line:sub(s, j - 1); e = j + 1; break end
        end
        fields[#fields + 1] = table.concat(buf)
        pos = e + 1
      else
        local j = line:find(",", pos, true) or #line + 1
        fields[#fields + 1] = line:sub(pos, j - 1)
        pos = j + 1
      end
    end
    if not header then header = fields
    elseif fields[1] then
      info[fields[1]] = { exit = tonumber(fields[5]), seconds = tonumber(fields[6]) } -- state: read afresh
    end
  end
  return info
end

-- The backend of a batch: opts.backend (a name or an object), else spec.backend, else
-- "local"; a named one is made with the batch's workers, directory and slurm options
-- (spec.slurm, then opts.slurm: the command line's win).
local function make_backend(spec, opts, out, name)
  local backend = opts.backend or spec.backend or "local"
  if type(backend) ~= "string" then return backend end
  local make = M.backends[backend]
  if not make then
    local names = sorted_keys(M.backends)
    error(("batch: unknown backend %q (known: %s)"):format(backend, table.concat(names, ", ")), 0)
  end
  if type(spec.slurm) ~= "nil" and type(spec.slurm) ~= "table" then error("batch: spec.slurm must be a table", 0) end
  local slurm = {}
  for k, v in pairs(spec.slurm or {}) do slurm[k] = v end
  for k, v in pairs(opts.slurm or {}) do slurm[k] = v end
  return make { workers = opts.workers or spec.workers, out = out, name = name, slurm = slurm }
end

--- run(spec, {out=, workers=, backend=, slurm=, mile=, set=, plugins=, poll=0.1, quiet=,
--- dry_run=, detach=}) -> summary
-- Plans the jobs, writes the batch directory, runs every unfinished job (at most
-- `workers` at once), then aggregates. summary: {out, plan, finished, failed = {ids},
-- started, resumed, skipped, adopted, aggregate = rows}. Jobs that fail are listed (with
-- the end of their log) and the others go on; run the batch again to retry them.
-- A job still running for an earlier, killed driver is adopted (waited for), not started
-- again. detach (a backend with submit_all): submit and return at once, summary.arrays
-- holding what was submitted; `mile batch --status` follows it, running the batch again
-- waits for it.
function M.run(spec, opts)
  opts = opts or {}
  local say = opts.quiet and function() end or function(...) print(string.format(...)); io.stdout:flush() end
  local plan = M.plan(spec, opts.set, opts.plugins)
  local out = M.out_dir(spec, opts)
  local backend = make_backend(spec, opts, out, plan.name)
  local batched = backend.submit_all ~= nil
  local workers = batched and math.huge or (opts.workers or spec.workers or backend.workers or 1)
  if opts.detach and not batched then
    error(("batch: --detach needs a scheduler backend (slurm); %s jobs are children of the driver"):format(
      backend.name or "this backend's"), 0)
  end
  local mile = opts.mile or mile_program()
  local by_state = { finished = {}, partial = {}, new = {} }
  for _, job in ipairs(plan.jobs) do
    check_same_config(out, job)
    local s = M.job_state(out, job)
    by_state[s][#by_state[s] + 1] = job
  end
  say("batch %s: %d jobs (%d cells x %d seeds): %d finished, %d to resume, %d to start; %s; %s",
    plan.name, #plan.jobs, #plan.cells, #plan.seeds, #by_state.finished, #by_state.partial, #by_state.new,
    batched and (backend.describe or backend.name or "custom backend")
      or ("%d workers (%s)"):format(workers, backend.name or "custom backend"), out)
  if opts.dry_run then
    for _, job in ipairs(plan.jobs) do say("  %-40s %s", job.id, table.concat(job.settings, " ")) end
    return { out = out, plan = plan }
  end
  -- a backend that cannot work fails here, before anything is written or submitted
  if #by_state.finished < #plan.jobs and backend.check then backend:check() end
  assert(sys.mkdir(out .. "/jobs"))
  assert(sys.mkdir(out .. "/logs"))
  write(out .. "/base.lua", "-- the base config of batch " .. plan.name .. "\nreturn " .. config.serialize(plan.base) .. "\n")
  local saved = {}
  for i, job in ipairs(plan.jobs) do saved[i] = { id = job.id, cell = job.cell, seed = job.seed, settings = job.settings } end
  local cells = {}
  for i, c in ipairs(plan.cells) do cells[i] = { id = c.id, labels = c.labels, settings = c.settings } end
  write(out .. "/batch.lua", "-- the plan of batch " .. plan.name .. " (mile.batch)\nreturn " .. config.serialize {
    name = plan.name, axes = plan.axes, seeds = plan.seeds, cells = cells, jobs = saved, spec = spec.path } .. "\n")

  local queue, info = {}, read_jobs_csv(out)
  for i, job in ipairs(plan.jobs) do
    job.index = i
    if M.job_state(out, job) ~= "finished" then queue[#queue + 1] = job end
  end
  local running, n_running, done, total = {}, 0, #by_state.finished, #plan.jobs
  local summary = { out = out, plan = plan, failed = {}, started = 0, resumed = 0, adopted = 0,
    skipped = #by_state.finished }
  local env = { OPENBLAS_NUM_THREADS = os.getenv("OPENBLAS_NUM_THREADS") or "1" }

  -- what the backend gets to start a job: a fresh `mile train`, or `--resume` of its run directory
  local function command(job)
    local dir, log = paths(out, job)
    local argv
    if M.job_state(out, job) == "partial" then
      argv = { mile, "train", "--resume", dir }
      summary.resumed = summary.resumed + 1
      return { id = job.id, index = job.index, argv = argv, dir = dir, log = log, env = env }, "resumed"
    end
    argv = { mile, "train", out .. "/base.lua" }
    for _, s in ipairs(job.settings) do argv[#argv + 1] = "--set"; argv[#argv + 1] = s end
    argv[#argv + 1] = "--dir"; argv[#argv + 1] = dir
    summary.started = summary.started + 1
    return { id = job.id, index = job.index, argv = argv, dir = dir, log = log, env = env,
      resume_argv = { mile, "train", "--resume", dir } }, "started"
  end

  local function track(job, h, how)
    running[job] = { handle = h, t0 = sys.monotonic() }
    n_running = n_running + 1
    info[job.id] = { state = "running" }
    say("  %-8s %s%s", how, job.id, h.key and (" (" .. h.key .. ")") or "")
  end

  local function adopt(job)
    local dir, log = paths(out, job)
    local h = backend.adopt and backend:adopt { id = job.id, index = job.index, dir = dir, log = log }
    if h then
      summary.adopted = summary.adopted + 1
      track(job, h, "adopted")
    end
    return h
  end

  local function launch(job)
    if adopt(job) then return end
    local cmd, how = command(job)
    track(job, backend:submit(cmd), how)
  end

  local function finish(job, code)
    local r = running[job]
    running[job], n_running = nil, n_running - 1
    local state, st = M.job_state(out, job)
    local seconds = sys.monotonic() - r.t0
    done = done + ((state == "finished") and 1 or 0)
    if state == "finished" and (code == 0 or code == -1) then
      local last = st.metrics[#st.metrics]
      say("  [%d/%d] done %s: success %.2f, return %.1f, interventions %d (%.1f s)", done, total, job.id, last.success,
        last["return"], last.interventions_total, seconds)
      info[job.id] = { state = "finished", exit = code, seconds = seconds }
    else
      local _, log = paths(out, job)
      say("  FAILED %s (exit %s) after %.1f s; log %s:", job.id, tostring(code), seconds, log)
      for _, line in ipairs(last_lines(log, 5)) do say("    | %s", line) end
      summary.failed[#summary.failed + 1] = job.id
      info[job.id] = { state = "failed", exit = code, seconds = seconds }
    end
    write_jobs_csv(out, plan, info)
  end

  local ok, err = pcall(function()
    local next_job = 1
    if batched then
      -- adopt what an earlier driver left queued or running, submit the rest as one array
      local fresh, cmds, hows = {}, {}, {}
      for _, job in ipairs(queue) do
        if not adopt(job) then
          fresh[#fresh + 1] = job
          cmds[#cmds + 1], hows[#hows + 1] = command(job)
        end
      end
      if #fresh > 0 then
        local handles = backend:submit_all(cmds)
        for i, job in ipairs(fresh) do track(job, handles[i], hows[i]) end
      end
      next_job = #queue + 1
      summary.arrays = backend.arrays
      write_jobs_csv(out, plan, info)
      if opts.detach then return end
    end
    while next_job <= #queue or n_running > 0 do
      while n_running < workers and next_job <= #queue do
        launch(queue[next_job])
        next_job = next_job + 1
      end
      sleep(opts.poll or backend.poll_interval or 0.1)
      for _, job in ipairs(queue) do
        local r = running[job]
        if r then
          local code = backend:poll(r.handle)
          if code then finish(job, code) end
        end
      end
    end
  end)
  if not ok then
    if backend.keep_on_interrupt then
      -- a scheduler's jobs outlive the driver: the next run adopts them
      if n_running > 0 and not opts.quiet then
        io.stderr:write(("batch: %d job(s) stay with %s; run the batch again to wait for them, --cancel to " ..
          "stop them\n"):format(n_running, backend.name or "the backend"))
      end
    else
      -- interrupted (Ctrl-C) or a backend failure: stop what runs; the batch resumes later
      for _, r in pairs(running) do
        if backend.cancel then pcall(backend.cancel, backend, r.handle) end
      end
    end
    error(err, 0)
  end
  if opts.detach then
    summary.detached = true
    say("submitted %s (%d jobs, %d adopted); follow with --status, collect with --aggregate",
      #(summary.arrays or {}) > 0 and ("job array " .. table.concat(summary.arrays, ", ")) or "nothing new",
      summary.started + summary.resumed, summary.adopted)
    return summary
  end
  write_jobs_csv(out, plan, info)
  summary.finished = done
  summary.aggregate = M.aggregate(out)
  if not opts.quiet then
    print("")
    print(read_file(out .. "/aggregate.md") or "")
  end
  if #summary.failed > 0 then
    say("%d job(s) failed: %s (run the batch again to retry them)", #summary.failed, table.concat(summary.failed, ", "))
  end
  return summary
end

--- status(spec [, opts]) -> rows {id, state, detail, seconds}, one per job: "finished",
--- "failed" (its exit status), "partial" (a run directory, nothing running), "new", or
--- the scheduler's state of its task ("queued", "running", "completing", ...: detail the
--- task's id, elapsed time and the scheduler's reason). Reads the batch directory and asks the backend (its
--- `states`, or `adopt` for each job), starts nothing.
function M.status(spec, opts)
  opts = opts or {}
  local plan = M.plan(spec, opts.set, opts.plugins)
  local out = M.out_dir(spec, opts)
  if sys.stat(out .. "/batch.lua") ~= "file" then error("batch: " .. out .. " is not a batch directory (no batch.lua)", 0) end
  local backend = make_backend(spec, opts, out, plan.name)
  local queued = backend.states and backend:states()
  if backend.states and not queued then error("batch: cannot ask the scheduler (squeue failed)", 0) end
  local info = read_jobs_csv(out)
  local rows = {}
  for i, job in ipairs(plan.jobs) do
    job.index = i
    local dir, log = paths(out, job)
    local state = M.job_state(out, job)
    local exit = read_file((log:gsub("%.log$", ".exit")))
    local code, t0, t1 = nil, nil, nil
    if exit then code, t0, t1 = exit:match("^%s*(%-?%d+)%s*(%d*)%s*(%d*)") end
    local seconds = (tonumber(t1 or "") and tonumber(t0 or "")) and (tonumber(t1) - tonumber(t0))
      or (info[job.id] and info[job.id].seconds)
    local row = { id = job.id, state = state, detail = "", seconds = seconds }
    local q = queued and queued[job.id]
    if not queued and state ~= "finished" and backend.adopt then
      local h = backend:adopt { id = job.id, index = i, dir = dir, log = log }
      if h then q = { state = "RUNNING" } end
    end
    if q then
      local detail = table.concat({ q.slurm or "", q.elapsed or "", (q.reason and q.reason ~= "None") and q.reason or "" }, " ")
      row.state = q.state == "PENDING" and "queued" or q.state:lower()
      row.detail, row.seconds = detail:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""), nil
    elseif state ~= "finished" and code and tonumber(code) ~= 0 then
      row.state, row.detail = "failed", "exit " .. code
    end
    rows[#rows + 1] = row
  end
  return rows, out
end

--- cancel(spec [, opts]) -> what was cancelled: the backend's cancel_all (a scheduler:
--- every array of the batch still queued), else `cancel` of each job it adopts.
function M.cancel(spec, opts)
  opts = opts or {}
  local plan = M.plan(spec, opts.set, opts.plugins)
  local out = M.out_dir(spec, opts)
  local backend = make_backend(spec, opts, out, plan.name)
  if backend.cancel_all then return backend:cancel_all() end
  local cancelled = {}
  for i, job in ipairs(plan.jobs) do
    local dir, log = paths(out, job)
    local h = backend.adopt and backend:adopt { id = job.id, index = i, dir = dir, log = log }
    if h and backend.cancel then
      backend:cancel(h)
      cancelled[#cancelled + 1] = job.id
    end
  end
  return cancelled
end

-- ---- aggregation -----------------------------------------------------------------------------

-- The measured quantities: name in aggregate.csv, value at round r (0: the warm start).
local MEASURES = {
  { name = "success", at = function(st, r) return r == 0 and st.initial.success or st.metrics[r].success end },
  { name = "return", at = function(st, r) return r == 0 and st.initial["return"] or st.metrics[r]["return"] end },
  { name = "interventions", at = function(st, r) return r == 0 and 0 or st.metrics[r].interventions_total end },
}

--- aggregate(out) -> rows: reads the plan (batch.lua) and the finished jobs' state.lua,
--- writes aggregate.csv (one row per cell and round, round 0 the warm start: n, and
--- mean, sd, ci95 of success, return and interventions used), aggregate.md (the final
--- round per cell) and the plots. Unfinished jobs are left out (n counts the others).
function M.aggregate(out)
  local plan = read_lua(out .. "/batch.lua")
  if not plan then error("batch: " .. out .. " is not a batch directory (no batch.lua)", 0) end
  local rows, by_cell = {}, {}
  for _, cell in ipairs(plan.cells) do
    local states, rounds = {}, nil
    for _, job in ipairs(plan.jobs) do
      if job.cell == cell.id then
        local dir = out .. "/jobs/" .. job.id
        local st = read_lua(dir .. "/state.lua")
        if st and sys.stat(dir .. "/config.lua") == "file" then
          local cfg = read_lua(dir .. "/config.lua") or {}
          if st.round >= (cfg.rounds or math.huge) then
            states[#states + 1] = st
            rounds = cfg.rounds
          end
        end
      end
    end
    local cell_rows = {}
    for r = 0, rounds or -1 do
      local row = { cell = cell, round = r, n = #states }
      for _, m in ipairs(MEASURES) do
        local v = {}
        for i, st in ipairs(states) do v[i] = m.at(st, r) end
        row[m.name .. "_mean"], row[m.name .. "_sd"], row[m.name .. "_ci95"] = M.summary(v)
      end
      rows[#rows + 1], cell_rows[#cell_rows + 1] = row, row
    end
    by_cell[#by_cell + 1] = { cell = cell, rows = cell_rows, seeds = #states }
  end
  -- aggregate.csv
  local header = { "cell" }
  for _, a in ipairs(plan.axes) do header[#header + 1] = csv_field(a) end
  header[#header + 1] = "round"
  header[#header + 1] = "n"
  for _, m in ipairs(MEASURES) do
    for _, s in ipairs { "mean", "sd", "ci95" } do header[#header + 1] = m.name .. "_" .. s end
  end
  local lines = { table.concat(header, ",") }
  for _, row in ipairs(rows) do
    local cells = { csv_field(row.cell.id) }
    for _, a in ipairs(plan.axes) do cells[#cells + 1] = csv_field(row.cell.labels[a]) end
    cells[#cells + 1] = tostring(row.round)
    cells[#cells + 1] = tostring(row.n)
    for _, m in ipairs(MEASURES) do
      for _, s in ipairs { "mean", "sd", "ci95" } do cells[#cells + 1] = fmt_number(row[m.name .. "_" .. s]) end
    end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  write(out .. "/aggregate.csv", table.concat(lines, "\n") .. "\n")
  -- aggregate.md
  local function pm(mean, ci, f)
    if mean ~= mean then return "-" end
    return ci == ci and (f .. " ± " .. f):format(mean, ci) or f:format(mean)
  end
  local md = { ("# Batch %s"):format(plan.name), "",
    ("Final round per cell: mean ± 95% confidence half-width (t-distribution, n - 1 degrees of freedom) over seeds; " ..
      "interventions: human-controlled steps over all rounds. Per-round values: aggregate.csv."), "" }
  local head, rule = { "|" }, { "|" }
  for _, a in ipairs(plan.axes) do head[#head + 1] = " " .. a .. " |"; rule[#rule + 1] = "---|" end
  head[#head + 1] = " seeds | round | success | return | interventions |"
  rule[#rule + 1] = "---|---|---|---|---|"
  md[#md + 1] = table.concat(head)
  md[#md + 1] = table.concat(rule)
  for _, c in ipairs(by_cell) do
    local last = c.rows[#c.rows]
    local line = { "|" }
    for _, a in ipairs(plan.axes) do line[#line + 1] = " " .. c.cell.labels[a] .. " |" end
    local total = 0
    for _, job in ipairs(plan.jobs) do if job.cell == c.cell.id then total = total + 1 end end
    if last then
      line[#line + 1] = (" %d/%d | %d | %s | %s | %s |"):format(c.seeds, total, last.round,
        pm(last.success_mean, last.success_ci95, "%.2f"), pm(last.return_mean, last.return_ci95, "%.1f"),
        pm(last.interventions_mean, last.interventions_ci95, "%.0f"))
    else
      line[#line + 1] = (" 0/%d | - | - | - | - |"):format(total)
    end
    md[#md + 1] = table.concat(line)
  end
  -- plots
  local s_round, s_int = {}, {}
  for _, c in ipairs(by_cell) do
    if #c.rows > 0 then
      local x, xi, y, e = {}, {}, {}, {}
      for i, row in ipairs(c.rows) do
        x[i], xi[i], y[i] = row.round, row.interventions_mean, row.success_mean
        e[i] = row.success_ci95 == row.success_ci95 and row.success_ci95 or 0
      end
      s_round[#s_round + 1] = { name = c.cell.id, x = x, y = y, err = e }
      s_int[#s_int + 1] = { name = c.cell.id, x = xi, y = y }
    end
  end
  local made = {}
  if #s_round > 0 then
    if plot.lines { path = out .. "/success_vs_round.png", title = plan.name .. ": success vs round (95% CI)",
          xlabel = "round (0: warm start)", ylabel = "success rate", series = s_round, yrange = { 0, 1 } } then
      made[#made + 1] = "![success vs round](success_vs_round.png)"
    end
    if plot.lines { path = out .. "/success_vs_interventions.png", title = plan.name .. ": success vs interventions",
          xlabel = "interventions so far (mean)", ylabel = "success rate", series = s_int, yrange = { 0, 1 } } then
      made[#made + 1] = "![success vs interventions](success_vs_interventions.png)"
    end
  end
  md[#md + 1] = ""
  for _, m in ipairs(made) do md[#md + 1] = m end
  write(out .. "/aggregate.md", table.concat(md, "\n") .. "\n")
  return rows
end

-- The file helpers the backends share (mile.batch.slurm).
M.sh_quote, M.read_file, M.write_file, M.last_lines = sh_quote, read_file, write, last_lines

return M
