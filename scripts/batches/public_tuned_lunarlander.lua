-- public_lunarlander.lua with the tuned expert (expert.policy = "tuned": the clone of
-- Gymnasium's heuristic with searched gains, 0.996 success where the cached expert has
-- 0.78; scripts/make_policies.lua --tune-expert). The public code's human acts from its
-- own expert; which expert is not one of the preset's ingredients, so this asks whether
-- the preset's comparison changes when the expert leaves the methods more to learn.
-- The same budget and seeds as public_lunarlander.lua; the cost table's 3 and 1 as there.
--   mile batch scripts/batches/public_tuned_lunarlander.lua [--workers 2]   -> runs/public-tuned-lunarlander/
return {
  name = "public-tuned-lunarlander",
  base = { env = "LunarLander-v3", protocol = "public", rounds = 10, epochs = 100, ["eval.every"] = 50,
    eval_episodes = 100, max_episode_steps = 1000, ["eval.expert"] = true, ["expert.policy"] = "tuned" },
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" } },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
