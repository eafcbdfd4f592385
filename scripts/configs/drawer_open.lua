-- MILE on drawer-open-v3 (continuous actions, 4-frame observations): the public code's protocol,
-- one episode per round, cost 60 and scale 75 for the human (COST_LOOKUP).
return {
  env = "drawer-open-v3",
  method = "mile",
  seed = 0,
  rounds = 10,
  episodes_per_round = 1,
  epochs = 20,
  batch_size = 256,
  lr = 1e-4,
  eval_episodes = 30,
  max_episode_steps = 500,
  loss = { variant = "paper", lambda = 0.5 },
  human = { cost = 60, scale = 75 },
  learner = { cost = 60, scale = 75 },
}
