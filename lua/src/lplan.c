/* lplan.c - mile.tensor.mlp_plan: compiled inference passes (mile/plan.h) for Lua.
 *
 *   local plan = T.mlp_plan { {W1, b1, "relu"}, {W2, b2, "relu"}, {W3, b3} }
 *   local y = plan(x)        -- act3(act2(act1(x W1^T + b1) W2^T + b2) W3^T + b3)
 *
 * nn's compile_forward builds these; one call runs the whole chain. */
#include "lmile.h"

#define LPLAN_MT "mile.MLPPlan"

typedef struct plan_box {
  mile_mlp_plan *plan;
} plan_box;

static plan_box *check_plan(lua_State *L, int idx) { return luaL_checkudata(L, idx, LPLAN_MT); }

static int plan_gc(lua_State *L) {
  plan_box *box = check_plan(L, 1);
  mile_mlp_plan_free(box->plan);
  box->plan = NULL;
  return 0;
}

static int plan_call(lua_State *L) { /* plan(x) -> tensor */
  plan_box *box = check_plan(L, 1);
  mile_tensor *x = lmile_check_tensor(L, 2), *out = NULL;
  if (!box->plan) return luaL_error(L, "mlp_plan: the plan was closed");
  lmile_check(L, mile_mlp_plan_run(box->plan, x, &out), "mlp_plan");
  lmile_push_tensor(L, out);
  return 1;
}

static int plan_tostring(lua_State *L) {
  plan_box *box = check_plan(L, 1);
  lua_pushfstring(L, "mile.MLPPlan (%s)", box->plan ? "compiled" : "closed");
  return 1;
}

int lmile_mlp_plan(lua_State *L) {
  static const char *const acts[] = {"none", "relu", "tanh", "sigmoid", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 1024, 1, "needs 1..1024 layers {W, b, act}");
  /* scratch arrays owned by the collector: a raised error frees them too */
  mile_tensor **w = lua_newuserdatauv(L, sizeof *w * (size_t)n * 2, 0), **b = w + n;
  mile_activation *a = lua_newuserdatauv(L, sizeof *a * (size_t)n, 0);
  for (lua_Integer i = 0; i < n; i++) {
    if (lua_rawgeti(L, 1, i + 1) != LUA_TTABLE)
      return luaL_error(L, "mlp_plan: layer %d is not a table {W, b, act}", (int)i + 1);
    int layer = lua_gettop(L);
    lua_rawgeti(L, layer, 1);
    w[i] = lmile_check_tensor(L, -1);
    b[i] = lua_rawgeti(L, layer, 2) == LUA_TNIL ? NULL : lmile_check_tensor(L, -1);
    lua_rawgeti(L, layer, 3);
    a[i] = (mile_activation)luaL_checkoption(L, -1, "none", acts);
    lua_pop(L, 4); /* the layer's table and its three fields stay referenced by argument 1 */
  }
  plan_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->plan = NULL;
  if (luaL_newmetatable(L, LPLAN_MT)) {
    static const luaL_Reg meta[] = {
        {"__gc", plan_gc}, {"__close", plan_gc}, {"__call", plan_call}, {"__tostring", plan_tostring}, {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
  }
  lua_setmetatable(L, -2);
  lmile_check(L, mile_mlp_plan_new(&box->plan, (int32_t)n, w, b, a), "mlp_plan");
  return 1;
}
