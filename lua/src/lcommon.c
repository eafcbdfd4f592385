/* lcommon.c - the helpers of lmile.h shared by every binding, and the preload list. */
#include <string.h>

#include "lmile.h"

void lmile_check(lua_State *L, mile_status status, const char *fname) {
  if (status == MILE_OK) return;
  const char *msg = mile_last_error();
  /* core messages already start with "<function>: "; do not add a second name */
  size_t n = strspn(msg, "abcdefghijklmnopqrstuvwxyz_0123456789.");
  if (n > 0 && msg[n] == ':') luaL_error(L, "%s", msg);
  luaL_error(L, "%s: %s", fname, msg);
}

void lmile_preload(lua_State *L) {
  static const luaL_Reg modules[] = {
      {"mile.tensor", luaopen_mile_tensor},
      {"mile.autograd.core", luaopen_mile_autograd_core},
      {"mile.optim.core", luaopen_mile_optim_core},
      {"mile.sys", luaopen_mile_sys},
      {"mile.envs.core", luaopen_mile_envs_core},
      {"mile.io.core", luaopen_mile_io_core},
      {"mile.data.core", luaopen_mile_data_core},
      {"mile.intervention.core", luaopen_mile_intervention_core},
      {"mile.teleop.core", luaopen_mile_teleop_core},
      {NULL, NULL},
  };
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *m = modules; m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}
