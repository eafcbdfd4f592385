-- lambda sweep on LunarLander-v3: the weight of the intervention cross-entropy J1
-- against the human-action NLL J2 (J = lambda J1 + (1 - lambda) J2; the paper uses 0.5).
--   mile batch scripts/batches/lambda_sweep.lua [--workers N]    -> runs/lambda-sweep/
return {
  name = "lambda-sweep",
  base = "scripts/configs/lunarlander.lua",
  grid = { ["loss.lambda"] = { 0.1, 0.25, 0.5, 0.75, 0.9 } },
  seeds = { 0, 1, 2 },
}
