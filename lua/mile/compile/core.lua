--- The C modules of mile (mile.tensor, mile.sys, mile.<name>.core) from a stock Lua 5.4:
--- they all live in one shared object, mile/core.so, whose luaopen_mile_core registers
--- them in package.preload. The `mile` host preloads them itself, so this stub (one copy
--- per C module, all alike) runs only outside the host.
require "mile.core"
local name = ...
return package.preload[name](...)
