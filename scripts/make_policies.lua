-- scripts/make_policies.lua - (re)build the cached policies of each task.
--
--   mile scripts/make_policies.lua [task ...]      (default: every task)
--   mile scripts/make_policies.lua --converged [--episodes K] [task ...]
--   mile scripts/make_policies.lua --tune-expert [LunarLander-v3]
--
-- For a task it writes scripts/data/<task>/:
--   expert.safetensors   pi_E: discrete tasks clone the scripted controller into a
--                        network (softmax over its logits); continuous tasks use a
--                        Gaussian around the scripted action (no file needed, see below)
--   demos.safetensors    the initial demonstrations (obs, actions) of `demo_episodes`
--                        clean scripted-expert episodes
--   initial.safetensors  the weak initial robot policy: behaviour cloning on the demos
-- With --converged it writes only (the files above stay as they are):
--   demos-<K>ep.safetensors              the first K demonstration episodes (the same
--                                        seeds as demos.safetensors: its first K episodes)
--   initial-converged-<K>ep.safetensors  an initial policy weak for lack of data, not of
--                                        training: behaviour cloning on those K episodes to
--                                        convergence, early-stopped on a held-out 20% of
--                                        their rows (config initial.policy = "converged")
-- With --tune-expert (LunarLander-v3 only) it writes only
--   expert-tuned.safetensors  a stronger pi_E: Gymnasium's heuristic law with gains found
--                             by the cross-entropy method, cloned into a network like
--                             expert.safetensors (config expert.policy = "tuned"); its
--                             metadata holds the gains and their held-out success
-- The ground-truth mental model of the simulated human and the learner's warm-start
-- mental model are both the initial policy (the human believes the robot acts as it
-- did at the start). Everything is drawn from seeded generators: same seeds, same files.
local T = require "mile.tensor"
local nn = require "mile.nn"
local optim = require "mile.optim"
local ag = require "mile.autograd"
local io_ = require "mile.io"
local sys = require "mile.sys"
local envs = require "mile.envs"
local policy = require "mile.policy"
local tasks = require "mile.tasks"
local heuristic = require "mile.envs.lunar_heuristic"

local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local out_root = os.getenv("MILE_POLICY_DIR") or (here .. "/data")

-- Run episodes with the scripted expert (or `expert`, an object with :act(obs)),
-- executing its action with probability 1 - noise (else a random one); returns
-- observations and the expert's labels.
local function collect(task, episodes, noise, seed_base, gen, expert)
  local env = tasks.make_env(task)
  expert = expert or envs.scripted_expert(env)
  local obs_rows, act_rows, successes = {}, {}, 0
  for ep = 1, episodes do
    local obs = env:reset { seed = seed_base + ep }
    local done = false
    while not done do
      local a = expert:act(obs)
      obs_rows[#obs_rows + 1] = obs:float()
      act_rows[#act_rows + 1] = a
      local exec = a
      if noise > 0 and gen:uniform() < noise then exec = env.action_space:sample(gen) end
      local r, term, trunc, info
      obs, r, term, trunc, info = env:step(exec)
      if info.success then successes = successes + 1 end
      done = term or trunc or info.success
    end
  end
  local obs = T.cat(obs_rows):view { #obs_rows, -1 }
  local actions
  if type(act_rows[1]) == "number" then actions = T.from(act_rows)
  else
    local rows = {}
    for i, a in ipairs(act_rows) do rows[i] = T.is_tensor(a) and a:float():view { 1, -1 } or T.from({ a }) end
    actions = T.cat(rows)
  end
  return obs, actions, successes / episodes
end

-- Behaviour cloning: minimise the NLL of the labels over minibatches drawn (with
-- replacement) from gen.
local function clone(net, obs, actions, steps, lr, batch, gen)
  local opt = optim.Adam(net:parameters(), { lr = lr })
  local n = obs:size(1)
  local loss
  for _ = 1, steps do
    local rows = {}
    for i = 1, batch do rows[i] = gen:integer(n) end
    loss = policy.nll(net, obs:index_select(1, rows), actions:index_select(1, rows))
    opt:zero_grad()
    loss:backward()
    opt:step()
  end
  return loss:item()
end

-- Success rate and mean return of act(env, obs) -> action over eval seeds.
local function success_rate(task, act, episodes, seed_base)
  local env = tasks.make_env(task)
  local wins, ret = 0, 0
  for ep = 1, episodes do
    local obs = env:reset { seed = seed_base + ep }
    local done = false
    while not done do
      local r, term, trunc, info
      obs, r, term, trunc, info = env:step(act(env, obs))
      ret = ret + r
      if info.success then wins = wins + 1 end
      done = term or trunc or info.success
    end
  end
  return wins / episodes, ret / episodes
end

-- Success rate of a policy acting alone (deterministic) over eval seeds.
local function evaluate(task, net, episodes, seed_base)
  return success_rate(task, function(_, obs) return policy.act(net, obs, true) end, episodes, seed_base)
end

-- pi_E for a discrete task: noisy rollouts of a controller (the env's scripted expert
-- when `controller` is nil) cloned into a network; its greedy success on `episodes`
-- evaluation episodes from seed_base. -> expert, and what to print {samples, rate,
-- loss, success, return}.
local function clone_expert(name, gen, controller, episodes, seed_base)
  local task = tasks.get(name)
  local obs, labels, rate = collect(name, task.clone_episodes, task.clone_noise, 100000, gen, controller)
  local expert = policy.new { obs_dim = task.obs_dim, discrete = true, n_actions = task.n_actions,
    hidden = task.expert_hidden, generator = gen }
  local loss = clone(expert, obs, labels, task.clone_steps, 3e-3, 512, gen)
  local s, r = evaluate(name, expert, episodes, seed_base)
  return expert, { samples = obs:size(1), rate = rate, loss = loss, success = s, ["return"] = r }
end

local function build(name)
  local task = tasks.get(name)
  local dir = out_root .. "/" .. name
  assert(sys.mkdir(dir))
  local gen = T.Generator(task.policy_seed)
  local t0 = sys.monotonic()
  local files = {}
  if task.discrete then
    local expert, c = clone_expert(name, gen, nil, 50, 300000)
    print(("%s expert clone: %d samples (noisy rollouts %.2f success), nll %.4f, greedy success %.2f, return %.1f")
      :format(name, c.samples, c.rate, c.loss, c.success, c["return"]))
    nn.save(dir .. "/expert.safetensors", expert)
    files[#files + 1] = "expert"
  end
  local dobs, dact, drate = collect(name, task.demo_episodes, 0, 200000, gen)
  assert(io_.save_safetensors(dir .. "/demos.safetensors", { obs = dobs, actions = dact:float() },
    { episodes = tostring(task.demo_episodes), success = tostring(drate) }))
  local initial = policy.new { obs_dim = task.obs_dim, discrete = task.discrete, n_actions = task.n_actions,
    action_dim = task.action_dim, hidden = task.hidden, generator = gen }
  local loss = clone(initial, dobs, dact, task.initial_steps, 1e-3, 256, gen)
  local s, r = evaluate(name, initial, 50, 300000)
  print(("%s initial policy: BC on %d demo steps, nll %.4f, success %.2f, return %.1f")
    :format(name, dobs:size(1), loss, s, r))
  nn.save(dir .. "/initial.safetensors", initial)
  print(("%s: wrote %s/{%sdemos,initial}.safetensors in %.1f s"):format(name, dir,
    #files > 0 and table.concat(files, ",") .. "," or "", sys.monotonic() - t0))
end

-- Behaviour cloning to convergence: Adam minibatch steps on a random 80% of the rows;
-- every CHECK_EVERY steps the NLL of the other 20%; it stops after PATIENCE checks
-- without an improvement of at least MIN_DELTA (or at MAX_STEPS) and keeps the weights
-- of the best check. Returns the steps at the best check, its held-out NLL and the steps run.
local CHECK_EVERY, PATIENCE, MIN_DELTA, MAX_STEPS = 100, 20, 1e-4, 60000

local function clone_converged(net, obs, actions, lr, batch, gen)
  local n = obs:size(1)
  local perm = {}
  for i = 1, n do perm[i] = i end
  for i = n, 2, -1 do
    local j = gen:integer(i)
    perm[i], perm[j] = perm[j], perm[i]
  end
  local n_train = math.floor(n * 0.8)
  local train, held = {}, {}
  for k = 1, n do if k <= n_train then train[#train + 1] = perm[k] else held[#held + 1] = perm[k] end end
  local tobs, tact = obs:index_select(1, train), actions:index_select(1, train)
  local hobs, hact = obs:index_select(1, held), actions:index_select(1, held)
  local opt = optim.Adam(net:parameters(), { lr = lr })
  local best, best_step, best_sd, since, step = math.huge, 0, nil, 0, 0
  while step < MAX_STEPS and since < PATIENCE do
    for _ = 1, CHECK_EVERY do
      local rows = {}
      for i = 1, batch do rows[i] = gen:integer(n_train) end
      local loss = policy.nll(net, tobs:index_select(1, rows), tact:index_select(1, rows))
      opt:zero_grad()
      loss:backward()
      opt:step()
    end
    step = step + CHECK_EVERY
    local v = ag.no_grad(function() return policy.nll(net, hobs, hact):item() end)
    if v < best - MIN_DELTA then
      best, best_step, since, best_sd = v, step, 0, {}
      for k, t in pairs(net:state_dict()) do best_sd[k] = t:clone() end
    else
      since = since + 1
    end
  end
  net:load_state_dict(best_sd)
  return best_step, best, step
end

-- The expert's greedy success on the evaluation seeds of `evaluate` (a reference level).
local function expert_success(name, dir, episodes)
  local task = tasks.get(name)
  if task.discrete then return evaluate(name, nn.load(dir .. "/expert.safetensors"), episodes, 300000) end
  local scripted
  return success_rate(name, function(env, obs)
    scripted = scripted or envs.scripted_expert(env)
    return scripted:act(obs)
  end, episodes, 300000)
end

local function build_converged(name, k)
  local task = tasks.get(name)
  local dir = out_root .. "/" .. name
  assert(sys.mkdir(dir))
  local t0 = sys.monotonic()
  local gen = T.Generator(task.policy_seed + 500) -- apart from the cached files' draws
  local dobs, dact, drate = collect(name, k, 0, 200000, gen) -- noise 0: no draws, the cached demos' first k
  assert(io_.save_safetensors(("%s/demos-%dep.safetensors"):format(dir, k), { obs = dobs, actions = dact:float() },
    { episodes = tostring(k), success = tostring(drate) }))
  local net = policy.new { obs_dim = task.obs_dim, discrete = task.discrete, n_actions = task.n_actions,
    action_dim = task.action_dim, hidden = task.hidden, generator = gen }
  local best_step, nll, ran = clone_converged(net, dobs, dact:float(), 1e-3, 256, gen)
  local s, r = evaluate(name, net, 50, 300000)
  local es, er = expert_success(name, dir, 50)
  nn.save(("%s/initial-converged-%dep.safetensors"):format(dir, k), net)
  print(("%s converged initial policy: BC on %d episode(s) (%d rows), best held-out nll %.4f at step %d of %d, "
    .. "success %.2f, return %.1f; expert success %.2f, return %.1f (50 episodes); %.1f s"):format(name, k,
    dobs:size(1), nll, best_step, ran, s, r, es, er, sys.monotonic() - t0))
end

-- A stronger LunarLander expert: the cross-entropy method over the gains of Gymnasium's
-- heuristic law (mile.envs.lunar_heuristic), in log space from Gymnasium's values, on
-- TUNE_EPISODES training seeds (success rate, mean return / 1e5 breaking ties: a whole
-- success is 1 / TUNE_EPISODES = 0.005, a return 0.003 at most); the best candidate's
-- gains are scored on HELD_OUT episodes of other seeds, then cloned into a network
-- exactly as expert.safetensors is (config expert.policy = "tuned").
local TUNE_EPISODES, TUNE_SEEDS, HELD_OUT, HELD_OUT_SEEDS = 200, 400000, 500, 600000
local CEM_ITERATIONS, CEM_POPULATION, CEM_ELITE, CEM_SD = 10, 24, 6, 0.5

local function law_score(name, gains, episodes, seed_base)
  return success_rate(name, function(_, obs) return heuristic.act(gains, obs) end, episodes, seed_base)
end

local function tune_expert(name)
  local task = tasks.get(name)
  if task.env ~= "LunarLander-v3" then
    error(("make_policies: --tune-expert searches the gains of LunarLander-v3's heuristic; %s is not that task")
      :format(name), 0)
  end
  local dir = out_root .. "/" .. name
  assert(sys.mkdir(dir))
  local t0 = sys.monotonic()
  local gen = T.Generator(task.policy_seed + 700) -- apart from the cached files' draws
  local function objective(gains)
    local s, r = law_score(name, gains, TUNE_EPISODES, TUNE_SEEDS)
    return s + r * 1e-5, s
  end
  local mean, sd = {}, {}
  for i, k in ipairs(heuristic.NAMES) do mean[i], sd[i] = math.log(heuristic.GYMNASIUM[k]), CEM_SD end
  local best = { gains = heuristic.GYMNASIUM }
  best.value, best.success = objective(best.gains)
  print(("%s Gymnasium's gains: training success %.3f"):format(name, best.success))
  for it = 1, CEM_ITERATIONS do
    local pop = {}
    for c = 1, CEM_POPULATION do
      local logs, gains = {}, {}
      for i, k in ipairs(heuristic.NAMES) do
        logs[i] = mean[i] + sd[i] * gen:normal()
        gains[k] = math.exp(logs[i])
      end
      local value, s = objective(gains)
      pop[c] = { logs = logs, gains = gains, value = value, success = s }
    end
    table.sort(pop, function(a, b) return a.value > b.value end)
    for i = 1, #heuristic.NAMES do
      local m, v = 0, 0
      for c = 1, CEM_ELITE do m = m + pop[c].logs[i] end
      m = m / CEM_ELITE
      for c = 1, CEM_ELITE do v = v + (pop[c].logs[i] - m) ^ 2 end
      mean[i], sd[i] = m, math.max(math.sqrt(v / CEM_ELITE), 0.02)
    end
    if pop[1].value > best.value then best = pop[1] end
    print(("  iteration %d: best training success %.3f, elite %.3f-%.3f"):format(it, pop[1].success,
      pop[CEM_ELITE].success, pop[1].success))
  end
  local held, held_return = law_score(name, best.gains, HELD_OUT, HELD_OUT_SEEDS)
  local gym_held = law_score(name, heuristic.GYMNASIUM, HELD_OUT, HELD_OUT_SEEDS)
  local expert, c = clone_expert(name, gen, { act = function(_, o) return heuristic.act(best.gains, o) end }, HELD_OUT,
    HELD_OUT_SEEDS)
  local gains = {}
  for _, k in ipairs(heuristic.NAMES) do gains[k] = best.gains[k] end
  nn.save(dir .. "/expert-tuned.safetensors", expert, { ["expert.gains"] = io_.json_encode(gains),
    ["expert.law_success"] = tostring(held), ["expert.clone_success"] = tostring(c.success) })
  local shown = {}
  for _, k in ipairs(heuristic.NAMES) do shown[#shown + 1] = ("%s %.3f"):format(k, gains[k]) end
  print(("%s tuned heuristic: %s"):format(name, table.concat(shown, ", ")))
  print(("%s on %d held-out episodes: Gymnasium's gains %.3f, tuned %.3f (return %.1f); clone: %d samples "
    .. "(noisy rollouts %.2f success), nll %.4f, greedy success %.3f, return %.1f; wrote %s/expert-tuned.safetensors "
    .. "in %.1f s"):format(name, HELD_OUT, gym_held, held, held_return, c.samples, c.rate, c.loss, c.success,
    c["return"], dir, sys.monotonic() - t0))
end

local names, converged, episodes, tune = {}, false, 1, false
do
  local argv, i = { ... }, 1
  while i <= #argv do
    local a = argv[i]
    if a == "--converged" then converged = true
    elseif a == "--tune-expert" then tune = true
    elseif a == "--episodes" then
      i = i + 1
      episodes = math.tointeger(tonumber(argv[i] or ""))
      if not episodes or episodes < 1 then error("make_policies: --episodes needs a positive integer", 0) end
    elseif a:sub(1, 2) == "--" then error("make_policies: unknown option " .. a, 0)
    else
      if not tasks.find(a) then error(("make_policies: unknown task %s (known: %s)"):format(a,
        table.concat(tasks.names(), ", ")), 0) end
      names[#names + 1] = a
    end
    i = i + 1
  end
end
if #names == 0 then names = tune and { "LunarLander-v3" } or tasks.names() end
for _, name in ipairs(names) do
  if tune then tune_expert(name)
  elseif converged then build_converged(name, episodes)
  else build(name) end
end
