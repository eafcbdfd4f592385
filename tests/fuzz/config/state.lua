return {
  checkpoint = "checkpoints/round_001",
  episodes = 4,
  format = 2,
  generators = { "0x1f", "abc" },
  metrics = { {
    reward = -150,
    round = 1,
    success = 0.5,
  } },
  round = 1,
  rows = 120,
}
