-- This project's protocol with the calibrated simulated human on LunarLander-v3, every
-- method starting from an initial policy weak for lack of data, not of training: BC cloned
-- to convergence on one demonstration episode (initial.policy = "converged",
-- scripts/make_policies.lua --converged), with and without that episode as demonstrations.
-- BC's budget is fixed at 20 steps a round (bc.steps: 20 epochs over its 233 rows); the
-- expert is scored on each run's evaluation states; scripts/reproduce.lua (--converged)
-- prints the converged clone's and the expert's levels under each table.
--   mile batch scripts/batches/converged_lunarlander.lua [--workers 2]   -> runs/converged-lunarlander/
return {
  name = "converged-lunarlander",
  base = "scripts/configs/lunarlander.lua",
  set = { eval_episodes = 100, ["initial.policy"] = "converged", ["initial.demo_episodes"] = 1, ["eval.expert"] = true,
    ["bc.steps"] = 20 },
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" }, demos = { 0, 1 } },
  axes = { "demos", "method" },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
