--- mile.loop: the round protocol of MILE and its baselines (DESIGN.md section 1).
--
--   local loop = require "mile.loop"
--   local run = loop.run{env = "LunarLander-v3", method = "mile", rounds = 4, out = "runs"}
--
-- Each round: `episodes_per_round` episodes of the robot policy with the (simulated)
-- human watching (the human's action is executed when it intervenes), append the
-- tuples to the dataset, train for `epochs` passes' worth of minibatch steps over
-- demonstrations + dataset (the same number of steps for every method), evaluate the
-- policy alone over `eval_episodes` fixed evaluation states, log a metrics row and
-- commit the round to the run directory. A killed run resumes from its last committed
-- round (`loop.run{resume = dir}`) and, with the same seed, ends with the same metrics.
--
-- Randomness: four generators from the seed (collection rollouts, the simulated
-- human, training minibatches, evaluation), saved with every round. Collection and
-- evaluation episodes use disjoint env seeds; evaluation uses the same states every
-- round. The reported policy is the last round's.
local T = require "mile.tensor"
local nn = require "mile.nn"
local optim = require "mile.optim"
local ag = require "mile.autograd"
local io_ = require "mile.io"
local sys = require "mile.sys"
local envs = require "mile.envs"
local data = require "mile.data"
local config = require "mile.config"
local policy = require "mile.policy"
local tasks = require "mile.tasks"
local human = require "mile.human"
local methods = require "mile.methods"
local models = require "mile.models"
local report = require "mile.report"
local schedules = require "mile.schedules"
local temporal = require "mile.temporal"
local registry = require "mile.registry"
local plugins = require "mile.plugins"
local rundir = require "mile.rundir"

local M = {}

local function positive(v) return v >= 1, "must be >= 1" end
local function non_negative(v) return v >= 0, "must be >= 0" end
local function scale_ok(v) return v > 0, "must be > 0" end

-- The keys that name a registered entry, and their registries. A value that is a file
-- path (a "/" or ending in .lua) loads that file as a plugin and names what it registers.
local SELECTORS = {
  { key = "env", registry = tasks },
  { key = "method", registry = methods },
  { key = "learner.model", registry = models },
  { key = "human.model", registry = models },
  { key = "learner.memory", registry = temporal, none = true },
  { key = "human.memory", registry = temporal, none = true },
  { key = "learner.schedule", registry = schedules },
}

--- The protocol's own configuration keys (`mile train --keys` lists them with the keys
--- of the registered models, methods, schedules and memory models a config uses).
M.schema = {
  name = { type = "string", default = "", doc = "run name (default: <env>-<method>)" },
  env = { type = "string", default = "LunarLander-v3", doc = "task (mile.tasks)" },
  method = { type = "string", default = "mile", doc = "training method (mile.methods)" },
  seed = { type = "integer", default = 0, doc = "every generator and env seed derives from it",
    check = function(v) return v >= 0 and v <= 2 ^ 40, "must be in [0, 2^40] (env seeds are seed * 10^5 + ...)" end },
  rounds = { type = "integer", default = 5, check = positive },
  episodes_per_round = { type = "integer", default = 5, check = positive },
  epochs = { type = "integer", default = 10, check = non_negative },
  batch_size = { type = "integer", default = 256, check = positive },
  lr = { type = "number", default = 1e-3, check = function(v) return v > 0, "must be > 0" end },
  eval_episodes = { type = "integer", default = 20, check = non_negative },
  max_episode_steps = { type = "integer", default = 1000, check = positive },
  ["human.cost"] = { type = "number", default = nil, doc = "c_d (default: the task's, ENVS.md 3.2)" },
  ["human.scale"] = { type = "number", default = nil, doc = "sigma_d (default: the task's)", check = scale_ok },
  ["learner.cost"] = { type = "number", default = nil, doc = "c of the learner's model (default: human.cost)" },
  ["learner.scale"] = { type = "number", default = nil, doc = "sigma of the learner's model (default: human.scale)",
    check = scale_ok },
  ["learner.schedule"] = { type = "string", default = "constant", doc = "cost schedule (mile.schedules)" },
  ["learner.model"] = { type = "string", default = "probit", doc = "the learner's intervention model (mile.models)" },
  ["human.model"] = { type = "string", default = "probit", doc = "the simulated human's intervention model (mile.models)" },
  ["learner.memory"] = { type = "string", default = "none",
    doc = "the learner's memory model (mile.temporal: history, accumulator, gru) or none" },
  ["human.memory"] = { type = "string", default = "none", doc = "the simulated human's memory model, or none" },
  ["human.mental"] = { type = "string", default = "initial", choices = { "initial", "accurate", "lag", "noisy" },
    doc = "human's mental model: the initial policy, the robot's current policy (accurate), the robot lagged "
      .. "by human.lag rounds, or noisy" },
  ["human.rule"] = { type = "string", default = "sample", choices = { "sample", "argmax" },
    doc = "sample: nu ~ Bernoulli(p), action ~ pi_E q / p; argmax (discrete; the public code): deterministic "
      .. "argmax over [pi_E(a) p, 1 - p], only when it differs from the robot's action" },
  ["human.shrink"] = { type = "boolean", default = false,
    doc = "continuous (the public code): intervention actions from N(p mu_E, (p sd_E)^2)" },
  ["human.hold"] = { type = "integer", default = 0, check = non_negative,
    doc = "contiguous takeovers: once the human takes over it keeps control up to this many steps in all, acting "
      .. "from pi_E (0 or 1: every step decided on its own, the MILE model's assumption)" },
  ["human.hold_until"] = { type = "string", default = "agree", choices = { "agree", "steps" },
    doc = "human.hold: agree hands control back at the first held step where the robot's own action is one the "
      .. "expert would take; steps holds all human.hold steps" },
  demos = { type = "integer", default = nil, check = non_negative,
    doc = "demonstration episodes every method gets: 0 or the cached count (default: all cached)" },
  ["learner.mental_init"] = { type = "string", default = "warm", choices = { "warm", "random" },
    doc = "the learner's mental model starts as the initial policy (warm) or random (the public code)" },
  ["eval.select"] = { type = "string", default = "last", choices = { "last", "best" },
    doc = "reported policy: the round's last, or the best of evaluations during training (the public code)" },
  ["eval.every"] = { type = "integer", default = 100, check = positive,
    doc = "eval.select=best: epochs between selection evaluations" },
  ["eval.select_episodes"] = { type = "integer", default = 30, check = positive,
    doc = "eval.select=best: episodes per selection evaluation (on the first evaluation states)" },
  ["train.holdout"] = { type = "number", default = 0,
    check = function(v) return v >= 0 and v < 1, "must be in [0, 1) (the fraction of rows held out each round)" end,
    doc = "a fresh random fraction of the rows (demos and dataset) held out each round: not trained on, their NLL "
      .. "reported as holdout_nll (the public code: 0.2, a logged validation loss)" },
  ["train.compile"] = { type = "boolean", default = true,
    doc = "record each round's training step once and replay it from C (mile.compile: the same results to the "
      .. "bit); false runs it as written (MILE_COMPILE=0 turns it off everywhere)" },
  ["initial.policy"] = { type = "string", default = "cached", choices = { "cached", "converged" },
    doc = "the initial policy: cached (BC for the task's initial_steps on the cached demos) or converged (BC to "
      .. "convergence with early stopping on initial.demo_episodes episodes, which become the run's demos)" },
  ["initial.demo_episodes"] = { type = "integer", default = 1, check = positive,
    doc = "initial.policy=converged: demonstration episodes it was cloned on (scripts/make_policies.lua --converged)" },
  ["expert.policy"] = { type = "string", default = "cached", choices = { "cached", "tuned" },
    doc = "a discrete task's pi_E: cached (expert.safetensors, the clone of Gymnasium's heuristic) or tuned "
      .. "(expert-tuned.safetensors, the clone of the same law with searched gains: scripts/make_policies.lua "
      .. "--tune-expert)" },
  ["eval.expert"] = { type = "boolean", default = false,
    doc = "also evaluate the expert (pi_E's mode) on the evaluation states before round 1 (a reference level)" },
  protocol = { type = "string", default = "mile", choices = { "mile", "public" },
    doc = "public: the public MILE code's protocol (docs/reproduction.md); its keys cannot be set otherwise" },
  ["human.lag"] = { type = "integer", default = 1, check = non_negative,
    doc = "human.mental=lag: pihat is the policy that acted human.lag rounds ago (0: the current one)" },
  ["human.noise"] = { type = "number", default = 0.5, check = function(v) return v >= 0, "must be >= 0" end,
    doc = "human.mental=noisy: sd of N(0, sd^2) noise on pihat's logits (mean, continuous) at each step" },
  ["human.kind"] = { type = "string", default = "simulated", choices = { "simulated", "live" },
    doc = "live: a person in the browser drives the takeovers (mile teleop, docs/teleop.md); `human = \"live\"` too" },
  ["teleop.bind"] = { type = "string", default = "127.0.0.1", doc = "human.kind=live: the address the page is served on" },
  ["teleop.port"] = { type = "integer", default = 0, check = function(v) return v >= 0 and v <= 65535, "must be in 0..65535" end,
    doc = "human.kind=live: the port (0: a free one)" },
  ["teleop.speed"] = { type = "number", default = 1, check = function(v) return v > 0 and v <= 4, "must be in (0, 4]" end,
    doc = "human.kind=live: playback speed at the start (the page switches between 0.25, 0.5 and 1)" },
  ["teleop.fps"] = { type = "number", default = 0, check = non_negative,
    doc = "human.kind=live: steps per second at speed 1 (0: the task's real-time rate)" },
  ["teleop.open"] = { type = "boolean", default = true, doc = "human.kind=live: open the page in a browser if there is one" },
  plugins = { type = "list", default = {}, doc = "Lua files or module names that register models, methods, ..." },
  out = { type = "string", default = "runs", doc = "parent directory of run directories" },
  policy_dir = { type = "string", default = "", doc = "cached policies (default: <scripts dir>/data)" },
  progress = { type = "boolean", default = true, doc = "print a line per round" },
}
registry.claim(M.schema, "the protocol (mile.loop)")

--- The keys `--resume DIR --set key=value` may change (a finished run is extended by
--- more rounds); any other key is refused.
M.resumable = { rounds = true, progress = true }

-- The directory of the cached policies: mile.paths.data_dir, <scripts>/data of the build
-- tree or of the installation (the `mile` host and a stock lua5.4 alike;
-- $MILE_SCRIPTS_DIR overrides it).
local function default_policy_dir()
  return require("mile.paths").data_dir
end

-- Load the plugins a config names (files relative to the working directory unless
-- absolute) and return their specs as recorded (absolute paths, module names). With
-- no_code (a run directory's config, read as data) nothing new may load: each must be
-- loaded already, from the directory's trusted copies.
local function load_plugins(list, no_code)
  local specs = {}
  for _, spec in ipairs(list or {}) do
    if type(spec) ~= "string" then error(("config: 'plugins' holds a %s, expected file paths or module names"):format(
      type(spec)), 0) end
    local rec = plugins.find(spec)
    if not rec and no_code then
      error(("config: 'plugins' names %s, which the run directory's plugins.lua does not record"):format(spec), 0)
    end
    specs[#specs + 1] = (rec or plugins.load(spec)).spec
  end
  return specs
end

-- A selector value that is a file path: load it and name the entry of the registry it
-- registered.
local function select_file(sel, value, specs)
  local rec = plugins.load(value)
  specs[#specs + 1] = rec.spec
  local found
  for _, e in ipairs(sel.registry.entries()) do
    if e.source == rec.path then
      if found then error(("config: '%s' = %s: the file registers several %ss (%s, %s); name one"):format(sel.key,
        value, sel.registry.kind, found.name, e.name), 0) end
      found = e
    end
  end
  if not found then error(("config: '%s' = %s: the file registers no %s"):format(sel.key, value,
    sel.registry.kind), 0) end
  return found.name
end

local function override_map(overrides)
  local map, order = {}, {}
  for _, item in ipairs(overrides or {}) do
    local key, text = tostring(item):match("^([%w_.]+)=(.*)$")
    if not key then error(("config: --set %s: expected key=value"):format(tostring(item)), 0) end
    if map[key] == nil then order[#order + 1] = key end
    map[key] = text
  end
  return map, order
end

--- The settings of protocol = "public": the public MILE code (sriramk117/mile-code), item
--- by item (docs/reproduction.md). The ingredients are locked: a config that sets one
--- otherwise is refused (switch them one at a time without the preset). The budget
--- (rounds, episodes_per_round, epochs, batch_size, lr, eval.every, eval.select_episodes)
--- is the public code's default and may be changed. Keys the run's schema lacks (loss.variant for a baseline) are left out.
function M.public_preset(task)
  local ingredients = {
    demos = 0, ["learner.mental_init"] = "random", ["eval.select"] = "best",
    ["human.rule"] = task.discrete and "argmax" or "sample", ["human.shrink"] = not task.discrete,
    ["loss.variant"] = task.discrete and "public" or "paper",
    -- COST_LOOKUP (ENVS.md 3.2) for the human and the learner, and a fixed mental model
    ["human.cost"] = task.human_cost, ["human.scale"] = task.human_scale, ["learner.cost"] = task.human_cost,
    ["learner.scale"] = task.human_scale, ["human.mental"] = "initial",
    -- prepare_dataset (mile/utils.py): a fresh random 20% held out every round
    ["train.holdout"] = 0.2,
  }
  local budget = { rounds = 20, episodes_per_round = 1, epochs = 300, batch_size = 1024, lr = 1e-4,
    ["eval.every"] = 100, ["eval.select_episodes"] = 30 }
  return ingredients, budget
end

--- schema_for(selection) -> the schema of a config that selects these entries: the
--- protocol's keys and the keys of its method, models, memory models and schedule.
function M.schema_for(sel)
  local schema = {}
  for k, v in pairs(M.schema) do schema[k] = v end
  local function add(e) for k, v in pairs(e.schema or {}) do schema[k] = v end end
  for _, s in ipairs(SELECTORS) do
    local name = sel[s.key]
    if not (s.none and name == "none") then add(s.registry.get(name)) end
  end
  if sel["learner.memory"] ~= "none" then add { schema = temporal.schema } end
  return schema
end

--- resolve(user [, overrides [, extra_plugins [, opts]]]) -> a flat table with every key
--- of the config's schema, task defaults filled in. user: a config table (possibly
--- nested); overrides: "key=value" strings (--set), applied before anything is
--- validated; extra_plugins: specs (--plugin) loaded with the config's own `plugins`;
--- opts.no_code: load no code (a run directory's stored config: its plugins are loaded
--- already, and a file path where a name belongs is refused); opts.unused: a table that
--- collects {key = owner} for --set keys of entries the config does not select, instead
--- of a warning on stderr (mile.batch warns once for a whole batch).
function M.resolve(user, overrides, extra_plugins, opts)
  local no_code = opts and opts.no_code
  local flat = config.flatten(user or {}, "")
  if flat.human == "live" then flat.human, flat["human.kind"] = nil, "live" end -- human = "live" (mile teleop)
  local over, over_order = override_map(overrides)
  -- plugins first: they register what the other keys name
  local list = {}
  for _, p in ipairs(type(flat.plugins) == "table" and flat.plugins or {}) do list[#list + 1] = p end
  if over.plugins then for p in over.plugins:gmatch("[^,]+") do list[#list + 1] = p end end
  for _, p in ipairs(extra_plugins or {}) do list[#list + 1] = p end
  local specs = load_plugins(list, no_code)
  -- what the config selects, --set first
  local sel = {}
  for _, s in ipairs(SELECTORS) do
    local v = over[s.key]
    if v == nil then v = flat[s.key] end
    if v == nil then v = M.schema[s.key].default end
    if type(v) ~= "string" then error(("config: '%s' must be a string, got %s"):format(s.key, type(v)), 0) end
    if not (s.none and v == "none") and not s.registry.find(v) and plugins.is_file_spec(v) then
      if no_code then
        error(("config: '%s' = %s: a run directory's config names registered entries, not files"):format(s.key, v), 0)
      end
      v = select_file(s, v, specs)
    end
    if not (s.none and v == "none") and not s.registry.find(v) then
      local known = s.registry.names()
      if s.none then table.insert(known, 1, "none") end
      local hint = ""
      if s.registry == models and temporal.find(v) then -- the keys of mile < 0.2
        hint = (" (%s is a memory model: set %s)"):format(v, s.key:gsub("model$", "memory"))
      end
      error(("config: '%s' = %s: unknown %s (known: %s)%s%s"):format(s.key, v, s.registry.kind,
        table.concat(known, ", "), over[s.key] and " (from --set)" or "", hint), 0)
    end
    sel[s.key] = v
    if over[s.key] ~= nil then over[s.key] = v else flat[s.key] = v end
  end
  local unique, seen = {}, {}
  for _, p in ipairs(specs) do if not seen[p] then seen[p], unique[#unique + 1] = true, p end end
  flat.plugins, over.plugins = unique, nil
  local schema = M.schema_for(sel)
  local sets = {}
  for _, k in ipairs(over_order) do if over[k] ~= nil then sets[#sets + 1] = k .. "=" .. over[k] end end
  -- A key of a registered entry the config does not select (loss.lambda in a base config
  -- shared by every method of a batch) is checked by its owner's spec and kept, with no
  -- effect on the run; set with --set, it is worth a warning.
  for key in pairs(flat) do
    if schema[key] == nil and registry.spec(key) then schema[key] = registry.spec(key) end
  end
  for _, k in ipairs(over_order) do
    if over[k] ~= nil and schema[k] == nil and registry.spec(k) then
      schema[k] = registry.spec(k)
      if opts and opts.unused then
        opts.unused[k] = registry.owner(k)
      else
        io.stderr:write(("mile: warning: --set %s: the key belongs to %s, which this run does not use\n"):format(k,
          registry.owner(k)))
      end
    end
  end
  local protocol = over.protocol or flat.protocol
  if protocol == "public" then -- a preset: its keys take its values, and nothing else
    local preset, budget = M.public_preset(tasks.get(sel.env))
    local given = config.resolve(schema, flat, sets)
    for k, v in pairs(budget) do
      if over[k] == nil and flat[k] == nil then flat[k] = v end
    end
    local keys = {}
    for k in pairs(preset) do keys[#keys + 1] = k end
    table.sort(keys) -- the first conflict in key order: the same message every time
    for _, k in ipairs(keys) do
      local v = preset[k]
      if schema[k] then
        local mine = over[k] ~= nil or flat[k] ~= nil
        if mine and given[k] ~= v then
          error(("config: '%s' = %s conflicts with protocol = public (which sets %s = %s)"):format(k,
            tostring(given[k]), k, tostring(v)), 0)
        end
        if not mine then flat[k] = v end
      end
    end
  end
  local cfg = config.resolve(schema, flat, sets)
  if cfg["train.holdout"] > 0 and cfg["learner.memory"] ~= "none" then
    -- a memory model trains on episode segments of the whole dataset
    error(("config: 'train.holdout' = %s cannot be combined with 'learner.memory' = %s (it trains on whole "
      .. "episodes); set one of them off"):format(tostring(cfg["train.holdout"]), cfg["learner.memory"]), 0)
  end
  local task = tasks.get(cfg.env)
  if cfg["expert.policy"] == "tuned" and not task.discrete then
    -- a continuous task's pi_E is a Gaussian around its scripted controller: no file to choose
    error(("config: 'expert.policy' = tuned: %s's expert is its scripted controller (only a discrete task's "
      .. "expert is a cloned network)"):format(cfg.env), 0)
  end
  cfg["human.cost"] = cfg["human.cost"] or task.human_cost
  cfg["human.scale"] = cfg["human.scale"] or task.human_scale
  cfg["learner.cost"] = cfg["learner.cost"] or cfg["human.cost"]
  cfg["learner.scale"] = cfg["learner.scale"] or cfg["human.scale"]
  if cfg.name == "" then cfg.name = cfg.env .. "-" .. cfg.method end
  return cfg
end

-- ---- files ---------------------------------------------------------------------------------

local function fail(err) error("loop: " .. tostring(err), 0) end

--- policy_file(cfg, name) -> the path of a cached policy file of the run's task
--- (initial, expert, demos), under policy_dir or the host's data directory.
function M.policy_file(cfg, name)
  local dir = cfg.policy_dir ~= "" and cfg.policy_dir or default_policy_dir()
  if cfg["initial.policy"] == "converged" then -- scripts/make_policies.lua --converged
    local k = cfg["initial.demo_episodes"]
    if name == "initial" then name = ("initial-converged-%dep"):format(k)
    elseif name == "demos" then name = ("demos-%dep"):format(k) end
  end
  if name == "expert" and cfg["expert.policy"] == "tuned" then name = "expert-tuned" end
  return ("%s/%s/%s.safetensors"):format(dir, cfg.env, name)
end

-- Optimiser state as safetensors: tensors by position, the rest as JSON metadata.
local function save_optimizer(path, opt)
  local sd = opt:state_dict()
  local tensors, plain = {}, { type = sd.type, step_count = sd.step_count, param_groups = sd.param_groups, state = {} }
  for i, s in ipairs(sd.state) do
    plain.state[i] = {}
    for k, v in pairs(s) do
      if T.is_tensor(v) then tensors[("%d.%s"):format(i, k)] = v else plain.state[i][k] = v end
    end
  end
  local ok, err = io_.save_safetensors(path, tensors, { ["mile.optimizer"] = io_.json_encode(plain) })
  if not ok then fail(err) end
end

local function load_optimizer(path, opt)
  local tensors, meta = io_.load_safetensors(path)
  if not tensors then fail(meta) end
  local sd = io_.json_decode(meta["mile.optimizer"])
  for i, s in ipairs(sd.state) do
    for name, t in pairs(tensors) do
      local idx, key = name:match("^(%d+)%.(.+)$")
      if tonumber(idx) == i then s[key] = t end
    end
  end
  opt:load_state_dict(sd)
end

-- ---- the run object -------------------------------------------------------------------------

local Run = {}
Run.__index = Run
M.Run = Run

-- (train.holdout adds its own, so that runs without it draw exactly as before.)
local function generators(cfg)
  local seed = cfg.seed
  local gens = { collect = T.Generator(seed * 1000 + 1), human = T.Generator(seed * 1000 + 2),
    train = T.Generator(seed * 1000 + 3), eval = T.Generator(seed * 1000 + 4) }
  if cfg["train.holdout"] > 0 then gens.holdout = T.Generator(seed * 1000 + 6) end
  return gens
end

-- Env seeds: collection and evaluation never share a state.
--- collect_seed(cfg, round, k) -> the env seed of the k-th episode (1-based) collected
--- in round `round` (1-based): what `mile replay` resets the env with.
local function collect_seed(cfg, round, k) return 1000000 + cfg.seed * 100000 + round * 1000 + k end
M.collect_seed = collect_seed
local function eval_seed(cfg, i) return 5000000 + cfg.seed * 100000 + i end

-- The simulated human of the task: expert pi_E and ground-truth mental model
-- (human.mental: the initial policy, a lagged copy of the robot, or noisy), with the
-- memory of human.model.
local function make_human(run)
  local task, cfg = run.task, run.cfg
  local mental = nn.load(M.policy_file(cfg, "initial"))
  mental:eval()
  run.human_mental = mental -- human.mental = "lag" loads lagged policies into it
  local expert
  if task.discrete then
    local net = nn.load(M.policy_file(cfg, "expert"))
    expert = function(obs) return policy.params(net, obs) end
  else
    -- a Gaussian around the scripted controller's action
    local scripted = envs.scripted_expert(run.env)
    local log_sd = math.log(task.expert_std)
    expert = function(obs)
      local mu = scripted:act(obs:view { -1 }):float():view { 1, -1 }
      return { mu = mu, log_sd = T.full(mu:shape(), log_sd) }
    end
  end
  run.expert_params = expert -- eval.expert: the reference level
  local believe = function(obs) return policy.params(mental, obs) end
  if cfg["human.mental"] == "noisy" and cfg["human.noise"] > 0 then
    local sd, gen = cfg["human.noise"], run.gens.human
    believe = function(obs)
      local m = policy.params(mental, obs)
      local key = m.logits and "logits" or "mu"
      m[key] = m[key] + T.randn(m[key]:shape(), gen, m[key]:dtype()) * sd
      return m
    end
  end
  local ctx = { role = "human", cfg = cfg, task = task }
  local memory
  if cfg["human.memory"] ~= "none" then memory = temporal.new(cfg["human.memory"], ctx) end
  return human.Simulated { expert = expert, mental = believe, memory = memory,
    model = models.get(cfg["human.model"]).build(ctx), cost = cfg["human.cost"], scale = cfg["human.scale"],
    discrete = task.discrete, generator = run.gens.human, rule = cfg["human.rule"], shrink = cfg["human.shrink"],
    hold = cfg["human.hold"], hold_until = cfg["human.hold_until"] }
end

local function new_dataset(task)
  if task.discrete then return data.new { obs_dim = task.obs_dim, n_actions = task.n_actions, has_p = true } end
  return data.new { obs_dim = task.obs_dim, action_dim = task.action_dim, has_p = true }
end

--- Build a run from a resolved config: models from the cached policies (warm start),
--- optimisers, generators, the run directory.
function M.new_run(cfg)
  local run = setmetatable({ cfg = cfg, task = tasks.get(cfg.env), round = 0, episodes = 0, metrics = {},
    tty = sys.isatty(1) }, Run)
  local initial = M.policy_file(cfg, "initial")
  if sys.stat(initial) ~= "file" then
    local how = cfg["initial.policy"] == "converged" and ("--converged --episodes %d "):format(
      cfg["initial.demo_episodes"]) or ""
    fail(("no cached policies %s; run `mile %s/make_policies.lua %s%s`"):format(initial,
      require("mile.paths").scripts_dir, how, cfg.env))
  end
  run.env = tasks.make_env(cfg.env)
  run.eval_env = tasks.make_env(cfg.env)
  run.gens = generators(cfg)
  run.policy = nn.load(initial)
  if cfg["learner.mental_init"] == "random" then -- the public code drops its warm start
    local task = run.task
    run.mental = policy.new { obs_dim = task.obs_dim, discrete = task.discrete, n_actions = task.n_actions,
      action_dim = task.action_dim, hidden = task.hidden, generator = T.Generator(cfg.seed * 1000 + 5) }
  else
    run.mental = nn.load(initial) -- the learner's warm-start mental model
  end
  run.opt_policy = optim.Adam(run.policy:parameters(), { lr = cfg.lr })
  run.opt_mental = optim.Adam(run.mental:parameters(), { lr = cfg.lr })
  run.human = make_human(run)
  run.schedule = schedules.new(cfg["learner.schedule"], cfg, run)
  local ctx = { role = "learner", cfg = cfg, task = run.task }
  run.intervention = models.get(cfg["learner.model"]).build(ctx)
  if cfg["learner.memory"] ~= "none" then -- memory parameters train with the policy
    run.temporal = temporal.new(cfg["learner.memory"], ctx)
    if #run.temporal:parameters() > 0 then
      run.opt_temporal = optim.Adam(run.temporal:parameters(), { lr = cfg["temporal.lr"] })
    end
  end
  run.dataset = new_dataset(run.task)
  local demos, meta = io_.load_safetensors(M.policy_file(cfg, "demos"))
  if not demos then fail(meta) end
  local cached = tonumber(meta.episodes)
  if cfg.demos == 0 then -- no demonstrations (the public code's MILE)
    local A = run.task.discrete and {} or { run.task.action_dim }
    run.demos = { obs = T.zeros { 0, run.task.obs_dim }, actions = T.zeros({ 0, table.unpack(A) }) }
  elseif cfg.demos == nil or cfg.demos == cached then
    run.demos = { obs = demos.obs, actions = demos.actions }
  else
    fail(("demos = %d: the cached demonstrations of %s are %s episodes; use 0 or %s"):format(cfg.demos, cfg.env,
      tostring(cached), tostring(cached)))
  end
  run.method = methods.get(cfg.method)
  return run
end

-- ---- one round -------------------------------------------------------------------------------

-- Binary entropy in bits.
local function h2(p)
  if p <= 0 or p >= 1 then return 0 end
  return -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
end

-- On a terminal, one line that rewrites itself while a round runs (plain per-round
-- lines otherwise, and nothing when progress is off).
function Run:status(fmt, ...)
  if not (self.cfg.progress and self.tty) then return end
  io.stdout:write(("\r\27[K[%s] round %d/%d  "):format(self.cfg.name, self.round + 1, self.cfg.rounds),
    fmt:format(...))
  io.stdout:flush()
end

-- Robot rollouts with the human watching; appends to the dataset.
function Run:collect(round)
  local cfg, env = self.cfg, self.env
  local stats = { steps = 0, interventions = 0, p_sum = 0, h_sum = 0, returns = 0, successes = 0, human_cost_sum = 0,
    wrong = { [0] = 0, [1] = 0 }, judged = { [0] = 0, [1] = 0 } }
  local first_row = self.dataset:size() + 1
  local schedule = self.schedule and self.schedule.has_step and self.schedule or nil
  for k = 1, cfg.episodes_per_round do
    self:status("collecting episode %d/%d (%d interventions so far)", k, cfg.episodes_per_round, stats.interventions)
    local obs = env:reset { seed = collect_seed(cfg, round, k) }
    self.episodes = self.episodes + 1
    if self.human.reset then self.human:reset() end
    local t, done = 0, false
    while not done do
      local a_r = policy.act(self.policy, obs, true)
      local nu, a_h, info = self.human:decide(obs, a_r)
      local a = nu == 1 and a_h or a_r
      local next_obs, reward, term, trunc, step_info = env:step(a)
      done = term or trunc or step_info.success or t + 1 >= cfg.max_episode_steps
      self.dataset:append { episode = self.episodes - 1, t = t, obs = obs, robot_action = a_r,
        human_action = nu == 1 and a_h or a_r, nu = nu, reward = reward, done = done,
        success = step_info.success, p = info.p }
      stats.steps, stats.interventions = stats.steps + 1, stats.interventions + nu
      stats.p_sum, stats.returns = stats.p_sum + info.p, stats.returns + reward
      stats.h_sum = stats.h_sum + h2(info.p)
      if info.robot_wrong ~= nil then
        stats.judged[nu] = stats.judged[nu] + 1
        if info.robot_wrong then stats.wrong[nu] = stats.wrong[nu] + 1 end
      end
      local hc = self.human.cost
      stats.human_cost_sum = stats.human_cost_sum + (type(hc) == "number" and hc or 0 / 0)
      if schedule then
        local c = schedule:step { round = round, episode = self.episodes - 1, t = t, row = self.dataset:size(), obs = obs,
          nu = nu, p = info.p, human_cost = hc, run = self }
        if c ~= nil then self.human.cost = c end
      end
      if step_info.success then stats.successes = stats.successes + 1 end
      obs, t = next_obs, t + 1
    end
  end
  stats.rows = { first_row, self.dataset:size() }
  return stats
end

-- The learner's predicted intervention probability over rows [first, last].
function Run:predicted_rate(first, last)
  if not self.method.uses_mental or last < first then return 0 / 0 end
  return ag.no_grad(function()
    local idx = {}
    for i = first, last do idx[#idx + 1] = i end
    local obs = self.dataset:column("obs"):index_select(1, idx)
    return methods.learner_model(self, obs, idx).logp:exp():mean():item()
  end)
end

--- expert_act() -> a function obs -> the expert's deterministic action (pi_E's mode: the
--- argmax of its logits, the scripted controller's mean), for Run:evaluate (eval.expert).
function Run:expert_act()
  local expert = self.expert_params
  return function(obs)
    local p = ag.no_grad(function() return expert(obs:view { 1, -1 }:float()) end)
    if p.logits then return math.tointeger(p.logits:view { -1 }:argmax():item()) - 1 end -- argmax is 1-based
    return p.mu:view { -1 }
  end
end

-- The policy alone, deterministic, on the fixed evaluation states. act(obs) -> action
-- replaces the robot policy (e.g. to score the expert on the same states). opts.first:
-- start at that episode (the seeds do not depend on the count, so episodes first..n
-- extend a score of first - 1 episodes; mile.rescore); opts.on_episode(i, wins,
-- return_sum, length_sum) sees the running sums after each episode. Returns the means
-- {success, return, length} over the episodes played, and their sums {wins,
-- return_sum, length_sum, n}.
function Run:evaluate(episodes, act, opts)
  act = act or function(obs) return policy.act(self.policy, obs, true) end
  local first, on_episode = opts and opts.first or 1, opts and opts.on_episode
  local env = self.eval_env
  local wins, ret, len = 0, 0, 0
  for i = first, episodes do
    local obs = env:reset { seed = eval_seed(self.cfg, i) }
    local done, t = false, 0
    while not done do
      local reward, term, trunc, info
      obs, reward, term, trunc, info = env:step(act(obs))
      ret, t = ret + reward, t + 1
      if info.success then wins = wins + 1 end
      done = term or trunc or info.success or t >= self.cfg.max_episode_steps
    end
    len = len + t
    if on_episode then on_episode(i, wins, ret, len) end
  end
  local played = math.max(episodes - first + 1, 0)
  local n = math.max(played, 1)
  return { success = wins / n, ["return"] = ret / n, length = len / n },
    { wins = wins, return_sum = ret, length_sum = len, n = played }
end

M.metric_columns = { "round", "episodes", "steps", "interventions", "interventions_total", "intervention_rate",
  "predicted_rate", "observed_p", "success", "return", "length", "j1", "j2", "loss", "train_steps", "learner_cost",
  "human_cost", "nu_bits_per_step", "p_wrong_given_nu", "p_wrong_given_no_nu", "holdout_rows", "holdout_nll", "seconds" }


--- nu_bits(sum_p, sum_h, n) -> the information nu carries about the state, in bits per
--- step: I(nu; S) = H(E p) - E H(p(s)) over the round's n states (p(s): the human's own
--- p; sum_h: the sum of the binary entropies H(p(s))).
function M.nu_bits(sum_p, sum_h, n)
  if n == 0 then return 0 / 0 end
  return h2(sum_p / n) - sum_h / n
end

-- human.mental = "lag": the human believes the robot acts as the policy that acted
-- human.lag rounds before this one (round k's policy is checkpoint k - 1; 0 = initial);
-- "accurate": lag 0, the robot that acts in this round (the paper's assumption).
local function mental_lag(cfg)
  local m = cfg["human.mental"]
  if m == "accurate" then return 0 end
  if m == "lag" then return cfg["human.lag"] end
  return nil
end

--- lag_mental(round): for human.mental = "accurate" or "lag", load into the human's mental
--- model the policy of round - 1 - lag (the initial policy before round 1); otherwise nothing.
function Run:lag_mental(round)
  local lag = mental_lag(self.cfg)
  if not lag then return end
  local k = round - 1 - lag
  local sd
  if k <= 0 then
    sd = nn.load(M.policy_file(self.cfg, "initial")):state_dict()
  else
    self.policy_snapshots = self.policy_snapshots or {}
    sd = self.policy_snapshots[k]
    if not sd then sd = nn.load(self.rundir:checkpoint(k) .. "/policy.safetensors"):state_dict() end
  end
  self.human_mental:load_state_dict(sd)
end

-- The learner's cost as the metrics report it: its mean over the rows [first, last].
function Run:mean_learner_cost(first, last)
  local c = self.learner_cost or self.cfg["learner.cost"]
  if type(c) == "number" or last < first then return type(c) == "number" and c or 0 / 0 end
  local idx = {}
  for i = first, last do idx[#idx + 1] = i end
  local v = schedules.cost_at(c, idx, self.dataset:column("obs"):index_select(1, idx))
  return type(v) == "number" and v or v:mean():item()
end

-- The round's training: the method's steps on the rows train.holdout leaves (all rows
-- without it); holdout_rows and holdout_nll report the held-out ones.
function Run:train_round(round)
  local split = self:holdout_split()
  local ctx = methods.context(self, round, split)
  self:status("training (%s, %d steps)", self.cfg.method, ctx.steps)
  local out = self:train_steps(ctx)
  out.holdout_rows, out.holdout_nll = 0, 0 / 0
  if split then out.holdout_rows, out.holdout_nll = split.held_rows, self:holdout_nll(split) end
  return out
end

-- rows of a [N, ...] tensor (a Lua list of 1-based indices; none: zero rows)
local function take(t, rows)
  if #rows > 0 then return t:index_select(1, rows) end
  local shape = t:shape()
  shape[1] = 0
  return T.zeros(shape, t:dtype())
end

--- holdout_split() -> nil without train.holdout; else the round's split, the public code's
--- prepare_dataset (mile/utils.py): a fresh random permutation of all rows (the
--- demonstrations, then the dataset), the first floor((1 - h) n) trained on and the rest
--- held out. {demos = {obs, actions} (trained), dataset = the trained dataset rows (a
--- mile.data subset), rows = their rows in run.dataset, held = {demos = {...}, rows = {...}},
--- train_rows, held_rows}. run.last_split keeps the last one (tests).
function Run:holdout_split()
  local h = self.cfg["train.holdout"]
  if h <= 0 then return nil end
  local d = self.demos
  local nd, n = d.obs:size(1), self.dataset:size()
  local total, gen = nd + n, self.gens.holdout
  local perm = {}
  for i = 1, total do perm[i] = i end
  for i = total, 2, -1 do -- Fisher-Yates
    local j = gen:integer(i)
    perm[i], perm[j] = perm[j], perm[i]
  end
  local n_train = math.floor(total * (1 - h))
  local keep = { demos = {}, rows = {} }
  local held = { demos = {}, rows = {} }
  for k = 1, total do
    local side, i = k <= n_train and keep or held, perm[k]
    if i <= nd then side.demos[#side.demos + 1] = i else side.rows[#side.rows + 1] = i - nd end
  end
  for _, side in ipairs { keep, held } do table.sort(side.demos); table.sort(side.rows) end
  local dataset = #keep.rows > 0 and self.dataset:subset(keep.rows) or new_dataset(self.task)
  local split = { demos = { obs = take(d.obs, keep.demos), actions = take(d.actions, keep.demos) }, dataset = dataset,
    rows = keep.rows, held = held, train_rows = n_train, held_rows = total - n_train }
  self.last_split = split
  return split
end

--- holdout_nll(split) -> the policy's mean NLL of the human's actions on the held-out rows
--- it is judged on: the held-out demonstrations and the held-out steps where the human
--- intervened (NaN when there are none). Reported only, as the public code only logs its
--- validation loss.
function Run:holdout_nll(split)
  local d, obs, actions = self.demos, {}, {}
  if #split.held.demos > 0 then
    obs[#obs + 1], actions[#actions + 1] = take(d.obs, split.held.demos), take(d.actions, split.held.demos)
  end
  if #split.held.rows > 0 then
    local cols = self.dataset:tensors()
    local nu, rows = cols.nu:totable(), {}
    for _, r in ipairs(split.held.rows) do if nu[r] == 1 then rows[#rows + 1] = r end end
    if #rows > 0 then
      obs[#obs + 1], actions[#actions + 1] = cols.obs:index_select(1, rows), cols.human_action:index_select(1, rows)
    end
  end
  if #obs == 0 then return 0 / 0 end
  local o = #obs == 1 and obs[1] or T.cat(obs)
  local a = #actions == 1 and actions[1] or T.cat { actions[1]:to(actions[2]:dtype()), actions[2] }
  return ag.no_grad(function() return policy.nll(self.policy, o:float(), a):item() end)
end

-- The method's ctx.steps; with eval.select = "best" in chunks of eval.every epochs, each
-- followed by an evaluation on the first eval.select_episodes evaluation states, the best
-- policy kept (the public code's optimistic selection).
function Run:train_steps(ctx)
  if self.cfg["eval.select"] ~= "best" or ctx.steps == 0 then return self.method.train(ctx) end
  local total, per_epoch = ctx.steps, ctx.steps / math.max(self.cfg.epochs, 1)
  local chunk = math.max(1, math.floor(per_epoch * self.cfg["eval.every"] + 0.5))
  local done, sums, best, best_sd = 0, { loss = 0, j1 = 0, j2 = 0 }, -math.huge, nil
  while done < total do
    ctx.steps = math.min(chunk, total - done)
    local out = self.method.train(ctx)
    for k in pairs(sums) do sums[k] = sums[k] + (out[k] or 0 / 0) * out.steps end
    done = done + ctx.steps
    local ev = self:evaluate(self.cfg["eval.select_episodes"])
    if ev.success + 1e-9 * ev["return"] > best then
      best, best_sd = ev.success + 1e-9 * ev["return"], {}
      for k, v in pairs(self.policy:state_dict()) do best_sd[k] = v:clone() end
    end
  end
  self.policy:load_state_dict(best_sd)
  return { steps = total, loss = sums.loss / total, j1 = sums.j1 / total, j2 = sums.j2 / total }
end

--- do_round(round): one round: costs from the schedule, the lagged mental model, episodes
--- collected with the (simulated) human, the method's training, evaluation; appends the
--- round's row to run.metrics and returns it.
function Run:do_round(round)
  local t0 = sys.monotonic()
  local schedule = self.schedule
  self.learner_cost = schedule:learner_cost(round, self.last_stats)
  local hc = schedule:human_cost(round, self.last_stats)
  if hc ~= nil then self.human.cost = hc end
  self:lag_mental(round)
  local c = self:collect(round)
  local predicted = self:predicted_rate(c.rows[1], c.rows[2])
  local first, last = c.rows[1], c.rows[2]
  local stats = { round = round, rows = c.rows, steps = c.steps, interventions = c.interventions,
    rate = c.interventions / math.max(c.steps, 1), predicted = predicted, p_mean = c.p_sum / math.max(c.steps, 1),
    human_cost = c.human_cost_sum / math.max(c.steps, 1), learner_cost = self:mean_learner_cost(first, last), run = self,
    predicted_at = function(cost)
      local keep = self.learner_cost
      self.learner_cost = cost
      local ok, v = pcall(self.predicted_rate, self, first, last)
      self.learner_cost = keep
      if not ok then error(v, 0) end
      return v
    end }
  schedule:update(stats)
  self.learner_cost = schedule:learner_cost(round, stats)
  self.last_stats = stats
  local train = self:train_round(round)
  if mental_lag(self.cfg) then
    self.policy_snapshots = self.policy_snapshots or {}
    local sd = {}
    for k, v in pairs(self.policy:state_dict()) do sd[k] = v:clone() end
    self.policy_snapshots[round] = sd
    self.policy_snapshots[round - mental_lag(self.cfg) - 2] = nil
  end
  self:status("evaluating %d episodes", self.cfg.eval_episodes)
  local ev = self:evaluate(self.cfg.eval_episodes)
  local previous = self.metrics[#self.metrics]
  local row = {
    round = round, episodes = self.episodes, steps = c.steps, interventions = c.interventions,
    interventions_total = (previous and previous.interventions_total or 0) + c.interventions,
    intervention_rate = c.interventions / math.max(c.steps, 1), predicted_rate = predicted,
    observed_p = c.p_sum / math.max(c.steps, 1), success = ev.success, ["return"] = ev["return"],
    length = ev.length, j1 = train.j1 or 0 / 0, j2 = train.j2 or 0 / 0, loss = train.loss or 0 / 0,
    train_steps = train.steps, holdout_rows = train.holdout_rows, holdout_nll = train.holdout_nll,
    learner_cost = self:mean_learner_cost(first, last), human_cost = stats.human_cost,
    nu_bits_per_step = M.nu_bits(c.p_sum, c.h_sum, c.steps),
    p_wrong_given_nu = c.judged[1] > 0 and c.wrong[1] / c.judged[1] or 0 / 0,
    p_wrong_given_no_nu = c.judged[0] > 0 and c.wrong[0] / c.judged[0] or 0 / 0,
    seconds = sys.monotonic() - t0,
  }
  self.metrics[#self.metrics + 1] = row
  self.round = round
  return row
end

-- ---- the run directory -----------------------------------------------------------------------

local function fmt(v)
  if v ~= v then return "nan" end
  if math.type(v) == "integer" then return tostring(v) end
  return string.format("%.6g", v)
end

--- metrics_csv() -> the text of metrics.csv: a header of loop.metric_columns, one line per round.
function Run:metrics_csv()
  local lines = { table.concat(M.metric_columns, ",") }
  for _, row in ipairs(self.metrics) do
    local cells = {}
    for i, k in ipairs(M.metric_columns) do cells[i] = fmt(row[k]) end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

--- Commit the completed round: checkpoints, dataset, metrics, then state.lua last
--- (the commit point read by resume: it records how many dataset rows the round
--- committed, and its checkpoint directory relative to the run directory).
function Run:commit()
  local d, r = self.rundir, self.round
  local ck = d:checkpoint(r, true)
  nn.save(ck .. "/policy.safetensors", self.policy)
  save_optimizer(ck .. "/optim_policy.safetensors", self.opt_policy)
  if self.method.uses_mental then
    nn.save(ck .. "/mental.safetensors", self.mental)
    save_optimizer(ck .. "/optim_mental.safetensors", self.opt_mental)
  end
  if self.method.uses_mental and self.temporal then
    nn.save(ck .. "/temporal.safetensors", self.temporal)
    if self.opt_temporal then save_optimizer(ck .. "/optim_temporal.safetensors", self.opt_temporal) end
  end
  local ok, err = self.dataset:save(d:path("dataset.csv"))
  if not ok then fail(err) end
  d:write("metrics.csv", self:metrics_csv())
  local gens = {}
  for k, g in pairs(self.gens) do gens[k] = g:state():gsub(".", function(ch) return ("%02x"):format(ch:byte()) end) end
  d:commit { round = r, episodes = self.episodes, rows = self.dataset:size(), generators = gens,
    metrics = self.metrics, initial = self.initial, expert = self.expert, checkpoint = d.checkpoint_name(r),
    schedule = self.schedule and self.schedule:state() or nil }
end

local function unhex(s) return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)) end

-- --set on resume: only the keys of M.resumable, checked against the run's schema.
local function resume_overrides(cfg, overrides)
  local changed = false
  for _, item in ipairs(overrides or {}) do
    local key, text = tostring(item):match("^([%w_.]+)=(.*)$")
    if not key then fail(("--set %s: expected key=value"):format(tostring(item))) end
    if not M.resumable[key] then
      local may = {}
      for k in pairs(M.resumable) do may[#may + 1] = k end
      table.sort(may)
      fail(("--resume: '%s' cannot change on resume (may change: %s)"):format(key, table.concat(may, ", ")))
    end
    local checked = config.resolve(M.schema_for(cfg), {}, { key .. "=" .. text })
    cfg[key], changed = checked[key], true
  end
  return changed
end

--- open(dir [, {overrides=, trust=, warn=}]) -> the Run of a run directory at its last
--- committed round (its plugins loaded from the directory's copies, when trusted:
--- mile.rundir): what --resume continues, mile eval evaluates and mile.open inspects.
--- overrides: --set items of M.resumable.
function M.open(dir, opts)
  opts = opts or {}
  local d = rundir.open(dir)
  d:load_plugins { trust = opts.trust, warn = opts.warn }
  local cfg = M.resolve(d:config(), nil, nil, { no_code = true })
  if resume_overrides(cfg, opts.overrides) then d:write_config(cfg) end
  local st = d:state()
  if st and cfg.rounds < st.round then
    fail(("--set rounds=%d: the run has already committed %d rounds"):format(cfg.rounds, st.round))
  end
  local run = M.new_run(cfg)
  run.rundir, run.dir = d, d.dir
  if not st then return run end -- killed before round 1 committed
  run.round, run.episodes, run.metrics, run.initial, run.expert = st.round, st.episodes, st.metrics, st.initial,
    st.expert
  for k, hex in pairs(st.generators) do run.gens[k]:set_state(unhex(hex)) end
  local ck = d:path(st.checkpoint)
  run.policy:load_state_dict(nn.load(ck .. "/policy.safetensors"):state_dict())
  load_optimizer(ck .. "/optim_policy.safetensors", run.opt_policy)
  if run.method.uses_mental then
    run.mental:load_state_dict(nn.load(ck .. "/mental.safetensors"):state_dict())
    load_optimizer(ck .. "/optim_mental.safetensors", run.opt_mental)
  end
  if run.method.uses_mental and run.temporal then
    run.temporal:load_state_dict(nn.load(ck .. "/temporal.safetensors"):state_dict())
    if run.opt_temporal then load_optimizer(ck .. "/optim_temporal.safetensors", run.opt_temporal) end
  end
  if st.schedule then run.schedule:load(st.schedule) end
  local ds, err = data.load(d:path("dataset.csv"), run.task.discrete and { n_actions = run.task.n_actions } or nil)
  if not ds then fail(err) end
  if ds:size() > st.rows then -- written by a round that was killed before it committed
    local keep = {}
    for i = 1, st.rows do keep[i] = i end
    ds = ds:subset(keep)
  end
  run.dataset = ds
  return run
end


local function progress_line(run, row)
  return ("[%s] round %d/%d  success %.2f  return %7.1f  interventions %d (total %d, rate %.3f, predicted %s)  %.1fs")
    :format(run.cfg.name, row.round, run.cfg.rounds, row.success, row["return"], row.interventions,
      row.interventions_total, row.intervention_rate, row.predicted_rate == row.predicted_rate
        and ("%.3f"):format(row.predicted_rate) or "-", row.seconds)
end

--- run(user_config [, {overrides=, plugins=, resume=dir, trust=, dir=, human=}]) -> the Run
--- (metrics in run.metrics). plugins: specs to load (--plugin) besides the config's own;
--- overrides on resume: only the keys of M.resumable (e.g. rounds=N extends a run).
--- human(run) -> an object with decide(obs, robot_action) -> nu, action, {p = p} (and
--- optionally reset()) replaces the simulated human (give it again on resume).
function M.run(user, opts)
  opts = opts or {}
  local run
  if opts.resume then
    for _, p in ipairs(opts.plugins or {}) do plugins.load(p) end
    run = M.open(opts.resume, { overrides = opts.overrides, trust = opts.trust })
    run.rundir:remove_temporaries() -- of writes a kill interrupted
  else
    local cfg = M.resolve(user, opts.overrides, opts.plugins)
    run = M.new_run(cfg)
    local dir = opts.dir or ("%s/%s-%s"):format(cfg.out, cfg.name, os.date("!%Y%m%d-%H%M%S"))
    run.rundir = rundir.create(dir, cfg, M.plugin_records(cfg))
    run.dir = run.rundir.dir
  end
  if not opts.human and run.cfg["human.kind"] == "live" then opts.human = require("mile.teleop").human end
  if opts.human then run.human = opts.human(run) end -- a custom (simulated) human, docs/research.md
  if run.round == 0 then
    run.initial = run:evaluate(run.cfg.eval_episodes)
    if run.cfg["eval.expert"] then run.expert = run:evaluate(run.cfg.eval_episodes, run:expert_act()) end
  end
  for r = run.round + 1, run.cfg.rounds do
    local row = run:do_round(r)
    run:commit()
    if run.cfg.progress then print((run.tty and "\r\27[K" or "") .. progress_line(run, row)) end
  end
  report.write(run)
  return run
end

--- plugin_records(cfg) -> the records of the plugins a run of cfg needs (cfg.plugins),
--- warning about a selected entry registered by code the run does not record (a
--- REPL or notebook cell: --resume and mile eval will need it registered again).
function M.plugin_records(cfg)
  local recs, paths = {}, {}
  for _, spec in ipairs(cfg.plugins or {}) do
    local rec = plugins.find(spec) or plugins.load(spec)
    recs[#recs + 1], paths[rec.path or ""] = rec, true
  end
  for _, s in ipairs(SELECTORS) do
    local name = cfg[s.key]
    local e = not (s.none and name == "none") and s.registry.get(name)
    if e and not e.builtin and not paths[e.source] then
      io.stderr:write(("mile: warning: %s %q comes from %s, which is not among the run's plugins; name it in "
        .. "`plugins` or with --plugin so that --resume and mile eval can load it\n"):format(s.registry.kind, name,
        e.source))
    end
  end
  return recs
end

return M
