-- The public MILE code's protocol (protocol = "public", docs/reproduction.md) on
-- LunarLander-v3: MILE against HG-DAgger, IWR and BC over 10 seeds, paired by seed
-- (scripts/reproduce.lua). Budget, stated in docs/reproduction.md: 10 rounds x 1 episode,
-- 100 epochs at batch 1024 (the public code: 20 rounds x 300 epochs), best-of selection
-- every 50 epochs on 30 episodes, reported on 100 evaluation episodes; the expert scored on
-- the same states (eval.expert, a reference level).
--   mile batch scripts/batches/public_lunarlander.lua [--workers 2]   -> runs/public-lunarlander/
return {
  name = "public-lunarlander",
  base = { env = "LunarLander-v3", protocol = "public", rounds = 10, epochs = 100, ["eval.every"] = 50,
    eval_episodes = 100, max_episode_steps = 1000, ["eval.expert"] = true },
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" } },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
