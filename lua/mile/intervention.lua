--- mile.intervention: the probit intervention model of MILE and its losses.
--
--   local I = require "mile.intervention"
--   local m = I.discrete{ policy_logits = lh, mental_logits = lm, cost = 1, scale = 0.5 }
--   print(m.logp:exp())                                   -- p(s) per sample
--   local l = I.loss{ model = m, variant = "paper", nu = nu, human_action = ah, lambda = 0.5 }
--   l.loss:backward()                                     -- gradients reach both networks
--
-- Notation and the math: DESIGN.md section 1 and docs/intervention.md. The fused C
-- kernels (mile.intervention.core) compute everything in double precision and log
-- space and return tensors of the inputs' dtype; `I.reference_impl` is the same model
-- composed from autograd primitives in plain Lua, the readable specification.
--
-- Conventions: B samples, A discrete actions, D action dims. cost and scale are Lua
-- numbers or [B] tensors. human_action holds the environment's 0-based action values
-- ([B] for discrete models, [B, D] for Gaussian ones); nu holds 0/1 flags [B].
local core = require "mile.intervention.core"
local T = require "mile.tensor"
local compile = require "mile.compile"

local M = {}

local LN_2PI = math.log(2 * math.pi)

-- ---- argument checks ----------------------------------------------------------------

local function shape_str(t) return "{" .. table.concat(t:shape(), ",") .. "}" end

local function need_tensor(fname, args, name)
  local v = args[name]
  if v == nil then error(("%s: argument %s is missing"):format(fname, name), 3) end
  if not T.is_tensor(v) then error(("%s: %s must be a tensor, got %s"):format(fname, name, type(v)), 3) end
  return v
end

-- cost / scale: a number, or a tensor of the model's dtype with one value or one per sample
local function need_param(fname, args, name, like)
  local v = args[name]
  if v == nil then error(("%s: argument %s is missing"):format(fname, name), 3) end
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge or (name == "scale" and v <= 0) then
      error(("%s: %s must be %s, got %s"):format(fname, name,
        name == "scale" and "positive and finite" or "finite", tostring(v)), 3)
    end
    return v
  end
  if not T.is_tensor(v) then error(("%s: %s must be a number or a tensor, got %s"):format(fname, name, type(v)), 3) end
  if v:dtype() ~= like:dtype() then
    error(("%s: %s is %s but the model inputs are %s"):format(fname, name, v:dtype(), like:dtype()), 3)
  end
  local B = like:size(1)
  if not (v:numel() == 1 or (v:dim() == 1 and v:size(1) == B)) then
    error(("%s: %s has shape %s, expected one value or {%d}"):format(fname, name, shape_str(v), B), 3)
  end
  return v
end

local function need_matrix(fname, args, name, like)
  local v = need_tensor(fname, args, name)
  if v:dim() ~= 2 then error(("%s: %s has shape %s, expected {B, n}"):format(fname, name, shape_str(v)), 3) end
  if like then
    if v:dtype() ~= like.t:dtype() then
      error(("%s: %s is %s but %s is %s"):format(fname, name, v:dtype(), like.name, like.t:dtype()), 3)
    end
    if shape_str(v) ~= shape_str(like.t) then
      error(("%s: %s has shape %s, expected %s like %s"):format(fname, name, shape_str(v), shape_str(like.t),
        like.name), 3)
    end
  end
  return v
end

-- a per-sample parameter as something that broadcasts against [B, n] (tensor [B] -> [B, 1])
local function column(v)
  if type(v) == "number" then return v end
  if v:numel() == 1 then return v:reshape { 1, 1 } end
  return v:view { -1, 1 }
end

-- ---- result objects ---------------------------------------------------------------------

-- Views of the packed kernel output are made on first access (and kept).
local Discrete = {}
Discrete.__index = function(self, key)
  local method = Discrete[key]
  if method then return method end
  local packed, A = rawget(self, "packed"), rawget(self, "actions")
  local v
  if key == "log_pi" then v = packed:narrow(2, 1, A)
  elseif key == "delta" then v = packed:narrow(2, A + 1, A)
  elseif key == "log_q" then v = packed:narrow(2, 2 * A + 1, A)
  elseif key == "q" then v = packed:narrow(2, 3 * A + 1, A)
  elseif key == "logp" then v = packed:select(2, 4 * A + 1)
  elseif key == "log1mp" then v = packed:select(2, 4 * A + 2)
  elseif key == "p" then v = self.logp:exp()
  elseif key == "pi" then v = self.log_pi:exp()
  else return nil end
  rawset(self, key, v)
  return v
end

-- action values as a tensor: a number (one sample) or a Lua list is accepted too
local function as_actions(action, like)
  if type(action) == "number" then return T.from({ action }, like:dtype()) end
  if type(action) == "table" and not T.is_tensor(action) then return T.from(action, like:dtype()) end
  return action
end

--- ln pi_h(a | s) at 0-based action values [B] (rows with nu = 0 may hold anything).
-- check = false skips the per-sample test of the action values.
function Discrete:log_pi_at(action, nu, check)
  return core.take(self.packed, as_actions(action, self.packed), 0, nu, self.actions, check ~= false and self.check)
end
--- ln q(a, s) at 0-based action values [B].
function Discrete:logq(action, nu, check)
  return core.take(self.packed, as_actions(action, self.packed), 2 * self.actions, nu, self.actions,
    check ~= false and self.check)
end

local Gaussian = {}
Gaussian.__index = function(self, key)
  local method = Gaussian[key]
  if method then return method end
  local packed, v = rawget(self, "packed"), nil
  if packed == nil then -- Monte Carlo / reference results hold K, logp, log1mp themselves
    if key ~= "p" or rawget(self, "logp") == nil then return nil end
    v = rawget(self, "logp"):exp()
  elseif key == "K" then v = packed:select(2, 1)
  elseif key == "logp" then v = packed:select(2, 2)
  elseif key == "log1mp" then v = packed:select(2, 3)
  elseif key == "p" then v = self.logp:exp()
  else return nil end
  rawset(self, key, v)
  return v
end

-- z = (a - mu) / sd for observed actions a [B, D]
local function standardised(self, action)
  if not T.is_tensor(action) or shape_str(action) ~= shape_str(self.mu) then
    error(("human_action: expected a tensor of shape %s (one action per sample), got %s"):format(shape_str(self.mu),
      T.is_tensor(action) and shape_str(action) or type(action)), 3)
  end
  if action:dtype() ~= self.mu:dtype() then action = action:to(self.mu:dtype()) end
  return (action - self.mu) * (-self.log_sd):exp()
end

-- actions of rows with nu = 0 replaced by mu (their terms are unused; a NaN stand-in
-- in a dataset must not turn into a NaN gradient). With check, the actions of the
-- other rows must be finite: an error names the first bad sample and dimension.
local function sanitise(self, action, nu, check)
  if T.is_tensor(action) and action:dtype() ~= self.mu:dtype() then action = action:to(self.mu:dtype()) end
  if nu ~= nil and T.is_tensor(action) and shape_str(action) == shape_str(self.mu) then
    local keep = nu:view { -1, 1 }:ne(0):expand_as(action)
    action = T.where(keep, action, self.mu:detach())
  end
  if check ~= false and self.check ~= false and T.is_tensor(action) then
    local ok, err = pcall(core.check_actions, action) -- one C pass, recorded in a compiled step
    if not ok then error(err, 3) end
  end
  return action
end

--- ln pi_h(a | s) of observed actions a [B, D]: sum_d -ln sd_d - ln(2 pi)/2 - z_d^2/2.
function Gaussian:log_pi_at(action, nu, check)
  local z = standardised(self, sanitise(self, action, nu, check))
  return ((z * z) * -0.5 - self.log_sd - 0.5 * LN_2PI):sum(2)
end

--- ln q(a, s) of observed actions a [B, D]: ln Phi((Delta(a) - c) / sigma), Delta(a) = K - |z|^2 / 2.
function Gaussian:logq(action, nu, check)
  local z = standardised(self, sanitise(self, action, nu, check))
  local delta = self.K - (z * z):sum(2) * 0.5
  return ((delta - self.cost) / self.scale):log_normal_cdf()
end

-- ---- the models ------------------------------------------------------------------------------

--- discrete{policy_logits=[B,A], mental_logits=[B,A], cost=, scale=, check=true} -> result with tensors
-- delta [B,A], q [B,A], log_q [B,A], log_pi [B,A] (ln pi_h), pi [B,A], logp [B], log1mp [B],
-- p [B], and methods log_pi_at(action), logq(action) for 0-based action values [B].
-- Every logit must be finite (an error names the argument and the first bad sample and
-- column, 0-based, from the kernel); check = false skips the action-value checks of
-- log_pi_at/logq.
function M.discrete(args)
  if type(args) ~= "table" then error("intervention.discrete: expects a table of named arguments", 2) end
  local lh, lm, cost, scale = args.policy_logits, args.mental_logits, args.cost, args.scale
  if lh == nil or lm == nil or cost == nil or scale == nil then -- the core checks types, shapes, dtypes, values
    for _, k in ipairs { "policy_logits", "mental_logits", "cost", "scale" } do
      if args[k] == nil then error("intervention.discrete: argument " .. k .. " is missing", 2) end
    end
  end
  local packed = core.discrete(lh, lm, cost, scale)
  return setmetatable({ kind = "discrete", packed = packed, actions = lh:size(2), cost = cost, scale = scale,
                        check = args.check ~= false }, Discrete)
end

-- The Monte Carlo estimate of the Gaussian model (reparameterised, `samples` draws of
-- a ~ pi_h and as many of a' ~ pihat per state, like the public reference code):
--   Delta_i = ln pi_h(a_i) - mean_j ln pi_h(a'_j),  ln p = logsumexp_i ln Phi(x_i) - ln N,
--   ln(1-p) = logsumexp_i ln Phi(-x_i) - ln N,  x_i = (Delta_i - c)/sigma, K = mean_j |z'_j|^2/2.
local function gaussian_mc(mu, log_sd, m, log_s, cost, scale, n, gen)
  local B, D = mu:size(1), mu:size(2)
  local dtype = mu:dtype()
  local eps_h = T.randn({ B, n, D }, gen, dtype)
  local eps_m = T.randn({ B, n, D }, gen, dtype)
  local mu3, lsd3 = mu:view { B, 1, D }, log_sd:view { B, 1, D }
  local inv_sd3 = (-lsd3):exp()
  -- a = mu + sd eps: z = eps, so ln pi_h(a) = sum_d -lsd_d - ln(2 pi)/2 - eps^2/2
  local lp_a = ((eps_h * eps_h) * -0.5 - lsd3 - 0.5 * LN_2PI):sum(3)          -- [B, n]
  local a2 = m:view { B, 1, D } + log_s:view { B, 1, D }:exp() * eps_m          -- a' ~ pihat
  local z2 = (a2 - mu3) * inv_sd3
  local half_z2 = (z2 * z2):sum(3) * 0.5                                        -- [B, n]
  local lp_a2 = -half_z2 - (lsd3:sum(3) + 0.5 * D * LN_2PI)                     -- ln pi_h(a')
  local delta = lp_a - lp_a2:mean(2, true)
  local x = (delta - column(cost)) / column(scale)
  local logn = math.log(n)
  return half_z2:mean(2), x:log_normal_cdf():logsumexp(2) - logn, (-x):log_normal_cdf():logsumexp(2) - logn
end

--- gaussian{mu=, log_sd=, mental_mu=, mental_log_sd= ([B,D] each), cost=, scale=,
--- method="quadrature"|"mc", samples=1000, generator=} -> result with K [B], logp [B],
-- log1mp [B], p [B] and methods logq(action), log_pi_at(action) for actions [B, D].
-- method "mc" needs a mile.tensor.Generator (explicit: no hidden global state).
function M.gaussian(args)
  local fname = "intervention.gaussian"
  if type(args) ~= "table" then error(fname .. ": expects a table of named arguments", 2) end
  local method = args.method or "quadrature"
  if method ~= "quadrature" and method ~= "mc" then
    error(("%s: method must be \"quadrature\" or \"mc\", got %s"):format(fname, tostring(method)), 2)
  end
  local mu, log_sd, m, log_s, cost, scale
  if method == "quadrature" then -- the core checks types, shapes, dtypes and values itself
    for _, k in ipairs { "mu", "log_sd", "mental_mu", "mental_log_sd", "cost", "scale" } do
      if args[k] == nil then error(fname .. ": argument " .. k .. " is missing", 2) end
    end
    mu, log_sd, m, log_s, cost, scale = args.mu, args.log_sd, args.mental_mu, args.mental_log_sd, args.cost, args.scale
  else
    mu = need_matrix(fname, args, "mu")
    local like = { t = mu, name = "mu" }
    log_sd = need_matrix(fname, args, "log_sd", like)
    m = need_matrix(fname, args, "mental_mu", like)
    log_s = need_matrix(fname, args, "mental_log_sd", like)
    cost = need_param(fname, args, "cost", mu)
    scale = need_param(fname, args, "scale", mu)
  end
  local packed = method == "quadrature" and core.gaussian(mu, log_sd, m, log_s, cost, scale) or nil
  -- cost and scale as numbers or [B]-broadcastable tensors, for logq
  local function flat_param(v) return (type(v) == "number" or v:dim() == 1) and v or v:reshape { 1 } end
  local self = { kind = "gaussian", method = method, mu = mu, log_sd = log_sd, mental_mu = m, mental_log_sd = log_s,
                 cost = flat_param(cost), scale = flat_param(scale), packed = packed, check = args.check ~= false }
  if method == "mc" then
    local n = args.samples or 1000
    if math.type(n) ~= "integer" or n < 1 then error(fname .. ": samples must be a positive integer", 2) end
    local gen = args.generator
    if gen == nil then error(fname .. ': method "mc" needs generator = mile.tensor.Generator(seed)', 2) end
    self.K, self.logp, self.log1mp = gaussian_mc(mu, log_sd, m, log_s, cost, scale, n, gen)
    self.samples = n
  end
  return setmetatable(self, Gaussian)
end

-- ---- losses ------------------------------------------------------------------------------------

local VARIANTS = { paper = true, joint = true, reference = true }

--- loss{model=, variant="paper"|"joint"|"reference", nu=[B], human_action=, lambda=0.5, check=true}
-- -> {loss = scalar, j1 = scalar, j2 = scalar} (0-d tensors, all differentiable).
-- paper: lambda J1 + (1-lambda) J2 (J1 mean over the batch, J2 mean over its
-- intervention samples); joint: mean exact NLL; reference: mean NLL of the categorical
-- [pi_h(a) p, 1 - p]. See mile/intervention.h for j1 and j2 of each variant.
-- The model may be any table with logp, log1mp [B] tensors and methods
-- log_pi_at(action, nu) (and logq(action, nu) for "joint"): write your own model in
-- Lua and it trains with the same losses.
-- Checked on entry: lambda in [0, 1], nu 0/1 flags, action values (discrete: integers
-- in 0..A-1; Gaussian: finite) on intervention steps; errors name the first bad sample.
-- check = false skips these passes (for inner loops over data validated once); the
-- checks fused into the C kernels' own loops (finite logits, means and log-sds, nu and
-- lambda in the loss kernel) cost nothing measurable and stay on.
function M.loss(args)
  local fname = "intervention.loss"
  if type(args) ~= "table" then error(fname .. ": expects a table of named arguments", 2) end
  local model = args.model
  if type(model) ~= "table" or not T.is_tensor(model.logp) then
    error(fname .. ": model must be the result of intervention.discrete/gaussian (or a table with logp, log1mp)", 2)
  end
  local variant = args.variant or "paper"
  if not VARIANTS[variant] then
    error(("%s: variant must be \"paper\", \"joint\" or \"reference\", got %s"):format(fname, tostring(variant)), 2)
  end
  local lambda = args.lambda or 0.5
  if type(lambda) ~= "number" or not (lambda >= 0 and lambda <= 1) then
    error(("%s: lambda must be a number in [0, 1], got %s"):format(fname, tostring(lambda)), 2)
  end
  local check = args.check ~= false
  local nu = args.nu
  if type(nu) == "table" and not T.is_tensor(nu) then nu = T.from(nu, model.logp:dtype()) end
  if not T.is_tensor(nu) then error(fname .. ": nu must be a tensor of 0/1 flags [B]", 2) end
  local B = model.logp:size(1)
  if nu:numel() ~= B then error(("%s: nu has %d values for a batch of %d"):format(fname, nu:numel(), B), 2) end
  if nu:dtype() ~= model.logp:dtype() then nu = nu:to(model.logp:dtype()) end
  if nu:dim() ~= 1 then nu = nu:reshape { B } end
  -- 2 or NaN is not "an intervention". The loss kernel refuses them too (0-based); this
  -- pass, which names the sample 1-based, reads values into Lua, so a step being
  -- recorded (mile.compile) leaves the check to the kernel.
  if check and not compile.recording() then
    local bad = nu:ne(0) * nu:ne(1) -- NaN ~= 0 and ~= 1
    if bad:sum():item() > 0 then
      for i, v in ipairs(bad:totable()) do
        if v ~= 0 then
          error(("%s: nu must hold 0/1 flags, got %s at sample %d"):format(fname, tostring(nu:totable()[i]), i), 2)
        end
      end
    end
  end
  local action = args.human_action
  if action == nil then error(fname .. ": argument human_action is missing", 2) end
  if type(action) == "table" and not T.is_tensor(action) then action = T.from(action, model.logp:dtype()) end
  local log_pi = model:log_pi_at(action, nu, check)
  local log_q = variant == "joint" and model:logq(action, nu, check) or nil
  local out = core.loss(variant, lambda, model.logp, model.log1mp, log_pi, log_q, nu)
  return { loss = out:select(1, 1), j1 = out:select(1, 2), j2 = out:select(1, 3), variant = variant }
end

-- ---- the reference implementation ---------------------------------------------------------

local ag_ok, ag = pcall(require, "mile.autograd")

local R = {}
M.reference_impl = R

--- reference_impl.discrete: the discrete model from autograd primitives.
function R.discrete(args)
  local lh, lm = args.policy_logits, args.mental_logits
  local c, s = column(args.cost), column(args.scale)
  local log_pi = lh:log_softmax(2)                         -- ln pi_h(a)
  local pihat = lm:softmax(2)                              -- mental model
  local delta = log_pi - (pihat * log_pi):sum(2, true)     -- Delta(a) = ln pi_h(a) - E_pihat ln pi_h
  local x = (delta - c) / s
  local log_q = x:log_normal_cdf()                         -- ln q(a) = ln Phi(x)
  local log_qc = (-x):log_normal_cdf()                     -- ln(1 - q(a))
  local self = {
    kind = "discrete", actions = lh:size(2), cost = args.cost, scale = args.scale,
    log_pi = log_pi, delta = delta, log_q = log_q, q = log_q:exp(),
    logp = (log_pi + log_q):logsumexp(2),                  -- ln sum_a pi_h(a) q(a)
    log1mp = (log_pi + log_qc):logsumexp(2),               -- ln sum_a pi_h(a) (1 - q(a))
  }
  self.p = self.logp:exp()
  local function at(m, action, nu)
    local a = T.is_tensor(action) and action or T.from(action, lh:dtype())
    if nu then a = T.where(nu:ne(0), a:to(lh:dtype()), T.zeros({ lh:size(1) }, lh:dtype())) end
    return m:gather(2, (a:to(lh:dtype()) + 1):view { -1, 1 }):view { -1 }  -- gather indices are 1-based
  end
  function self.log_pi_at(_, action, nu) return at(log_pi, action, nu) end
  function self.logq(_, action, nu) return at(log_q, action, nu) end
  return self
end

-- ln p and ln(1 - p) of the Gaussian model as a custom op over t0 = K - c and sigma,
-- one sample at a time through the scalar kernel (its quadrature is checked against
-- independent adaptive quadrature in the tests; see docs/intervention.md)
local function logp_pair(D, t0, sigma)
  local B = t0:size(1)
  local dtype = t0:dtype()
  local saved = {}
  local Pair = ag.Function {
    name = "reference_gaussian_logp",
    forward = function(ctx, t, s, side)
      local tv, sv = t:totable(), s:totable()
      local out = {}
      for b = 1, B do
        local lp, l1, dpt, dps, d1t, d1s = core.gaussian_logp(D, tv[b], sv[b])
        saved[b] = { dpt, dps, d1t, d1s }
        out[b] = side == 1 and lp or l1
      end
      ctx.side = side
      return T.from(out, dtype)
    end,
    backward = function(ctx, g)
      local gv, gt, gs = g:totable(), {}, {}
      for b = 1, B do
        local d = saved[b]
        gt[b] = gv[b] * (ctx.side == 1 and d[1] or d[3])
        gs[b] = gv[b] * (ctx.side == 1 and d[2] or d[4])
      end
      return T.from(gt, dtype), T.from(gs, dtype)
    end,
  }
  return Pair(t0, sigma, 1), Pair(t0, sigma, 2)
end

--- reference_impl.gaussian: K and the action terms from autograd primitives; ln p,
-- ln(1-p) from the per-sample scalar kernel wrapped as a Lua custom op.
function R.gaussian(args)
  if not ag_ok then error("reference_impl.gaussian needs mile.autograd") end
  local mu, log_sd, m, log_s = args.mu, args.log_sd, args.mental_mu, args.mental_log_sd
  local B, D = mu:size(1), mu:size(2)
  local function per_sample(v)
    if type(v) == "number" then return T.full({ B }, v, mu:dtype()) end
    if v:numel() == 1 then return v:reshape { 1 }:expand { B } + 0 end
    return v
  end
  local c, s = per_sample(args.cost), per_sample(args.scale)
  local inv_var = (log_sd * -2):exp()
  local diff = m - mu
  local K = ((diff * diff) * inv_var + ((log_s - log_sd) * 2):exp()):sum(2) * 0.5
  local logp, log1mp = logp_pair(D, K - c, s)
  local self = setmetatable({ kind = "gaussian", method = "reference", mu = mu, log_sd = log_sd, mental_mu = m,
                              mental_log_sd = log_s, cost = c, scale = s, K = K, logp = logp, log1mp = log1mp },
                            Gaussian)
  return self
end

--- reference_impl.loss: the three variants from autograd primitives.
function R.loss(args)
  local model, variant, lambda = args.model, args.variant or "paper", args.lambda or 0.5
  local nu = args.nu
  if not T.is_tensor(nu) then nu = T.from(nu, model.logp:dtype()) end
  nu = nu:to(model.logp:dtype())
  local B = nu:numel()
  local mask = nu:ne(0)
  local zero = T.zeros({ B }, nu:dtype())
  local log_pi = model:log_pi_at(args.human_action, nu)
  local ce = -T.where(mask, model.logp, model.log1mp)            -- -[nu ln p + (1-nu) ln(1-p)]
  local nll = -T.where(mask, log_pi, zero)                       -- nu (-ln pi_h(a_h))
  local j1, j2
  if variant == "paper" then
    local n1 = math.max(mask:sum():item(), 0)
    j1 = ce:mean()
    j2 = n1 > 0 and nll:sum() / n1 or nll:sum() * 0
    return { loss = j1 * lambda + j2 * (1 - lambda), j1 = j1, j2 = j2 }
  elseif variant == "joint" then
    local log_q = model:logq(args.human_action, nu)
    j1 = (-T.where(mask, log_q, model.log1mp)):mean()
    j2 = nll:mean()
  else
    j1 = ce:mean()
    j2 = nll:mean()
  end
  return { loss = j1 + j2, j1 = j1, j2 = j2 }
end

return M
