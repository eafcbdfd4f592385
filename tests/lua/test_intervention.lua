-- Tests of mile.intervention: agreement with the shared reference vectors (values,
-- gradients, all three losses), fused kernels against the pure-Lua reference_impl,
-- gradcheck, Monte Carlo convergence, a 10,000-case property test, argument errors.
local T = require "testing"
local M = require "mile.tensor"
local ag = require "mile.autograd"
local I = require "mile.intervention"

-- tests/data/vectors beside this file's directory
local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
local VECTORS = here .. "/../data/vectors/"

local function read_csv(name)
  local f = assert(io.open(VECTORS .. name, "r"))
  local header = {}
  for h in f:read("l"):gsub("\r$", ""):gmatch("[^,]+") do header[#header + 1] = h end
  local rows = {}
  for line in f:lines() do
    line = line:gsub("\r$", "") -- the shared vectors have CRLF line ends
    local row, i = {}, 0
    for v in line:gmatch("[^,]+") do
      i = i + 1
      row[header[i]] = tonumber(v)
    end
    rows[#rows + 1] = row
  end
  f:close()
  return rows
end

local function cols(row, prefix, n)
  local out = {}
  for i = 0, n - 1 do out[#out + 1] = row[prefix .. i] end
  return out
end

-- |a - e| <= max(atol, rtol |e|), with a message naming what and where
local function close(a, e, atol, rtol, what)
  local tol = math.max(atol, (rtol or 0) * math.abs(e))
  if not (math.abs(a - e) <= tol) then
    error(("%s: got %.17g, expected %.17g (difference %.3g > %.3g)"):format(what, a, e, math.abs(a - e), tol), 2)
  end
  return math.abs(a - e)
end

local function flat(t) return t:contiguous():view { -1 }:totable() end

local function all_finite(t, what)
  for i, v in ipairs(flat(t)) do
    if v ~= v or v == math.huge or v == -math.huge then error(("%s: element %d is %s"):format(what, i, v), 2) end
  end
end

local VARIANTS = { "paper", "joint", "reference" }
local worst = {}
local function note(key, err) worst[key] = math.max(worst[key] or 0, err) end

-- ---- discrete vectors --------------------------------------------------------------------

local discrete_rows = read_csv("probit_discrete.csv")

T.test("discrete: every vector row, values and per-sample losses with gradients (float64)", function()
  T.eq(#discrete_rows, 60)
  for _, r in ipairs(discrete_rows) do
    local where = "case " .. r.case
    for _, variant in ipairs(VARIANTS) do
      local lh = M.from({ cols(r, "lh_", 4) }, "float64"):requires_grad(true)
      local lm = M.from({ cols(r, "lm_", 4) }, "float64"):requires_grad(true)
      local m = I.discrete { policy_logits = lh, mental_logits = lm, cost = r.c, scale = r.sigma }
      if variant == "paper" then
        local d, q = flat(m.delta), flat(m.q)
        for a = 1, 4 do
          note("discrete delta", close(d[a], r["delta_" .. (a - 1)], 1e-12, 1e-12, where .. " delta"))
          note("discrete q", close(q[a], r["q_" .. (a - 1)], 1e-12, 1e-10, where .. " q"))
        end
        note("discrete p", close(m.p:item(), r.p, 1e-12, 0, where .. " p"))
        note("discrete logp", close(m.logp:item(), r.logp, 1e-12, 1e-12, where .. " logp"))
        note("discrete log1mp", close(m.log1mp:item(), r.log1mp, 1e-12, 1e-12, where .. " log1mp"))
      end
      local l = I.loss { model = m, variant = variant, lambda = 0.5, nu = M.from({ r.nu }, "float64"),
                         human_action = M.from({ r.ah }, "float64") }
      note("discrete loss", close(l.loss:item(), r[variant], 1e-12, 1e-12, where .. " " .. variant))
      l.loss:backward()
      local gh, gm = flat(lh.grad), flat(lm.grad)
      for a = 1, 4 do
        local k = a - 1
        note("discrete grad", close(gh[a], r["d" .. variant .. "_h_" .. k], 1e-12, 1e-9, where .. " d" .. variant .. "_h"))
        note("discrete grad", close(gm[a], r["d" .. variant .. "_m_" .. k], 1e-12, 1e-9, where .. " d" .. variant .. "_m"))
      end
    end
  end
end)

-- all 60 rows in one batch, cost and scale per sample
local function discrete_batch(dtype)
  local lh, lm, c, s, nu, ah = {}, {}, {}, {}, {}, {}
  for i, r in ipairs(discrete_rows) do
    lh[i], lm[i] = cols(r, "lh_", 4), cols(r, "lm_", 4)
    c[i], s[i], nu[i], ah[i] = r.c, r.sigma, r.nu, r.ah
  end
  return M.from(lh, dtype):requires_grad(true), M.from(lm, dtype):requires_grad(true), M.from(c, dtype),
      M.from(s, dtype), M.from(nu, dtype), M.from(ah, dtype)
end

for _, dtype in ipairs { "float64", "float32" } do
  T.test("discrete: the vectors as one batch with per-sample cost and scale (" .. dtype .. ")", function()
    local tol = dtype == "float64" and 1e-11 or 2e-5
    local B = #discrete_rows
    for _, variant in ipairs { "joint", "reference" } do
      local lh, lm, c, s, nu, ah = discrete_batch(dtype)
      local m = I.discrete { policy_logits = lh, mental_logits = lm, cost = c, scale = s }
      T.eq(m.logp:dtype(), dtype)
      local lp, l1, p = flat(m.logp), flat(m.log1mp), flat(m.p)
      local expected = 0
      for i, r in ipairs(discrete_rows) do
        close(lp[i], r.logp, tol, tol, "logp row " .. i)
        close(l1[i], r.log1mp, tol, tol, "log1mp row " .. i)
        close(p[i], r.p, tol, 0, "p row " .. i)
        expected = expected + r[variant] / B
      end
      local l = I.loss { model = m, variant = variant, nu = nu, human_action = ah }
      close(l.loss:item(), expected, tol, tol, variant .. " batch loss")
      l.loss:backward()
      local gh, gm = lh.grad:totable(), lm.grad:totable()
      for i, r in ipairs(discrete_rows) do
        for a = 1, 4 do
          close(gh[i][a], r["d" .. variant .. "_h_" .. (a - 1)] / B, tol, 1e-4, variant .. " batch grad h")
          close(gm[i][a], r["d" .. variant .. "_m_" .. (a - 1)] / B, tol, 1e-4, variant .. " batch grad m")
        end
      end
    end
    -- paper: J1 over all samples, J2 over the intervention samples
    local lh, lm, c, s, nu, ah = discrete_batch(dtype)
    local m = I.discrete { policy_logits = lh, mental_logits = lm, cost = c, scale = s }
    local ce, nll, n1 = 0, 0, 0
    for _, r in ipairs(discrete_rows) do
      local ce_i = -(r.nu == 1 and r.logp or r.log1mp)
      ce = ce + ce_i / B
      if r.nu == 1 then nll, n1 = nll + (r.reference - ce_i), n1 + 1 end
    end
    local l = I.loss { model = m, variant = "paper", lambda = 0.3, nu = nu, human_action = ah }
    close(l.j1:item(), ce, tol, tol, "paper j1")
    close(l.j2:item(), nll / n1, tol, tol, "paper j2")
    close(l.loss:item(), 0.3 * ce + 0.7 * nll / n1, tol, tol, "paper loss")
  end)
end

-- ---- Gaussian vectors ------------------------------------------------------------------------

local gaussian_rows = read_csv("probit_gaussian.csv")

T.test("gaussian: every vector row, K, p and dp/d(mu, log_sd, m, log_s)", function()
  T.eq(#gaussian_rows, 40)
  for _, r in ipairs(gaussian_rows) do
    local D, where = r.D, "case " .. r.case
    local function leaf(prefix) return M.from({ cols(r, prefix, D) }, "float64"):requires_grad(true) end
    local mu, lsd, m, ls = leaf("mu_"), leaf("lsd_"), leaf("m_"), leaf("ls_")
    local g = I.gaussian { mu = mu, log_sd = lsd, mental_mu = m, mental_log_sd = ls, cost = r.c, scale = r.sigma }
    note("gaussian K", close(g.K:item(), r.K, 1e-12, 1e-12, where .. " K"))
    note("gaussian p", close(g.p:item(), r.p, 1e-6, 0, where .. " p"))
    g.p:sum():backward()
    for name, t in pairs { mu = mu, lsd = lsd, m = m, ls = ls } do
      local gr = flat(t.grad)
      for d = 1, D do
        note("gaussian dp", close(gr[d], r["dp_" .. name .. "_" .. (d - 1)], 1e-6, 1e-4, where .. " dp_" .. name))
      end
    end
  end
end)

T.test("gaussian: the vectors batched by D with per-sample cost and scale", function()
  for D = 1, 4 do
    local rows = {}
    for _, r in ipairs(gaussian_rows) do if r.D == D then rows[#rows + 1] = r end end
    if #rows > 0 then
      local function mat(prefix)
        local v = {}
        for i, r in ipairs(rows) do v[i] = cols(r, prefix, D) end
        return M.from(v, "float64"):requires_grad(true)
      end
      local c, s = {}, {}
      for i, r in ipairs(rows) do c[i], s[i] = r.c, r.sigma end
      local mu, lsd = mat("mu_"), mat("lsd_")
      local g = I.gaussian { mu = mu, log_sd = lsd, mental_mu = mat("m_"), mental_log_sd = mat("ls_"),
                             cost = M.from(c, "float64"), scale = M.from(s, "float64") }
      g.p:sum():backward()
      local p, gmu = flat(g.p), mu.grad:totable()
      for i, r in ipairs(rows) do
        close(p[i], r.p, 1e-6, 0, "batched p")
        for d = 1, D do close(gmu[i][d], r["dp_mu_" .. (d - 1)], 1e-6, 1e-4, "batched dp_mu") end
      end
    end
  end
end)

T.test("gaussian: ln p and ln(1-p) far into both tails (independent adaptive quadrature)", function()
  local rows = read_csv("probit_gaussian_tails.csv")
  T.truthy(#rows > 1000)
  local core = require "mile.intervention.core"
  for _, r in ipairs(rows) do
    local lp, l1 = core.gaussian_logp(r.D, r.t0, r.sigma)
    local where = ("D=%d t0=%g sigma=%g"):format(r.D, r.t0, r.sigma)
    note("tails p", close(math.exp(lp), math.exp(r.logp), 1e-7, 0, where .. " p"))
    note("tails 1-p", close(math.exp(l1), math.exp(r.log1mp), 1e-7, 0, where .. " 1-p"))
    -- relative accuracy of the logs (a ln p of -4e6 is known to 1e-5 relative)
    close(lp, r.logp, 1e-6, 1e-5, where .. " ln p")
    close(l1, r.log1mp, 1e-6, 1e-5, where .. " ln(1-p)")
    note("tails rel ln", math.max(math.abs(lp - r.logp) / math.max(1, math.abs(r.logp)),
                                  math.abs(l1 - r.log1mp) / math.max(1, math.abs(r.log1mp))))
  end
end)

-- ---- fused kernels against the pure-Lua reference ---------------------------------------------

local function random_discrete(gen, B, A, scale_logits)
  local lh = (M.randn({ B, A }, gen, "float64") * (scale_logits or 2)):requires_grad(true)
  local lm = (M.randn({ B, A }, gen, "float64") * (scale_logits or 2)):requires_grad(true)
  local c = (M.rand({ B }, gen, "float64") * 3):requires_grad(true)
  local s = (M.rand({ B }, gen, "float64") * 2 + 0.2):requires_grad(true)
  local nu = M.rand({ B }, gen, "float64"):gt(0.5)
  local ah = (M.rand({ B }, gen, "float64") * A):sub(0.5):clamp(0, A - 1)
  ah = M.from((function()
    local v = {}
    for i, x in ipairs(ah:totable()) do v[i] = math.floor(x + 0.5) end
    return v
  end)(), "float64")
  return lh, lm, c, s, nu, ah
end

local function grads_of(leaves)
  local out = {}
  for i, x in ipairs(leaves) do out[i] = x.grad and flat(x.grad) or {} end
  return out
end

T.test("discrete: fused kernel equals reference_impl (float64, 1e-10), outputs and all gradients", function()
  local gen = M.Generator(7)
  local lh, lm, c, s, nu, ah = random_discrete(gen, 16, 5)
  local leaves = { lh, lm, c, s }
  for _, variant in ipairs(VARIANTS) do
    local results = {}
    for k, impl in ipairs { I, I.reference_impl } do
      for _, x in ipairs(leaves) do x:zero_grad() end
      local m = impl.discrete { policy_logits = lh, mental_logits = lm, cost = c, scale = s }
      local l = impl.loss { model = m, variant = variant, lambda = 0.4, nu = nu, human_action = ah }
      l.loss:backward()
      results[k] = { out = { flat(m.delta), flat(m.q), flat(m.log_q), flat(m.log_pi), flat(m.logp), flat(m.log1mp),
                             { l.loss:item(), l.j1:item(), l.j2:item() } }, grads = grads_of(leaves) }
    end
    T.near(results[1].out, results[2].out, 1e-10, variant .. " outputs")
    T.near(results[1].grads, results[2].grads, 1e-10, variant .. " gradients")
  end
end)

T.test("gaussian: fused kernel equals reference_impl (float64, 1e-10), with logq and all gradients", function()
  local gen = M.Generator(11)
  local B, D = 12, 3
  local function leaf(scale, shift) return (M.randn({ B, D }, gen, "float64") * scale + shift):requires_grad(true) end
  local mu, lsd, m, ls = leaf(1, 0), leaf(0.3, -0.2), leaf(1, 0.3), leaf(0.3, -0.4)
  local c = (M.rand({ B }, gen, "float64") * 3):requires_grad(true)
  local s = (M.rand({ B }, gen, "float64") * 2 + 0.3):requires_grad(true)
  local nu = M.rand({ B }, gen, "float64"):gt(0.4)
  local ah = M.randn({ B, D }, gen, "float64")
  local leaves = { mu, lsd, m, ls, c, s }
  for _, variant in ipairs(VARIANTS) do
    local results = {}
    for k, impl in ipairs { I, I.reference_impl } do
      for _, x in ipairs(leaves) do x:zero_grad() end
      local g = impl.gaussian { mu = mu, log_sd = lsd, mental_mu = m, mental_log_sd = ls, cost = c, scale = s }
      local l = impl.loss { model = g, variant = variant, lambda = 0.6, nu = nu, human_action = ah }
      l.loss:backward()
      results[k] = { out = { flat(g.K), flat(g.logp), flat(g.log1mp), flat(g:logq(ah)), l.loss:item() },
                     grads = grads_of(leaves) }
    end
    T.near(results[1].out, results[2].out, 1e-10, variant .. " outputs")
    T.near(results[1].grads, results[2].grads, 1e-10, variant .. " gradients")
  end
end)

T.test("gradcheck: fused discrete, Gaussian and loss nodes (float64 central differences)", function()
  local gen = M.Generator(3)
  local lh, lm, c, s = random_discrete(gen, 4, 3)
  T.truthy(ag.gradcheck(function(a, b, cc, ss)
    return I.discrete { policy_logits = a, mental_logits = b, cost = cc, scale = ss }.packed
  end, { lh, lm, c, s }))
  local B, D = 3, 2
  local function leaf(sc, sh) return (M.randn({ B, D }, gen, "float64") * sc + sh):requires_grad(true) end
  local mu, lsd, m, ls = leaf(1, 0), leaf(0.3, 0), leaf(1, 0), leaf(0.3, -0.3)
  local cg = M.from({ 0.5, 1.0, 0.2 }, "float64"):requires_grad(true)
  local sg = M.from({ 0.7, 1.5, 3.0 }, "float64"):requires_grad(true)
  local ok, msg = ag.gradcheck(function(a, b, cc, d, e, f)
    return I.gaussian { mu = a, log_sd = b, mental_mu = cc, mental_log_sd = d, cost = e, scale = f }.packed
  end, { mu, lsd, m, ls, cg, sg }, { atol = 1e-6, rtol = 1e-4 })
  T.truthy(ok, msg)
  local nu, ah = M.from({ 1, 0, 1, 0 }, "float64"), M.from({ 2, 0, 1, 1 }, "float64")
  for _, variant in ipairs(VARIANTS) do
    ok, msg = ag.gradcheck(function(a, b)
      local mm = I.discrete { policy_logits = a, mental_logits = b, cost = 0.5, scale = 0.8 }
      return I.loss { model = mm, variant = variant, nu = nu, human_action = ah }.loss
    end, { lh, lm })
    T.truthy(ok, msg)
  end
end)

-- ---- Monte Carlo --------------------------------------------------------------------------------

T.test("mc: converges to the quadrature like 1/sqrt(N) (fixed seed, statistical bound)", function()
  local gen = M.Generator(2024)
  local B, D = 64, 3
  local mu = M.randn({ B, D }, gen, "float64") * 0.5
  local lsd = M.randn({ B, D }, gen, "float64") * 0.2
  local m = mu + M.randn({ B, D }, gen, "float64") * 0.5
  local ls = lsd + M.randn({ B, D }, gen, "float64") * 0.2 - 0.3
  local args = { mu = mu, log_sd = lsd, mental_mu = m, mental_log_sd = ls, cost = 1.0, scale = 1.0 }
  local exact = flat(I.gaussian(args).p)
  -- rms error over the 64 states times sqrt(N): about 0.3 for these states whatever N
  -- (measured over seeds: 0.25 to 0.35). A bias would make it grow with N, a wrong
  -- rate drift; the band [0.15, 0.5] is several standard errors wide.
  local scaled = {}
  for _, n in ipairs { 64, 1024, 16384 } do
    args.method, args.samples, args.generator = "mc", n, M.Generator(n)
    local p = flat(I.gaussian(args).p)
    local acc = 0
    for i = 1, B do acc = acc + (p[i] - exact[i]) ^ 2 end
    scaled[#scaled + 1] = math.sqrt(acc / B) * math.sqrt(n)
    T.truthy(scaled[#scaled] > 0.15 and scaled[#scaled] < 0.5,
      ("N = %d: rms error x sqrt(N) = %.3g outside [0.15, 0.5]"):format(n, scaled[#scaled]))
  end
  print(("# mc rms error x sqrt(N): N=64 %.3f, N=1024 %.3f, N=16384 %.3f"):format(table.unpack(scaled)))
  -- the MC graph is differentiable (reparameterised)
  local mug = mu:clone():requires_grad(true)
  args.mu, args.samples, args.generator = mug, 256, M.Generator(5)
  local g = I.gaussian(args)
  I.loss { model = g, variant = "paper", nu = M.ones({ B }, "float64"), human_action = m }.loss:backward()
  all_finite(mug.grad, "mc gradient")
end)

-- ---- property test --------------------------------------------------------------------------------

T.test("property: 10,000 random extreme cases give finite outputs and gradients, p in [0, 1]", function()
  local gen = M.Generator(99)
  local function uniform(shape, lo, hi, dtype) return M.rand(shape, gen, dtype) * (hi - lo) + lo end
  local function log_uniform(n, lo, hi, dtype) return (uniform({ n }, math.log(lo), math.log(hi), dtype)):exp() end
  local count = 0
  for _, dtype in ipairs { "float64", "float32" } do
    -- discrete: 4 batches of 1250 rows
    for _, A in ipairs { 2, 4, 7, 18 } do
      local B = 1250
      local lh = uniform({ B, A }, -1e3, 1e3, dtype):requires_grad(true)
      local lm = uniform({ B, A }, -1e3, 1e3, dtype):requires_grad(true)
      local c = uniform({ B }, 0, 1e4, dtype):requires_grad(true)
      local s = log_uniform(B, 1e-3, 1e3, dtype):requires_grad(true)
      local nu = M.rand({ B }, gen, dtype):gt(0.5)
      local ah = (M.rand({ B }, gen, dtype) * A - 0.5):clamp(0, A - 1)
      ah = M.from((function() local v = {} for i, x in ipairs(ah:totable()) do v[i] = math.floor(x + 0.5) end return v end)(), dtype)
      for _, variant in ipairs(VARIANTS) do
        for _, x in ipairs { lh, lm, c, s } do x:zero_grad() end
        local m = I.discrete { policy_logits = lh, mental_logits = lm, cost = c, scale = s }
        for _, k in ipairs { "delta", "q", "log_q", "log_pi", "logp", "log1mp" } do all_finite(m[k], "discrete " .. k) end
        for _, v in ipairs(flat(m.p)) do T.truthy(v >= 0 and v <= 1, "p out of [0, 1]: " .. v) end
        local l = I.loss { model = m, variant = variant, nu = nu, human_action = ah }
        all_finite(l.loss, "discrete loss " .. variant)
        l.loss:backward()
        for _, x in ipairs { lh, lm, c, s } do all_finite(x.grad, "discrete gradient " .. variant) end
      end
      count = count + B
    end
    -- Gaussian: D = 1..16, 313 rows each
    for D = 1, 16 do
      local B = 313
      local mu = uniform({ B, D }, -1e3, 1e3, dtype):requires_grad(true)
      local lsd = uniform({ B, D }, -7, 7, dtype):requires_grad(true)
      local m = uniform({ B, D }, -1e3, 1e3, dtype):requires_grad(true)
      local ls = uniform({ B, D }, -7, 7, dtype):requires_grad(true)
      local c = uniform({ B }, 0, 1e4, dtype):requires_grad(true)
      local s = log_uniform(B, 1e-3, 1e3, dtype):requires_grad(true)
      local nu = M.rand({ B }, gen, dtype):gt(0.5)
      local ah = uniform({ B, D }, -1e3, 1e3, dtype)
      for _, variant in ipairs(VARIANTS) do
        for _, x in ipairs { mu, lsd, m, ls, c, s } do x:zero_grad() end
        local g = I.gaussian { mu = mu, log_sd = lsd, mental_mu = m, mental_log_sd = ls, cost = c, scale = s }
        all_finite(g.packed, "gaussian outputs")
        for _, v in ipairs(flat(g.p)) do T.truthy(v >= 0 and v <= 1, "p out of [0, 1]: " .. v) end
        local l = I.loss { model = g, variant = variant, nu = nu, human_action = ah }
        all_finite(l.loss, "gaussian loss " .. variant)
        l.loss:backward()
        for _, x in ipairs { mu, lsd, m, ls, c, s } do all_finite(x.grad, "gaussian gradient " .. variant) end
      end
      count = count + B
    end
  end
  T.truthy(count >= 20000, "cases: " .. count) -- 10,000 per dtype
end)

T.test("property: the whole range (cost, scale to 1e300, logits, means, log-sds to +-1e300) gives no NaN", function()
  -- float32 stops at +-1e38. Outputs may be infinite where the exact value is (K beyond
  -- the range, ln p below -DBL_MAX, the loss then +inf), never NaN; p in [0, 1];
  -- gradients finite (saturated). Before the rescaled tails: NaN from cost = 1e300 on.
  local seed = 12345
  local function u() -- a small LCG: independent of the generator under test
    seed = (seed * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
    return (seed >> 11) / 2 ^ 52
  end
  local function wide(hi, signed)
    local v = math.exp(math.log(1e-3) + u() * (math.log(hi) - math.log(1e-3)))
    if signed and u() < 0.5 then v = -v end
    return v
  end
  local function no_nan(t, what)
    for i, v in ipairs(flat(t)) do if v ~= v then error(("%s: element %d is NaN"):format(what, i), 2) end end
  end
  for _, dtype in ipairs { "float64", "float32" } do
    local hi, lo = dtype == "float64" and 1e300 or 1e38, dtype == "float64" and 1e-300 or 1e-38
    local function mat(B, n, f)
      local rows = {}
      for b = 1, B do
        local r = {}
        for j = 1, n do r[j] = f() end
        rows[b] = r
      end
      return M.from(rows, dtype):requires_grad(true)
    end
    local function vec(B, f) local v = {} for b = 1, B do v[b] = f() end return M.from(v, dtype):requires_grad(true) end
    local B = 200
    local nu = vec(B, function() return u() < 0.5 and 1 or 0 end):detach()
    for _, A in ipairs { 2, 5 } do
      local lh, lm = mat(B, A, function() return wide(hi, true) end), mat(B, A, function() return wide(hi, true) end)
      local c, s = vec(B, function() return wide(hi) end), vec(B, function() return math.exp(math.log(lo) + u() * (math.log(hi) - math.log(lo))) end)
      local ah = M.from((function() local v = {} for b = 1, B do v[b] = math.floor(u() * A) end return v end)(), dtype)
      for _, variant in ipairs(VARIANTS) do
        for _, x in ipairs { lh, lm, c, s } do x:zero_grad() end
        local m = I.discrete { policy_logits = lh, mental_logits = lm, cost = c, scale = s }
        no_nan(m.packed, "discrete outputs")
        for _, v in ipairs(flat(m.p)) do T.truthy(v >= 0 and v <= 1, "p out of [0, 1]: " .. v) end
        local l = I.loss { model = m, variant = variant, nu = nu, human_action = ah }
        no_nan(l.loss, "discrete loss " .. variant)
        l.loss:backward()
        for _, x in ipairs { lh, lm, c, s } do all_finite(x.grad, "discrete gradient " .. variant) end
      end
    end
    for _, D in ipairs { 1, 3, 6 } do
      local function lsd() return u() < 0.75 and (u() * 1600 - 800) or wide(hi, true) end
      local mu, lsdv = mat(B, D, function() return wide(hi, true) end), mat(B, D, lsd)
      local m, ls = mat(B, D, function() return wide(hi, true) end), mat(B, D, lsd)
      local c, s = vec(B, function() return wide(hi) end), vec(B, function() return math.exp(math.log(lo) + u() * (math.log(hi) - math.log(lo))) end)
      local ah = mat(B, D, function() return wide(hi, true) end):detach()
      -- the kernel and the loss kernel: the action terms (log_pi_at, logq: tensor ops on
      -- z = (a - mu)/sd) are left out at this range, through a model table of our own
      local zero = M.zeros({ B }, dtype)
      for _, variant in ipairs { "paper", "reference" } do
        for _, x in ipairs { mu, lsdv, m, ls, c, s } do x:zero_grad() end
        local g = I.gaussian { mu = mu, log_sd = lsdv, mental_mu = m, mental_log_sd = ls, cost = c, scale = s }
        no_nan(g.packed, "gaussian outputs")
        for _, v in ipairs(flat(g.p)) do T.truthy(v >= 0 and v <= 1, "p out of [0, 1]: " .. v) end
        local model = { logp = g.logp, log1mp = g.log1mp, log_pi_at = function() return zero end }
        local l = I.loss { model = model, variant = variant, nu = nu, human_action = ah }
        no_nan(l.loss, "gaussian loss " .. variant)
        l.loss:backward()
        for _, x in ipairs { mu, lsdv, m, ls, c, s } do all_finite(x.grad, "gaussian gradient " .. variant) end
      end
    end
  end
end)

-- ---- API ----------------------------------------------------------------------------------------

T.test("api: errors name the argument and the mismatch", function()
  local a = M.zeros({ 3, 4 }, "float64")
  T.raises(function() I.discrete { policy_logits = a, mental_logits = M.zeros({ 3, 5 }, "float64"), cost = 1, scale = 1 } end,
    "mental_logits has shape {3,5}, expected {3,4}")
  T.raises(function() I.discrete { policy_logits = a, mental_logits = M.zeros({ 3, 4 }), cost = 1, scale = 1 } end,
    "mental_logits is float32 but policy_logits is float64")
  T.raises(function() I.discrete { policy_logits = a, mental_logits = a, cost = 1, scale = 0 } end, "scale must be positive")
  T.raises(function() I.discrete { policy_logits = a, mental_logits = a, cost = 1 } end, "scale is missing")
  T.raises(function() I.discrete { policy_logits = a, mental_logits = a, cost = M.zeros({ 2 }, "float64"), scale = 1 } end,
    "cost has shape {2}, expected one value or {3}")
  T.raises(function() I.gaussian { mu = a, log_sd = a, mental_mu = a, mental_log_sd = M.zeros({ 4 }, "float64"), cost = 1, scale = 1 } end,
    "mental_log_sd has shape {4}")
  T.raises(function() I.gaussian { mu = a, log_sd = a, mental_mu = a, mental_log_sd = a, cost = 1, scale = 1, method = "mc" } end,
    "generator")
  local m = I.discrete { policy_logits = a, mental_logits = a, cost = 1, scale = 1 }
  T.raises(function() I.loss { model = m, variant = "nope", nu = { 0, 0, 0 }, human_action = { 0, 0, 0 } } end, "variant must be")
  T.raises(function() I.loss { model = m, nu = { 1, 1, 1 }, human_action = { 0, 4, 0 } } end,
    "human_action: sample 2 has action value 4, expected an integer in 0..3")
  T.raises(function() I.loss { model = m, nu = { 1, 1 }, human_action = { 0, 1, 0 } } end, "nu has 2 values for a batch of 3")
  -- rows without intervention may hold any filler action
  local l = I.loss { model = m, nu = { 0, 1, 0 }, human_action = { -1, 2, 99 } }
  T.near(l.j2:item(), math.log(4), 1e-12)
  -- tables and numbers are accepted where tensors are natural, outputs keep the dtype
  T.eq(I.discrete { policy_logits = M.zeros({ 2, 3 }), mental_logits = M.zeros({ 2, 3 }), cost = 0, scale = 1 }.q:dtype(),
    "float32")
end)

T.test("api: every number is checked where it enters (nu, lambda, logits, means, actions); check = false", function()
  local a = M.zeros({ 3, 4 }, "float64")
  local m = I.discrete { policy_logits = a, mental_logits = a, cost = 1, scale = 1 }
  -- nu = 2 or NaN used to count as an intervention; lambda outside [0, 1] was accepted
  T.raises(function() I.loss { model = m, nu = { 0, 2, 0 }, human_action = { 0, 0, 0 } } end,
    "nu must hold 0/1 flags, got 2.0 at sample 2")
  T.raises(function() I.loss { model = m, nu = { 0, 0, 0 / 0 }, human_action = { 0, 0, 0 } } end, "at sample 3")
  T.raises(function() I.loss { model = m, nu = { 0, 2, 0 }, human_action = { 0, 0, 0 }, check = false } end,
    "nu must be 0 or 1, got 2 at sample 1 %(0%-based%)") -- the kernel's own check stays on
  for _, lambda in ipairs { -0.1, 1.5, 0 / 0 } do
    T.raises(function() I.loss { model = m, nu = { 0, 1, 0 }, human_action = { 0, 0, 0 }, lambda = lambda } end,
      "lambda must be a number in %[0, 1%]")
  end
  -- NaN or inf logits used to give a NaN loss
  local bad = M.from({ { 0, 0, 0, 0 }, { 0, 0, 1 / 0, 0 }, { 0, 0, 0, 0 } }, "float64")
  T.raises(function() I.discrete { policy_logits = bad, mental_logits = a, cost = 1, scale = 1 } end,
    "policy_logits must be finite, got inf at sample 1, column 2")
  local nan = M.from({ { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 / 0 } }, "float64")
  for _, k in ipairs { "mu", "log_sd", "mental_mu", "mental_log_sd" } do
    local args = { mu = a, log_sd = a, mental_mu = a, mental_log_sd = a, cost = 1, scale = 1 }
    args[k] = nan
    T.raises(function() I.gaussian(args) end, k .. " must be finite, got nan at sample 2, column 3")
  end
  local g = I.gaussian { mu = a, log_sd = a, mental_mu = a, mental_log_sd = a, cost = 1, scale = 1 }
  local ah = M.from({ { 0, 0, 0, 0 }, { 0, 1 / 0, 0, 0 }, { 0, 0, 0, 0 / 0 } }, "float64")
  T.raises(function() I.loss { model = g, nu = { 1, 1, 0 }, human_action = ah } end,
    "human_action must be finite on intervention steps: sample 2, dimension 2")
  -- a NaN stand-in on a step without intervention is fine
  local ok = I.loss { model = g, nu = { 1, 0, 0 }, human_action = ah }
  T.truthy(ok.loss:item() == ok.loss:item())
  -- check = false: no action-value pass (the gather still refuses an index out of range)
  local l = I.loss { model = m, nu = { 0, 1, 0 }, human_action = { 0, 3, 0 }, check = false }
  T.near(l.j2:item(), math.log(4), 1e-12)
end)

T.test("api: paper J2 is 0 without interventions; lambda weighs J1 and J2", function()
  local gen = M.Generator(5)
  local lh, lm = random_discrete(gen, 6, 3)
  local m = I.discrete { policy_logits = lh, mental_logits = lm, cost = 1, scale = 1 }
  local l = I.loss { model = m, variant = "paper", nu = M.zeros({ 6 }, "float64"), human_action = M.zeros({ 6 }, "float64") }
  T.eq(l.j2:item(), 0)
  T.near(l.loss:item(), 0.5 * l.j1:item(), 1e-14)
  local l2 = I.loss { model = m, variant = "paper", lambda = 1, nu = M.ones({ 6 }, "float64"), human_action = M.zeros({ 6 }, "float64") }
  T.near(l2.loss:item(), l2.j1:item(), 1e-14)
end)

T.test("report: worst errors against the vectors", function()
  local keys = {}
  for k in pairs(worst) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do print(("# max |error| %-16s %.3g"):format(k, worst[k])) end
end)

T.run()
