-- Which ingredient of the public code's protocol moves MILE's difference from HG-DAgger
-- on drawer-open-v3, the continuous task: the preset's ingredients written out, each
-- switched off (or, for demos, on) one at a time. The full preset is public_drawer.lua
-- (the same budget and seeds), which scripts/reproduce.lua (--ablation-drawer) pairs
-- with these cells by seed. The continuous preset's ingredients: the shrunk-action human
-- (human.shrink: the human acts from N(p mu_E, (p sd_E)^2) and MILE's action term uses
-- it; switched off, the human draws from p(a | nu = 1, s) by rejection and MILE's action
-- term is the plain NLL), no demonstrations (on: the cached episode), best-of selection
-- (off: the round's last policy), the random mental-model start (off: warm, MILE only),
-- the 20% hold-out (off: 0). The argmax human and the labels on every step are the
-- discrete code's (public_ablation.lua). Ingredients that act on MILE alone leave
-- HG-DAgger as in the preset, so the baseline runs only the others.
-- Budget: public_drawer.lua's (10 rounds, 100 epochs, batch 1024, 100 evaluation episodes,
-- 10 seeds; docs/reproduction.md section 4).
--   mile batch scripts/batches/public_ablation_drawer.lua [--workers 2]   -> runs/public-ablation-drawer/
local PUBLIC = { env = "drawer-open-v3", rounds = 10, epochs = 100, batch_size = 1024, lr = 1e-4,
  episodes_per_round = 1, eval_episodes = 100, max_episode_steps = 500, demos = 0, ["human.shrink"] = true,
  ["learner.mental_init"] = "random", ["eval.select"] = "best", ["eval.every"] = 50, ["eval.select_episodes"] = 30,
  ["train.holdout"] = 0.2, ["eval.expert"] = true }
return {
  name = "public-ablation-drawer",
  base = PUBLIC,
  grid = { variant = {
    { label = "mile-unshrunk_human", method = "mile", ["human.shrink"] = false },
    { label = "mile-with_demos", method = "mile", demos = 1 },
    { label = "mile-last_policy", method = "mile", ["eval.select"] = "last" },
    { label = "mile-warm_mental", method = "mile", ["learner.mental_init"] = "warm" },
    { label = "mile-no_holdout", method = "mile", ["train.holdout"] = 0 },
    { label = "hg_dagger-unshrunk_human", method = "hg_dagger", ["human.shrink"] = false },
    { label = "hg_dagger-with_demos", method = "hg_dagger", demos = 1 },
    { label = "hg_dagger-last_policy", method = "hg_dagger", ["eval.select"] = "last" },
    { label = "hg_dagger-no_holdout", method = "hg_dagger", ["train.holdout"] = 0 },
  } },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
