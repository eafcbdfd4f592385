--- mile.methods: how each method trains on the same protocol and budget, registered by
--- name (config key `method`; built-ins mile.methods.bc, hg_dagger, iwr, mile).
--
-- Every method gets the initial demonstrations and, each round, the same number of
-- minibatch steps: epochs * ceil((demos + dataset rows) / batch_size). A method is
--
--   methods.register { name =, doc =, schema = {config keys it owns},
--                      uses_mental = true | nil,   -- trains a mental model (checkpointed)
--                      budget = function(cfg, steps) -> steps | nil, -- its own step budget
--                      train = function(ctx) -> {steps =, loss =, j1 =, j2 =} }
--
-- and its train(ctx) sees the round through a narrow context (methods.context):
--
--   ctx.cfg          the resolved config (flat: ctx.cfg["loss.lambda"])
--   ctx.round        the round being trained (1-based)
--   ctx.steps        the round's step budget (the same for every method, unless the
--                    method sets its own with budget(cfg, steps): bc.steps)
--   ctx.batch_size   cfg.batch_size
--   ctx.policy       the robot policy (mile.policy), trained
--   ctx.mental       the learner's mental model pihat (same shape as the policy)
--   ctx.memory       the learner's memory model (mile.temporal), or nil
--   ctx.optimizers   {policy =, mental =, memory = (or nil)}: Adam over each
--   ctx.dataset      the intervention data so far (mile.data: obs, robot_action,
--                    human_action, nu, episode, t, ...)
--   ctx.demos        the initial demonstrations {obs = [N, n], actions = [N] | [N, D]}
--   ctx.generator    the training generator (every draw of a method comes from it)
--
--   ctx:draw([n | pool]) -> batch_size row indices, uniform with replacement over 1..n
--                    (a number) or over a Lua list of rows
--   ctx:step(loss [, {optimizers}])  zero the gradients, backward, step (default: the
--                    policy's, the mental model's and the memory's optimisers)
--   ctx:nll(obs, actions [, weights]) -> the policy's mean negative log-likelihood
--   ctx:columns()  -> the dataset's columns as tensors, nil while it is empty
--   ctx:learner_model(obs [, rows]) -> the learner's intervention model at obs (rows:
--                    their dataset rows, for per-row costs and memory), differentiable
--   ctx:memory_batch() -> model, nu, human_action: a minibatch of episode segments
--                    trained through time (when ctx.memory)
--   ctx:clone(sample, n) -> runs ctx.steps behaviour-cloning steps on sample(generator) ->
--                    obs, actions over a pool of n samples (none: no step); returns {steps, loss}
--   ctx:human_labels(obs) -> the simulated human's action at each state (pi_E's mode)
local compile = require "mile.compile"
local T = require "mile.tensor"
local policy = require "mile.policy"
local registry = require "mile.registry"
local schedules = require "mile.schedules"
local temporal = require "mile.temporal"

local M = registry.new { kind = "method", key = "method",
  builtins = { "mile.methods.bc", "mile.methods.hg_dagger", "mile.methods.iwr", "mile.methods.mile" },
  check = function(e) return type(e.train) == "function", "needs train(ctx)" end }

--- budget(run [, split]) -> the training steps of a round, the same for every method:
--- epochs passes over the rows trained on (split: the rows train.holdout leaves, loop's
--- holdout_split). A method with budget(cfg, steps) -> steps sets its own (bc.steps).
function M.budget(run, split)
  local n = split and (split.demos.obs:size(1) + split.dataset:size()) or (run.demos.obs:size(1) + run.dataset:size())
  local steps = run.cfg.epochs * math.ceil(n / run.cfg.batch_size)
  local method = run.method
  if method and method.budget then steps = method.budget(run.cfg, steps) end
  return steps
end

--- learner_model(run, obs [, rows]) -> the learner's intervention model at obs [B, n]:
--- the run's intervention model (learner.model) with policy as pi_h, mental model as
--- pihat, the learner's cost (run.learner_cost: a number, a tensor over dataset rows or
--- a function, mile.schedules) at `rows` (a Lua list of dataset rows), and with the
--- learner's memory (run.temporal) from each row's episode when rows are given.
function M.learner_model(run, obs, rows)
  local cfg = run.cfg
  if run.temporal and rows then return temporal.rows_model(run, rows) end
  local cost = schedules.cost_at(run.learner_cost or cfg["learner.cost"], rows, obs)
  return run.intervention { policy = policy.params(run.policy, obs), mental = policy.params(run.mental, obs),
    cost = cost, scale = cfg["learner.scale"] }
end

-- ---- the context of a round --------------------------------------------------------------

local Context = {}
Context.__index = Context
M.Context = Context

--- context(run, round [, split]) -> the ctx a method's train receives. split (train.holdout):
--- the demonstrations and dataset rows of the round's training part; ctx.demos and
--- ctx.dataset are those, and rows given to ctx:learner_model are mapped back to the
--- run's dataset rows (per-row costs).
function M.context(run, round, split)
  return setmetatable({
    cfg = run.cfg, round = round, steps = M.budget(run, split), batch_size = run.cfg.batch_size,
    policy = run.policy, mental = run.mental, memory = run.temporal,
    optimizers = { policy = run.opt_policy, mental = run.opt_mental, memory = run.opt_temporal },
    dataset = split and split.dataset or run.dataset, demos = split and split.demos or run.demos,
    generator = run.gens.train, _run = run, _rows = split and split.rows,
  }, Context)
end

--- draw(n) -> batch_size random indices in 1..n, or entries of the list n (with replacement).
function Context:draw(n)
  local gen, b, idx = self.generator, self.batch_size, {}
  if type(n) == "table" then
    for i = 1, b do idx[i] = n[gen:integer(#n)] end
  else
    for i = 1, b do idx[i] = gen:integer(n) end
  end
  return idx
end

--- step(loss [, optimizers]): zero the gradients, loss:backward(), step each optimizer
--- (default: the policy's, the mental model's and the memory's).
function Context:step(loss, opts)
  local o = self.optimizers
  opts = opts or { o.policy, o.mental, o.memory }
  for _, opt in pairs(opts) do opt:zero_grad() end
  loss:backward()
  for _, opt in pairs(opts) do opt:step() end
end

--- nll(obs, actions [, weights]) -> the policy's mean negative log-likelihood of the actions.
function Context:nll(obs, actions, weights)
  return policy.nll(self.policy, obs, actions, weights)
end

--- columns() -> the dataset's columns as tensors (dataset:tensors()), or nil when it is empty.
function Context:columns()
  return self.dataset:size() > 0 and self.dataset:tensors() or nil
end

--- learner_model(obs, rows) -> the learner's intervention model at obs (methods.learner_model of the run).
function Context:learner_model(obs, rows)
  if rows and self._rows then -- ctx.dataset is a subset: its rows in the run's dataset
    local mapped = {}
    for i, r in ipairs(rows) do mapped[i] = self._rows[r] end
    rows = mapped
  end
  return M.learner_model(self._run, obs, rows)
end

--- human_labels(obs) -> what the (simulated) human would do at each state (its
--- labels(obs): pi_E's mode), for the public code's loss; an error for a human without.
function Context:human_labels(obs)
  local h = self._run.human
  if not (h and h.labels) then error("methods: this run's human gives no labels (human_labels)", 2) end
  return h:labels(obs)
end

--- memory_batch() -> a batch for the memory model's training (temporal.train_batch).
function Context:memory_batch()
  if self._rows then error("methods: memory_batch with train.holdout (refused by the config)", 2) end
  return temporal.train_batch(self._run, self.generator, self.batch_size)
end

--- compiled(fn) -> fn recorded once and replayed from C (mile.compile) when the run's
--- train.compile is on (the default), fn itself otherwise. For a method's training step:
--- take the batch as tensor arguments, return tensors, read values (:item()) outside.
function Context:compiled(fn)
  return self.cfg["train.compile"] and compile(fn) or fn
end

--- clone(sample, n) -> {steps, loss}: behaviour cloning, `steps` policy updates on the
--- batches sample(generator) returns; {steps = 0} when n (the samples available) is 0.
function Context:clone(sample, n)
  if n == 0 then return { steps = 0 } end -- nothing to clone (no demos, no interventions)
  local opt = self.optimizers.policy
  local step = self:compiled(function(obs, actions)
    local loss = self:nll(obs, actions)
    self:step(loss, { opt })
    return loss
  end)
  local last
  for _ = 1, self.steps do
    last = step(sample(self.generator))
  end
  return { steps = self.steps, loss = last and last:item() }
end

--- labelled(ctx, rows_of) -> obs, labels: the demonstrations followed by the dataset
--- rows that rows_of(nu) (a Lua list of the dataset's nu flags) selects, labelled with
--- the human's action column (which holds the robot's action where nu = 0).
function M.labelled(ctx, rows_of)
  local d, cols = ctx.demos, ctx:columns()
  if not cols then return d.obs, d.actions end
  local rows = rows_of(cols.nu:totable())
  if #rows == 0 then return d.obs, d.actions end
  return T.cat { d.obs, cols.obs:index_select(1, rows) }, T.cat { d.actions, cols.human_action:index_select(1, rows) }
end

return M
