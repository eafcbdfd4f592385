-- scripts/reproduce.lua - the reproduction study's tables: paired per-seed differences
-- of MILE against each baseline, with 95% intervals, from finished batch directories.
--
--   mile scripts/reproduce.lua [--public DIR[,DIR]] [--ablation DIR[,DIR]]
--                              [--public-drawer DIR[,DIR]] [--ablation-drawer DIR[,DIR]] [--public-tuned DIR[,DIR]]
--                              [--public-hold DIR[,DIR]] [--calibrated DIR[,DIR]]
--                              [--calibrated-drawer DIR[,DIR]] [--calibrated-button DIR[,DIR]]
--                              [--calibrated-peg DIR[,DIR]] [--converged DIR[,DIR]] [--tuned DIR[,DIR]]
--                              [--doc FILE ...]
--
-- Inputs are the batch directories of scripts/batches/public_lunarlander.lua,
-- public_ablation.lua, public_drawer.lua, public_ablation_drawer.lua, public_tuned_lunarlander.lua,
-- public_hold_lunarlander.lua, calibrated_lunarlander.lua and calibrated_drawer.lua,
-- calibrated_button.lua, calibrated_peg.lua, converged_lunarlander.lua and
-- tuned_lunarlander.lua (default runs/<name>). For every
-- finished job: AUC, the mean success over rounds 1..R (the area under the success
-- curve divided by R: the one-number summary), the final round's success, and the
-- intervention steps used. MILE and a baseline are paired by seed; the interval is
-- mean +- t_{0.975, n-1} sd / sqrt(n) over the seeds' differences. Under each table:
-- the reference levels, the initial policy's success before round 1 and the expert's
-- (runs with eval.expert) on the runs' own evaluation states. Last, one headline table:
-- MILE minus each baseline in every study, AUC and final success, resolved differences in
-- bold. Every table says how many evaluation episodes its scores used (mile rescore
-- brings runs made with fewer to one count). With --doc FILE (repeatable) the tables
-- replace the block `reproduce-results` of that file (docs/reproduction.md) and the
-- headline table its block `reproduce-headline` (docs/results.md).
local sys = require "mile.sys"
local rundir = require "mile.rundir"
local batch = require "mile.batch"
local cli = require "mile.cli"

-- the manipulation tasks' calibrated specs (scripts/batches/calibrated_<short>.lua)
local MANIPULATION = { { short = "drawer", env = "drawer-open-v3" }, { short = "button", env = "button-press-v3" },
  { short = "peg", env = "peg-insert-side-v3" } }

local args = cli.parse("reproduce", { ... }, {
  usage = "usage: mile scripts/reproduce.lua [--public DIR] [--ablation DIR] [--public-drawer DIR] "
    .. "[--ablation-drawer DIR] [--public-tuned DIR] [--public-hold DIR] [--calibrated DIR] "
    .. "[--calibrated-drawer DIR] [--calibrated-button DIR] [--calibrated-peg DIR] [--converged DIR] [--tuned DIR] "
    .. "[--doc FILE ...]",
  options = { public = "value", ablation = "value", public_drawer = "value", ablation_drawer = "value",
    calibrated = "value", calibrated_drawer = "value",
    calibrated_button = "value", calibrated_peg = "value", converged = "value", tuned = "value", public_tuned = "value",
    public_hold = "value",
    doc = "list" },
})

local M = {}

--- jobs(dirs) -> {cell = {seed = {auc, final, interventions, bits, rounds}}} of the finished
--- jobs of one batch directory, or of several separated by commas (the same spec run in
--- parts, e.g. more seeds later: their cells merge).
function M.jobs(dirs)
  local out, any = {}, false
  for dir in dirs:gmatch("[^,]+") do
    if M.read_jobs(dir, out) then any = true end
  end
  return any and out or nil
end

function M.read_jobs(dir, out)
  if sys.stat(dir .. "/batch.lua") ~= "file" then return nil end
  local plan = rundir.read_data(dir .. "/batch.lua")
  for _, job in ipairs(plan.jobs) do
    local jd = dir .. "/jobs/" .. job.id
    local st = sys.stat(jd .. "/state.lua") == "file" and rundir.read_data(jd .. "/state.lua")
    local cfg = sys.stat(jd .. "/config.lua") == "file" and rundir.read_data(jd .. "/config.lua")
    if st and cfg and st.round >= cfg.rounds and #st.metrics > 0 then
      local auc = 0
      for _, row in ipairs(st.metrics) do auc = auc + row.success / #st.metrics end
      local last = st.metrics[#st.metrics]
      out[job.cell] = out[job.cell] or {}
      out[job.cell][job.seed] = { auc = auc, final = last.success, interventions = last.interventions_total,
        bits = st.metrics[1].nu_bits_per_step, initial = st.initial.success, rounds = #st.metrics,
        expert = st.expert and st.expert.success, initial_policy = type(cfg.initial) == "table" and cfg.initial.policy
          or "cached", episodes = st.eval_episodes or cfg.eval_episodes }
    end
  end
  return true
end

local function pm(mean, ci, f)
  f = f or "%.3f"
  if mean ~= mean then return "-" end
  if ci ~= ci then return f:format(mean) end
  return (f .. " ± " .. f):format(mean, ci)
end

--- describe(cell) -> mean ± ci of auc, final, interventions and n.
function M.describe(cell, key)
  local v = {}
  for _, r in pairs(cell or {}) do v[#v + 1] = r[key] end
  local mean, _, ci, n = batch.summary(v)
  return mean, ci, n
end

--- paired(a, b, key) -> mean, ci95, n of a[seed][key] - b[seed][key] over shared seeds.
function M.paired(a, b, key)
  local d = {}
  for seed, ra in pairs(a or {}) do
    local rb = b and b[seed]
    if rb then d[#d + 1] = ra[key] - rb[key] end
  end
  local mean, _, ci, n = batch.summary(d)
  return mean, ci, n
end

-- "mean ± ci" of a cell's key
local function cell_pm(cell, key)
  local mean, ci = M.describe(cell, key)
  return pm(mean, ci)
end

local function verdict(mean, ci)
  if mean ~= mean or ci ~= ci then return "-" end
  if mean - ci > 0 then return "MILE better" elseif mean + ci < 0 then return "MILE worse" end
  return "no difference resolved"
end

--- episodes_text(cells) -> "N evaluation episodes" over every run of the cells (a list
--- of cells): the counts the scores used, "30 and 100 ..." where they differ.
function M.episodes_text(cells)
  local seen, counts = {}, {}
  for _, cell in ipairs(cells) do
    for _, r in pairs(cell) do
      if r.episodes and not seen[r.episodes] then seen[r.episodes], counts[#counts + 1] = true, r.episodes end
    end
  end
  table.sort(counts)
  local last = counts[#counts]
  local words = #counts > 1 and table.concat(counts, ", ", 1, #counts - 1) .. " and " .. last or tostring(last or "?")
  return words .. (last == 1 and #counts == 1 and " evaluation episode" or " evaluation episodes")
end

-- The reference levels under a table: the initial policy's success before round 1 and,
-- where the runs measured it (eval.expert), the expert's, on each run's own evaluation
-- states, over the seeds of the MILE cell; then how many evaluation episodes the
-- table's scores used (cells: every cell of the table).
local function reference_line(cell, lines, cells)
  local init, expert, kind = {}, {}, "cached"
  for _, r in pairs(cell or {}) do
    init[#init + 1] = r.initial
    if r.expert then expert[#expert + 1] = r.expert end
    kind = r.initial_policy or kind
  end
  if #init == 0 then return end
  local a, _, ac = batch.summary(init)
  local text = ("Reference levels on the same evaluation states (%d seeds): the initial policy (%s) %s"):format(#init,
    kind == "converged" and "BC cloned to convergence" or "the cached BC policy", pm(a, ac))
  if #expert > 0 then
    local e, _, ec = batch.summary(expert)
    text = text .. ("; the expert (greedy) %s"):format(pm(e, ec))
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = text .. (". Every score above: %s a round."):format(M.episodes_text(cells))
end

-- The headline table's rows (one per method table that names its study): MILE minus each
-- baseline, paired by seed, in AUC and final success.
local HEADLINE = {}

local function method_table(cells, name_of, methods, lines, study)
  lines[#lines + 1] = "| method | seeds | AUC (mean success over rounds) | final success | interventions |"
  lines[#lines + 1] = "|---|---|---|---|---|"
  for _, m in ipairs(methods) do
    local cell = cells[name_of(m)]
    local a, ac, n = M.describe(cell, "auc")
    local f, fc = M.describe(cell, "final")
    local i, ic = M.describe(cell, "interventions")
    lines[#lines + 1] = ("| %s | %d | %s | %s | %s |"):format(m, n or 0, pm(a, ac), pm(f, fc), pm(i, ic, "%.0f"))
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "| MILE minus | paired seeds | AUC difference | reading | final-success difference | reading |"
  lines[#lines + 1] = "|---|---|---|---|---|---|"
  local mile = cells[name_of("mile")]
  local row = study and { study = study, seeds = select(3, M.describe(mile, "auc")) or 0, auc = {}, final = {} }
  for _, m in ipairs(methods) do
    if m ~= "mile" then
      local d, dc, n = M.paired(mile, cells[name_of(m)], "auc")
      local f, fc = M.paired(mile, cells[name_of(m)], "final")
      lines[#lines + 1] = ("| %s | %d | %s | %s | %s | %s |"):format(m, n or 0, pm(d, dc), verdict(d, dc), pm(f, fc),
        verdict(f, fc))
      if row then row.auc[m], row.final[m] = { d, dc }, { f, fc } end
    end
  end
  if row then HEADLINE[#HEADLINE + 1] = row end
  local table_cells = {}
  for _, m in ipairs(methods) do table_cells[#table_cells + 1] = cells[name_of(m)] or {} end
  reference_line(mile, lines, table_cells)
end

-- "mean ± ci", in bold where the interval excludes 0 (a resolved difference)
local function resolved_pm(d)
  local text = pm(d[1], d[2])
  if d[2] == d[2] and (d[1] - d[2] > 0 or d[1] + d[2] < 0) then return "**" .. text .. "**" end
  return text
end

--- headline(methods) -> one table: MILE minus each baseline in every study reported,
--- AUC and final success (docs/results.md's block `reproduce-headline`).
function M.headline(methods)
  local lines, base = {}, {}
  for _, m in ipairs(methods) do if m ~= "mile" then base[#base + 1] = m end end
  local head, rule = { "| study | seeds |" }, { "|---|---|" }
  for _, key in ipairs { "AUC", "final" } do
    for _, m in ipairs(base) do
      head[#head + 1] = (" %s: MILE minus %s |"):format(key, m)
      rule[#rule + 1] = "---|"
    end
  end
  lines[1], lines[2] = table.concat(head), table.concat(rule)
  for _, row in ipairs(HEADLINE) do
    local cells = { ("| %s | %d |"):format(row.study, row.seeds) }
    for _, key in ipairs { "auc", "final" } do
      for _, m in ipairs(base) do cells[#cells + 1] = (" %s |"):format(resolved_pm(row[key][m])) end
    end
    lines[#lines + 1] = table.concat(cells)
  end
  return table.concat(lines, "\n")
end

-- The converged-initial-policy specs on LunarLander (scripts/batches/converged_lunarlander.lua,
-- tuned_lunarlander.lua): their options, default directories, and how their tables are named.
local CONVERGED = {
  { option = "converged", name = "converged-lunarlander", title = "", label = "" },
  { option = "tuned", name = "tuned-lunarlander", title = " with the tuned expert", label = ", tuned expert" },
}

-- The public code's protocol (scripts/batches/public_<task>.lua) and its ablation
-- (public_ablation<_task>.lua, each ingredient switched one at a time) on each task: the
-- options naming their directories, the defaults, and the ablation's ingredients, as the
-- ablation spec labels its cells (variant=mile-<ingredient>, variant=hg_dagger-<ingredient>);
-- mile_only: the ingredients that act on MILE alone, paired with the preset's HG-DAgger;
-- title, label: what sets the study apart from the task's first, in its heading and in the
-- headline table (the presets with the tuned expert have no ablation).
local PUBLIC = {
  { env = "LunarLander-v3", public = "public", ablation = "ablation", public_dir = "runs/public-lunarlander",
    ablation_dir = "runs/public-ablation",
    ingredients = { "no_labels_every_step", "sampling_human", "with_demos", "last_policy", "warm_mental",
      "no_holdout" }, mile_only = { no_labels_every_step = true, warm_mental = true } },
  { env = "LunarLander-v3", title = " with the tuned expert", label = ", tuned expert", public = "public_tuned",
    public_dir = "runs/public-tuned-lunarlander" },
  { env = "LunarLander-v3", title = " with the tuned expert and contiguous takeovers (human.hold = 25)",
    label = ", tuned expert, held takeovers", public = "public_hold", public_dir = "runs/public-hold-lunarlander" },
  { env = "drawer-open-v3", public = "public_drawer", ablation = "ablation_drawer", public_dir = "runs/public-drawer",
    ablation_dir = "runs/public-ablation-drawer",
    ingredients = { "unshrunk_human", "with_demos", "last_policy", "warm_mental", "no_holdout" },
    mile_only = { warm_mental = true } },
}

-- One task's public-protocol tables: the preset's methods and, with the ablation's runs,
-- MILE minus HG-DAgger under each ingredient switched, paired by seed with the preset.
local function public_tables(study, methods, lines)
  local public = M.jobs(args[study.public] or study.public_dir)
  if public then
    lines[#lines + 1] = ("### The public code's protocol on %s%s"):format(study.env, study.title or "")
    lines[#lines + 1] = ""
    method_table(public, function(m) return "method=" .. m:gsub("_", "-") end, methods, lines,
      ("%s, public protocol%s"):format(study.env, study.label or ""))
    lines[#lines + 1] = ""
  end
  local ablation = study.ablation and M.jobs(args[study.ablation] or study.ablation_dir)
  if public and ablation then
    -- the preset's runs on the seeds the ablation ran
    local seeds = {}
    for _, cell in pairs(ablation) do for seed in pairs(cell) do seeds[seed] = true end end
    local n_seeds = 0
    for _ in pairs(seeds) do n_seeds = n_seeds + 1 end
    local all = { public["method=mile"] or {}, public["method=hg-dagger"] or {} }
    for _, cell in pairs(ablation) do all[#all + 1] = cell end
    lines[#lines + 1] = ("### Which ingredient moves MILE minus HG-DAgger on %s (AUC, %d seeds, %s)"):format(
      study.env, n_seeds, M.episodes_text(all))
    lines[#lines + 1] = ""
    lines[#lines + 1] = "| protocol | MILE AUC | HG-DAgger AUC | MILE minus HG-DAgger | change from the full preset |"
    lines[#lines + 1] = "|---|---|---|---|---|"
    local function only(cell)
      local out = {}
      for s, r in pairs(cell or {}) do if seeds[s] then out[s] = r end end
      return out
    end
    local pm_mile, pm_hg = only(public["method=mile"]), only(public["method=hg-dagger"])
    local base_d, base_c = M.paired(pm_mile, pm_hg, "auc")
    lines[#lines + 1] = ("| full public preset | %s | %s | %s | |"):format(cell_pm(pm_mile, "auc"),
      cell_pm(pm_hg, "auc"), pm(base_d, base_c))
    for _, ing in ipairs(study.ingredients) do
      local id = ing:gsub("_", "-") -- cell ids as mile.batch writes them
      local mcell = ablation["variant=mile-" .. id]
      local hcell = ablation["variant=hg-dagger-" .. id] or (study.mile_only[ing] and pm_hg)
      if mcell and hcell then -- (a cell none of whose runs has finished is left out)
        local d, dc = M.paired(mcell, hcell, "auc")
        -- the change: per seed, (MILE' - HG') - (MILE - HG)
        local change = {}
        for s, r in pairs(mcell) do
          if hcell[s] and pm_mile[s] and pm_hg[s] then
            change[s] = { auc = (r.auc - hcell[s].auc) - (pm_mile[s].auc - pm_hg[s].auc) }
          end
        end
        local c, cc = M.describe(change, "auc")
        lines[#lines + 1] = ("| %s | %s | %s | %s | %s |"):format((ing:gsub("_", " ")), cell_pm(mcell, "auc"),
          cell_pm(hcell, "auc"), pm(d, dc), pm(c, cc))
      end
    end
    lines[#lines + 1] = ""
  end
end

local function report()
  local lines = {}
  local methods = { "mile", "hg_dagger", "iwr", "bc" }
  for _, study in ipairs(PUBLIC) do public_tables(study, methods, lines) end
  local calibrated = M.jobs(args.calibrated or "runs/calibrated-lunarlander")
  if calibrated then
    for _, demos in ipairs { 0, 3 } do
      lines[#lines + 1] = ("### The calibrated protocol on LunarLander-v3, %s"):format(
        demos == 0 and "no demonstrations" or "3 demonstration episodes")
      lines[#lines + 1] = ""
      method_table(calibrated, function(m) return ("demos=%d_method=%s"):format(demos, m:gsub("_", "-")) end, methods,
        lines, ("LunarLander-v3, mile protocol, %s"):format(demos == 0 and "no demos" or "3 demo episodes"))
      lines[#lines + 1] = ""
    end
    local bits = {}
    for _, cell in pairs(calibrated) do for _, r in pairs(cell) do bits[#bits + 1] = r.bits end end
    local b, bc = batch.summary(bits)
    lines[#lines + 1] = ("Information in the calibrated human's decisions in round 1 (the initial policy acting, "
      .. "the human taking over): %s bits per step over %d runs."):format(pm(b, bc), #bits)
    lines[#lines + 1] = ""
  end
  -- LunarLander from BC cloned to convergence on one episode, without and with that episode
  -- as demonstrations: with the cached expert, and with the tuned one
  for _, study in ipairs(CONVERGED) do
    local cells = M.jobs(args[study.option] or ("runs/" .. study.name))
    if cells then
      for _, demos in ipairs { 0, 1 } do
        lines[#lines + 1] = ("### The calibrated protocol on LunarLander-v3%s from BC cloned to convergence on one "
          .. "episode, %s"):format(study.title, demos == 0 and "no demonstrations" or "that episode as demonstrations")
        lines[#lines + 1] = ""
        method_table(cells, function(m) return ("demos=%d_method=%s"):format(demos, m:gsub("_", "-")) end, methods,
          lines, ("LunarLander-v3, mile protocol%s, converged initial policy, %s"):format(study.label,
            demos == 0 and "no demos" or "its episode as demos"))
        lines[#lines + 1] = ""
      end
    end
  end
  for _, task in ipairs(MANIPULATION) do
    local cells = M.jobs(args["calibrated_" .. task.short] or ("runs/calibrated-" .. task.short))
    if cells then
      local by_demos = false -- the spec's demos axis (earlier runs: one demonstration episode only)
      for cell in pairs(cells) do by_demos = by_demos or cell:match("^demos=") ~= nil end
      for _, demos in ipairs(by_demos and { 0, 1 } or { 1 }) do
        lines[#lines + 1] = ("### The calibrated protocol on %s, %s"):format(task.env,
          demos == 0 and "no demonstrations" or "1 demonstration episode")
        lines[#lines + 1] = ""
        method_table(cells, function(m)
          return (by_demos and ("demos=%d_"):format(demos) or "") .. "method=" .. m:gsub("_", "-")
        end, methods, lines, ("%s, mile protocol, %s"):format(task.env, demos == 0 and "no demos" or "1 demo episode"))
        lines[#lines + 1] = ""
      end
    end
  end
  return table.concat(lines, "\n")
end

local text = report()
local headline = M.headline { "mile", "hg_dagger", "iwr", "bc" }
print(text)
print("### MILE minus each baseline, every study (paired by seed; bold: the 95% interval excludes 0)")
print("")
print(headline)
-- --doc FILE (repeatable): the tables replace the file's block `reproduce-results`
-- (docs/reproduction.md), the headline table its block `reproduce-headline` (docs/results.md)
for _, file in ipairs(args.doc) do
  local doc = assert(io.open(file)):read("a")
  local n, m
  doc, n = doc:gsub("(<!%-%- reproduce%-results:begin %-%->\n).-(<!%-%- reproduce%-results:end %-%->)",
    function(a, b) return a .. text .. "\n" .. b end)
  doc, m = doc:gsub("(<!%-%- reproduce%-headline:begin %-%->\n).-(<!%-%- reproduce%-headline:end %-%->)",
    function(a, b) return a .. headline .. "\n" .. b end)
  if n + m == 0 then error(file .. " has no reproduce-results or reproduce-headline block", 0) end
  assert(sys.write_atomic(file, doc))
end
return M
