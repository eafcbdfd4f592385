-- scripts/render_envs.lua - one PNG per environment, for the docs.
--   mile scripts/render_envs.lua [--dir DIR] [--width W] [--height H] [NAME ...]
-- Default: every registered env, into docs/img/<name>.png. Each picture shows the
-- scripted expert part-way through the episode of seed 0, so that the gripper is at
-- work (MuJoCo tasks) or the lander is on its way down.
local envs = require "mile.envs"

-- expert steps before the picture; the moment the task is easiest to read
local STEPS = {
  ["LunarLander-v3"] = 120,
  ["LunarLanderContinuous-v3"] = 120,
  ["drawer-open-v3"] = 75,    -- the handle hooked, the drawer coming out
  ["button-press-v3"] = 45,   -- the button half pressed
  ["peg-insert-side-v3"] = 85, -- the peg lifted and carried to the hole
}

local dir, width, height = "docs/img", nil, nil
local names = {}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--dir" then
    dir, i = arg[i + 1], i + 1
  elseif a == "--width" then
    width, i = math.tointeger(tonumber(arg[i + 1])), i + 1
  elseif a == "--height" then
    height, i = math.tointeger(tonumber(arg[i + 1])), i + 1
  elseif a:sub(1, 2) == "--" then
    error("render_envs: unknown option " .. a)
  else
    names[#names + 1] = a
  end
  i = i + 1
end
if #names == 0 then names = envs.list() end
assert(dir, "render_envs: --dir needs a directory")
os.execute(("mkdir -p '%s'"):format(dir:gsub("'", "'\\''")))

for _, name in ipairs(names) do
  local env <close> = envs.make(name)
  local expert = envs.scripted_expert(env)
  local obs = env:reset{seed = 0}
  for _ = 1, STEPS[name] or 50 do
    local terminated, truncated
    obs, _, terminated, truncated = env:step(expert:act(obs))
    if terminated or truncated then break end
  end
  local path = ("%s/%s.png"):format(dir, name)
  local ok, err = envs.save_png(env:render(width, height), path)
  if not ok then error(("render_envs: %s: %s"):format(name, err)) end
  print(path)
end
