-- This project's protocol with the calibrated simulated human on drawer-open-v3
-- (scripts/configs/drawer_open.lua), every method, paired by seed in scripts/reproduce.lua
-- (--calibrated-drawer). The first manipulation task of the reproduction study.
--   mile batch scripts/batches/calibrated_drawer.lua [--workers 2]   -> runs/calibrated-drawer/
return {
  name = "calibrated-drawer",
  base = "scripts/configs/drawer_open.lua",
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" } },
  seeds = { 0, 1, 2, 3, 4 },
}
