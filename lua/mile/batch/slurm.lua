--- mile.batch.slurm: the `slurm` backend of mile.batch. Every submission is one job
--- array (`sbatch --array=I,J,...%MAX`): array index i is job i of the batch's plan
--- (batch.lua), the array's script maps each index to its job's command, run directory
--- and log. Run directories, logs and scripts live in the batch directory, which must be
--- on a file system the compute nodes share with the driver.
--
--   mile batch SPEC.lua --backend slurm [--partition P] [--time 2:00:00] [--cpus 1]
--     [--mem 2G] [--account A] [--qos Q] [--max-running N] [--sbatch-flags "--x=y"]
--     [--prologue "module load openblas"] [--detach | --status | --cancel]
--   spec: backend = "slurm", slurm = { partition = "P", time = "2:00:00", cpus = 1, ... }
--
-- Files under <batch>/slurm/: array-<k>.sh (the k-th submission's script), array-<k>.jobs
-- (its index -> job id map, one "index<TAB>id" a line), array-<k>.id (the array's job id,
-- written after sbatch returns), slurm-<array>_<index>.out (what Slurm itself writes for a
-- task: the messages of slurmstepd such as "CANCELLED ... DUE TO TIME LIMIT").
--
-- State: while a task is queued or running it is in `squeue` (found by its script's path,
-- so a driver started again adopts its tasks: nothing is submitted twice); when it ends
-- the script has written <log stem>.exit ("status start end", by rename). A task that
-- leaves the queue without that file (scancel, node failure, time limit, preemption) ended
-- with its state read from `squeue -t all`, else `sacct` when accounting is configured,
-- else "unknown"; the driver appends that to the job's log, so the failure report shows it.
local sys = require "mile.sys"
local batch = require "mile.batch" -- loaded: mile.batch requires this module on first use
local plugins = require "mile.plugins"

local sh_quote, read_file, write, tail = batch.sh_quote, batch.read_file, batch.write_file, batch.last_lines
local absolute = plugins.absolute

local M = {}

-- ---- helpers ---------------------------------------------------------------------------------

-- capture(cmd) -> ok, stdout, stderr (stderr trimmed)
local function capture(cmd)
  local err_file = os.tmpname()
  local p = io.popen(cmd .. " 2>" .. sh_quote(err_file))
  local out = p and p:read("a") or ""
  local ok = p and p:close()
  local err = (read_file(err_file) or ""):gsub("%s+$", "")
  os.remove(err_file)
  return ok and true or false, out, err
end

local function on_path(program)
  return os.execute("command -v " .. sh_quote(program) .. " >/dev/null 2>&1") == true
end

-- ---- options ---------------------------------------------------------------------------------

-- option -> {sbatch flag (nil: not a flag), check}
local OPTIONS = {
  partition = { "--partition", "string" },
  time = { "--time", "string" },         -- Slurm's forms: minutes, H:MM:SS, D-HH:MM...
  cpus = { "--cpus-per-task", "integer" },
  mem = { "--mem", "string" },           -- 2G, 500M
  account = { "--account", "string" },
  qos = { "--qos", "string" },
  max_running = { nil, "integer" },      -- the array's %MAX
  sbatch_flags = { nil, "list" },        -- extra sbatch arguments, each one word
  prologue = { nil, "string" },          -- shell lines run before each task
  poll = { nil, "number" },              -- seconds between two squeue calls (default 10)
}
M.OPTIONS = OPTIONS

--- options(t) -> a checked copy of the slurm options t (spec.slurm merged with the command
--- line's): unknown keys and wrong types are errors naming the key.
function M.options(t)
  local out = {}
  for k, v in pairs(t or {}) do
    local o = OPTIONS[k]
    if not o then
      local known = {}
      for name in pairs(OPTIONS) do known[#known + 1] = name end
      table.sort(known)
      error(("batch: unknown slurm option '%s' (known: %s)"):format(tostring(k), table.concat(known, ", ")), 0)
    end
    if o[2] == "integer" then
      if math.type(v) ~= "integer" or v < 1 then error(("batch: slurm.%s must be a positive integer"):format(k), 0) end
    elseif o[2] == "number" then
      if type(v) ~= "number" or not (v > 0 and v < math.huge) then
        error(("batch: slurm.%s must be a positive number of seconds"):format(k), 0)
      end
    elseif o[2] == "list" then
      if type(v) == "string" then
        local words = {}
        for w in v:gmatch("%S+") do words[#words + 1] = w end
        v = words
      end
      if type(v) ~= "table" then error(("batch: slurm.%s must be a list of strings"):format(k), 0) end
      for _, w in ipairs(v) do
        if type(w) ~= "string" then error(("batch: slurm.%s must be a list of strings"):format(k), 0) end
      end
    elseif type(v) ~= "string" or v == "" then
      error(("batch: slurm.%s must be a non-empty string"):format(k), 0)
    end
    out[k] = v
  end
  return out
end

-- ---- the backend -----------------------------------------------------------------------------

local TOOLS = { "sbatch", "squeue", "scancel", "sinfo" }

--- new{out=, name=, slurm=} -> the backend (mile.batch's interface plus submit_all,
--- check, states and cancel_all).
function M.new(o)
  o = o or {}
  local opts = M.options(o.slurm)
  local out = absolute(assert(o.out, "slurm backend: needs the batch directory"))
  local b = { name = "slurm", workers = math.huge, out = out, dir = out .. "/slurm", batch = o.name or "mile",
    opts = opts, keep_on_interrupt = true, arrays = {},
    poll_interval = 1,                -- the driver reads the exit files every second
    squeue_interval = opts.poll or 10 -- and asks squeue more rarely: it is the controller's load
  }
  b.describe = ("slurm%s%s"):format(opts.partition and (" partition " .. opts.partition) or "",
    opts.max_running and (", at most " .. opts.max_running .. " running") or "")

  -- the resource request, as sbatch arguments (shell words)
  local function request()
    local words = { "--ntasks=1" }
    for _, k in ipairs { "partition", "time", "cpus", "mem", "account", "qos" } do
      if opts[k] then words[#words + 1] = OPTIONS[k][1] .. "=" .. sh_quote(tostring(opts[k])) end
    end
    for _, w in ipairs(opts.sbatch_flags or {}) do words[#words + 1] = sh_quote(w) end
    return table.concat(words, " ")
  end

  local function sbatch_words(indices, script, cwd)
    return ("sbatch --parsable --array=%s%s --job-name=%s --output=%s --chdir=%s %s %s"):format(
      table.concat(indices, ","), opts.max_running and ("%" .. opts.max_running) or "", sh_quote(b.batch),
      sh_quote(b.dir .. "/slurm-%A_%a.out"), sh_quote(cwd), request(), sh_quote(script))
  end

  --- check(): Slurm's tools on the PATH, the controller answering, the partition existing,
  --- the request (time, memory, account, ...) acceptable (`sbatch --test-only`); an error
  --- naming what is missing, before anything is written or submitted.
  function b:check()
    local missing = {}
    for _, t in ipairs(TOOLS) do if not on_path(t) then missing[#missing + 1] = t end end
    if #missing > 0 then
      error(("batch: the slurm backend needs %s on the PATH; not found: %s (install Slurm's client tools " ..
        "or load the cluster's Slurm module)"):format(table.concat(TOOLS, ", "), table.concat(missing, ", ")), 0)
    end
    local ok, text, err = capture("sinfo -a -h -o %R")
    if not ok then
      error(("batch: cannot reach the Slurm controller (%s): %s"):format(
        os.getenv("SLURM_CONF") and ("SLURM_CONF=" .. os.getenv("SLURM_CONF")) or "default slurm.conf",
        err ~= "" and err:gsub("\n", "; ") or "sinfo failed"), 0)
    end
    if opts.partition then
      local names, seen = {}, {}
      for p in text:gmatch("%S+") do -- one line per partition and node state
        if not seen[p] then seen[p] = true; names[#names + 1] = p end
      end
      local found = false
      for _, p in ipairs(names) do found = found or p == opts.partition end
      if not found then
        error(("batch: Slurm partition '%s' does not exist (partitions: %s)"):format(opts.partition,
          #names > 0 and table.concat(names, ", ") or "none"), 0)
      end
    end
    ok, _, err = capture("sbatch --test-only --wrap=true --output=/dev/null " .. request())
    if not ok then
      error(("batch: sbatch refused the request (%s): %s"):format(request(),
        err ~= "" and err:gsub("\n", "; ") or "sbatch --test-only failed"), 0)
    end
  end

  -- the index -> job id map of a script of this batch (cached; nil for another script)
  local maps = {}
  local function map_of(script)
    if maps[script] == nil then
      local stem = script:match("^(.*/array%-%d+)%.sh$")
      local m = false
      if stem and script:sub(1, #b.dir + 1) == b.dir .. "/" then
        m = {}
        for line in (read_file(stem .. ".jobs") or ""):gmatch("[^\n]+") do
          local i, id = line:match("^(%d+)\t(.+)$")
          if i then m[tonumber(i)] = id end
        end
      end
      maps[script] = m
    end
    return maps[script] or nil
  end

  -- this batch's tasks in the queue: list of {array, index, key = "A_I", id (the job's),
  -- state, elapsed, reason}; nil when squeue fails (the controller does not answer)
  local snapshot, snapshot_t, by_key = nil, -math.huge, {}
  local failing_since, warned_at = nil, -math.huge
  function b:tasks(fresh)
    if not fresh and snapshot and sys.monotonic() - snapshot_t < self.squeue_interval then return snapshot, by_key end
    local ok, text, err = capture("squeue -h -r -u \"$(id -un)\" -o '%F|%K|%T|%M|%r|%o'")
    if not ok then
      -- a controller that restarts or is overloaded: the tasks go on, ask again later
      local now = sys.monotonic()
      failing_since = failing_since or now
      if now - warned_at > 300 then
        io.stderr:write(("batch: squeue failed (%s); retrying (%.0f s so far)\n"):format(
          err ~= "" and err:gsub("\n", "; ") or "no message", now - failing_since))
        warned_at = now
      end
      return nil
    end
    failing_since, warned_at = nil, -math.huge
    local list = {}
    for line in text:gmatch("[^\n]+") do
      local array, index, state, elapsed, reason, script = line:match("^(%d+)|(%d+)|([^|]*)|([^|]*)|([^|]*)|(.*)$")
      local m = script and map_of(script)
      local id = m and m[tonumber(index)]
      if id then
        list[#list + 1] = { array = array, index = tonumber(index), key = array .. "_" .. index, id = id,
          state = state, elapsed = elapsed, reason = reason }
      end
    end
    snapshot, snapshot_t, by_key = list, sys.monotonic(), {}
    for _, t in ipairs(list) do by_key[t.key] = t end
    return list, by_key
  end

  local function handle(job, task)
    local stem = job.log:gsub("%.log$", "")
    return { id = job.id, array = task.array, index = task.index, key = task.array .. "_" .. task.index,
      exit_file = stem .. ".exit", log = job.log }
  end

  --- adopt(job) -> the handle of a task of this batch still queued or running job, or nil.
  function b:adopt(job)
    for _, t in ipairs(self:tasks() or {}) do
      if t.id == job.id then
        local h = handle(job, t)
        h.adopted = true
        return h
      end
    end
    return nil
  end

  local function status_of(text) return tonumber(text:match("^%s*(%-?%d+)")) or -1 end

  -- the state a task ended in, when it left no exit status
  local function final_state(h)
    local ok, text = capture(("squeue -h -t all -j %s -o %%T"):format(h.key))
    local state = ok and text:match("%u[%u_]*")
    if not state and on_path("sacct") then
      ok, text = capture(("sacct -n -X -P -j %s -o State"):format(h.key))
      state = ok and text:match("%u[%u_]*")
    end
    return state or "in an unknown state"
  end

  --- poll(h) -> nil while the task is queued or running, else its exit status (-1: it
  --- ended without one; its state is appended to the job's log).
  function b:poll(h)
    local text = read_file(h.exit_file)
    if text then return status_of(text) end
    local tasks, keys = self:tasks()
    if not tasks then return nil end -- squeue failed: ask again later
    if keys[h.key] then return nil end
    text = read_file(h.exit_file) -- it may have ended since the snapshot
    if text then return status_of(text) end
    tasks, keys = self:tasks(true)
    if not tasks or keys[h.key] then return nil end
    text = read_file(h.exit_file)
    if text then return status_of(text) end
    local lines = { ("mile batch: Slurm task %s ended %s without an exit status"):format(h.key, final_state(h)) }
    for _, line in ipairs(tail(("%s/slurm-%s.out"):format(self.dir, h.key), 3)) do lines[#lines + 1] = line end
    local f = io.open(h.log, "a")
    if f then f:write(table.concat(lines, "\n"), "\n"); f:close() end
    return -1
  end

  function b:cancel(h)
    os.execute(("scancel %s >/dev/null 2>&1"):format(h.key))
  end

  --- cancel_all() -> the array job ids cancelled: every array with a task of this batch
  --- still in the queue.
  function b:cancel_all()
    local tasks = self:tasks(true)
    if not tasks then error("batch: squeue failed: cannot reach the Slurm controller", 0) end
    local arrays, seen = {}, {}
    for _, t in ipairs(tasks) do
      if not seen[t.array] then seen[t.array] = true; arrays[#arrays + 1] = t.array end
    end
    if #arrays > 0 then
      local ok, _, err = capture("scancel " .. table.concat(arrays, " "))
      if not ok then error("batch: scancel failed: " .. err, 0) end
    end
    return arrays
  end

  --- states() -> {[job id] = {state = "PENDING" | "RUNNING" | ..., slurm = "A_I", elapsed,
  --- reason}} of this batch's tasks in the queue (nil when squeue fails).
  function b:states()
    local tasks = self:tasks(true)
    if not tasks then return nil end
    local by_id = {}
    for _, t in ipairs(tasks) do by_id[t.id] = { state = t.state, slurm = t.key, elapsed = t.elapsed, reason = t.reason } end
    return by_id
  end

  -- the next submission number k (array-<k>.sh)
  local function next_k()
    local k = 0
    for _, name in ipairs(sys.listdir(b.dir) or {}) do
      local n = tonumber(name:match("^array%-(%d+)%.sh$") or "")
      if n and n > k then k = n end
    end
    return k + 1
  end

  -- the script of a submission: index -> job, the task's log, its exit file
  local function script_text(jobs, cwd)
    local lines = { "#!/bin/sh",
      ("# batch %s, written by mile.batch.slurm: array index -> a job of the batch (batch.lua)"):format(b.batch),
      'case "${SLURM_ARRAY_TASK_ID:-}" in' }
    for _, job in ipairs(jobs) do
      local words = {}
      for _, a in ipairs(job.argv) do words[#words + 1] = sh_quote(a) end
      local env = {}
      for k, v in pairs(job.env or {}) do env[#env + 1] = ("export %s=%s"):format(k, sh_quote(v)) end
      table.sort(env)
      lines[#lines + 1] = ("  %d) id=%s; log=%s; exit_file=%s"):format(job.index, sh_quote(job.id),
        sh_quote(absolute(job.log)), sh_quote(absolute((job.log:gsub("%.log$", ".exit")))))
      for _, e in ipairs(env) do lines[#lines + 1] = "     " .. e end
      if job.resume_argv then -- a requeued task continues what its first run committed
        local resume = {}
        for _, a in ipairs(job.resume_argv) do resume[#resume + 1] = sh_quote(a) end
        lines[#lines + 1] = ("     if [ -f %s ]; then set -- %s; else set -- %s; fi ;;"):format(
          sh_quote(absolute(job.dir) .. "/config.lua"), table.concat(resume, " "), table.concat(words, " "))
      else
        lines[#lines + 1] = "     set -- " .. table.concat(words, " ") .. " ;;"
      end
    end
    lines[#lines + 1] = '  *) echo "mile batch: no job for array task ${SLURM_ARRAY_TASK_ID:-?}" >&2; exit 2 ;;'
    lines[#lines + 1] = "esac"
    lines[#lines + 1] = "cd " .. sh_quote(cwd) .. " || exit 2"
    lines[#lines + 1] = 'exec >>"$log" 2>&1 </dev/null'
    lines[#lines + 1] = "start=$(date +%s)"
    lines[#lines + 1] = 'echo "mile batch: Slurm task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname) at $(date)"'
    -- the task's name becomes its job's, so squeue and the accounting show which job runs
    lines[#lines + 1] = ('scontrol update JobId="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" JobName=%s"/$id" ' ..
      '>/dev/null 2>&1 || true'):format(sh_quote(b.batch))
    lines[#lines + 1] = 'rm -f "$exit_file"'
    if opts.prologue then
      lines[#lines + 1] = "# prologue"
      lines[#lines + 1] = opts.prologue
    end
    lines[#lines + 1] = '"$@"'
    lines[#lines + 1] = "code=$?"
    lines[#lines + 1] = 'echo "$code $start $(date +%s)" >"$exit_file.part" && mv "$exit_file.part" "$exit_file"'
    lines[#lines + 1] = 'exit "$code"'
    return table.concat(lines, "\n") .. "\n"
  end

  --- submit_all(jobs) -> handles (in jobs' order): one job array for all of them. jobs:
  --- {id, index (the job's place in the plan), argv, dir, log, env}. sbatch --test-only
  --- checks the request first; on any error nothing is queued and the script is removed.
  function b:submit_all(jobs)
    assert(sys.mkdir(self.dir))
    local cwd = assert(sys.getcwd())
    local k = next_k()
    local stem = ("%s/array-%d"):format(self.dir, k)
    local map, indices = {}, {}
    for _, job in ipairs(jobs) do
      map[#map + 1] = job.index .. "\t" .. job.id
      indices[#indices + 1] = job.index
      os.remove((job.log:gsub("%.log$", ".exit"))) -- a stale status must not end the new task
    end
    write(stem .. ".jobs", table.concat(map, "\n") .. "\n")
    write(stem .. ".sh", script_text(jobs, cwd))
    local function give_up(what, err)
      os.remove(stem .. ".sh")
      os.remove(stem .. ".jobs")
      error(("batch: %s: %s"):format(what, err ~= "" and err:gsub("\n", "; ") or "failed"), 0)
    end
    local words = sbatch_words(indices, stem .. ".sh", cwd)
    local ok, _, err = capture(words:gsub("^sbatch", "sbatch --test-only"))
    if not ok then give_up("sbatch refused the job array", err) end
    local text
    ok, text, err = capture(words)
    local array = ok and text:match("^%s*(%d+)")
    if not array then give_up("sbatch failed", err ~= "" and err or text) end
    write(stem .. ".id", array .. "\n")
    self.arrays[#self.arrays + 1] = array
    snapshot = nil -- the next poll asks squeue
    local handles = {}
    for i, job in ipairs(jobs) do handles[i] = handle(job, { array = array, index = job.index }) end
    return handles
  end

  function b:submit(job) return self:submit_all({ job })[1] end

  return b
end

return M
