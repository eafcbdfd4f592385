--- mile.plot: line plots as PNG files through gnuplot (no Lua graphics code).
--
--   local plot = require "mile.plot"
--   plot.lines{
--     path = "success.png", title = "Success vs round", xlabel = "round", ylabel = "success",
--     series = { { name = "mile", x = {1, 2, 3}, y = {0.2, 0.5, 0.8}, err = {0.1, 0.1, 0.05} },
--                { name = "bc",   x = {1, 2, 3}, y = {0.2, 0.2, 0.3} } },
--   }
--
-- Returns true, or nil and a message when gnuplot is missing or fails (a report
-- without plots is still a report). The PNG is written atomically.
--
-- A series may also give `style` (a gnuplot `with` clause used as is, e.g. "lines dt 2"
-- or "boxes fs solid 0.3") and `axes = "x1y2"` (plot against the right-hand axis, e.g.
-- counts under a curve); the plot may give `xrange`, `y2label`, `y2range`, `boxwidth`.
local sys = require "mile.sys"

local M = {}

--- Is gnuplot on the PATH?
function M.available()
  local ok = os.execute("command -v gnuplot >/dev/null 2>&1")
  return ok == true or ok == 0
end

local function quote(s) return "\"" .. tostring(s):gsub("\\", "\\\\"):gsub("\"", "\\\"") .. "\"" end

--- lines{path=, series={{name=, x=, y=, err=}...}, title=, xlabel=, ylabel=, yrange={lo,hi}, width=, height=}
function M.lines(opts)
  assert(type(opts) == "table" and opts.path and opts.series, "plot.lines: needs path and series")
  if not M.available() then return nil, "plot.lines: gnuplot not found" end
  local tmp = os.tmpname()
  local data = assert(io.open(tmp, "w"))
  local plots, uses_y2 = {}, false
  for i, s in ipairs(opts.series) do
    assert(#s.x == #s.y, ("plot.lines: series %d has %d x and %d y values"):format(i, #s.x, #s.y))
    for k = 1, #s.x do
      data:write(string.format("%.10g %.10g %.10g\n", s.x[k], s.y[k], s.err and s.err[k] or 0))
    end
    data:write("\n\n") -- gnuplot data block separator: `index i-1`
    local style = s.style or (s.err and "yerrorlines" or "linespoints")
    plots[#plots + 1] = ("%s index %d using 1:2%s%s with %s title %s"):format(quote(tmp), i - 1,
      s.err and ":3" or "", s.axes and (" axes " .. s.axes) or "", style, quote(s.name or ("series " .. i)))
    uses_y2 = uses_y2 or s.axes == "x1y2"
  end
  data:close()
  local out = opts.path .. ".part.png"
  local script = {
    ("set terminal pngcairo size %d,%d noenhanced font 'sans,10'"):format(opts.width or 800, opts.height or 500),
    "set output " .. quote(out),
    "set title " .. quote(opts.title or ""),
    "set xlabel " .. quote(opts.xlabel or ""),
    "set ylabel " .. quote(opts.ylabel or ""),
    "set grid",
    "set key " .. (opts.key or "outside right top"),
  }
  if opts.yrange then script[#script + 1] = ("set yrange [%g:%g]"):format(opts.yrange[1], opts.yrange[2]) end
  if opts.xrange then script[#script + 1] = ("set xrange [%g:%g]"):format(opts.xrange[1], opts.xrange[2]) end
  if uses_y2 then
    script[#script + 1] = "set y2tics"
    script[#script + 1] = "set ytics nomirror"
    script[#script + 1] = "set y2label " .. quote(opts.y2label or "")
    if opts.y2range then script[#script + 1] = ("set y2range [%g:%g]"):format(opts.y2range[1], opts.y2range[2]) end
  end
  if opts.boxwidth then script[#script + 1] = ("set boxwidth %g absolute"):format(opts.boxwidth) end
  script[#script + 1] = "plot " .. table.concat(plots, ", ")
  local gp = tmp .. ".gp"
  local f = assert(io.open(gp, "w"))
  f:write(table.concat(script, "\n"), "\n")
  f:close()
  local ok = os.execute(("gnuplot %s 2>%s.err"):format(quote(gp), quote(tmp)))
  local errf = io.open(tmp .. ".err")
  local err = errf and errf:read("a") or ""
  if errf then errf:close() end
  os.remove(tmp)
  os.remove(gp)
  os.remove(tmp .. ".err")
  if not (ok == true or ok == 0) or sys.stat(out) ~= "file" then
    os.remove(out)
    return nil, "plot.lines: gnuplot failed: " .. err
  end
  local moved, why = os.rename(out, opts.path)
  if not moved then return nil, why end
  return true
end

return M
