-- public_tuned_lunarlander.lua with contiguous takeovers (human.hold = 25: once the
-- preset's argmax human takes over it keeps control for up to 25 steps, half a second of
-- LunarLander, acting from the expert's mode, and hands back at the first held step where
-- the robot's own action is the expert's; human.hold_until = "agree"). Under the preset
-- the human takes over for single steps, only where the robot is wrong, and HG-DAgger
-- collapses in the last rounds (docs/reproduction.md section 4); real people take over
-- for segments. This asks whether segments keep HG-DAgger from falling, and what is left
-- of MILE's margin over it. The same budget and seeds as public_lunarlander.lua.
--   mile batch scripts/batches/public_hold_lunarlander.lua [--workers 2]   -> runs/public-hold-lunarlander/
return {
  name = "public-hold-lunarlander",
  base = { env = "LunarLander-v3", protocol = "public", rounds = 10, epochs = 100, ["eval.every"] = 50,
    eval_episodes = 100, max_episode_steps = 1000, ["eval.expert"] = true, ["expert.policy"] = "tuned",
    ["human.hold"] = 25 },
  grid = { method = { "mile", "hg_dagger", "iwr", "bc" } },
  seeds = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 },
}
