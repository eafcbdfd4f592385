-- Mental-model ablation on LunarLander-v3: the learner's mental model pihat trained
-- jointly with the policy (MILE) against pihat frozen at the warm start, the initial
-- behaviour-cloning policy (learner.mental = "frozen": the same loss, no mental-model
-- updates). Also the HG-DAgger baseline on the same budget, for scale.
--   mile batch scripts/batches/mental_ablation.lua [--workers N] -> runs/mental-ablation/
return {
  name = "mental-ablation",
  base = "scripts/configs/lunarlander.lua",
  grid = {
    variant = {
      { label = "learned", method = "mile", ["learner.mental"] = "learned" },
      { label = "frozen", method = "mile", ["learner.mental"] = "frozen" },
      { label = "hg_dagger", method = "hg_dagger" },
    },
  },
  seeds = { 0, 1, 2 },
}
