--- mile.display: rich output in a Jupyter notebook run by the mile kernel
--- (`mile --kernel`, docs/notebooks.md); a short text everywhere else.
--
--   local display = require "mile.display"      -- or mile.display
--   display.png("runs/x/success_vs_round.png")   -- a PNG file, or PNG bytes
--   display.png(bytes, {width = 400})            -- shown 400 px wide
--   display.markdown("**MILE** after 3 rounds")
--   display.html("<b>bold</b>")
--   display.tensor(t)                            -- an HTML table, summarised when large
--   display.table(rows [, columns])              -- records ({col = value}) as a table
--   display(x)                                   -- any value, as a cell result shows it
--
-- In the kernel each call sends one display_data message (with a text/plain
-- alternative, for nbconvert's text exports); outside it prints the text. A cell
-- whose value is a tensor shows the HTML table too (the kernel asks M.bundle).
local M = {}

local function kernel() return package.loaded["mile.kernel"] end

local function is_tensor(v)
  local ok, T = pcall(require, "mile.tensor")
  return ok and T.is_tensor(v)
end

--- escape(s) -> tostring(s) with & < > " as HTML entities.
local function escape(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ["\""] = "&quot;" }))
end
M.escape = escape

-- Send data (mime -> string) to the notebook, or print its text.
local function show(data, metadata)
  local k = kernel()
  if k then
    k.display(data, metadata)
  else
    print(data["text/plain"])
  end
end

-- ---- images ---------------------------------------------------------------------------------

local PNG_SIGNATURE = "\137PNG\r\n\26\n"

--- png(path_or_bytes [, {width=, height=}]): a PNG image. A string that starts with
--- the PNG signature is the image itself; any other string is a file name.
function M.png(src, opts)
  assert(type(src) == "string", "display.png: expected a file name or PNG bytes")
  local bytes, label = src, nil
  if src:sub(1, 8) ~= PNG_SIGNATURE then
    local f, err = io.open(src, "rb")
    if not f then error("display.png: " .. err, 2) end
    bytes = f:read("a")
    f:close()
    if bytes:sub(1, 8) ~= PNG_SIGNATURE then error("display.png: " .. src .. " is not a PNG file", 2) end
    label = src
  end
  -- the IHDR chunk: width and height, big-endian, right after the signature
  local w, h = 0, 0
  if #bytes >= 24 then w, h = string.unpack(">I4I4", bytes, 17) end
  local text = ("[PNG image %dx%d%s]"):format(w, h, label and (": " .. label) or (", " .. #bytes .. " bytes"))
  local meta
  if opts and (opts.width or opts.height) then meta = { ["image/png"] = { width = opts.width, height = opts.height } } end
  show({ ["image/png"] = bytes, ["text/plain"] = text }, meta)
end

-- ---- text -----------------------------------------------------------------------------------

--- markdown(s): Markdown, rendered by the notebook (math with $...$ included).
function M.markdown(s)
  s = tostring(s)
  show { ["text/markdown"] = s, ["text/plain"] = s }
end

--- html(s): HTML, shown as it is (its text without the tags outside a notebook).
function M.html(s)
  s = tostring(s)
  local text = s:gsub("<[^>]*>", ""):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&quot;", "\""):gsub("&amp;", "&")
  show { ["text/html"] = s, ["text/plain"] = text }
end

-- ---- tables ---------------------------------------------------------------------------------

local LIMIT, EDGE = 20, 8 -- more rows (columns) than LIMIT: the first and last EDGE

local function fmt(v)
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then
    if v ~= v then return "nan" end
    if v == math.floor(v) and math.abs(v) < 1e15 then return ("%.0f"):format(v) end
    return ("%.4g"):format(v)
  end
  return tostring(v)
end

-- 1..n, or the ends with `false` standing for the rows left out.
local function positions(n)
  local out = {}
  if n <= LIMIT then
    for i = 1, n do out[i] = i end
    return out
  end
  for i = 1, EDGE do out[#out + 1] = i end
  out[#out + 1] = false
  for i = n - EDGE + 1, n do out[#out + 1] = i end
  return out
end

local STYLE = ' style="font-family: monospace; text-align: right"'

--- tensor_html(t) -> HTML: 0-d a value, 1-d one row, 2-d a grid with 1-based row
--- and column numbers (summarised past 20 rows or columns); more dims, the text.
function M.tensor_html(t)
  local shape = t:shape()
  local caption = ("<caption>mile.tensor of size %s %s</caption>"):format(
    #shape == 0 and "()" or table.concat(shape, "x"), t:dtype())
  if #shape > 2 then return "<pre>" .. escape(tostring(t)) .. "</pre>" end
  if #shape == 0 then return ("<table%s>%s<tr><td>%s</td></tr></table>"):format(STYLE, caption, fmt(t:item())) end
  local rows = #shape == 2 and positions(shape[1]) or { 1 }
  local cols = positions(shape[#shape])
  local out = { ("<table%s>"):format(STYLE), caption, "<tr><th></th>" }
  for _, j in ipairs(cols) do out[#out + 1] = ("<th>%s</th>"):format(j and j or "&hellip;") end
  out[#out + 1] = "</tr>"
  for _, i in ipairs(rows) do
    out[#out + 1] = ("<tr><th>%s</th>"):format(#shape == 1 and "" or (i and i or "&vellip;"))
    local row = i and (#shape == 2 and t[i] or t) or nil
    for _, j in ipairs(cols) do
      out[#out + 1] = ("<td>%s</td>"):format((row and j) and fmt(row[j]) or "&hellip;")
    end
    out[#out + 1] = "</tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out)
end

--- tensor(t): t as an HTML table (its usual text outside a notebook).
function M.tensor(t)
  assert(is_tensor(t), "display.tensor: expected a mile.tensor")
  show { ["text/html"] = M.tensor_html(t), ["text/plain"] = tostring(t) }
end

-- The columns of a list of records: the given ones, else the first record's keys
-- (sorted) or its 1..n.
local function columns_of(rows, columns)
  if columns then return columns end
  local first, cols = rows[1] or {}, {}
  if #first > 0 then
    for i = 1, #first do cols[i] = i end
  else
    for k in pairs(first) do cols[#cols + 1] = k end
    table.sort(cols, function(a, b) return tostring(a) < tostring(b) end)
  end
  return cols
end

--- table_text(rows [, columns]) -> aligned plain text of records.
function M.table_text(rows, columns)
  local cols = columns_of(rows, columns)
  local cells, width = { {} }, {}
  for j, c in ipairs(cols) do
    cells[1][j] = tostring(c)
    width[j] = #cells[1][j]
  end
  for i, r in ipairs(rows) do
    cells[i + 1] = {}
    for j, c in ipairs(cols) do
      local s = r[c] == nil and "" or fmt(r[c])
      cells[i + 1][j] = s
      width[j] = math.max(width[j], #s)
    end
  end
  local lines = {}
  for i, row in ipairs(cells) do
    local parts = {}
    for j, s in ipairs(row) do parts[j] = (" "):rep(width[j] - #s) .. s end
    lines[i] = table.concat(parts, "  ")
  end
  return table.concat(lines, "\n")
end

--- table_html(rows [, columns]) -> an HTML table of records.
function M.table_html(rows, columns)
  local cols = columns_of(rows, columns)
  local out = { ("<table%s><tr>"):format(STYLE) }
  for _, c in ipairs(cols) do out[#out + 1] = ("<th>%s</th>"):format(escape(c)) end
  out[#out + 1] = "</tr>"
  for _, r in ipairs(rows) do
    out[#out + 1] = "<tr>"
    for _, c in ipairs(cols) do out[#out + 1] = ("<td>%s</td>"):format(r[c] == nil and "" or escape(fmt(r[c]))) end
    out[#out + 1] = "</tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out)
end

--- table(rows [, columns]): a list of records ({name = value} or arrays) as a table,
--- columns in the given order (default: the first record's keys, sorted).
function M.table(rows, columns)
  assert(type(rows) == "table", "display.table: expected a list of records")
  show { ["text/html"] = M.table_html(rows, columns), ["text/plain"] = M.table_text(rows, columns) }
end

-- ---- any value ------------------------------------------------------------------------------

--- bundle(v) -> {mime = string}: what a notebook shows for v. Tensors add an HTML
--- table; a value whose metatable has __html (a function returning HTML) adds it.
function M.bundle(v)
  local data = { ["text/plain"] = tostring(v) }
  if is_tensor(v) then
    data["text/html"] = M.tensor_html(v)
  else
    local mt = getmetatable(v)
    if type(mt) == "table" and type(rawget(mt, "__html")) == "function" then
      local html = mt.__html(v)
      if type(html) == "string" then data["text/html"] = html end
    end
  end
  return data
end

return setmetatable(M, {
  __call = function(_, v) show(M.bundle(v)) end,
})
