-- This project's protocol with the calibrated simulated human on drawer-open-v3
-- (scripts/configs/drawer_open.lua), with and without the one demonstration episode, every
-- method, paired by seed in scripts/reproduce.lua (--calibrated-drawer). BC's budget is
-- fixed at 100 steps a round (bc.steps: 100 epochs over its 84 demonstration rows, one
-- batch), not the shared budget that grows with the dataset BC ignores; each run also
-- scores the expert on its evaluation states (eval.expert, a reference level).
--   mile batch scripts/batches/calibrated_drawer.lua [--workers 2]   -> runs/calibrated-drawer/
return {
  name = "calibrated-drawer",
  base = "scripts/configs/drawer_open.lua",
  set = { ["eval.expert"] = true, ["bc.steps"] = 100 },
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" }, demos = { 0, 1 } },
  axes = { "demos", "method" },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
