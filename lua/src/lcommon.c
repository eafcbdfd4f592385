/* lcommon.c - the helpers of lmile.h shared by every binding, and the preload list. */
#include <stdio.h>
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

int lmile_call(lua_State *L, mile_call *c, const char *fname) {
  lmile_check(L, mile_call_run(c), fname);
  for (int32_t j = 0; j < c->n_out; j++) {
    if (c->out[j])
      lmile_push_tensor(L, c->out[j]);
    else
      lua_pushnil(L);
  }
  return c->n_out;
}

void lmile_unrecorded(lua_State *L, const char *what, const char *why) {
  (void)L;
  if (!mile_tape_recording()) return;
  char reason[200];
  snprintf(reason, sizeof reason, "%s %s", what, why);
  mile_tape_invalidate(reason);
}

/* The C modules of mile, in the order `mile.core`'s `modules` lists them. */
static const luaL_Reg c_modules[] = {
    {"mile.tensor", luaopen_mile_tensor},
    {"mile.autograd.core", luaopen_mile_autograd_core},
    {"mile.optim.core", luaopen_mile_optim_core},
    {"mile.compile.core", luaopen_mile_compile_core},
    {"mile.sys", luaopen_mile_sys},
    {"mile.envs.core", luaopen_mile_envs_core},
    {"mile.io.core", luaopen_mile_io_core},
    {"mile.data.core", luaopen_mile_data_core},
    {"mile.intervention.core", luaopen_mile_intervention_core},
    {"mile.teleop.core", luaopen_mile_teleop_core},
    {"mile.core", luaopen_mile_core},
    {NULL, NULL},
};

void lmile_preload(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *m = c_modules; m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}

/* `require "mile.core"`: the entry point of mile/core.so, the one shared object that
 * holds every C module of mile when it is used from a stock Lua 5.4. Opening it
 * registers the others in package.preload, so `require "mile.tensor"` finds them
 * (lua/mile/tensor.lua and the other stubs require this module first). Returns
 * {version = "x.y.z", modules = {"mile.tensor", ...}}. The `mile` host preloads the
 * same functions without loading this file. */
int luaopen_mile_core(lua_State *L) {
  int i;
  lmile_preload(L);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, mile_version());
  lua_setfield(L, -2, "version");
  lua_createtable(L, (int)(sizeof c_modules / sizeof c_modules[0]) - 2, 0);
  for (i = 0; c_modules[i].name != NULL; i++) {
    if (strcmp(c_modules[i].name, "mile.core") == 0)
      continue;
    lua_pushstring(L, c_modules[i].name);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "modules");
  return 1;
}
