-- Smoke test of every study spec (ctest label `smoke`): each scripts/batches/*.lua runs as
-- it is through `mile batch`, at a tiny budget (1 round, 1 episode of at most 30 steps,
-- 1 epoch, 1 evaluation episode, seeds 0 and 1, 2 workers), then scripts/reproduce.lua
-- reads the study specs' outputs. The tables' figures are checked against the jobs'
-- own metrics.csv and state.lua, summarised here independently (t_{0.975, 1} = 12.7062
-- from a statistics table). What it does not check: any result of the study itself.
local T = require "testing"
local sys = require "mile.sys"

local MILE = arg[-1]
if MILE:sub(1, 1) ~= "/" and MILE:find("/", 1, true) then MILE = os.getenv("PWD") .. "/" .. MILE end -- ./mile
local root = debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/") or "."
local tmp = T.tmpdir()
local T975_1 = 12.7062047361747 -- two-sided 95% critical value, 1 degree of freedom

local TINY = { "rounds=1", "episodes_per_round=1", "epochs=1", "eval_episodes=1", "max_episode_steps=30",
  "eval.every=1", "eval.select_episodes=1" }

local function mile_batch(spec, out)
  local cmd = { T.quote(MILE), "batch", T.quote(root .. "/scripts/batches/" .. spec .. ".lua"), "--seeds", "0,1",
    "--workers", "2", "--out", T.quote(out) }
  for _, s in ipairs(TINY) do
    -- eval.every / eval.select_episodes belong to the protocol; every spec accepts them
    cmd[#cmd + 1] = "--set"
    cmd[#cmd + 1] = s
  end
  return T.shell(root, table.concat(cmd, " "), "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1")
end

local function read_lua(path) return assert(loadfile(path, "t", { math = { huge = math.huge } }))() end

-- every job of a finished batch directory: {cell = {seed = {auc, final, interventions, initial, expert}}}
local function jobs_of(out)
  local plan, cells = read_lua(out .. "/batch.lua"), {}
  for _, job in ipairs(plan.jobs) do
    local dir = out .. "/jobs/" .. job.id
    local st = read_lua(dir .. "/state.lua")
    -- from metrics.csv: the success column of every round, the last round's interventions_total
    local text = T.read_file(dir .. "/metrics.csv")
    local header, col, rows = nil, {}, {}
    for line in text:gmatch("[^\n]+") do
      local cells_ = {}
      for c in (line .. ","):gmatch("([^,]*),") do cells_[#cells_ + 1] = c end
      if not header then
        header = cells_
        for i, c in ipairs(cells_) do col[c] = i end
      else rows[#rows + 1] = cells_ end
    end
    local auc = 0
    for _, r in ipairs(rows) do auc = auc + tonumber(r[col.success]) / #rows end
    cells[job.cell] = cells[job.cell] or {}
    cells[job.cell][job.seed] = { auc = auc, final = tonumber(rows[#rows][col.success]),
      interventions = tonumber(rows[#rows][col.interventions_total]), initial = st.initial.success,
      expert = st.expert and st.expert.success, rounds = #rows }
  end
  return cells, plan
end

-- "mean ± ci" as reproduce.lua prints it, computed here for two seeds
local function pm2(a, b, f)
  f = f or "%.3f"
  local mean = (a + b) / 2
  local sd = math.abs(a - b) / math.sqrt(2)
  return (f .. " ± " .. f):format(mean, T975_1 * sd / math.sqrt(2))
end

local SPECS = { "public_lunarlander", "public_ablation", "public_drawer", "public_ablation_drawer",
  "public_tuned_lunarlander", "public_hold_lunarlander",
  "calibrated_lunarlander", "calibrated_drawer", "calibrated_button", "calibrated_peg", "converged_lunarlander",
  "tuned_lunarlander", "cost_sweep", "lambda_sweep", "loss_variants", "mental_ablation" }
local outs, t0 = {}, sys.monotonic()

T.test("every spec in scripts/batches runs through mile batch at a tiny budget", function()
  local listed = {}
  for _, s in ipairs(SPECS) do listed[s] = true end
  local p = io.popen("ls " .. T.quote(root .. "/scripts/batches"))
  for name in p:read("a"):gmatch("([%w_]+)%.lua") do T.truthy(listed[name], "spec " .. name .. " has a smoke run here") end
  p:close()
  for _, spec in ipairs(SPECS) do
    local out = tmp .. "/" .. spec
    local code, text = mile_batch(spec, out)
    T.eq(code, 0, spec .. ": " .. text:sub(-2000))
    local cells, plan = jobs_of(out)
    T.eq(plan.seeds, { 0, 1 }, spec)
    local n = 0
    for _, cell in pairs(cells) do
      for seed = 0, 1 do
        T.truthy(cell[seed], spec .. ": every cell ran both seeds")
        T.eq(cell[seed].rounds, 1)
      end
      n = n + 1
    end
    T.eq(n, #plan.cells, spec .. ": every cell finished")
    T.truthy(sys.stat(out .. "/aggregate.csv") == "file", spec .. ": aggregated")
    outs[spec] = out
  end
  local code, text = T.shell(root, T.quote(MILE) .. " batch scripts/batches/lambda_sweep.lua --seeds 0,x --dry-run")
  T.eq(code, 2, text)
  T.truthy(text:find("--seeds 0,x: expected comma-separated integers >= 0", 1, true), text)
end)

T.test("scripts/reproduce.lua reads the study specs' outputs; its figures match the jobs'", function()
  local doc, results = tmp .. "/reproduction.md", tmp .. "/results.md"
  T.write_file(doc, T.read_file(root .. "/docs/reproduction.md"))
  T.write_file(results, "# Results\n\n<!-- reproduce-headline:begin -->\nold\n<!-- reproduce-headline:end -->\n")
  local code, text = T.shell(root, table.concat({ T.quote(MILE), "scripts/reproduce.lua", "--public",
    T.quote(outs.public_lunarlander), "--ablation", T.quote(outs.public_ablation), "--public-drawer",
    T.quote(outs.public_drawer), "--ablation-drawer", T.quote(outs.public_ablation_drawer), "--public-tuned",
    T.quote(outs.public_tuned_lunarlander), "--public-hold", T.quote(outs.public_hold_lunarlander), "--calibrated",
    T.quote(outs.calibrated_lunarlander), "--calibrated-drawer", T.quote(outs.calibrated_drawer), "--calibrated-button",
    T.quote(outs.calibrated_button), "--calibrated-peg", T.quote(outs.calibrated_peg), "--converged",
    T.quote(outs.converged_lunarlander), "--tuned", T.quote(outs.tuned_lunarlander), "--doc", T.quote(doc), "--doc",
    T.quote(results) }, " "))
  T.eq(code, 0, text)
  for _, heading in ipairs { "### The public code's protocol on LunarLander%-v3",
    "### Which ingredient moves MILE minus HG%-DAgger on LunarLander%-v3 %(AUC, 2 seeds, 1 evaluation episode%)",
    "### The public code's protocol on drawer%-open%-v3",
    "### Which ingredient moves MILE minus HG%-DAgger on drawer%-open%-v3 %(AUC, 2 seeds, 1 evaluation episode%)",
    "### The calibrated protocol on LunarLander%-v3, no demonstrations",
    "### The calibrated protocol on LunarLander%-v3, 3 demonstration episodes",
    "### The calibrated protocol on drawer%-open%-v3, no demonstrations",
    "### The calibrated protocol on drawer%-open%-v3, 1 demonstration episode",
    "### The calibrated protocol on button%-press%-v3, no demonstrations",
    "### The calibrated protocol on peg%-insert%-side%-v3, 1 demonstration episode", "| no holdout |" } do
    T.truthy(text:find(heading), "reproduce prints " .. heading)
  end
  -- the --doc block holds the same text; results.md's headline block the headline table
  T.truthy(T.read_file(doc):find(text:sub(1, 200), 1, true), "the doc block was replaced")
  local headline = text:match("### MILE minus each baseline, every study[^\n]*\n\n(.*)$")
  T.truthy(headline, "reproduce prints the headline table")
  local block = T.read_file(results):match("<!%-%- reproduce%-headline:begin %-%->\n(.-)<!%-%- reproduce%-headline:end")
  T.truthy(block, "the results file keeps its reproduce-headline block")
  T.eq(block:gsub("%s+$", ""), headline:gsub("%s+$", ""), "the headline block was replaced")
  T.eq(select(2, headline:gsub("\n| ", "")), 16, "a headline row for each of the 16 method tables")
  -- each method row of the public table and of the drawer tables, recomputed from the jobs
  local checks = {
    { out = outs.public_lunarlander, section = "### The public code's protocol on LunarLander", prefix = "" },
    { out = outs.public_drawer, section = "### The public code's protocol on drawer", prefix = "" },
    { out = outs.public_tuned_lunarlander, section = "### The public code's protocol on LunarLander%-v3 with the tuned "
      .. "expert\n", prefix = "" },
    { out = outs.public_hold_lunarlander, section = "### The public code's protocol on LunarLander%-v3 with the tuned "
      .. "expert and contiguous takeovers", prefix = "" },
    { out = outs.calibrated_drawer, section = "drawer%-open%-v3, no demonstrations", prefix = "demos=0_" },
    { out = outs.calibrated_drawer, section = "drawer%-open%-v3, 1 demonstration episode", prefix = "demos=1_" },
    { out = outs.calibrated_button, section = "button%-press%-v3, no demonstrations", prefix = "demos=0_" },
    { out = outs.calibrated_peg, section = "peg%-insert%-side%-v3, 1 demonstration episode", prefix = "demos=1_" },
    { out = outs.converged_lunarlander, section = "convergence on one episode, no demonstrations", prefix = "demos=0_",
      initial = "BC cloned to convergence" },
    { out = outs.tuned_lunarlander, section = "with the tuned expert from BC cloned to convergence on one episode, "
      .. "that episode as demonstrations", prefix = "demos=1_", initial = "BC cloned to convergence" },
  }
  for _, c in ipairs(checks) do
    local cells = jobs_of(c.out)
    local block = text:match(c.section .. ".-\n(.-)\n###") or text:match(c.section .. ".-\n(.*)$")
    T.truthy(block, c.section)
    for _, m in ipairs { "mile", "hg_dagger", "iwr", "bc" } do
      local cell = cells[c.prefix .. "method=" .. m:gsub("_", "-")]
      local want = ("| %s | 2 | %s | %s | %s |"):format(m, pm2(cell[0].auc, cell[1].auc), pm2(cell[0].final,
        cell[1].final), pm2(cell[0].interventions, cell[1].interventions, "%.0f"))
      T.truthy(block:find(want, 1, true), ("%s: %s\nin\n%s"):format(c.section, want, block))
      if m ~= "mile" then -- the paired difference, per seed
        local mile = cells[c.prefix .. "method=mile"]
        local d0, d1 = mile[0].auc - cell[0].auc, mile[1].auc - cell[1].auc
        T.truthy(block:find(("| %s | 2 | %s |"):format(m, pm2(d0, d1)), 1, true), c.section .. " paired " .. m)
      end
    end
    local mile = cells[c.prefix .. "method=mile"]
    local ref = ("Reference levels on the same evaluation states (2 seeds): the initial policy (%s) "
      .. "%s; the expert (greedy) %s."):format(c.initial or "the cached BC policy", pm2(mile[0].initial, mile[1].initial),
      pm2(mile[0].expert, mile[1].expert))
    T.truthy(block:find(ref .. " Every score above: 1 evaluation episode a round.", 1, true), c.section .. ": " .. ref)
  end
  -- the headline rows of both public presets, recomputed (AUC then final, vs HG-DAgger, IWR, BC)
  for _, p in ipairs { { out = outs.public_lunarlander, study = "LunarLander-v3, public protocol" },
    { out = outs.public_drawer, study = "drawer-open-v3, public protocol" } } do
    local cells = jobs_of(p.out)
    local mile, want = cells["method=mile"], { ("| %s | 2 |"):format(p.study) }
    for _, key in ipairs { "auc", "final" } do
      for _, m in ipairs { "hg-dagger", "iwr", "bc" } do
        local b = cells["method=" .. m]
        local d0, d1 = mile[0][key] - b[0][key], mile[1][key] - b[1][key]
        local cell = pm2(d0, d1)
        local mean, ci = (d0 + d1) / 2, T975_1 * math.abs(d0 - d1) / 2
        if mean - ci > 0 or mean + ci < 0 then cell = "**" .. cell .. "**" end
        want[#want + 1] = (" %s |"):format(cell)
      end
    end
    want = table.concat(want)
    T.truthy(headline:find(want, 1, true), ("headline: %s\nin\n%s"):format(want, headline))
  end
  -- each row of the two ablation tables, recomputed from the ablation's and the preset's jobs
  local ablations = {
    { out = outs.public_ablation, preset = outs.public_lunarlander, env = "LunarLander%-v3",
      ingredients = { "no_labels_every_step", "sampling_human", "with_demos", "last_policy", "warm_mental",
        "no_holdout" } },
    { out = outs.public_ablation_drawer, preset = outs.public_drawer, env = "drawer%-open%-v3",
      ingredients = { "unshrunk_human", "with_demos", "last_policy", "warm_mental", "no_holdout" } },
  }
  for _, a in ipairs(ablations) do
    local cells, preset = jobs_of(a.out), jobs_of(a.preset)
    local section = "### Which ingredient moves MILE minus HG%-DAgger on " .. a.env
    local block = text:match(section .. ".-\n(.-)\n###") or text:match(section .. ".-\n(.*)$")
    T.truthy(block, section)
    local pmile, phg = preset["method=mile"], preset["method=hg-dagger"]
    local full = ("| full public preset | %s | %s | %s | |"):format(pm2(pmile[0].auc, pmile[1].auc),
      pm2(phg[0].auc, phg[1].auc), pm2(pmile[0].auc - phg[0].auc, pmile[1].auc - phg[1].auc))
    T.truthy(block:find(full, 1, true), ("%s: %s\nin\n%s"):format(section, full, block))
    for _, ing in ipairs(a.ingredients) do
      local id = ing:gsub("_", "-")
      local m, h = cells["variant=mile-" .. id], cells["variant=hg-dagger-" .. id] or phg
      T.truthy(m, section .. ": a MILE cell for " .. ing)
      local d = { m[0].auc - h[0].auc, m[1].auc - h[1].auc }
      local row = ("| %s | %s | %s | %s | %s |"):format((ing:gsub("_", " ")), pm2(m[0].auc, m[1].auc),
        pm2(h[0].auc, h[1].auc), pm2(d[1], d[2]), pm2(d[1] - (pmile[0].auc - phg[0].auc),
        d[2] - (pmile[1].auc - phg[1].auc)))
      T.truthy(block:find(row, 1, true), ("%s: %s\nin\n%s"):format(section, row, block))
    end
  end
  io.stderr:write(("smoke batches: %.1f s in all\n"):format(sys.monotonic() - t0))
end)

T.run()
