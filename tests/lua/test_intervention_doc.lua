-- The Lua examples of docs/intervention.md run as written (documentation that a
-- test does not run goes stale).
local T = require "testing"

local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
local DOC = here .. "/../../docs/intervention.md"

T.test("docs/intervention.md has Lua examples", function()
  T.truthy(#T.lua_blocks(DOC) >= 2)
end)

T.doc_examples(DOC, "docs/intervention.md")

T.run()
