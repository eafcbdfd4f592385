/* lautograd.c - mile.autograd.core: grad mode and custom nodes whose backward is Lua.
 *
 * A custom node holds a registry reference to a Lua function g -> grad1, grad2, ...
 * The reference is dropped when the node dies (its output tensor was freed). The
 * collector cannot see that reference: a function that reaches the output's own
 * box keeps the output, and so the node, alive forever. attach() callers therefore
 * attach to a tensor nothing else holds (mile.autograd.Function attaches to a fresh
 * alias of what forward returned, so ctx may keep the forward's output). */
#include <stdlib.h>
#include <string.h>

#include "lmile.h"

lua_State *lmile_backward_L;

typedef struct lua_backward {
  lua_State *main; /* for luaL_unref when the node dies, maybe inside a __gc */
  int ref;
} lua_backward;

static void lua_backward_free(void *user) {
  lua_backward *lb = user;
  luaL_unref(lb->main, LUA_REGISTRYINDEX, lb->ref);
  free(lb);
}

static int call_backward(lua_State *L) { /* protected: function, grad (light), n -> grads... */
  int n = (int)lua_tointeger(L, 3);
  lua_pushvalue(L, 1);
  /* boxed here, inside the pcall: a memory error must not longjmp through the core */
  mile_tensor *g = mile_tensor_retain(lua_touserdata(L, 2));
  lmile_push_tensor(L, g);
  lua_call(L, 1, n);
  return n;
}

static mile_status lua_backward_run(void *user, mile_tensor *g, int32_t n_inputs, mile_tensor **grads) {
  lua_backward *lb = user;
  lua_State *L = lmile_backward_L;
  if (!L) return mile_set_error(MILE_ERR_CALLBACK, "backward: a Lua custom op needs backward() called from Lua");
  if (!lua_checkstack(L, n_inputs + 8)) return mile_set_error(MILE_ERR_NOMEM, "backward: Lua stack overflow");
  int top = lua_gettop(L);
  lua_pushcfunction(L, call_backward);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->ref);
  lua_pushlightuserdata(L, g);
  lua_pushinteger(L, n_inputs);
  if (lua_pcall(L, 3, n_inputs, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    mile_status st = mile_set_error(MILE_ERR_CALLBACK, "%s", msg ? msg : "error object is not a string");
    lua_settop(L, top);
    return st;
  }
  mile_status st = MILE_OK;
  for (int32_t i = 0; i < n_inputs && st == MILE_OK; i++) {
    int idx = top + 1 + i;
    if (lua_isnil(L, idx)) continue;
    mile_tensor *gi = lmile_to_tensor(L, idx);
    if (!gi) st = mile_set_error(MILE_ERR_CALLBACK, "custom backward: gradient %d is %s, not a tensor or nil", i + 1,
                                 luaL_typename(L, idx));
    else grads[i] = mile_tensor_retain(gi);
  }
  lua_settop(L, top);
  return st;
}

/* attach(output, {inputs...}, backward_fn [, name]) */
static int ag_attach(lua_State *L) {
  mile_tensor *out = lmile_check_tensor(L, 1);
  lmile_unrecorded(L, "a custom autograd op", "runs Lua in its backward (it cannot be replayed from C)");
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  const char *name = luaL_optstring(L, 4, "custom");
  lua_Integer n = luaL_len(L, 2);
  luaL_argcheck(L, n >= 0 && n <= 64, 2, "between 0 and 64 inputs");
  mile_tensor *inputs[64];
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 2, i);
    inputs[i - 1] = lmile_to_tensor(L, -1);
    if (!inputs[i - 1]) luaL_error(L, "attach: input %d is %s, not a tensor", (int)i, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  /* node names must outlive the node: keep interned copies in the registry */
  lua_getfield(L, LUA_REGISTRYINDEX, "mile.autograd.names");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "mile.autograd.names");
  }
  lua_pushstring(L, name);
  lua_pushvalue(L, -1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "mile.autograd.names");
  lua_getfield(L, -1, name);
  const char *interned = lua_tostring(L, -1); /* anchored by the names table */
  lua_pop(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  /* the last step that may raise comes before the malloc: nothing can leak lb */
  lua_pushvalue(L, 3);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_backward *lb = malloc(sizeof *lb);
  if (!lb) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    luaL_error(L, "attach: out of memory");
  }
  lb->main = main, lb->ref = ref;
  lmile_check(L, mile_attach_custom(out, (int32_t)n, inputs, lua_backward_run, lua_backward_free, lb, interned),
              "attach");
  lua_settop(L, 1);
  return 1;
}

static int ag_grad_enabled(lua_State *L) {
  lua_pushboolean(L, mile_grad_enabled());
  return 1;
}

static int ag_set_grad_enabled(lua_State *L) {
  int previous = mile_grad_enabled();
  lmile_call(L, &(mile_call){.op = MILE_OP_GRAD_MODE, .i = {lua_toboolean(L, 1)}}, "set_grad_enabled");
  lua_pushboolean(L, previous);
  return 1;
}

static const luaL_Reg functions[] = {
    {"attach", ag_attach}, {"grad_enabled", ag_grad_enabled}, {"set_grad_enabled", ag_set_grad_enabled}, {NULL, NULL}};

int luaopen_mile_autograd_core(lua_State *L) {
  luaL_newlib(L, functions);
  return 1;
}
