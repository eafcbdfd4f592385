--- mile.report: the report of a run directory (markdown table + PNG plots) and the
--- comparison table of several runs.
local plot = require "mile.plot"
local sys = require "mile.sys"

local M = {}

local function num(v, f) return v ~= v and "-" or string.format(f or "%.3f", v) end

--- Markdown table of a run's metrics rows.
function M.table(metrics)
  local lines = {
    "| round | success | return | interventions (round / total) | observed rate | predicted rate | J1 | J2 |",
    "|---|---|---|---|---|---|---|---|",
  }
  for _, r in ipairs(metrics) do
    lines[#lines + 1] = ("| %d | %s | %s | %d / %d | %s | %s | %s | %s |"):format(r.round, num(r.success, "%.2f"),
      num(r["return"], "%.1f"), r.interventions, r.interventions_total, num(r.intervention_rate),
      num(r.predicted_rate), num(r.j1), num(r.j2))
  end
  return table.concat(lines, "\n")
end

local function column(metrics, key)
  local out = {}
  for i, r in ipairs(metrics) do out[i] = r[key] end
  return out
end

--- Write <dir>/report.md and its plots for a finished (or partial) run.
function M.write(run)
  local dir, m, cfg = run.dir, run.metrics, run.cfg
  local rounds = column(m, "round")
  local plots = {
    { file = "success_vs_round.png", title = "Success vs round", xlabel = "round", ylabel = "success rate",
      series = { { name = cfg.method, x = rounds, y = column(m, "success") } }, yrange = { 0, 1 } },
    { file = "success_vs_interventions.png", title = "Success vs cumulative interventions",
      xlabel = "interventions so far", ylabel = "success rate",
      series = { { name = cfg.method, x = column(m, "interventions_total"), y = column(m, "success") } }, yrange = { 0, 1 } },
    { file = "intervention_rate.png", title = "Intervention rate vs round", xlabel = "round", ylabel = "rate",
      series = { { name = "observed", x = rounds, y = column(m, "intervention_rate") } } },
  }
  if run.method and run.method.uses_mental then
    table.insert(plots[3].series, { name = "predicted (learner)", x = rounds, y = column(m, "predicted_rate") })
  end
  local made = {}
  for _, p in ipairs(plots) do
    p.path = dir .. "/" .. p.file
    if plot.lines(p) then made[#made + 1] = ("![%s](%s)"):format(p.title, p.file) end
  end
  local text = {
    ("# Run %s"):format(cfg.name), "",
    ("Task `%s`, method `%s`, seed %d, %d rounds x %d episodes, %d epochs%s, human c=%g sigma=%g, learner c=%g sigma=%g.")
      :format(cfg.env, cfg.method, cfg.seed, cfg.rounds, cfg.episodes_per_round, cfg.epochs,
        cfg["loss.variant"] and (", loss %s (lambda %g)"):format(cfg["loss.variant"], cfg["loss.lambda"]) or "",
        cfg["human.cost"], cfg["human.scale"], cfg["learner.cost"], cfg["learner.scale"]),
    "",
    run.initial and ("Initial policy: success %.2f, return %.1f over %d evaluation episodes."):format(
      run.initial.success, run.initial["return"], cfg.eval_episodes) or "",
    "", M.table(m), "", table.concat(made, "\n"), "",
  }
  sys.write_atomic(dir .. "/report.md", table.concat(text, "\n"))
end

--- Mean and sample standard deviation of a list of numbers.
function M.mean_sd(values)
  local n, s, ss = #values, 0, 0
  for _, v in ipairs(values) do s = s + v end
  local mean = s / n
  for _, v in ipairs(values) do ss = ss + (v - mean) ^ 2 end
  return mean, n > 1 and math.sqrt(ss / (n - 1)) or 0
end

--- Markdown table of methods over seeds: success after each round (mean ± sd) and
--- interventions used. results[method] is a list of finished runs (one per seed).
function M.seed_table(results, methods, rounds)
  local head = { "| method |" }
  for r = 1, rounds do head[#head + 1] = (" r%d |"):format(r) end
  head[#head + 1] = " interventions |"
  local lines = { table.concat(head), "|---|" .. string.rep("---|", rounds + 1) }
  for _, method in ipairs(methods) do
    local cells = { "| " .. method .. " |" }
    for r = 1, rounds do
      local v = {}
      for i, run in ipairs(results[method]) do v[i] = run.metrics[r].success end
      cells[#cells + 1] = (" %.2f ± %.2f |"):format(M.mean_sd(v))
    end
    local iv = {}
    for i, run in ipairs(results[method]) do iv[i] = run.metrics[#run.metrics].interventions_total end
    cells[#cells + 1] = (" %.0f ± %.0f |"):format(M.mean_sd(iv))
    lines[#lines + 1] = table.concat(cells)
  end
  return table.concat(lines, "\n")
end

--- A comparison table of finished runs {label = run} (final round of each).
function M.compare(runs, order)
  local lines = {
    "| method | final success | return | interventions used | success by round |",
    "|---|---|---|---|---|",
  }
  for _, label in ipairs(order) do
    local run = runs[label]
    local m = run.metrics
    local last = m[#m]
    local by_round = {}
    for i, r in ipairs(m) do by_round[i] = num(r.success, "%.2f") end
    lines[#lines + 1] = ("| %s | %s | %s | %d | %s |"):format(label, num(last.success, "%.2f"), num(last["return"], "%.1f"),
      last.interventions_total, table.concat(by_round, " "))
  end
  return table.concat(lines, "\n")
end

return M
