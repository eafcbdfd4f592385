--- mile.calibration: how well the learner's intervention model predicts the human,
--- and a REPL handle on a run directory (`mile.open`).
--
--   local mile = require "mile"
--   local run = mile.open("runs/LunarLander-v3-mile-20261125-120000")
--   run:calibration{round = 3}      -- table + reliability diagram; returns the numbers
--   run:predict(17)                 -- Delta, q, p for dataset row 17 (or an observation)
--
--   local C = require "mile.calibration"
--   local m = C.metrics{p = {0.1, 0.8, 0.3}, y = {0, 1, 1}, bins = 10}
--   print(m.ece, m.brier, m.log_loss)
--
-- Held out: the states collected in round r are scored by the model trained through
-- round r-1 (checkpoint r-1; round 0 is the warm start), i.e. by the model that was
-- deployed when the human decided. That is the same prediction the loop logs as
-- `predicted_rate` (its mean), so the two agree. The label of a state is nu, whether
-- the (simulated) human intervened there.
--
-- Metrics over N states with predictions p_i and labels y_i in {0, 1}:
--   reliability  equal-width bins of p over [0, 1] (p = 1 falls in the last bin); per
--                bin: n, mean p, observed frequency of y = 1
--   ECE          sum_b (n_b / N) |freq_b - mean_p_b|  (expected calibration error)
--   MCE          max_b |freq_b - mean_p_b| over non-empty bins
--   Brier        mean (p_i - y_i)^2
--   log-loss     -mean [y_i ln p_i + (1 - y_i) ln(1 - p_i)]; from the model's own
--                ln p and ln(1 - p) when given (no clipping), else p clipped to
--                [1e-15, 1 - 1e-15]
-- with the base rate's Brier and log-loss (a constant prediction of mean y) beside
-- them, for scale.
local T = require "mile.tensor"
local nn = require "mile.nn"
local ag = require "mile.autograd"
local sys = require "mile.sys"
local policy = require "mile.policy"
local plot = require "mile.plot"

local M = {}

local EPS = 1e-15

-- ---- metrics on plain numbers ---------------------------------------------------------------

-- A list of Lua numbers from a list or a 1-d tensor.
local function numbers(v, name)
  if T.is_tensor(v) then return v:view { -1 }:totable() end
  if type(v) ~= "table" then error(("calibration: %s must be a list or a tensor, got %s"):format(name, type(v)), 3) end
  return v
end

local Bin = { __tostring = function(b)
  return ("bin [%.2f, %.2f%s: n %d, mean p %.4f, observed %.4f"):format(b.lo, b.hi, b.hi == 1 and "]" or ")", b.n,
    b.mean_p, b.freq)
end }

--- reliability(p, y [, bins = 10]) -> list of bins {lo, hi, n, mean_p, freq}
-- (mean_p and freq are NaN in empty bins).
function M.reliability(p, y, nbins)
  p, y = numbers(p, "p"), numbers(y, "y")
  nbins = nbins or 10
  if #p ~= #y then error(("calibration: %d predictions and %d labels"):format(#p, #y), 2) end
  local bins = {}
  for b = 1, nbins do bins[b] = { lo = (b - 1) / nbins, hi = b / nbins, n = 0, sum_p = 0, sum_y = 0 } end
  for i = 1, #p do
    local pi, yi = p[i], y[i]
    if not (pi >= 0 and pi <= 1) then error(("calibration: p[%d] = %s is not a probability"):format(i, pi), 2) end
    if yi ~= 0 and yi ~= 1 then error(("calibration: y[%d] = %s is not 0 or 1"):format(i, yi), 2) end
    local bin = bins[math.min(math.floor(pi * nbins) + 1, nbins)]
    bin.n, bin.sum_p, bin.sum_y = bin.n + 1, bin.sum_p + pi, bin.sum_y + yi
  end
  for _, bin in ipairs(bins) do
    bin.mean_p, bin.freq = bin.sum_p / bin.n, bin.sum_y / bin.n -- 0/0 = NaN when empty
    bin.sum_p, bin.sum_y = nil, nil
    setmetatable(bin, Bin)
  end
  return bins
end

local Result = {}
Result.__index = Result
M.Result = Result

local function f3(v) return v ~= v and "-" or ("%.4f"):format(v) end

--- metrics{p=, y=, logp=, log1mp=, bins=10} -> {n, positives, base_rate, mean_p, ece,
--- mce, brier, brier_base, log_loss, log_loss_base, bins}
-- p, y (and the optional logp, log1mp) are lists of numbers or 1-d tensors.
function M.metrics(args)
  local p, y = numbers(args.p, "p"), numbers(args.y, "y")
  local logp = args.logp and numbers(args.logp, "logp")
  local log1mp = args.log1mp and numbers(args.log1mp, "log1mp")
  local bins = M.reliability(p, y, args.bins)
  local n = #p
  local r = setmetatable({ n = n, bins = bins, positives = 0, mean_p = 0, brier = 0, log_loss = 0, ece = 0, mce = 0 },
    Result)
  for i = 1, n do
    local pi, yi = p[i], y[i]
    r.positives, r.mean_p = r.positives + yi, r.mean_p + pi
    r.brier = r.brier + (pi - yi) ^ 2
    local ll
    if logp then
      ll = yi == 1 and logp[i] or log1mp[i]
    else
      local c = math.min(math.max(pi, EPS), 1 - EPS)
      ll = yi == 1 and math.log(c) or math.log(1 - c)
    end
    r.log_loss = r.log_loss - ll
  end
  for _, b in ipairs(bins) do
    if b.n > 0 then
      local gap = math.abs(b.freq - b.mean_p)
      r.ece = r.ece + b.n / n * gap
      r.mce = math.max(r.mce, gap)
    end
  end
  local k = math.max(n, 1)
  r.mean_p, r.brier, r.log_loss = r.mean_p / k, r.brier / k, r.log_loss / k
  local base = r.positives / k
  r.base_rate = base
  r.brier_base = base * (1 - base)
  r.log_loss_base = (base > 0 and base < 1) and -(base * math.log(base) + (1 - base) * math.log(1 - base)) or 0
  if n == 0 then r.mean_p, r.ece, r.brier, r.log_loss = 0 / 0, 0 / 0, 0 / 0, 0 / 0 end
  return r
end

--- The reliability table as text (one line per non-empty bin, then the scores).
function Result:format()
  local lines = { "  bin             n   mean p  observed     gap" }
  for _, b in ipairs(self.bins) do
    if b.n > 0 then
      lines[#lines + 1] = ("  [%.2f, %.2f%s %6d  %7.4f  %8.4f  %7.4f"):format(b.lo, b.hi, b.hi == 1 and "]" or ")", b.n,
        b.mean_p, b.freq, b.freq - b.mean_p)
    end
  end
  lines[#lines + 1] = ("  states %d, interventions %d (rate %s), mean predicted p %s"):format(self.n, self.positives,
    f3(self.base_rate), f3(self.mean_p))
  lines[#lines + 1] = ("  ECE %s  MCE %s  Brier %s (base rate: %s)  log-loss %s (base rate: %s)"):format(f3(self.ece),
    f3(self.mce), f3(self.brier), f3(self.brier_base), f3(self.log_loss), f3(self.log_loss_base))
  return table.concat(lines, "\n")
end

function Result:__tostring()
  return ("calibration: n %d, ECE %s, Brier %s, log-loss %s, mean p %s vs rate %s"):format(self.n, f3(self.ece),
    f3(self.brier), f3(self.log_loss), f3(self.mean_p), f3(self.base_rate))
end

--- plot{path=, title=, series = {{name=, result=}...}} -> true or nil, msg: a
--- reliability diagram (observed frequency against mean predicted p per bin, the
--- diagonal, states per bin as bars on the right axis, from the first series).
function M.plot(args)
  local series = {
    { name = "perfectly calibrated", x = { 0, 1 }, y = { 0, 1 }, style = "lines dt 2 lc rgb 'gray40'" },
  }
  local first = args.series[1].result
  local cx, cn = {}, {}
  for _, b in ipairs(first.bins) do
    cx[#cx + 1], cn[#cn + 1] = (b.lo + b.hi) / 2, b.n
  end
  series[#series + 1] = { name = "states per bin (" .. args.series[1].name .. ")", x = cx, y = cn, axes = "x1y2",
    style = "boxes fs solid 0.2 noborder lc rgb '#4477aa'" }
  for _, s in ipairs(args.series) do
    local x, y, err = {}, {}, {}
    for _, b in ipairs(s.result.bins) do
      if b.n > 0 then
        x[#x + 1], y[#y + 1] = b.mean_p, b.freq
        err[#err + 1] = 1.96 * math.sqrt(b.freq * (1 - b.freq) / b.n) -- binomial standard error
      end
    end
    series[#series + 1] = { name = ("%s (ECE %s)"):format(s.name, f3(s.result.ece)), x = x, y = y, err = err }
  end
  local width = first.bins[1] and (first.bins[1].hi - first.bins[1].lo) or 0.1
  return plot.lines { path = args.path, title = args.title or "Reliability diagram", series = series,
    xlabel = "predicted intervention probability p(s)", ylabel = "observed intervention frequency",
    y2label = "states per bin", xrange = { 0, 1 }, yrange = { 0, 1 }, boxwidth = width * 0.9,
    key = "below", width = 760, height = 640 }
end

-- ---- a run directory at the REPL ---------------------------------------------------------------

-- mile.open gives the Run of mile.loop (the one run object: what training, --resume
-- and mile eval use) with these methods and fields added: config (= cfg), rounds (the
-- last committed round), checkpoints[r] (policy and mental model of round r, loaded on
-- first use; r = 0 is the warm start every run begins from).
local loop = require "mile.loop"
local Run = loop.Run
M.Run = Run

local Checkpoint = {}
Checkpoint.__index = function(self, key)
  if key ~= "policy" and key ~= "mental" then return nil end
  local path = rawget(self, key .. "_path")
  if sys.stat(path) ~= "file" then
    error(("calibration: round %d has no %s checkpoint (%s)"):format(self.round, key, path), 2)
  end
  local net = nn.load(path)
  net:eval()
  rawset(self, key, net)
  return net
end
Checkpoint.__tostring = function(self)
  return ("checkpoint of round %d (%s; fields policy, mental, loaded on first use)"):format(self.round,
    self.round == 0 and "the warm start" or rawget(self, "dir"))
end

-- run.checkpoints: round -> Checkpoint, made on first use
local function checkpoints(run)
  return setmetatable({}, {
    __index = function(t, r)
      if math.type(r) ~= "integer" or r < 0 or r > run.round then
        error(("checkpoints: round %s is not committed (0..%d)"):format(tostring(r), run.round), 2)
      end
      local ck = { round = r }
      if r == 0 then
        local base = loop.policy_file(run.cfg, "initial")
        ck.policy_path, ck.mental_path = base, base
      else
        ck.dir = run.rundir:checkpoint(r)
        ck.policy_path, ck.mental_path = ck.dir .. "/policy.safetensors", ck.dir .. "/mental.safetensors"
      end
      ck = setmetatable(ck, Checkpoint)
      rawset(t, r, ck)
      return ck
    end,
  })
end

--- open(dir [, opts]) -> the run of a run directory at its last committed round (its
--- plugins loaded from the directory's copies), with config, metrics, rounds, initial,
--- task, dataset, checkpoints[r], and the methods calibration, predict and rows.
function M.open(dir, opts)
  if type(dir) ~= "string" then error("open: expects the path of a run directory", 2) end
  local ok, run = pcall(loop.open, dir, opts)
  if not ok then error("open: " .. tostring(run):gsub("^loop: ", ""):gsub("^rundir: ", ""), 2) end
  run.config, run.rounds = run.cfg, run.round
  run.checkpoints = checkpoints(run)
  return run
end

function Run:__tostring()
  local last = self.metrics[#self.metrics]
  return ("run %s: %s, method %s, seed %d, %d/%d rounds done%s  (fields: config, metrics, dataset, checkpoints; " ..
    "methods: calibration, predict, rows)"):format(self.dir, self.cfg.env, self.cfg.method, self.cfg.seed,
    self.round, self.cfg.rounds, last and (", final success %.2f"):format(last.success) or "")
end

--- rows(r) -> first, last: the dataset rows collected in round r (from the metrics'
--- step counts; last < first when the round had no steps).
function Run:rows(r)
  if math.type(r) ~= "integer" or r < 1 or r > self.round then
    error(("rows: round %s is not committed (1..%d)"):format(tostring(r), self.round), 2)
  end
  local first = 1
  for i = 1, r - 1 do first = first + self.metrics[i].steps end
  return first, first + self.metrics[r].steps - 1
end

-- The learner's cost for checkpoint k: opts.cost, else, under a cost schedule, the
-- mean cost the checkpoint was trained with (its metrics row), else the config's.
local function cost_for(run, k, opts)
  if opts.cost then return opts.cost end
  local row = run.metrics[k]
  if run.config["learner.schedule"] ~= "constant" and row and type(row.learner_cost) == "number"
      and row.learner_cost == row.learner_cost then
    return row.learner_cost
  end
  return run.config["learner.cost"]
end

-- The learner's intervention model (learner.model) with checkpoint ck, on
-- observations [B, n]; opts.cost/opts.scale override the run's. Memoryless: a learner
-- with a memory model (learner.memory) is scored without its memory term.
local function learner_model(run, ck, obs, opts)
  local cost = cost_for(run, ck.round, opts)
  local scale = opts.scale or run.cfg["learner.scale"]
  local model = run.intervention { policy = policy.params(ck.policy, obs), mental = policy.params(ck.mental, obs),
    cost = cost, scale = scale }
  return model, cost, scale
end

local function round_list(self, round)
  if round == nil or round == "all" then
    local out = {}
    for r = 1, self.round do out[r] = r end
    return out
  end
  if math.type(round) ~= "integer" or round < 1 or round > self.round then
    error(("calibration: round %s is not committed (1..%d)"):format(tostring(round), self.round), 3)
  end
  return { round }
end

--- calibration{round=, bins=10, checkpoint=, cost=, scale=, plot=true|false|path, quiet=}
-- Scores the states of round `round` (all committed rounds, pooled, when omitted) with
-- the model of checkpoint `checkpoint` (default round - 1: held out), prints the
-- reliability table (unless quiet) and writes a reliability diagram
-- (<dir>/calibration_round_NNN.png or calibration_all.png; plot = false: none).
-- Returns the metrics (see metrics()) plus p, y, logp (per state), human (the same
-- metrics of the simulated human's own p, when the dataset holds it), mean_abs_diff
-- (mean |p - human p|), round, checkpoint, cost, scale, plot (the PNG's path).
function Run:calibration(opts)
  opts = opts or {}
  local rounds = round_list(self, opts.round)
  local ds = self.dataset
  local p, y, logp, log1mp, hp = {}, {}, {}, {}, {}
  local has_p = ds.has_p
  local cost, scale
  for _, r in ipairs(rounds) do
    local first, last = self:rows(r)
    if last >= first then
      local k = opts.checkpoint or r - 1
      local ck = self.checkpoints[k]
      local idx = {}
      for i = first, last do idx[#idx + 1] = i end
      ag.no_grad(function()
        local obs = ds:column("obs"):index_select(1, idx):float()
        local m
        m, cost, scale = learner_model(self, ck, obs, opts)
        local lp, l1 = m.logp:to("float64"):totable(), m.log1mp:to("float64"):totable()
        local nu = ds:column("nu"):index_select(1, idx):totable()
        local hpr = has_p and ds:column("p", "float64"):index_select(1, idx):totable() or {}
        for i = 1, #idx do
          local n = #p + 1
          p[n], logp[n], log1mp[n], y[n] = math.exp(lp[i]), lp[i], l1[i], math.tointeger(nu[i]) or nu[i]
          hp[n] = hpr[i]
        end
      end)
    end
  end
  local r = M.metrics { p = p, y = y, logp = logp, log1mp = log1mp, bins = opts.bins }
  r.p, r.y, r.logp, r.log1mp = p, y, logp, log1mp
  r.round, r.checkpoint, r.cost, r.scale = opts.round or "all", opts.checkpoint, cost, scale
  if has_p and #hp > 0 then
    r.human = M.metrics { p = hp, y = y, bins = opts.bins }
    local d = 0
    for i = 1, #p do d = d + math.abs(p[i] - hp[i]) end
    r.mean_abs_diff = d / #p
  end
  local which = #rounds == 1 and ("round %d"):format(rounds[1]) or ("rounds 1-%d"):format(self.round)
  local scored = opts.checkpoint and ("checkpoint %d"):format(opts.checkpoint)
    or "the model trained through the round before (held out)"
  if opts.plot ~= false and #p > 0 then
    local path = type(opts.plot) == "string" and opts.plot
      or (#rounds == 1 and ("%s/calibration_round_%03d.png"):format(self.dir, rounds[1]) or self.dir .. "/calibration_all.png")
    local series = { { name = "learner", result = r } }
    if r.human then series[2] = { name = "simulated human's own p", result = r.human } end
    local ok, err = M.plot { path = path, series = series,
      title = ("%s: %s, learner c=%g sigma=%g"):format(self.config.name, which, cost, scale) }
    r.plot = ok and path or nil
    r.plot_error = err
  end
  if not opts.quiet then
    print(("calibration of %s, %s: %d states scored by %s (learner c=%g, sigma=%g)"):format(self.config.name, which, r.n,
      scored, cost or 0 / 0, scale or 0 / 0))
    print(r:format())
    if r.human then
      print(("  the simulated human's own p: ECE %s  Brier %s  log-loss %s;  mean |p - human p| %s"):format(
        f3(r.human.ece), f3(r.human.brier), f3(r.human.log_loss), f3(r.mean_abs_diff)))
    end
    if self.config["learner.memory"] ~= "none" then
      print(("  note: learner.memory = %s; these are the model's predictions without its memory term"):format(
        self.config["learner.memory"]))
    end
    if r.plot then print("  plot: " .. r.plot) elseif r.plot_error then print("  (no plot: " .. r.plot_error .. ")") end
  end
  return r
end

-- An observation as a [1, n] float tensor, with the dataset row it came from (if any).
local function observation(self, obs)
  if math.type(obs) == "integer" then
    local n = self.dataset:size()
    if obs < 1 or obs > n then error(("predict: row %d out of range 1..%d"):format(obs, n), 3) end
    return self.dataset:column("obs"):index_select(1, { obs }):float(), obs
  end
  if type(obs) == "table" and not T.is_tensor(obs) then obs = T.from(obs) end
  if not T.is_tensor(obs) then error("predict: expects a dataset row, an observation tensor or a list of numbers", 3) end
  if obs:numel() ~= self.task.obs_dim then
    error(("predict: observation has %d values, the task's have %d"):format(obs:numel(), self.task.obs_dim), 3)
  end
  return obs:reshape { 1, self.task.obs_dim }:float(), nil
end

local function list(t) return t:to("float64"):view { -1 }:totable() end

--- predict(obs [, {round=, cost=, scale=, action=, quiet=}]) -> {p, delta, q, ...}
-- obs: a dataset row number, an observation (tensor or list). The learner's model of
-- checkpoint `round` (default: the last) at that state, printed unless quiet:
-- discrete: pi_h(a), pihat(a), Delta(a), q(a) for every action and p(s);
-- continuous: mu, sd, the mental model's m, s, K, p(s), and Delta, q at the policy's
-- mean (Delta = K there), at `action` and, for a dataset row, at the human's action.
function Run:predict(obs, opts)
  opts = opts or {}
  local x, row = observation(self, obs)
  local round = opts.round or self.round
  local ck = self.checkpoints[round]
  local out = { round = round, row = row }
  local lines = {}
  ag.no_grad(function()
    local m, cost, scale = learner_model(self, ck, x, opts)
    out.cost, out.scale, out.p = cost, scale, m.p:to("float64"):item()
    lines[#lines + 1] = ("learner model of checkpoint %d (c = %g, sigma = %g)%s"):format(round, cost, scale,
      row and (" at dataset row %d"):format(row) or "")
    if row then
      local ds = self.dataset
      local nu = ds:column("nu"):index_select(1, { row }):item()
      local ah = ds:column("human_action"):index_select(1, { row })
      local ar = ds:column("robot_action"):index_select(1, { row })
      local has_p = ds.has_p
      out.nu, out.human_p = nu, has_p and ds:column("p", "float64"):index_select(1, { row }):item() or nil
      out.human_action, out.robot_action = ah, ar
      local function show(a)
        local v = a:to("float64"):view { -1 }:totable()
        for i, x in ipairs(v) do v[i] = ("%.4g"):format(x) end
        return #v == 1 and v[1] or "(" .. table.concat(v, ", ") .. ")"
      end
      lines[#lines + 1] = ("  recorded: nu = %d, robot action %s, human action %s%s"):format(nu, show(ar), show(ah),
        out.human_p and (", the human's p = %.4f"):format(out.human_p) or "")
    end
    if m.kind == "discrete" then
      out.pi, out.delta, out.q = list(m.pi), list(m.delta), list(m.q)
      local pm = policy.params(ck.mental, x)
      out.pihat = list(pm.logits:log_softmax(2):exp())
      lines[#lines + 1] = "  action     pi_h    pihat     Delta          q"
      for a = 1, #out.pi do
        lines[#lines + 1] = ("  %6d  %7.4f  %7.4f  %8.4f  %9.3g"):format(a - 1, out.pi[a], out.pihat[a], out.delta[a],
          out.q[a])
      end
    else
      out.mu, out.sd = list(m.mu), list(m.log_sd:exp())
      out.mental_mu, out.mental_sd = list(m.mental_mu), list(m.mental_log_sd:exp())
      out.K = m.K:to("float64"):item()
      lines[#lines + 1] = "  dim        mu       sd   mental m   mental s"
      for d = 1, #out.mu do
        lines[#lines + 1] = ("  %3d  %8.4f  %7.4f  %9.4f  %9.4f"):format(d, out.mu[d], out.sd[d], out.mental_mu[d],
          out.mental_sd[d])
      end
      lines[#lines + 1] = ("  K = %.4f (Delta(a) = K - |(a - mu) / sd|^2 / 2)"):format(out.K)
      local function at(name, a)
        a = a:reshape { 1, #out.mu }:to(m.mu:dtype())
        local z = ((a - m.mu) * (-m.log_sd):exp()):to("float64")
        local delta = out.K - (z * z):sum():item() / 2
        local q = math.exp(m:logq(a):to("float64"):item())
        lines[#lines + 1] = ("  at %s: Delta = %.4f, q = %.4g"):format(name, delta, q)
        return { delta = delta, q = q }
      end
      out.at_mean = at("the policy's mean", m.mu)
      if opts.action then out.at_action = at("the given action", T.is_tensor(opts.action) and opts.action
          or T.from(opts.action)) end
      if row and out.nu == 1 then out.at_human = at("the human's action", out.human_action:float()) end
    end
    lines[#lines + 1] = ("  p(s) = %.4g  (the probability that the human intervenes here)"):format(out.p)
  end)
  if not opts.quiet then print(table.concat(lines, "\n")) end
  return setmetatable(out, { __tostring = function(t)
    return ("prediction: p(s) = %.4g (checkpoint %d)"):format(t.p, t.round)
  end })
end


return M
