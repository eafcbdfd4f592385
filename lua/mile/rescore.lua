--- mile.rescore: score a finished run again on more (or fewer) evaluation episodes,
--- without training it again.
--
-- A run's evaluation never feeds its training: the rounds evaluate on their own
-- environment, from fixed per-episode seeds that do not depend on the count, and
-- best-of selection (eval.select = "best") uses eval.select_episodes, not eval_episodes.
-- So the scores of each round's checkpoint, the initial policy and (eval.expert) the
-- expert on n episodes are the metrics a run with eval_episodes = n would have written
-- (tests/lua/test_rescore.lua holds the two side by side).
--
-- The references (initial policy, expert) are scored on all n episodes, and their stored
-- scores must come out again, to the bit, on their own first k episodes: a run whose code
-- or simulator changed since is refused, not silently mixed. A round keeps its stored k
-- episodes and plays only k+1..n (success and length come out exactly as a fresh score's;
-- the mean return to rounding, ~1e-15 relative); opts.full plays and checks all n.
-- Fewer episodes than stored (n < k) are always played in full.
--
-- Written, each whole (temporary file, rename): state.lua first (it records
-- eval_episodes, so a killed rescore can simply run again), then config.lua,
-- metrics.csv, report.md and the plots. The seconds column keeps the original rounds'
-- times.
local loop = require "mile.loop"
local nn = require "mile.nn"
local report = require "mile.report"

local M = {}

local function fail(fmt, ...) error("rescore: " .. fmt:format(...), 0) end

local SCORES = { "success", "return", "length" }

-- The first score of `stored` that `got` does not reproduce (to 1e-12, what state.lua's
-- %.17g round trip keeps), with both values; nil when all agree.
local function mismatch(stored, got)
  for _, key in ipairs(SCORES) do
    local a, b = stored[key], got[key]
    if a ~= b and math.abs(a - b) > 1e-12 * math.max(1, math.abs(a)) then return key, a, b end
  end
end

-- Score the run's current policy (or act) on n episodes; when the stored score `old`
-- came from k <= n episodes, check that the first k reproduce it.
local function score(run, n, k, old, what, act)
  local first
  local ev = run:evaluate(n, act, { on_episode = function(i, wins, ret, len)
    if i == k then first = { success = wins / k, ["return"] = ret / k, length = len / k } end
  end })
  local key, a, b = nil, nil, nil
  if old and first then key, a, b = mismatch(old, first) end
  if key then
    fail("%s: %s's stored %s %.17g is not reproduced on its own %d episodes (%.17g); the code or the "
      .. "simulator changed since the run", run.dir, what, key, a, k, b)
  end
  return ev
end

-- Extend a stored score of k episodes to n > k: play k+1..n and add the stored sums
-- (wins and lengths are integers, so their sums come back exactly).
local function extend(run, n, k, old)
  local _, new = run:evaluate(n, nil, { first = k + 1 })
  local wins = math.floor(old.success * k + 0.5) + new.wins
  local len = math.floor(old.length * k + 0.5) + new.length_sum
  return { success = wins / n, ["return"] = (old["return"] * k + new.return_sum) / n, length = len / n }
end

-- A reference score (the initial policy, the expert): the same for every run of one
-- env, policy file, seed and episode limit, so opts.memo keeps it across runs.
local function reference(run, n, k, old, what, file, act, memo)
  local cfg = run.cfg
  local key = table.concat({ what, cfg.env, file, cfg.seed, cfg.max_episode_steps, n, k }, "\0")
  if memo and memo[key] then
    local m = memo[key]
    local s, a, b = nil, nil, nil
    if old and k <= n then s, a, b = mismatch(old, m.first) end -- what the first k gave then
    if s then
      fail("%s: %s's stored %s %.17g differs from another run's on the same states (%.17g)", run.dir, what, s, a, b)
    end
    return m.score
  end
  local ev = score(run, n, k <= n and k or nil, old, what, act)
  if memo then memo[key] = { score = ev, first = old } end
  return ev
end

--- run(dir, n [, opts]) -> the rescored run, and whether anything changed (false: the
--- run is already at n episodes): every committed round's checkpoint, the initial
--- policy and (when the run scored it) the expert, on n evaluation episodes; the run
--- directory's files rewritten. opts.trust: as mile eval's --trust; opts.full: play all
--- n episodes of every round (and check the stored k); opts.memo: a table shared by
--- calls, which keeps reference scores across runs of one batch.
function M.run(dir, n, opts)
  opts = opts or {}
  if math.type(n) ~= "integer" or n < 1 then fail("episodes must be an integer >= 1, got %s", tostring(n)) end
  local run = loop.open(dir, { trust = opts.trust })
  local st = run.rundir:state()
  if not st or run.round < 1 then fail("%s has no committed round to score", dir) end
  local k = st.eval_episodes or run.cfg.eval_episodes -- what the stored scores used
  if k == n then return run, false end
  local initial_file = loop.policy_file(run.cfg, "initial")
  run.policy:load_state_dict(nn.load(initial_file):state_dict())
  run.initial = reference(run, n, k, st.initial, "the initial policy", initial_file, nil, opts.memo)
  if st.expert then
    run.expert = reference(run, n, k, st.expert, "the expert", loop.policy_file(run.cfg, "expert"), run:expert_act(),
      opts.memo)
  end
  for r = 1, run.round do
    local ck = run.rundir:checkpoint(r) .. "/policy.safetensors"
    run.policy:load_state_dict(nn.load(ck):state_dict())
    local ev
    if n > k and not opts.full then
      ev = extend(run, n, k, st.metrics[r])
    else
      ev = score(run, n, k <= n and k or nil, st.metrics[r], ("round %d"):format(r))
    end
    for _, key in ipairs(SCORES) do run.metrics[r][key] = ev[key] end
  end
  st.metrics, st.initial, st.expert, st.eval_episodes = run.metrics, run.initial, run.expert, n
  run.rundir:commit(st)
  run.cfg.eval_episodes = n
  run.rundir:write_config(run.cfg)
  run.rundir:write("metrics.csv", run:metrics_csv())
  report.write(run)
  return run, true
end

return M
