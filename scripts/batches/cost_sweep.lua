-- Cost sweep on Drawer-Open (issue 7): the intervention cost c in {10, 50, 100, 200},
-- the simulated human's and the learner's together (no mismatch), 3 seeds each.
--   mile batch scripts/batches/cost_sweep.lua [--workers N]      -> runs/cost-sweep-drawer/
-- A higher c makes the human intervene only on larger value gaps: fewer, more
-- informative interventions.
local cells = {}
for _, c in ipairs { 10, 50, 100, 200 } do
  cells[#cells + 1] = { label = "c" .. c, ["human.cost"] = c, ["learner.cost"] = c }
end
return {
  name = "cost-sweep-drawer",
  base = "scripts/configs/drawer_open.lua",
  grid = { cost = cells },
  seeds = { 0, 1, 2 },
}
