--- mile.teleop: a person in the loop, in the browser (docs/teleop.md).
--
--   loop.run(cfg, { human = function(run) return teleop.human(run, {port = 8000}) end })
--   (or cfg human.kind = "live", what `mile teleop` runs)
--
-- The live human is an object of loop.run's human protocol: decide(obs, robot_action)
-- shows the state (a frame to every browser, with the overlay), waits for the step's
-- turn at the task's real-time rate (times the page's speed; paused while the page is
-- paused or no browser controls), and returns nu = 1 with the person's action while
-- the takeover key (space, or gamepad A/RB) is held, nu = 0 otherwise. The dataset's
-- p column holds the learner's predicted p(s) at the time (0 for methods without a
-- mental model); teleop.csv beside it holds each step's wall-clock time, and is
-- committed with every round.
--
-- The first browser to connect controls; later ones watch. A controller that leaves
-- pauses the episode until a browser connects again; no step is lost.
local core = require "mile.teleop.core"
local sys = require "mile.sys"
local io_ = require "mile.io"
local ag = require "mile.autograd"
local methods = require "mile.methods"

local M = {}

-- ---- key maps ---------------------------------------------------------------------------------

--- Key maps by action shape. Keys are KeyboardEvent.code names; gamepad buttons and axes
--- follow the browser's "standard" mapping (0-based, as the Gamepad API numbers them).
--- discrete: {code -> action}, the most recently pressed mapped key wins, none: `idle`.
--- continuous: per key an {axis (1-based), value} added up and clipped to [-1, 1];
--- `toggle` keys flip an axis between -1 and +1 on each press (the gripper).
M.keymaps = {
  lunar_discrete = {
    discrete = true, idle = 0,
    keys = { ArrowLeft = 1, KeyA = 1, ArrowUp = 2, KeyW = 2, ArrowRight = 3, KeyD = 3 },
    pad = { { button = 14, action = 1 }, { axis = 0, sign = -1, action = 1 }, { button = 12, action = 2 },
      { axis = 1, sign = -1, action = 2 }, { button = 15, action = 3 }, { axis = 0, sign = 1, action = 3 } },
    help = { "Left / A: fire left engine (1)", "Up / W: main engine (2)", "Right / D: fire right engine (3)",
      "nothing held: do nothing (0)", "gamepad: d-pad or left stick" },
  },
  lunar_continuous = {
    keys = { ArrowUp = { 1, 1 }, KeyW = { 1, 1 }, ArrowDown = { 1, -1 }, KeyS = { 1, -1 }, ArrowLeft = { 2, -1 },
      KeyA = { 2, -1 }, ArrowRight = { 2, 1 }, KeyD = { 2, 1 } },
    rest = { -1, 0 },
    pad = { { axis = 1, dim = 1, scale = -1 }, { axis = 0, dim = 2, scale = 1 } },
    help = { "Up / W: main engine on, Down / S: off", "Left / A, Right / D: side engines",
      "gamepad: left stick (up: main engine, x: side engines)" },
  },
  manipulation = {
    keys = { ArrowLeft = { 1, -1 }, KeyA = { 1, -1 }, ArrowRight = { 1, 1 }, KeyD = { 1, 1 }, ArrowUp = { 2, 1 },
      KeyW = { 2, 1 }, ArrowDown = { 2, -1 }, KeyS = { 2, -1 }, KeyR = { 3, 1 }, KeyE = { 3, 1 },
      KeyF = { 3, -1 }, KeyQ = { 3, -1 } },
    toggle = { KeyG = 4 }, toggle_button = { [2] = 4 },
    rest = { 0, 0, 0, -1 },
    pad = { { axis = 0, dim = 1, scale = 1 }, { axis = 1, dim = 2, scale = -1 }, { axis = 3, dim = 3, scale = -1 } },
    help = { "Left/Right or A/D: hand x", "Up/Down or W/S: hand y", "R/E: hand up, F/Q: hand down",
      "G: close / open the gripper", "gamepad: left stick x/y, right stick z, X toggles the gripper" },
  },
}

--- Page controls (not actions): space takes over while held, P pauses, 1/2/3 set the
--- speed to 0.25x/0.5x/1x, "." steps once while paused. Gamepad: A or RB take over.
M.takeover_keys = { Space = true }
M.takeover_buttons = { [0] = true, [5] = true }
M.control_help = { "hold Space (gamepad A or RB): take over; release: hand back", "P: pause / resume",
  "1 / 2 / 3: speed 0.25x / 0.5x / 1x", ". (while paused): one step" }

-- Real-time rates: LunarLander's 50 FPS, Meta-World's control rate (frame_skip 5 x
-- 2.5 ms = 80 Hz).
local function task_rate(task) return task.env and task.env:match("^LunarLander") and 50 or 80 end

local function keymap_for(task)
  if task.discrete then return M.keymaps.lunar_discrete end
  if task.action_dim == 2 then return M.keymaps.lunar_continuous end
  return M.keymaps.manipulation
end

-- ---- the session --------------------------------------------------------------------------------

local Live = {}
Live.__index = Live
M.Live = Live

--- random_token() -> 32 hex digits from /dev/urandom: a session's token (teleop, replay).
local function random_token()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(16)
  if f then f:close() end
  if not bytes or #bytes < 16 then bytes = tostring(sys.monotonic()) .. tostring({}) .. os.time() end
  return (sys.sha256 and sys.sha256(bytes) or bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
    :sub(1, 32)
end

-- Seconds since the epoch with sub-second precision (date +%s.%N; os.time() without it).
local function wall_clock()
  local f = io.popen("date +%s.%N 2>/dev/null")
  local v = f and tonumber(f:read("l") or "")
  if f then f:close() end
  return v or os.time()
end

local function clip(v) return v < -1 and -1 or (v > 1 and 1 or v) end

-- A short printable form of what a browser sent (for messages about it).
local function excerpt(text)
  text = tostring(text):gsub("[%c\128-\255]", "?")
  return #text > 80 and text:sub(1, 80) .. ("... (%d bytes)"):format(#text) or text
end

local function note(fmt, ...) io.stderr:write("mile teleop: ", fmt:format(...), "\n") end

--- human(run [, opts]) -> the live human of a run (loop.run's `human`), serving its page.
--- opts override the run's teleop.* keys: bind, port, open, speed, fps; quiet (no
--- stdout line), print (a function for the URL line).
function M.human(run, opts)
  opts = opts or {}
  local cfg = run.cfg
  local function opt(k) if opts[k] ~= nil then return opts[k] end return cfg["teleop." .. k] end
  local self = setmetatable({ run = run, task = run.task, keymap = keymap_for(run.task), token = random_token(),
    fps = opt("fps") > 0 and opt("fps") or task_rate(run.task), speed = opt("speed"), paused = false,
    clients = {}, order = {}, controller = nil, input = { keys = {}, pad = nil }, toggles = {}, rows = {},
    interventions = 0, phase = "collecting", warned = {}, started = sys.monotonic() }, Live)
  self.wall0, self.mono0 = wall_clock(), sys.monotonic()
  self.render_w, self.render_h = 600, 400
  if not run.task.discrete and run.task.action_dim ~= 2 then self.render_w, self.render_h = 320, 240 end
  local page = require "mile.teleop.page"
  local srv, err = core.serve { bind = opt("bind"), port = opt("port"), token = self.token, page = page }
  if not srv then error("teleop: " .. err, 0) end
  self.server = srv
  local host = opt("bind") == "0.0.0.0" and "127.0.0.1" or opt("bind")
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  self.url = ("http://%s:%d/?token=%s"):format(host, srv:port(), self.token)
  if not opts.quiet then
    local line = ("mile teleop: open %s"):format(self.url)
    if opts.print then opts.print(line) else io.stdout:write(line, "\n") io.stdout:flush() end
  end
  if opt("open") and (os.getenv("DISPLAY") or os.getenv("WAYLAND_DISPLAY")) then
    os.execute(("xdg-open '%s' >/dev/null 2>&1 &"):format(self.url))
  end
  self:load_rows()
  self:hook_run()
  return self
end

-- teleop.csv of a resumed run: its rows up to the committed dataset's.
function Live:load_rows()
  local d = self.run.rundir
  if not d then return end
  local f = io.open(d:path("teleop.csv"), "r")
  if not f then return end
  f:read("l")
  local keep = self.run.dataset:size()
  for line in f:lines() do
    if #self.rows >= keep then break end
    self.rows[#self.rows + 1] = line
  end
  f:close()
  for _, line in ipairs(self.rows) do
    if line:match(",1,[^,]*,[^,]*$") then self.interventions = self.interventions + 1 end
  end
end

M.csv_columns = "round,episode,t,wall_time,step_seconds,p_learner,nu,controller,input_age"

-- The run reports its phases (collecting, training, evaluating) to the page, commits
-- teleop.csv with each round, and keeps the server answering while it trains (every
-- 0.1 s from inside the policy optimiser's step).
function Live:hook_run()
  local run, live = self.run, self
  local Run = getmetatable(run).__index
  run.status = function(r, fmt, ...)
    Run.status(r, fmt, ...)
    local text = fmt:format(...)
    live.phase = text:match("^(%a+)") or text
    live.train_steps, live.train_done = tonumber(text:match("(%d+) steps")), 0
    live:broadcast_status(text)
    live:service(0)
  end
  run.commit = function(r)
    r.rundir:write("teleop.csv", M.csv_columns .. "\n" .. table.concat(live.rows, "\n") .. (#live.rows > 0 and "\n" or ""))
    Run.commit(r)
    live:send_metrics()
  end
  local opt, last = run.opt_policy, 0
  local step = opt.step
  opt.step = function(o, ...)
    live.train_done = (live.train_done or 0) + 1
    local now = sys.monotonic()
    if now - last > 0.1 then
      last = now
      live:broadcast_status(nil)
      live:service(0)
    end
    return step(o, ...)
  end
end

function Live:send(client, msg) self.server:send(client, io_.json_encode(msg)) end

function Live:status_msg(text)
  return { type = "status", phase = self.phase, text = text or self.status_text or "",
    progress = self.train_steps and math.min(1, (self.train_done or 0) / math.max(self.train_steps, 1)) or nil,
    round = self.run.round + 1, rounds = self.run.cfg.rounds }
end

function Live:broadcast_status(text)
  if text then self.status_text = text end
  self:send(0, self:status_msg(text))
end

function Live:metrics_msg()
  local rows = {}
  if self.run.initial then rows[1] = { round = 0, success = self.run.initial.success } end
  for _, m in ipairs(self.run.metrics) do
    rows[#rows + 1] = { round = m.round, success = m.success, interventions = m.interventions,
      rate = m.intervention_rate }
  end
  return { type = "metrics", rows = rows }
end

function Live:send_metrics() self:send(0, self:metrics_msg()) end

function Live:hello(id)
  local role = self.controller == id and "controller" or "watcher"
  local help = {}
  for _, l in ipairs(self.keymap.help) do help[#help + 1] = l end
  for _, l in ipairs(M.control_help) do help[#help + 1] = l end
  self:send(id, { type = "hello", role = role, client = id, task = self.run.cfg.env, fps = self.fps,
    speed = self.speed, keymap = help, controller = self.controller or 0 })
end

-- ---- messages from browsers ---------------------------------------------------------------------

local function malformed(self, id, why, text)
  note("browser %d: ignored a malformed message (%s): %s", id, why, excerpt(text))
  self:send(id, { type = "note", text = "ignored a malformed message: " .. why })
end

local function valid_key_list(keys)
  if type(keys) ~= "table" or #keys > 32 then return false end
  for i, k in pairs(keys) do
    if math.type(i) ~= "integer" or type(k) ~= "string" or #k > 32 then return false end
  end
  return true
end

local function valid_pad(pad)
  if pad == nil or pad == io_.null then return true end
  if type(pad) ~= "table" or type(pad.axes) ~= "table" or type(pad.buttons) ~= "table" then return false end
  if #pad.axes > 16 or #pad.buttons > 32 then return false end
  for _, v in ipairs(pad.axes) do if type(v) ~= "number" or v ~= v then return false end end
  for _, v in ipairs(pad.buttons) do if type(v) ~= "boolean" then return false end end
  return true
end

function Live:on_message(id, text)
  local ok, msg = pcall(io_.json_decode, text)
  if not ok or type(msg) ~= "table" or type(msg.type) ~= "string" then
    return malformed(self, id, "not a JSON object with a string type", text)
  end
  local kind = msg.type
  if kind == "hello" then return end
  if id ~= self.controller then
    if kind == "input" or kind == "pause" or kind == "speed" or kind == "step" then
      if not self.warned["watch" .. id] then
        self.warned["watch" .. id] = true
        self:send(id, { type = "note", text = ("you are watching: browser %d has control"):format(self.controller or 0) })
      end
      return
    end
  end
  if kind == "input" then
    if not valid_key_list(msg.keys) or not valid_pad(msg.pad) then
      return malformed(self, id, "input needs keys = [codes] and an optional pad = {axes, buttons}", text)
    end
    local keys = {}
    for _, k in ipairs(msg.keys) do
      keys[k] = true
      local known = M.takeover_keys[k] or self.keymap.keys[k] or (self.keymap.toggle and self.keymap.toggle[k])
      if not known and not self.warned[k] then
        self.warned[k] = true
        self:send(id, { type = "note", text = ("key %s does nothing here"):format(excerpt(k)) })
      end
      if self.keymap.toggle and self.keymap.toggle[k] and not self.input.keys[k] then
        self.toggles[self.keymap.toggle[k]] = not self.toggles[self.keymap.toggle[k]]
      end
    end
    local pad = msg.pad ~= io_.null and msg.pad or nil
    if pad and self.keymap.toggle_button then
      for b, dim in pairs(self.keymap.toggle_button) do
        local was = self.input.pad and self.input.pad.buttons[b + 1]
        if pad.buttons[b + 1] and not was then self.toggles[dim] = not self.toggles[dim] end
      end
    end
    -- the most recently pressed action key wins (discrete)
    for _, k in ipairs(msg.keys) do
      if not self.input.keys[k] and self.keymap.discrete and self.keymap.keys[k] then self.last_key = k end
    end
    if self.last_key and not keys[self.last_key] then self.last_key = nil end
    self.input = { keys = keys, pad = pad, at = sys.monotonic() }
  elseif kind == "pause" then
    if type(msg.value) ~= "boolean" then return malformed(self, id, "pause needs value = true | false", text) end
    self.paused = msg.value
    self:refresh_frame()
  elseif kind == "speed" then
    local v = msg.value
    if v ~= 0.25 and v ~= 0.5 and v ~= 1 then return malformed(self, id, "speed must be 0.25, 0.5 or 1", text) end
    self.speed = v
    self:refresh_frame()
  elseif kind == "step" then
    self.step_once = true
  else
    return malformed(self, id, "unknown type " .. excerpt(tostring(kind)), text)
  end
end

function Live:on_connect(id)
  self.clients[id] = true
  if not self.controller then
    self.controller = id
    self.input = { keys = {} }
    self.paused = false -- the page starts unpaused: the episode resumes where it stopped
    note("browser %d connected and has control", id)
  else
    note("browser %d connected (watching: browser %d has control)", id, self.controller)
  end
  self:hello(id)
  self:refresh_frame()
  self:send(id, self:status_msg())
  self:send(id, self:metrics_msg())
end

function Live:on_disconnect(id)
  self.clients[id] = nil
  if self.controller == id then
    self.controller = nil
    self.input = { keys = {} } -- nobody holds a key
    self.last_key = nil
    note("browser %d (in control) disconnected: paused until a browser connects", id)
    self:send(0, { type = "note", text = "the controlling browser left: paused until a browser connects" })
    self:refresh_frame()
  end
end

--- service(ms): answer the browsers for up to ms milliseconds (returns early after
--- handling messages).
function Live:service(ms)
  for _, ev in ipairs(self.server:poll(ms)) do
    if ev.kind == "connect" then self:on_connect(ev.client)
    elseif ev.kind == "disconnect" then self:on_disconnect(ev.client)
    elseif ev.kind == "message" then self:on_message(ev.client, ev.text)
    else malformed(self, ev.client, ev.text, "") end
  end
end

-- ---- the human protocol -------------------------------------------------------------------------

function Live:reset()
  local run = self.run
  self.t = 0
  self.episode = run.episodes - run.round * run.cfg.episodes_per_round
  self.phase = "collecting"
  self.train_steps = nil
  self.status_text = ("round %d/%d, episode %d/%d"):format(run.round + 1, run.cfg.rounds, self.episode,
    run.cfg.episodes_per_round)
  self:send(0, self:status_msg())
end

-- The learner's p(s) (0 for methods without a mental model, or where it cannot be
-- computed without the dataset rows).
function Live:learner_p(obs)
  local run = self.run
  if not run.method.uses_mental then return 0 end
  local ok, p = pcall(ag.no_grad, function()
    return methods.learner_model(run, obs:view { 1, -1 }:float()).logp:exp():item()
  end)
  if ok and p == p then return p end
  if not self.warned.p then
    self.warned.p = true
    note("the learner's p(s) is not available here (%s); the gauge shows 0", tostring(p))
  end
  return 0
end

function Live:send_frame(p, img)
  img = img or self.run.env:render(self.render_w, self.render_h)
  self.last_img, self.last_p = img, p
  local meta = io_.json_encode { type = "frame", w = img.width, h = img.height, round = self.run.round + 1,
    rounds = self.run.cfg.rounds, episode = self.episode or 1, episodes = self.run.cfg.episodes_per_round,
    step = self.t or 0, p = p, nu_last = self.nu_last or 0, interventions = self.interventions, speed = self.speed,
    paused = self.paused or self.controller == nil, controller = self.controller or 0, fps = self.fps }
  self.server:frame(string.pack("<I4", #meta) .. meta .. img.rgb)
end

-- The current frame again, its header updated (pause, speed, controller changed).
function Live:refresh_frame()
  if self.last_img and self.phase == "collecting" then self:send_frame(self.last_p, self.last_img) end
end

-- Wait for this step's turn: the real-time deadline, or, while paused or without a
-- controlling browser, a "step" request or the resume.
function Live:wait_turn()
  local dt = 1 / (self.fps * self.speed)
  local now = sys.monotonic()
  self.next = (self.next or now) + dt
  if self.next < now - 0.25 then self.next = now end -- far behind (training, a pause): no burst
  while true do
    if self.paused or not self.controller then
      local waiting = not self.controller
      if waiting and not self.said_waiting then
        self.said_waiting = true
        note("waiting for a browser at %s", self.url)
      end
      self:service(100)
      if self.step_once and self.controller then
        self.step_once = false
        break
      end
      self.next = sys.monotonic() + 1 / (self.fps * self.speed)
    else
      self.step_once = false
      local remaining = self.next - sys.monotonic()
      if remaining <= 0 then break end
      self:service(math.max(1, math.floor(remaining * 1000 + 0.5)))
    end
  end
  self.said_waiting = nil
end

-- The person's input now: nu and the action (the robot's when nu = 0).
function Live:read_input(robot_action)
  local keys, pad, km = self.input.keys or {}, self.input.pad, self.keymap
  local take = false
  for k in pairs(M.takeover_keys) do if keys[k] then take = true end end
  if pad then for b in pairs(M.takeover_buttons) do if pad.buttons[b + 1] then take = true end end end
  if not take then return 0, robot_action end
  if km.discrete then
    local a = self.last_key and km.keys[self.last_key]
    if not a and pad then
      for _, m in ipairs(km.pad) do
        if (m.button and pad.buttons[m.button + 1]) or (m.axis and (pad.axes[m.axis + 1] or 0) * m.sign > 0.5) then
          a = m.action
        end
      end
    end
    return 1, a or km.idle
  end
  local a, touched = {}, {}
  for i = 1, #km.rest do a[i] = 0 end
  for k in pairs(keys) do
    local m = km.keys[k]
    if m then a[m[1]], touched[m[1]] = a[m[1]] + m[2], true end
  end
  if pad then
    for _, m in ipairs(km.pad) do
      local v = pad.axes[m.axis + 1] or 0
      if math.abs(v) > 0.1 then a[m.dim], touched[m.dim] = a[m.dim] + v * m.scale, true end
    end
  end
  for i = 1, #a do
    a[i] = clip(a[i])
    if not touched[i] then a[i] = km.rest[i] end -- LunarLander: main engine off; gripper open
  end
  for dim, on in pairs(self.toggles) do a[dim] = on and 1 or -1 end
  return 1, a
end

function Live:decide(obs, robot_action)
  local p = self:learner_p(obs)
  -- a render slower than a step (MuJoCo under OSMesa: ~35 ms at 320x240) is skipped on
  -- the steps that follow it, spending at most half the time rendering: the simulation
  -- keeps its rate, the page gets fewer frames
  local t0 = sys.monotonic()
  if not self.next_render or t0 >= self.next_render or self.paused or not self.controller then
    self:send_frame(p)
    local cost = sys.monotonic() - t0
    self.next_render = cost > 0.5 / (self.fps * self.speed) and t0 + 2 * cost or nil
  end
  self:wait_turn()
  local nu, action = self:read_input(robot_action)
  local now = sys.monotonic()
  local run = self.run
  self.rows[#self.rows + 1] = ("%d,%d,%d,%.6f,%.6f,%.6g,%d,%d,%.6f"):format(run.round + 1, run.episodes - 1,
    self.t or 0, self.wall0 + (now - self.mono0), self.last_step and now - self.last_step or 0, p, nu,
    self.controller or 0, self.input.at and now - self.input.at or -1)
  self.last_step = now
  self.nu_last = nu
  self.interventions = self.interventions + nu
  self.t = (self.t or 0) + 1
  return nu, action, { p = p }
end

--- finish(): tell the browsers the run is over, give them a moment, close the server.
function Live:finish(text)
  if not self.server then return end
  self.phase = "done"
  self:send_metrics()
  self:broadcast_status(text or "done")
  local t0 = sys.monotonic()
  while sys.monotonic() - t0 < 0.3 do self:service(50) end
  self.server:close()
  self.server = nil
end

M.task_rate = task_rate
M.random_token = random_token
return M
