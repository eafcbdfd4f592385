-- The three loss variants on LunarLander-v3 (docs/intervention.md): the paper's
-- lambda J1 + (1 - lambda) J2, the exact joint likelihood, and the public reference
-- code's categorical over A + 1 outcomes.
--   mile batch scripts/batches/loss_variants.lua [--workers N]   -> runs/loss-variants/
return {
  name = "loss-variants",
  base = "scripts/configs/lunarlander.lua",
  grid = { ["loss.variant"] = { "paper", "joint", "reference" } },
  seeds = { 0, 1, 2 },
}
