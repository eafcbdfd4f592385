-- This project's protocol with the calibrated, informative simulated human
-- (scripts/configs/lunarlander.lua: scripts/calibrate_human.lua's cost and scale, an
-- accurate mental model) on LunarLander-v3, with and without the demonstrations, for
-- every method, 10 seeds; scripts/reproduce.lua pairs MILE with each baseline by seed.
-- BC's budget is fixed at 60 steps a round (bc.steps: 20 epochs over its 718
-- demonstration rows), not the shared budget that grows with the dataset BC ignores; each
-- run also scores the expert on its evaluation states (eval.expert, a reference level).
--   mile batch scripts/batches/calibrated_lunarlander.lua [--workers 2]   -> runs/calibrated-lunarlander/
return {
  name = "calibrated-lunarlander",
  base = "scripts/configs/lunarlander.lua",
  set = { eval_episodes = 100, ["eval.expert"] = true, ["bc.steps"] = 60 },
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" }, demos = { 0, 3 } },
  axes = { "demos", "method" },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
