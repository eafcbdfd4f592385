-- test_doc.lua - help in the REPL: every public function of mile documented (help(f),
-- ?f), tables printed trepl-style (mile.pretty), --help on every subcommand.
local T = require "testing"
local doc = require "mile.doc"
local pretty = require "mile.pretty"
local tensor = require "mile.tensor"

-- the program running this file: the lowest index of `arg`
local prog do
  local i = -1
  while arg[i - 1] do i = i - 1 end
  prog = arg[i]
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

T.test("every exported function of mile has documentation", function()
  local missing, total = doc.undocumented()
  T.truthy(total > 300, "only " .. total .. " public functions found")
  T.eq(missing, {}, ("%d of %d public functions have no documentation (a --- comment above a Lua " ..
    "function, an entry of lua/mile/cdoc.lua for a C one)"):format(#missing, total))
end)

T.test("mile.doc reads --- comments of Lua functions and mile.cdoc for C functions", function()
  local mile = require "mile"
  T.truthy(mile.doc[require("mile.loop").run]:match("^run%("), "loop.run")
  T.truthy(mile.doc[tensor.zeros]:match("^zeros%(shape"), "tensor.zeros")
  T.truthy(mile.doc[tensor.zeros(1).shape]:match("^t:shape%(%)"), "Tensor:shape")
  T.truthy(mile.doc[require("mile.nn").Linear.forward]:match("^forward%(x%)"), "nn.Linear.forward")
  T.eq(mile.doc[print], nil)
  T.eq(doc.get(function() end), nil)
end)

T.test("help(f) and ?f in the REPL print the documentation", function()
  local out = run(("printf '%%s\\n' '?mile.tensor.zeros' 'help(mile.loop.run)' '? mile.nn.Linear.forward' | " ..
    "MILE_NO_READLINE=1 %s -i"):format(q(prog)))
  T.truthy(out:find("zeros(shape [, dtype]) -> a tensor of zeros", 1, true), out)
  T.truthy(out:find("run(user_config", 1, true), out)
  T.truthy(out:find("forward(x) -> x W^T + b", 1, true), out)
end)

T.test("tables print as trepl prints them", function()
  local t = { b = { c = { 2, 3 }, d = "x" }, a = 1, [2] = true, shape = tensor.zeros(2, 3):shape(),
    x = tensor.zeros(2, 3) }
  t.self = t
  T.eq(pretty.format(t), table.concat({
    "{",
    "  2 : true",
    "  a : 1",
    "  b : {",
    "    c : {2, 3}",
    "    d : \"x\"",
    "  }",
    "  self : <cycle: " .. tostring(t):gsub("^table: ", "table ") .. ">",
    "  shape : {2, 3}",
    "  x : [mile.tensor of size 2x3 float32]",
    "}" }, "\n"))
  T.eq(pretty.format({}), "{}")
  T.eq(pretty.format(tensor.zeros(4, 5):shape()), "{4, 5}")
  local long = {}
  for i = 1, 100 do long[i] = { i } end
  local text = pretty.format(long)
  T.truthy(text:find("... (60 more)", 1, true), text)
  local deep = { { { { { { 1 } } } } } }
  T.truthy(pretty.format(deep):find("{...}", 1, true))
  -- the REPL prints plain tables through it
  local out = run(("printf '%%s\\n' '{b = 2, a = {3, 4}}' | MILE_NO_READLINE=1 %s -i"):format(q(prog)))
  T.truthy(out:find("{\n  a : {3, 4}\n  b : 2\n}", 1, true), out)
end)

T.test("every subcommand answers --help with its usage", function()
  local dir = require("mile.paths").scripts_dir .. "/cli"
  local p = assert(io.popen("ls " .. q(dir)))
  local n = 0
  for file in p:lines() do
    local cmd = file:match("^(.*)%.lua$")
    if cmd then
      n = n + 1
      local out, code = run(("%s %s --help"):format(q(prog), cmd))
      T.eq(code, 0, "mile " .. cmd .. " --help: " .. out)
      T.truthy(out:find("usage: mile " .. cmd, 1, true), "mile " .. cmd .. " --help: " .. out)
    end
  end
  p:close()
  T.truthy(n >= 3, "no subcommands found in " .. dir)
end)

T.run()
