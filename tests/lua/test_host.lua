-- test_host.lua - the `mile` program seen from outside: options, scripts and `arg`,
-- exit statuses, the REPL driven through a pipe, subcommands, Ctrl-C.
local T = require "testing"

-- the program running this file: the lowest index of `arg`
local prog do
  local i = -1
  while arg[i - 1] do i = i - 1 end
  prog = arg[i]
  if prog:sub(1, 1) ~= "/" and prog:find("/", 1, true) then -- relative: some tests cd
    local pwd = io.popen("pwd")
    prog = pwd:read("l") .. "/" .. prog
    pwd:close()
  end
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Run fn(dir) with a fresh temporary directory, removed afterwards.
local function with_tmpdir(fn)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. q(dir)))
  local ok, err = pcall(fn, dir)
  os.execute("rm -rf " .. q(dir))
  if not ok then error(err, 0) end
end

-- Run the program: args is a shell-quoted string, input feeds stdin (else
-- /dev/null), env a prefix like "VAR=value ". Returns {code, out, err}.
local function mile(args, input, env)
  local out, err, inp = os.tmpname(), os.tmpname(), os.tmpname()
  spit(inp, input or "")
  local cmd = string.format("%s%s %s <%s >%s 2>%s", env or "", q(prog), args, q(inp), q(out), q(err))
  local _, how, code = os.execute(cmd)
  local r = { code = how == "exit" and code or -1, out = slurp(out), err = slurp(err) }
  os.remove(out); os.remove(err); os.remove(inp)
  return r
end

local function contains(s, text, what)
  T.truthy(s:find(text, 1, true), string.format("%s should contain %q, got %q", what or "output", text, s))
end

-- options ---------------------------------------------------------------------

T.test("-v and --version print mile's and Lua's versions", function()
  for _, opt in ipairs { "-v", "--version" } do
    local r = mile(opt)
    T.eq(r.code, 0, opt)
    T.truthy(r.out:match("^mile %d+%.%d+%.%d+ %(Lua 5%.4%.%d+%)\n$"), "version line: " .. r.out)
  end
end)

T.test("-h and --help print the usage", function()
  for _, opt in ipairs { "-h", "--help" } do
    local r = mile(opt)
    T.eq(r.code, 0, opt)
    contains(r.out, "usage:")
    contains(r.out, "-e chunk")
  end
end)

T.test("a bad option is an error with the usage on stderr", function()
  local r = mile("-x")
  T.truthy(r.code ~= 0, "status")
  contains(r.err, "unrecognized option '-x'", "stderr")
  contains(r.err, "usage:", "stderr")
  r = mile("-e")
  T.truthy(r.code ~= 0, "status")
  contains(r.err, "'-e' needs an argument", "stderr")
end)

T.test("-e runs chunks in order, after -l", function()
  local r = mile("-e 'x = 1' -e 'print(x + 2)' -e'print(\"glued\")'")
  T.eq(r.code, 0, r.err)
  T.eq(r.out, "3\nglued\n")
end)

T.test("-e without a script: arg[0] is the program", function()
  local r = mile("-e 'print(arg[0] == arg[-1], arg[1], arg[2], select(\"#\", ...))'")
  T.eq(r.code, 0, r.err)
  T.eq(r.out, "false\t-e\tprint(arg[0] == arg[-1], arg[1], arg[2], select(\"#\", ...))\t0\n")
end)

T.test("-l requires a module found through LUA_PATH, into a global", function()
  with_tmpdir(function(dir)
    spit(dir .. "/hostmod.lua", "return { answer = 42 }\n")
    local env = "LUA_PATH=" .. q(dir .. "/?.lua;;") .. " "
    local r = mile("-l hostmod -e 'print(hostmod.answer)'", nil, env)
    T.eq(r.code, 0, r.err)
    T.eq(r.out, "42\n")
    r = mile("-l h=hostmod -e 'print(h.answer, hostmod)'", nil, env)
    T.eq(r.code, 0, r.err)
    T.eq(r.out, "42\tnil\n")
    r = mile("-e 'print(require(\"hostmod\").answer)'", nil, env)
    T.eq(r.out, "42\n", "require from a chunk")
    -- -E: the environment is ignored
    r = mile("-E -l hostmod", nil, env)
    T.truthy(r.code ~= 0, "status with -E")
    contains(r.err, "module 'hostmod' not found", "stderr")
  end)
end)

T.test("-W turns warnings on", function()
  local r = mile("-W -e 'warn(\"careful\")'")
  T.eq(r.code, 0)
  contains(r.err, "Lua warning: careful", "stderr")
  r = mile("-e 'warn(\"careful\")'")
  T.eq(r.err, "")
end)

-- scripts ---------------------------------------------------------------------

T.test("a script gets arg and ... as lua gives them", function()
  with_tmpdir(function(dir)
    local script = dir .. "/args.lua"
    spit(script, [[
print(arg[0], arg[-1], #arg, arg[1], arg[2], arg[3])
print(select("#", ...), ...)
]])
    local r = mile(q(script) .. " a 'b c' ''")
    T.eq(r.code, 0, r.err)
    T.eq(r.out, script .. "\t" .. prog .. "\t3\ta\tb c\t\n3\ta\tb c\t\n")
    -- options before the script sit below arg[0]
    r = mile("-e 'x=1' " .. q(script) .. " z")
    T.eq(r.out, script .. "\tx=1\t1\tz\tnil\tnil\n1\tz\n")
  end)
end)

T.test("a failing script: status 1, message and traceback on stderr", function()
  with_tmpdir(function(dir)
    spit(dir .. "/fail.lua", "local function inner() error('boom') end\ninner()\n")
    local r = mile(q(dir .. "/fail.lua"))
    T.eq(r.code, 1)
    T.eq(r.out, "")
    contains(r.err, "fail.lua:1: boom", "stderr")
    contains(r.err, "stack traceback:", "stderr")
    contains(r.err, "in local 'inner'", "stderr")
    spit(dir .. "/syntax.lua", "x = = 1\n")
    r = mile(q(dir .. "/syntax.lua"))
    T.eq(r.code, 1)
    contains(r.err, "syntax.lua:1: unexpected symbol", "stderr")
  end)
  local r = mile("no/such/file.lua")
  T.eq(r.code, 1)
  contains(r.err, "cannot open no/such/file.lua", "stderr")
  r = mile("-e 'error({})'")
  T.eq(r.code, 1)
  contains(r.err, "(error object is a table value)", "stderr")
end)

T.test("os.exit sets the status", function()
  T.eq(mile("-e 'os.exit(3)'").code, 3)
  T.eq(mile("-e 'os.exit(true)'").code, 0)
  T.eq(mile("-e 'os.exit(false)'").code, 1)
end)

T.test("'-' and a piped stdin run stdin as a script", function()
  local r = mile("- x y", "print('from stdin', arg[0], ...)\n")
  T.eq(r.code, 0, r.err)
  T.eq(r.out, "from stdin\t-\tx\ty\n")
  r = mile("", "print(6 * 7)\n")
  T.eq(r.code, 0, r.err)
  T.eq(r.out, "42\n")
end)

T.test("package.path puts mile's directory first and mile.host describes the host", function()
  local r = mile([[-e 'local h = require "mile.host"
print(h.version, h.lua_version, package.path:find(h.lua_dir .. "/?.lua", 1, true) == 1)']])
  T.eq(r.code, 0, r.err)
  T.truthy(r.out:match("^%d+%.%d+%.%d+\tLua 5%.4%.%d+\ttrue\n$"), r.out)
end)

-- subcommands -----------------------------------------------------------------

T.test("a subcommand runs <scripts>/cli/<name>.lua with the remaining args", function()
  with_tmpdir(function(dir)
    assert(os.execute("mkdir " .. q(dir .. "/cli")))
    spit(dir .. "/cli/hello.lua", "print('hello', arg[0], ...)\n")
    local env = "MILE_SCRIPTS_DIR=" .. q(dir) .. " "
    local r = mile("hello a b", nil, env)
    T.eq(r.code, 0, r.err)
    T.eq(r.out, "hello\t" .. dir .. "/cli/hello.lua\ta\tb\n")
    r = mile("nosuchcommand x", nil, env)
    T.eq(r.code, 1)
    contains(r.err, "unknown command 'nosuchcommand'", "stderr")
    contains(r.err, "available commands: hello", "stderr")
    r = mile("--help", nil, env)
    contains(r.out, "Commands: hello")
  end)
end)

T.test("a file named like a command runs as a script", function()
  with_tmpdir(function(dir)
    spit(dir .. "/plainfile", "print('plain file')\n")
    local r = mile("plainfile", nil, "cd " .. q(dir) .. " && MILE_SCRIPTS_DIR=" .. q(dir) .. " ")
    T.eq(r.code, 0, r.err)
    T.eq(r.out, "plain file\n")
  end)
end)

-- the REPL through a pipe -------------------------------------------------------

-- Feed lines to `mile -i`; prompts are printed, so compare without them.
local function repl(lines, args)
  local r = mile("-i" .. (args and " " .. args or ""), table.concat(lines, "\n") .. "\n",
                 "MILE_NO_READLINE=1 ")
  r.values = r.out:gsub("^mile [^\n]*\n", ""):gsub(">> ", ""):gsub("> ", "")
  return r
end

T.test("REPL: expressions print their values, statements print nothing", function()
  local r = repl { "1 + 1", "x = 5", "x * 2", "return 1, nil, 'a'", "=3", "'s'", "nil", "" }
  T.eq(r.code, 0, r.err)
  T.eq(r.values, "2\n10\n1\tnil\ta\n3\ns\nnil\n\n")
  T.truthy(not r.err:find("stdin:", 1, true), r.err)
end)

T.test("REPL: incomplete input continues with >>", function()
  local r = repl { "for i = 1, 2 do", "print(i * 10)", "end", "function f(a,", "b) return a + b end", "f(1, 2)" }
  T.eq(r.code, 0, r.err)
  contains(r.out, "> >> >> 10\n20\n")
  T.eq(r.values, "10\n20\n3\n\n")
end)

T.test("REPL: an error is reported and the REPL goes on", function()
  local r = repl { "error('oops')", "print('still here')", "x = = 1", "nil + 1", "print('and here')" }
  T.eq(r.code, 0)
  T.eq(r.values, "still here\nand here\n\n")
  contains(r.err, "stdin:1: oops", "stderr")
  contains(r.err, "stack traceback:", "stderr")
  contains(r.err, "unexpected symbol near '='", "stderr")
  contains(r.err, "attempt to perform arithmetic on a nil value", "stderr")
end)

T.test("REPL: input ending inside a chunk reports the <eof> error", function()
  local r = repl { "function g(" }
  T.eq(r.code, 0)
  contains(r.err, "near <eof>", "stderr")
end)

T.test("REPL: -i runs the script first, then reads stdin", function()
  with_tmpdir(function(dir)
    spit(dir .. "/setup.lua", "y = 21\n")
    local r = repl({ "y * 2" }, q(dir .. "/setup.lua"))
    T.eq(r.code, 0, r.err)
    T.eq(r.values, "42\n\n")
  end)
end)

T.test("REPL: _PROMPT and _PROMPT2 change the prompts", function()
  local r = mile("-i", "_PROMPT = 'P: '; _PROMPT2 = 'C: '\nif true then\nend\n", "MILE_NO_READLINE=1 ")
  contains(r.out, "P: C: P: ")
end)

T.test("REPL: help", function()
  local r = repl {
    "help()",
    "help(string)",
    "help(print)",
    "help(io.stdout)",
    "function documented() end",
    "local m = package.loaded.mile or {} package.loaded.mile = m m.doc = m.doc or {} m.doc[documented] = 'documented(): does it'",
    "help(documented)",
  }
  T.eq(r.code, 0, r.err)
  contains(r.out, "help(x)")
  contains(r.out, "table fields (17):\n  byte  char")
  contains(r.out, "function (built in")
  contains(r.out, "userdata (FILE*)\nFILE* methods (7):\n  close  flush")
  contains(r.out, "documented(): does it\n")
end)

-- Ctrl-C ---------------------------------------------------------------------

-- Start `command` in the background through sh, wait until its stderr shows
-- "ready", send SIGINT, and return the exit status and stderr. A watchdog kills
-- it after 5 s, so a host that ignores SIGINT fails instead of hanging.
local function interrupt(command, dir)
  local errf, statusf = dir .. "/err", dir .. "/status"
  local script = string.format([[
%s 2>%s &
pid=$!
i=0
while ! grep -q ready %s 2>/dev/null; do i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.05; done
kill -INT $pid
( sleep 5; kill -KILL $pid ) >/dev/null 2>&1 &
wd=$!
wait $pid
echo $? >%s
kill $wd 2>/dev/null
]], command, q(errf), q(errf), q(statusf))
  os.execute(script)
  return tonumber(slurp(statusf)), slurp(errf)
end

T.test("Ctrl-C stops a running script with 'interrupted!'", function()
  with_tmpdir(function(dir)
    local status, err = interrupt(q(prog) .. [[ -e 'io.stderr:write("ready\n") while true do end' </dev/null]], dir)
    T.eq(status, 1, "status")
    contains(err, "interrupted!", "stderr")
    contains(err, "stack traceback:", "stderr")
  end)
end)

T.test("Ctrl-C in the REPL stops the chunk and the REPL goes on", function()
  with_tmpdir(function(dir)
    local out = dir .. "/out"
    local status, err = interrupt(
      [[printf 'io.stderr:write("ready\\n") while true do end\nprint("after")\n' | MILE_NO_READLINE=1 ]]
      .. q(prog) .. " -i >" .. q(out), dir)
    T.eq(status, 0, "status")
    contains(err, "interrupted!", "stderr")
    contains(slurp(out), "after\n")
  end)
end)

T.run()
