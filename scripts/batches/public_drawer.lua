-- The public MILE code's protocol (protocol = "public", docs/reproduction.md) on
-- drawer-open-v3, the continuous task: MILE against HG-DAgger, IWR and BC, paired by seed
-- (scripts/reproduce.lua --public-drawer). On a continuous task the preset's human acts
-- from the shrunk expert N(p mu_E, (p sd_E)^2) and MILE's action term is the likelihood
-- under it (human.shrink); the argmax human and the labels on every step are the discrete
-- code's and do not apply. No demonstrations, best-of selection, a random mental-model
-- start, a fresh 20% hold-out each round, the COST_LOOKUP human (60, 75) with its mental
-- model fixed at the initial policy (the cached BC policy, 0.00 success here).
-- Budget, stated in docs/reproduction.md section 4: 10 rounds x 1 episode (of at most 500
-- steps), 100 epochs at batch 1024, lr 1e-4, best-of selection every 50 epochs on 30
-- episodes: the LunarLander preset's (public_lunarlander.lua; the public code: 20 rounds x
-- 300 epochs); 100 evaluation episodes (a MILE run took 103 s here, 78 s at 30). The
-- study's runs were made at 30 episodes (this spec and public_ablation_drawer.lua, 13
-- cells x 10 seeds, in about 100 minutes on two workers) and scored again on 100 with
-- `mile rescore` (the figures a run at 100 writes, tests/lua/test_rescore.lua). The
-- expert is scored on the same states (eval.expert, a reference level).
--   mile batch scripts/batches/public_drawer.lua [--workers 2]   -> runs/public-drawer/
return {
  name = "public-drawer",
  base = { env = "drawer-open-v3", protocol = "public", rounds = 10, epochs = 100, ["eval.every"] = 50,
    eval_episodes = 100, max_episode_steps = 500, ["eval.expert"] = true },
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" } },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
