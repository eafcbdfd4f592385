-- MILE on button-press-v3 (continuous actions, 4-frame observations): the public code's protocol,
-- one episode per round, cost 150 and scale 200 for the human (COST_LOOKUP).
return {
  env = "button-press-v3",
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
  human = { cost = 150, scale = 200 },
  learner = { cost = 150, scale = 200 },
}
