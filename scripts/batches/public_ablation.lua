-- Which ingredient of the public code's protocol moves MILE's difference from HG-DAgger
-- on LunarLander-v3: the public preset's ingredients written out, each switched off
-- (or, for demos, on) one at a time. The full preset is public_lunarlander.lua (the same
-- budget and seeds), which scripts/reproduce.lua pairs with these cells by seed.
-- Ingredients that act on MILE alone (labels on every step, random mental-model start)
-- leave HG-DAgger as in the preset, so the baseline runs only the others.
--   mile batch scripts/batches/public_ablation.lua [--workers 2]   -> runs/public-ablation/
local PUBLIC = { env = "LunarLander-v3", rounds = 10, epochs = 100, batch_size = 1024, lr = 1e-4,
  episodes_per_round = 1, eval_episodes = 100, max_episode_steps = 1000, demos = 0, ["human.rule"] = "argmax",
  ["learner.mental_init"] = "random", ["eval.select"] = "best", ["eval.every"] = 50, ["eval.select_episodes"] = 30,
  ["train.holdout"] = 0.2, ["eval.expert"] = true }
return {
  name = "public-ablation",
  base = PUBLIC,
  grid = { variant = {
    { label = "mile-no_labels_every_step", method = "mile", ["loss.variant"] = "paper" },
    { label = "mile-sampling_human", method = "mile", ["loss.variant"] = "public", ["human.rule"] = "sample" },
    { label = "mile-with_demos", method = "mile", ["loss.variant"] = "public", demos = 3 },
    { label = "mile-last_policy", method = "mile", ["loss.variant"] = "public", ["eval.select"] = "last" },
    { label = "mile-warm_mental", method = "mile", ["loss.variant"] = "public", ["learner.mental_init"] = "warm" },
    { label = "mile-no_holdout", method = "mile", ["loss.variant"] = "public", ["train.holdout"] = 0 },
    { label = "hg_dagger-sampling_human", method = "hg_dagger", ["human.rule"] = "sample" },
    { label = "hg_dagger-with_demos", method = "hg_dagger", demos = 3 },
    { label = "hg_dagger-last_policy", method = "hg_dagger", ["eval.select"] = "last" },
    { label = "hg_dagger-no_holdout", method = "hg_dagger", ["train.holdout"] = 0 },
  } },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
