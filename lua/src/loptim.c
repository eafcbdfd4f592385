/* loptim.c - mile.optim.core: the fused optimiser kernels of optim.h for Lua.
 *
 * The list functions update a whole parameter group in one call (one Lua -> C
 * crossing per optimiser step, not one per tensor) and read each parameter's
 * gradient straight from the core tensor (no Lua box for .grad). They check every
 * entry of the lists before they update any, so a bad entry leaves all
 * parameters untouched. Parameters without a gradient are skipped, and their step
 * counts stay as they are (as in torch.optim). */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "lmile.h"

/* Element i (1-based) of the list at idx as a tensor, or a Lua error naming it. */
static mile_tensor *list_tensor(lua_State *L, int idx, lua_Integer i, const char *what) {
  lua_geti(L, idx, i);
  mile_tensor *t = lmile_to_tensor(L, -1);
  if (!t) luaL_error(L, "optim: %s[%d] is %s, not a tensor", what, (int)i, luaL_typename(L, -1));
  lua_pop(L, 1); /* still referenced by the list */
  return t;
}

static void check_like(lua_State *L, const mile_tensor *p, const mile_tensor *t, lua_Integer i, const char *what) {
  if (t->dtype != p->dtype || t->ndim != p->ndim || !mile_is_contiguous(t))
    luaL_error(L, "optim: %s[%d] must be a contiguous tensor of the parameter's shape and dtype", what, (int)i);
  for (int32_t d = 0; d < p->ndim; d++)
    if (t->shape[d] != p->shape[d])
      luaL_error(L, "optim: %s[%d] must be a contiguous tensor of the parameter's shape and dtype", what, (int)i);
}

/* The parameters' gradients must match them (a contiguous copy is made later when
 * a gradient is a strided view). */
static void check_grad(lua_State *L, const mile_tensor *p, lua_Integer i) {
  const mile_tensor *g = p->grad;
  if (!g) return;
  bool ok = g->dtype == p->dtype && g->ndim == p->ndim;
  for (int32_t d = 0; ok && d < p->ndim; d++) ok = g->shape[d] == p->shape[d];
  if (!ok) luaL_error(L, "optim: the gradient of parameter %d does not match its shape and dtype", (int)i);
  if (!mile_is_contiguous(p)) luaL_error(L, "optim: parameter %d is not contiguous", (int)i);
}

static lua_Integer next_step(lua_State *L, int steps_idx, lua_Integer i) {
  lua_geti(L, steps_idx, i);
  int ok;
  lua_Integer s = lua_tointegerx(L, -1, &ok);
  lua_pop(L, 1);
  if (!ok || s < 0 || s == LUA_MAXINTEGER) luaL_error(L, "optim: steps[%I] is not a step count", i);
  return s + 1;
}

/* One optimiser call over a group: the lists at 1..n_lists (params first) as one
 * input array, and the step counts from the list at steps_idx, in userdata buffers
 * left on the stack (freed by the GC, also on error). */
typedef struct group_call {
  mile_call call;
  lua_Integer n;
} group_call;

static group_call gather_group(lua_State *L, lua_Integer n, int n_lists, int steps_idx) {
  group_call g = {.n = n};
  mile_tensor **in = lua_newuserdatauv(L, (size_t)(n * n_lists + 1) * sizeof *in, 0);
  int64_t *steps = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *steps, 0);
  for (int k = 0; k < n_lists; k++)
    for (lua_Integer i = 1; i <= n; i++)
      in[k * n + i - 1] = list_tensor(L, k + 1, i, "params");
  for (lua_Integer i = 1; i <= n; i++)
    steps[i - 1] = next_step(L, steps_idx, i) - 1;
  g.call.in = in, g.call.n_in = (int32_t)(n * n_lists);
  g.call.steps = steps, g.call.n_steps = (int32_t)n;
  return g;
}

/* Run the group's call (recorded when a step is), write the step counts back, push
 * the number of parameters updated. */
static int run_group(lua_State *L, group_call *g, int steps_idx, const char *fname) {
  lmile_check(L, mile_call_run(&g->call), fname);
  if (mile_tape_recording()) lmile_note_steps(L, steps_idx);
  for (lua_Integer i = 1; i <= g->n; i++) {
    lua_pushinteger(L, g->call.steps[i - 1]);
    lua_seti(L, steps_idx, i);
  }
  lua_pushinteger(L, g->call.updated);
  return 1;
}

/* adam(params, exp_avgs, exp_avg_sqs, steps, lr, beta1, beta2, eps, weight_decay, decoupled) -> n updated */
static int o_adam(lua_State *L) {
  for (int k = 1; k <= 4; k++) luaL_checktype(L, k, LUA_TTABLE);
  double lr = luaL_checknumber(L, 5), b1 = luaL_checknumber(L, 6), b2 = luaL_checknumber(L, 7);
  double eps = luaL_checknumber(L, 8), wd = luaL_checknumber(L, 9);
  int decoupled = lua_toboolean(L, 10);
  lua_Integer n = luaL_len(L, 1);
  for (lua_Integer i = 1; i <= n; i++) { /* check everything first */
    mile_tensor *p = list_tensor(L, 1, i, "params");
    check_like(L, p, list_tensor(L, 2, i, "exp_avgs"), i, "exp_avgs");
    check_like(L, p, list_tensor(L, 3, i, "exp_avg_sqs"), i, "exp_avg_sqs");
    check_grad(L, p, i);
    next_step(L, 4, i);
  }
  group_call g = gather_group(L, n, 3, 4);
  g.call.op = MILE_OP_ADAM;
  g.call.i[0] = decoupled;
  double d[5] = {lr, b1, b2, eps, wd};
  memcpy(g.call.d, d, sizeof d);
  return run_group(L, &g, 4, decoupled ? "adamw" : "adam");
}

/* sgd(params, bufs_or_nil, steps, lr, momentum, dampening, weight_decay, nesterov) -> n updated.
 * A buffer is blended from its step count: step 0 means the first update (buf = g). */
static int o_sgd(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  bool has_bufs = !lua_isnoneornil(L, 2);
  if (has_bufs) luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  double lr = luaL_checknumber(L, 4), mom = luaL_checknumber(L, 5), damp = luaL_checknumber(L, 6);
  double wd = luaL_checknumber(L, 7);
  int nesterov = lua_toboolean(L, 8);
  if (mom != 0 && !has_bufs) luaL_error(L, "sgd: momentum needs a list of buffers");
  lua_Integer n = luaL_len(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    mile_tensor *p = list_tensor(L, 1, i, "params");
    if (mom != 0) check_like(L, p, list_tensor(L, 2, i, "momentum_buffers"), i, "momentum_buffers");
    check_grad(L, p, i);
    next_step(L, 3, i);
  }
  group_call g = gather_group(L, n, mom != 0 ? 2 : 1, 3);
  g.call.op = MILE_OP_SGD;
  g.call.i[0] = nesterov, g.call.i[1] = mom != 0;
  double d[4] = {lr, mom, damp, wd};
  memcpy(g.call.d, d, sizeof d);
  return run_group(L, &g, 3, "sgd");
}

/* The gradients of the tensors in the list at idx (NULL entries for none), in a
 * userdata buffer left on the stack. */
static mile_tensor **collect_grads(lua_State *L, int idx, int32_t *count) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, idx);
  luaL_argcheck(L, n >= 0 && n < (1 << 24), idx, "too many tensors");
  mile_tensor **grads = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *grads, 0);
  for (lua_Integer i = 1; i <= n; i++) grads[i - 1] = list_tensor(L, idx, i, "params")->grad;
  *count = (int32_t)n;
  return grads;
}

static double check_norm_type(lua_State *L, int idx) {
  double p = luaL_optnumber(L, idx, 2);
  luaL_argcheck(L, p >= 1, idx, "norm_type must be >= 1 (math.huge for the max norm)");
  return p;
}

/* grad_norm(params [, norm_type = 2]) -> the norm of all their gradients as one vector */
static int o_grad_norm(lua_State *L) {
  double p = check_norm_type(L, 2), norm;
  int32_t n;
  lmile_unrecorded(L, "grad_norm", "returns a value to Lua");
  mile_tensor **grads = collect_grads(L, 1, &n);
  lmile_check(L, mile_grad_norm(&norm, n, grads, p), "grad_norm");
  lua_pushnumber(L, norm);
  return 1;
}

/* clip_grad_norm(params, max_norm [, norm_type = 2]) -> total norm before clipping */
static int o_clip_grad_norm(lua_State *L) {
  double max_norm = luaL_checknumber(L, 2), p = check_norm_type(L, 3), norm;
  int32_t n;
  lmile_unrecorded(L, "clip_grad_norm", "is not recorded");
  mile_tensor **grads = collect_grads(L, 1, &n);
  lmile_check(L, mile_clip_grad_norm(&norm, n, grads, max_norm, p), "clip_grad_norm");
  lua_pushnumber(L, norm);
  return 1;
}

/* adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
 * one tensor, the core call as it is (for tests and custom optimisers). */
static int o_adam_step(lua_State *L) {
  mile_tensor *p = lmile_check_tensor(L, 1), *g = lmile_check_tensor(L, 2);
  mile_tensor *m = lmile_check_tensor(L, 3), *v = lmile_check_tensor(L, 4);
  lua_Integer step = luaL_checkinteger(L, 5);
  lmile_unrecorded(L, "adam_step", "is not recorded (optim.Adam is)");
  double lr = luaL_checknumber(L, 6), b1 = luaL_checknumber(L, 7), b2 = luaL_checknumber(L, 8);
  double eps = luaL_checknumber(L, 9), wd = luaL_optnumber(L, 10, 0);
  lmile_check(L, mile_adam_step(p, g, m, v, lr, b1, b2, eps, wd, lua_toboolean(L, 11), (int64_t)step), "adam_step");
  return 0;
}

/* sgd_step(param, grad, buf_or_nil, first, lr, momentum, dampening, weight_decay, nesterov) */
static int o_sgd_step(lua_State *L) {
  mile_tensor *p = lmile_check_tensor(L, 1), *g = lmile_check_tensor(L, 2);
  mile_tensor *buf = lua_isnoneornil(L, 3) ? NULL : lmile_check_tensor(L, 3);
  int first = lua_toboolean(L, 4);
  lmile_unrecorded(L, "sgd_step", "is not recorded (optim.SGD is)");
  double lr = luaL_checknumber(L, 5), mom = luaL_optnumber(L, 6, 0), damp = luaL_optnumber(L, 7, 0);
  double wd = luaL_optnumber(L, 8, 0);
  lmile_check(L, mile_sgd_step(p, g, buf, lr, mom, damp, wd, lua_toboolean(L, 9), first), "sgd_step");
  return 0;
}

static const luaL_Reg functions[] = {
    {"adam", o_adam}, {"sgd", o_sgd}, {"grad_norm", o_grad_norm}, {"clip_grad_norm", o_clip_grad_norm},
    {"adam_step", o_adam_step}, {"sgd_step", o_sgd_step}, {NULL, NULL}};

int luaopen_mile_optim_core(lua_State *L) {
  luaL_newlib(L, functions);
  return 1;
}
