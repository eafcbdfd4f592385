--- mile.policy: the policy networks of the experiments, and acting with them.
--
-- A policy is an nn module mapping observations [B, n] to a distribution:
-- discrete tasks a Categorical over the env's action values 0..A-1, continuous
-- tasks a DiagGaussian (state-independent log-std, unsquashed: actions are clipped
-- by the env). The same shape serves the robot policy, the expert's cloned network
-- and the mental models, so the intervention model reads any of them alike.
local T = require "mile.tensor"
local nn = require "mile.nn"
local ag = require "mile.autograd"
local compile = require "mile.compile"

local M = {}

--- new{obs_dim=, discrete=, n_actions= | action_dim=, hidden={64,64}, activation="tanh",
---     log_std_init=-0.5, generator=}
function M.new(opts)
  local out = opts.discrete and opts.n_actions or opts.action_dim
  assert(out, "policy.new: needs n_actions (discrete) or action_dim (continuous)")
  local mlp = nn.MLP { input = opts.obs_dim, hidden = opts.hidden or { 64, 64 }, output = out,
    activation = opts.activation or "tanh", generator = opts.generator }
  if opts.discrete then return nn.Sequential(mlp, nn.CategoricalHead()) end
  return nn.Sequential(mlp, nn.DiagGaussianHead(out, { log_std_init = opts.log_std_init or -0.5 }))
end

-- Rollouts act and the simulated human decides one state at a time, with grad mode
-- off: there each network runs compiled (nn's compile_forward: one call per network,
-- the same bits as its ordinary forward). One compiled forward per network, made at
-- first use and dropped with the network. Inside a training step being recorded
-- (mile.compile: the human's labels of the public loss) the ordinary forward runs, which
-- the recorder can replay; a plan's output it cannot.
local compiled = setmetatable({}, { __mode = "k" })
local function forward(policy, obs)
  if ag.grad_enabled() or not policy.compile_forward or compile.recording() then return policy(obs) end
  local f = compiled[policy]
  if not f then
    f = policy:compile_forward()
    compiled[policy] = f
  end
  return f(obs)
end

--- The distribution's parameters for a batch of observations [B, n]:
--- discrete {logits = [B, A]}; continuous {mu = [B, D], log_sd = [B, D]}.
function M.params(policy, obs)
  local dist = forward(policy, obs)
  if dist.logits then return { logits = dist.logits } end
  return { mu = dist.mean, log_sd = dist:_full_log_std() }
end

--- One action for one observation (1-d tensor): the mode when deterministic,
--- else a draw from gen. Discrete: an integer 0..A-1; continuous: a 1-d tensor.
function M.act(policy, obs, deterministic, gen)
  return ag.no_grad(function()
    local dist = forward(policy, obs:view { 1, -1 }:float())
    if dist.logits then
      local a = deterministic and dist:mode() or dist:sample(gen)
      return math.tointeger(a:view { -1 }[1])
    end
    local a = deterministic and dist:mode() or dist:sample(gen)
    return a:view { -1 }
  end)
end

--- Negative log-likelihood of actions under the policy (mean over the batch):
--- the behaviour-cloning loss. weights [B] (optional) weight each sample.
function M.nll(policy, obs, actions, weights)
  local lp = policy(obs):log_prob(actions)
  if weights then return -(lp * weights):sum() / weights:sum() end
  return -lp:mean()
end

return M
