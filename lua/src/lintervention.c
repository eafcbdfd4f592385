/* lintervention.c - mile.intervention.core: the fused probit kernels of
 * core/include/mile/intervention.h for Lua. The friendly API (named arguments,
 * result tables, the Monte Carlo variant, the pure-Lua reference) is
 * lua/mile/intervention.lua; this file only converts arguments.
 *
 * cost and scale may be Lua numbers (made 0-d tensors of the inputs' dtype) or
 * tensors. Action values are the environment's own 0-based numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lmile.h"

/* A named tensor argument, or a Lua error naming it. */
static mile_tensor *check_named(lua_State *L, int idx, const char *fname, const char *what) {
  mile_tensor *t = lmile_to_tensor(L, idx);
  if (!t) luaL_error(L, "%s: %s must be a tensor, got %s", fname, what, luaL_typename(L, idx));
  return t;
}

/* cost or scale at idx: a tensor, or a number boxed as a 0-d tensor of `dtype`
 * (pushed into the stack slot idx so that it is freed by the GC). */
static mile_tensor *check_param(lua_State *L, int idx, const char *fname, const char *what, mile_dtype dtype) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    double v = lua_tonumber(L, idx);
    mile_tensor *t;
    lmile_check(L, mile_scalar(&t, dtype, v), fname);
    mile_tape_constant(t);
    lmile_push_tensor(L, t);
    lua_replace(L, idx);
    return t;
  }
  mile_tensor *t = lmile_to_tensor(L, idx);
  if (!t) luaL_error(L, "%s: %s must be a number or a tensor, got %s", fname, what, luaL_typename(L, idx));
  return t;
}

/* discrete(policy_logits, mental_logits, cost, scale) -> packed [B, 4A+2] */
static int iv_discrete(lua_State *L) {
  const char *fname = "probit_discrete";
  mile_tensor *lh = check_named(L, 1, fname, "policy_logits");
  mile_tensor *lm = check_named(L, 2, fname, "mental_logits");
  mile_tensor *c = check_param(L, 3, fname, "cost", (mile_dtype)lh->dtype);
  mile_tensor *s = check_param(L, 4, fname, "scale", (mile_dtype)lh->dtype);
  return lmile_call(L, &(mile_call){.op = MILE_OP_PROBIT_DISCRETE, LMILE_IN(lh, lm, c, s)}, fname);
}

/* gaussian(mu, log_sd, mental_mu, mental_log_sd, cost, scale) -> packed [B, 3] (K, ln p, ln(1-p)) */
static int iv_gaussian(lua_State *L) {
  const char *fname = "probit_gaussian";
  static const char *const names[4] = {"mu", "log_sd", "mental_mu", "mental_log_sd"};
  mile_tensor *in[4];
  for (int i = 0; i < 4; i++) in[i] = check_named(L, i + 1, fname, names[i]);
  mile_tensor *c = check_param(L, 5, fname, "cost", (mile_dtype)in[0]->dtype);
  mile_tensor *s = check_param(L, 6, fname, "scale", (mile_dtype)in[0]->dtype);
  return lmile_call(L, &(mile_call){.op = MILE_OP_PROBIT_GAUSSIAN, LMILE_IN(in[0], in[1], in[2], in[3], c, s)}, fname);
}

/* gaussian_logp(D, t0, scale) -> ln p, ln(1-p), d ln p/dt0, d ln p/dscale, d ln(1-p)/dt0, d ln(1-p)/dscale */
static int iv_gaussian_logp(lua_State *L) {
  lua_Integer dims = luaL_checkinteger(L, 1);
  double t0 = luaL_checknumber(L, 2), scale = luaL_checknumber(L, 3), v[6];
  luaL_argcheck(L, dims >= 1 && dims <= 1 << 20, 1, "dims must be positive");
  lmile_check(L, mile_probit_gaussian_logp((int32_t)dims, t0, scale, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]),
              "gaussian_logp");
  for (int i = 0; i < 6; i++) lua_pushnumber(L, v[i]);
  return 6;
}

/* loss(variant, lambda, log_p, log1m_p, log_pi, log_q or nil, nu) -> [3] (loss, j1, j2) */
static int iv_loss(lua_State *L) {
  static const char *const variants[] = {"paper", "joint", "reference", NULL};
  int variant = luaL_checkoption(L, 1, NULL, variants);
  double lambda = luaL_checknumber(L, 2);
  mile_tensor *lp = check_named(L, 3, "loss", "log_p");
  mile_tensor *l1 = check_named(L, 4, "loss", "log1m_p");
  mile_tensor *lpi = check_named(L, 5, "loss", "log_pi");
  mile_tensor *lq = lua_isnoneornil(L, 6) ? NULL : check_named(L, 6, "loss", "log_q");
  mile_tensor *nu = check_named(L, 7, "loss", "nu");
  return lmile_call(
      L, &(mile_call){.op = MILE_OP_IV_LOSS, LMILE_IN(lp, l1, lpi, lq, nu), .i = {variant}, .d = {lambda}}, "loss");
}

/* take(matrix [B, n], actions [B], offset [, nu [, width [, check]]]) -> [B]:
 * matrix[b][offset + actions[b]] (0-based action values, 0-based offset;
 * differentiable in matrix). Rows with nu = 0 read column offset + 0 whatever their
 * action (their value is unused by the losses, and datasets may store any filler
 * there). `width` bounds the action values (default n - offset). check = false skips
 * the per-sample test of the action values (callers that validated them once); the
 * gather still refuses an index out of range. */
static int iv_take(lua_State *L) {
  const char *fname = "take";
  mile_tensor *m = check_named(L, 1, fname, "matrix");
  mile_tensor *a = check_named(L, 2, fname, "human_action");
  lua_Integer offset = luaL_checkinteger(L, 3);
  mile_tensor *nu = lua_isnoneornil(L, 4) ? NULL : check_named(L, 4, fname, "nu");
  if (m->ndim != 2) luaL_error(L, "%s: expected a [B, n] matrix", fname);
  int64_t n = m->shape[1];
  luaL_argcheck(L, offset >= 0 && offset < n, 3, "offset out of range"); /* before n - offset */
  lua_Integer width = luaL_optinteger(L, 5, n - offset);
  int check = lua_isnoneornil(L, 6) || lua_toboolean(L, 6);
  luaL_argcheck(L, width >= 1 && width <= n - offset, 5, "width out of range");
  return lmile_call(L, &(mile_call){.op = MILE_OP_TAKE_ACTIONS, LMILE_IN(m, a, nu), .i = {offset, width, check}},
                    fname);
}

/* check_actions(actions [B, D]): raises naming the first non-finite action (1-based) */
static int iv_check_actions(lua_State *L) {
  mile_tensor *a = check_named(L, 1, "check_actions", "human_action");
  lmile_call(L, &(mile_call){.op = MILE_OP_CHECK_ACTIONS, LMILE_IN(a)}, "check_actions");
  return 0;
}

static const luaL_Reg functions[] = {{"discrete", iv_discrete},
                                     {"gaussian", iv_gaussian},
                                     {"gaussian_logp", iv_gaussian_logp},
                                     {"loss", iv_loss},
                                     {"take", iv_take},
                                     {"check_actions", iv_check_actions},
                                     {NULL, NULL}};

int luaopen_mile_intervention_core(lua_State *L) {
  luaL_newlib(L, functions);
  return 1;
}
