--- mile: the umbrella module. `local mile = require "mile"` gives every submodule
-- that exists in this installation; each is also requirable on its own
-- (`require "mile.tensor"`). Submodules load lazily, on first access.
local M = {
  tensor = require "mile.tensor",
}
-- the C library's version: project(VERSION) of CMakeLists.txt, the one place it is written
M._VERSION = "mile " .. require("mile.core").version

local lazy = {
  autograd = "mile.autograd", nn = "mile.nn", optim = "mile.optim", io = "mile.io",
  intervention = "mile.intervention", envs = "mile.envs", data = "mile.data", human = "mile.human",
  loop = "mile.loop", methods = "mile.methods", models = "mile.models", calibration = "mile.calibration",
  plot = "mile.plot", rundir = "mile.rundir", plugins = "mile.plugins", registry = "mile.registry", tasks = "mile.tasks",
  batch = "mile.batch", schedules = "mile.schedules", display = "mile.display", replay = "mile.replay",
  compile = "mile.compile",
}

setmetatable(M, {
  __index = function(t, k)
    local name = lazy[k]
    if not name then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})

--- open(dir): a run directory at the REPL (mile.calibration.open): config, metrics,
--- dataset, checkpoints, run:calibration{round=}, run:predict(obs).
function M.open(dir) return require("mile.calibration").open(dir) end

-- doc[f]: the documentation of a function of mile (help(f) and ?f in the REPL read it),
-- from the `---` comments above Lua functions and mile.cdoc for C functions
M.doc = require("mile.doc").registry()

--- Names of the submodules mile knows (for completion and help).
function M.modules()
  local names = { "tensor" }
  for k in pairs(lazy) do names[#names + 1] = k end
  table.sort(names)
  return names
end

return M
