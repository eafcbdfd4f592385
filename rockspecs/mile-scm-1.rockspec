-- luarocks make rockspecs/mile-scm-1.rockspec   (from the source tree; Debian's luarocks)
-- Builds the library with CMake (no `mile` host, no tests) and installs it into the
-- rocks tree: the pure-Lua modules into LUADIR, mile/core.so into LIBDIR; mile's
-- shared libraries (clib/, outside the lib/ that luarocks deploys), the cached
-- policies, scripts, headers and pkg-config/CMake files stay in the rock's own
-- directory, where core.so's RPATH and mile.paths find them.
rockspec_format = "3.0"
package = "mile"
version = "scm-1"
source = {
  url = "git+file://.", -- `luarocks make` builds the working tree; this is not fetched
}
description = {
  summary = "Learning robot policies from human interventions (MILE): a C core with Lua 5.4 modules",
  detailed = [[
A C core supplies tensors, reverse-mode autograd, optimisers, safetensors, simulators
and the probit intervention model of MILE; the experiment layer (training loop,
methods, models, schedules, run directories, ablation batches) is plain Lua 5.4.
`require "mile"` from any Lua 5.4.]],
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_INSTALL_LIBDIR = "clib",
    MILE_INSTALL_LMOD = "$(LUADIR)",
    MILE_INSTALL_CMOD = "$(LIBDIR)",
    MILE_BUILD_HOST = "OFF",
    MILE_BUILD_TESTS = "OFF",
  },
}
