-- This project's protocol with the calibrated simulated human on button-press-v3
-- (scripts/configs/button_press.lua), with and without the one demonstration episode, every
-- method, paired by seed in scripts/reproduce.lua (--calibrated-button); as
-- calibrated_drawer.lua: BC fixed at 100 steps a round (bc.steps: 100 epochs over its
-- demonstration rows, one batch), the expert scored on each run's evaluation states.
--   mile batch scripts/batches/calibrated_button.lua [--workers 2]   -> runs/calibrated-button/
return {
  name = "calibrated-button",
  base = "scripts/configs/button_press.lua",
  set = { ["eval.expert"] = true, ["bc.steps"] = 100 },
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" }, demos = { 0, 1 } },
  axes = { "demos", "method" },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
