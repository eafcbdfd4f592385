-- converged_lunarlander.lua with the tuned expert (expert.policy = "tuned": Gymnasium's
-- heuristic with gains found by scripts/make_policies.lua --tune-expert, cloned; it lands
-- 0.996 of 500 held-out episodes where the cached expert lands 0.78), so that the expert
-- leaves the methods the whole headroom: every method starts from BC cloned to
-- convergence on one demonstration episode, with and without that episode as
-- demonstrations (the episode is Gymnasium's heuristic's, as in converged_lunarlander.lua).
-- The human's and the learner's cost and scale follow section 2's rule on this run's own
-- initial policy and expert:
--   mile scripts/calibrate_human.lua --set expert.policy=tuned --set initial.policy=converged LunarLander-v3
-- (1237 states, 0.335 bits per step). BC 20 steps a round, the expert scored on each run's
-- evaluation states; scripts/reproduce.lua (--tuned) pairs MILE with each baseline by seed.
--   mile batch scripts/batches/tuned_lunarlander.lua [--workers 2]   -> runs/tuned-lunarlander/
return {
  name = "tuned-lunarlander",
  base = "scripts/configs/lunarlander.lua",
  set = { eval_episodes = 100, ["expert.policy"] = "tuned", ["initial.policy"] = "converged",
    ["initial.demo_episodes"] = 1, ["eval.expert"] = true, ["bc.steps"] = 20, ["human.cost"] = 21.25,
    ["human.scale"] = 10.17, ["learner.cost"] = 21.25, ["learner.scale"] = 10.17 },
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" }, demos = { 0, 1 } },
  axes = { "demos", "method" },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
