-- MILE on LunarLander-v3 (discrete actions): the main job's default.
-- Human: cost 3, scale 1 (the public code's COST_LOOKUP); the learner assumes the same.
return {
  env = "LunarLander-v3",
  method = "mile",
  seed = 0,
  rounds = 8,
  episodes_per_round = 2,
  epochs = 20,
  batch_size = 256,
  lr = 1e-3,
  eval_episodes = 50,
  loss = { variant = "paper", lambda = 0.5 },
  -- calibrated-human:begin (scripts/calibrate_human.lua: 2591 states, 0.27 bits per step)
  human = { cost = 7.438, scale = 7.433, mental = "accurate" },
  learner = { cost = 7.438, scale = 7.433 },
  -- calibrated-human:end
}
