--- mile.replay: a recorded episode played back (`mile replay`, docs/teleop.md).
--
--   local ep = replay.episode(loop.open(dir), round, k)   -- round, k: 1-based
--   local r = replay.play(ep, function(i, env, row) ... end) -- re-simulates it
--   replay.write_png(ep, "frames/") ; replay.write_apng(ep, "episode.png")
--
-- An episode is re-simulated, not read from stored frames: the env is reset with the
-- seed the run collected it with (mile.loop's collect_seed) and the dataset's executed
-- actions (its human_action column: the person's or simulated human's action where
-- nu = 1, the robot's where nu = 0) are stepped. Every replayed observation is compared
-- with the recorded one at the dataset's precision (float32; play's max_diff: the
-- simulators are deterministic, so it is 0 unless another build or machine made the
-- run). The run directory is only read.
local loop = require "mile.loop"
local envs = require "mile.envs"
local sys = require "mile.sys"

local M = {}

--- Observations whose largest absolute difference stays within this count as equal.
M.tolerance = 1e-6

--- episode(run, round, k) -> the k-th episode (1-based) of round `round` (1-based) of an
--- opened run (loop.open): {run, round, k, index (the dataset's 0-based episode number),
--- seed, rows = {first, last}, nu = {...}, actions = {...}, obs = {{...}, ...}, obs_dtype
--- (the dataset's: replayed observations are compared at its precision), p = {...},
--- interventions}. Raises "... does not exist" for a round not committed or k out of range.
function M.episode(run, round, k)
  local cfg, ds = run.cfg, run.dataset
  local per = cfg.episodes_per_round
  if run.round < 1 then error(("%s has no committed round yet: nothing to replay"):format(run.dir), 0) end
  if round < 1 or round > run.round then
    error(("round %d does not exist in %s (committed rounds: 1..%d)"):format(round, run.dir, run.round), 0)
  end
  if k < 1 or k > per then
    error(("episode %d does not exist in round %d (episodes_per_round = %d: 1..%d)"):format(k, round, per, per), 0)
  end
  local index = (round - 1) * per + (k - 1)
  local episode = ds:column("episode"):totable()
  local first, last
  for i, e in ipairs(episode) do
    if e == index then
      first = first or i
      last = i
    elseif first then
      break
    end
  end
  if not first then error(("episode %d of round %d (dataset episode %d) has no rows in %s/dataset.csv"):format(k,
    round, index, run.dir), 0) end
  local ep = { run = run, round = round, k = k, index = index, seed = loop.collect_seed(cfg, round, k),
    rows = { first, last }, nu = {}, actions = {}, obs = {}, p = {}, t = {}, interventions = 0 }
  local n = last - first + 1
  local function rows_of(name) return ds:column(name):narrow(1, first, n) end
  local nu, t, obs = rows_of("nu"):totable(), rows_of("t"):totable(), rows_of("obs"):totable()
  ep.obs_dtype = ds:column("obs"):dtype()
  local p = ds:column_names()[#ds:column_names()] == "p" and rows_of("p"):totable() or nil
  local actions = rows_of("human_action")
  local discrete_actions = run.task.discrete and actions:totable() or nil
  for i = 1, n do
    ep.nu[i], ep.t[i], ep.obs[i] = math.tointeger(nu[i]), math.tointeger(t[i]), obs[i]
    ep.p[i] = p and p[i] or 0
    if run.task.discrete then
      ep.actions[i] = math.tointeger(discrete_actions[i])
    else
      ep.actions[i] = actions:select(1, i):contiguous()
    end
    ep.interventions = ep.interventions + ep.nu[i]
    if ep.t[i] ~= i - 1 then
      error(("%s/dataset.csv: episode %d row %d has t = %s, expected %d"):format(run.dir, index, first + i - 1,
        tostring(t[i]), i - 1), 0)
    end
  end
  ep.steps = n
  return ep
end

-- The largest absolute difference between an observation tensor, rounded to the
-- dataset's precision (float32: the MuJoCo tasks' float64 observations are stored
-- rounded), and a recorded row.
local function obs_diff(obs, recorded, dtype)
  local v = obs:view { -1 }:to(dtype):totable()
  if #v ~= #recorded then return math.huge end
  local d = 0
  for j = 1, #v do
    local e = math.abs(v[j] - recorded[j])
    if e ~= e then e = math.huge end
    if e > d then d = e end
  end
  return d
end

--- play(ep, on_step [, env]) -> {max_diff, diverged_at (0-based step or nil), steps}:
--- resets env (default: the run's) with the episode's seed and, for each recorded step
--- i = 1..ep.steps, compares the observation with the recorded one, calls
--- on_step(i, env, diff) (the env in the state of step i, before its action), then
--- steps the recorded action.
function M.play(ep, on_step, env)
  env = env or ep.run.env
  local obs = env:reset { seed = ep.seed }
  local max_diff, diverged_at = 0, nil
  for i = 1, ep.steps do
    local d = obs_diff(obs, ep.obs[i], ep.obs_dtype)
    if d > max_diff then max_diff = d end
    if d > M.tolerance and not diverged_at then diverged_at = i - 1 end
    if on_step then on_step(i, env, d) end
    obs = env:step(ep.actions[i])
  end
  return { max_diff = max_diff, diverged_at = diverged_at, steps = ep.steps }
end

--- summary(ep, result) -> one line: the episode, its interventions and whether the
--- replayed observations equal the recorded ones.
function M.summary(ep, r)
  local head = ("round %d episode %d (dataset episode %d, seed %d): %d steps, %d interventions"):format(ep.round, ep.k,
    ep.index, ep.seed, ep.steps, ep.interventions)
  if r.diverged_at then
    return head .. ("; DIVERGED: the replayed observations differ from the recorded ones from step %d on"
      .. " (max |difference| %.3g; another build or machine made the run?)"):format(r.diverged_at, r.max_diff)
  end
  return head .. ("; replayed observations equal the recorded ones (max |difference| %.3g)"):format(r.max_diff)
end

--- render_size(task) -> width, height of replayed frames (those of the teleop page).
function M.render_size(task)
  if task.discrete or task.action_dim == 2 then return 600, 400 end
  return 320, 240
end

--- mark(img [, width, rgb]) -> img with a border (default 6 px, red) drawn around it: how
--- intervention steps (nu = 1) are highlighted in written frames.
function M.mark(img, width, rgb)
  width = math.min(width or 6, img.width // 2, img.height // 2)
  local px = rgb or "\224\68\62"
  local w, h, data = img.width, img.height, img.rgb
  local full, side = px:rep(w), px:rep(width)
  local rows = {}
  for y = 0, h - 1 do
    if y < width or y >= h - width then
      rows[#rows + 1] = full
    else
      local row = data:sub(y * w * 3 + 1, (y + 1) * w * 3)
      rows[#rows + 1] = side .. row:sub(width * 3 + 1, (w - width) * 3) .. side
    end
  end
  return { width = w, height = h, rgb = table.concat(rows) }
end

-- Replays ep, calling frame(i, img) with every step's image (marked where nu = 1).
local function frames(ep, opts, frame)
  local w, h = opts.width, opts.height
  if not w then w, h = M.render_size(ep.run.task) end
  return M.play(ep, function(i, env)
    local img = env:render(w, h)
    if ep.nu[i] == 1 and opts.mark ~= false then img = M.mark(img) end
    frame(i, img)
  end)
end

--- write_png(ep, dir [, {width, height, mark = true}]) -> play's result: one PNG per step
--- (dir/frame_00000.png ..., step t in frame_t) and dir/frames.csv (t,nu,action,file);
--- frames of intervention steps carry a red border unless mark = false. dir is created.
function M.write_png(ep, dir, opts)
  opts = opts or {}
  local ok, err = sys.mkdir(dir)
  if not ok then error(("cannot create %s: %s"):format(dir, tostring(err)), 0) end
  local lines = { "t,nu,action,file" }
  local r = frames(ep, opts, function(i, img)
    local name = ("frame_%05d.png"):format(i - 1)
    local wrote, why = envs.save_png(img, dir .. "/" .. name)
    if not wrote then error(why, 0) end
    local a = ep.actions[i]
    a = type(a) == "number" and tostring(a) or table.concat(a:totable(), " ")
    lines[#lines + 1] = ("%d,%d,%s,%s"):format(i - 1, ep.nu[i], a, name)
  end)
  local wrote, why = sys.write_atomic(dir .. "/frames.csv", table.concat(lines, "\n") .. "\n")
  if not wrote then error(why, 0) end
  return r
end

-- ---- animated PNG (APNG): the frames' own PNG streams, re-chunked -------------------------------

local crc_table = {}
for n = 0, 255 do
  local c = n
  for _ = 1, 8 do c = (c & 1) ~= 0 and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[n] = c
end

local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

local function chunk(kind, body) return string.pack(">I4", #body) .. kind .. body .. string.pack(">I4", crc32(kind .. body)) end

-- The chunks of a PNG file: a list of {kind, body}.
local function chunks(bytes)
  if bytes:sub(1, 8) ~= "\137PNG\r\n\26\n" then error("not a PNG stream", 0) end
  local list, pos = {}, 9
  while pos <= #bytes do
    local len, kind = string.unpack(">I4c4", bytes, pos)
    list[#list + 1] = { kind, bytes:sub(pos + 8, pos + 7 + len) }
    pos = pos + 12 + len
  end
  return list
end

--- write_apng(ep, path [, {width, height, mark = true, fps}]) -> play's result: the
--- episode as one animated PNG, at the task's real-time rate (fps; LunarLander 50,
--- Meta-World 80), looping; intervention steps marked as in write_png.
function M.write_apng(ep, path, opts)
  opts = opts or {}
  local fps = opts.fps or require("mile.teleop").task_rate(ep.run.task)
  local tmp = path .. ".frame.png"
  local parts, seq, ihdr = {}, 0, nil
  local r = frames(ep, opts, function(i, img)
    local wrote, why = envs.save_png(img, tmp)
    if not wrote then error(why, 0) end
    local f = assert(io.open(tmp, "rb"))
    local bytes = f:read("a")
    f:close()
    local fctl_at = #parts + 1
    parts[fctl_at] = false -- the fcTL, written below once its sequence number is known
    for _, c in ipairs(chunks(bytes)) do
      if c[1] == "IHDR" then
        ihdr = ihdr or c[2]
        if c[2] ~= ihdr then error("frames of different sizes cannot share an APNG", 0) end
      end
    end
    parts[fctl_at] = chunk("fcTL", string.pack(">I4I4I4I4I4I2I2BB", seq, img.width, img.height, 0, 0, 1, fps, 0, 0))
    seq = seq + 1
    for _, c in ipairs(chunks(bytes)) do
      if c[1] == "IDAT" then
        if i == 1 then
          parts[#parts + 1] = chunk("IDAT", c[2])
        else
          parts[#parts + 1] = chunk("fdAT", string.pack(">I4", seq) .. c[2])
          seq = seq + 1
        end
      end
    end
  end)
  os.remove(tmp)
  local head = "\137PNG\r\n\26\n" .. chunk("IHDR", ihdr) .. chunk("acTL", string.pack(">I4I4", ep.steps, 0))
  local ok, err = sys.write_atomic(path, head .. table.concat(parts) .. chunk("IEND", ""))
  if not ok then error(err, 0) end
  return r
end

-- ---- in the browser: the teleop page ------------------------------------------------------------

M.help = { "P: pause / resume", "1 / 2 / 3: speed 0.25x / 0.5x / 1x", ". (while paused): one step",
  "red border: a recorded intervention step (nu = 1)" }

--- serve(ep [, {bind, port, open, speed, paused, once, print}]) -> the last pass's play result:
--- serves the teleop page (mile.teleop.page, a random token) and plays the episode in
--- it at the task's real-time rate times the page's speed, the intervention steps
--- highlighted; paused until a browser connects (the first controls pause, speed and
--- single steps; others watch; paused: start paused). Plays the episode again and
--- again, or once with once.
--- print(line) gets the URL line and each pass's summary (default: stdout).
function M.serve(ep, opts)
  opts = opts or {}
  local core = require "mile.teleop.core"
  local teleop = require "mile.teleop"
  local io_ = require "mile.io"
  local say = opts.print or function(line) io.stdout:write(line, "\n") io.stdout:flush() end
  local run, cfg = ep.run, ep.run.cfg
  local bind = opts.bind or cfg["teleop.bind"]
  local token = teleop.random_token()
  local srv, err = core.serve { bind = bind, port = opts.port or cfg["teleop.port"], token = token,
    page = require "mile.teleop.page" }
  if not srv then error("replay: " .. err, 0) end
  local host = bind == "0.0.0.0" and "127.0.0.1" or bind
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  local url = ("http://%s:%d/?token=%s"):format(host, srv:port(), token)
  say(("mile replay: open %s"):format(url))
  if opts.open ~= false and (os.getenv("DISPLAY") or os.getenv("WAYLAND_DISPLAY")) then
    os.execute(("xdg-open '%s' >/dev/null 2>&1 &"):format(url))
  end
  local fps = teleop.task_rate(run.task)
  local st = { speed = opts.speed or 1, paused = opts.paused or false, controller = nil, clients = {} }
  local w, h = M.render_size(run.task)
  local function send(id, msg) srv:send(id, io_.json_encode(msg)) end
  local function status(text)
    st.text = text
    send(0, { type = "status", phase = "replay", text = text, round = ep.round, rounds = cfg.rounds })
  end
  local function frame()
    if not st.img then return end
    local m = st.meta
    m.speed, m.paused, m.controller = st.speed, st.paused or st.controller == nil, st.controller or 0
    local meta = io_.json_encode(m)
    srv:frame(string.pack("<I4", #meta) .. meta .. st.img.rgb)
  end
  local function on_message(id, text)
    local ok, msg = pcall(io_.json_decode, text)
    if not ok or type(msg) ~= "table" or type(msg.type) ~= "string" then
      return send(id, { type = "note", text = "ignored a malformed message" })
    end
    if msg.type == "hello" or msg.type == "input" then return end
    if id ~= st.controller then return send(id, { type = "note", text = "you are watching" }) end
    if msg.type == "pause" and type(msg.value) == "boolean" then st.paused = msg.value
    elseif msg.type == "speed" and (msg.value == 0.25 or msg.value == 0.5 or msg.value == 1) then st.speed = msg.value
    elseif msg.type == "step" then st.step_once = true
    else return send(id, { type = "note", text = "ignored a message: " .. tostring(msg.type):sub(1, 40) }) end
    frame()
  end
  local function service(ms)
    for _, ev in ipairs(srv:poll(ms)) do
      local id = ev.client
      if ev.kind == "connect" then
        st.clients[id] = true
        if not st.controller then st.controller = id end
        send(id, { type = "hello", role = st.controller == id and "controller" or "watcher", client = id,
          task = cfg.env .. " (replay)", fps = fps, speed = st.speed, keymap = M.help, controller = st.controller })
        local rows = {}
        if run.initial then rows[1] = { round = 0, success = run.initial.success } end
        for _, m in ipairs(run.metrics) do rows[#rows + 1] = { round = m.round, success = m.success } end
        send(id, { type = "metrics", rows = rows })
        if st.text then status(st.text) end
        frame()
      elseif ev.kind == "disconnect" then
        st.clients[id] = nil
        if st.controller == id then st.controller = next(st.clients) end
        frame()
      elseif ev.kind == "message" then
        on_message(id, ev.text)
      end
    end
  end
  local function wait_turn()
    local dt = 1 / (fps * st.speed)
    local now = sys.monotonic()
    st.next = math.max((st.next or now) + dt, now - 0.25)
    while true do
      if st.paused or not st.controller then
        service(100)
        if st.step_once and st.controller then st.step_once = false break end
        st.next = sys.monotonic() + 1 / (fps * st.speed)
      else
        st.step_once = false
        local remaining = st.next - sys.monotonic()
        if remaining <= 0 then
          service(0) -- behind (a slow render): the frame still goes out, the messages are read
          if not (st.paused or not st.controller) then break end
        else
          service(math.max(1, math.floor(remaining * 1000 + 0.5)))
        end
      end
    end
  end
  local result
  repeat
    local seen = 0
    status(("replay of round %d, episode %d: %d steps, %d interventions"):format(ep.round, ep.k, ep.steps,
      ep.interventions))
    result = M.play(ep, function(i, env)
      seen = seen + ep.nu[i]
      st.img = env:render(w, h)
      st.meta = { type = "frame", replay = true, w = st.img.width, h = st.img.height, round = ep.round,
        rounds = cfg.rounds, episode = ep.k, episodes = cfg.episodes_per_round, step = i - 1, steps = ep.steps,
        p = ep.p[i], nu = ep.nu[i], nu_last = ep.nu[i], interventions = seen, fps = fps }
      frame()
      wait_turn()
    end)
    local line = M.summary(ep, result)
    say(line)
    status(line)
    if not opts.once then -- the last frame a moment, then again
      local t0 = sys.monotonic()
      while sys.monotonic() - t0 < 1.5 or st.paused or not st.controller do service(100) end
    end
  until opts.once
  local t0 = sys.monotonic()
  while sys.monotonic() - t0 < 0.3 do service(50) end
  srv:close()
  return result
end

return M
