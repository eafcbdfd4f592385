--- mile.envs.lunar_heuristic: Gymnasium's heuristic LunarLander controller as a law
--- with named gains, so that its gains can be searched (scripts/make_policies.lua
--- --tune-expert) while the env's own scripted expert (envs/src/lunar_lander.cpp)
--- keeps Gymnasium's values.
--
--   local lh = require "mile.envs.lunar_heuristic"
--   local a = lh.act(lh.GYMNASIUM, obs)          -- discrete action 0..3
--   local u = lh.act(gains, obs, true)           -- continuous {main, lateral}
--
-- The law (Gymnasium's heuristic(env, s), ../shared/ENVS.md 1.9), with s the
-- observation (x, y, vx, vy, angle, angular velocity, leg 1, leg 2):
--   angle target = clip(x_gain x + vx_gain vx, -max_angle, max_angle)
--   hover target = hover_gain |x|
--   angle cmd    = (angle target - angle) angle_gain - spin_gain angular velocity
--   hover cmd    = (hover target - y) height_gain - fall_gain vy
--   a leg down:    angle cmd = 0, hover cmd = -leg_fall_gain vy
-- discrete: main engine (2) when hover cmd > |angle cmd| and > deadband, else the side
-- engine whose sign the angle cmd asks for beyond the deadband (3 right, 1 left), else 0;
-- continuous: (clip(20 hover cmd - 1), clip(-20 angle cmd)) in [-1, 1].
local M = {}

--- The gains in a fixed order (a search's coordinates).
M.NAMES = { "x_gain", "vx_gain", "max_angle", "hover_gain", "angle_gain", "spin_gain", "height_gain", "fall_gain",
  "deadband", "leg_fall_gain" }

--- Gymnasium's values: the env's own scripted expert.
M.GYMNASIUM = { x_gain = 0.5, vx_gain = 1.0, max_angle = 0.4, hover_gain = 0.55, angle_gain = 0.5, spin_gain = 1.0,
  height_gain = 0.5, fall_gain = 0.5, deadband = 0.05, leg_fall_gain = 0.5 }

local function clip(v, lo, hi) return v < lo and lo or (v > hi and hi or v) end

--- check(gains) -> gains, or an error naming the missing or non-finite gain.
function M.check(gains)
  if type(gains) ~= "table" then error("lunar_heuristic: gains must be a table", 2) end
  for _, k in ipairs(M.NAMES) do
    local v = gains[k]
    if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
      error(("lunar_heuristic: gain %s must be a finite number (got %s)"):format(k, tostring(v)), 2)
    end
  end
  return gains
end

--- act(gains, s [, continuous]) -> the action for observation s (a Lua array or an
--- 8-element tensor): an integer 0..3, or {main, lateral} when continuous.
function M.act(g, s, continuous)
  if type(s) ~= "table" then s = s:view({ -1 }):totable() end
  local x, y, vx, vy, angle, spin = s[1], s[2], s[3], s[4], s[5], s[6]
  local angle_target = clip(x * g.x_gain + vx * g.vx_gain, -g.max_angle, g.max_angle)
  local hover_target = g.hover_gain * math.abs(x)
  local angle_cmd = (angle_target - angle) * g.angle_gain - spin * g.spin_gain
  local hover_cmd = (hover_target - y) * g.height_gain - vy * g.fall_gain
  if s[7] ~= 0 or s[8] ~= 0 then -- legs down: stop steering, only damp the fall
    angle_cmd, hover_cmd = 0, -vy * g.leg_fall_gain
  end
  if continuous then return { clip(hover_cmd * 20 - 1, -1, 1), clip(-angle_cmd * 20, -1, 1) } end
  if hover_cmd > math.abs(angle_cmd) and hover_cmd > g.deadband then return 2 end
  if angle_cmd < -g.deadband then return 3 end
  if angle_cmd > g.deadband then return 1 end
  return 0
end

return M
