/* lmile.h - helpers shared by mile's Lua 5.4 bindings (lua/src/l*.c).
 *
 * Conventions: argument checks first, allocation second (a failing luaL_check*
 * longjmps); a core status becomes a Lua error in one place (lmile_check), always
 * through "%s". Tensors are userdata boxes holding one reference to a mile_tensor. */
#ifndef LMILE_H
#define LMILE_H

#include <lua.h>
#include <lauxlib.h>
#include "mile/mile.h"

#define LMILE_TENSOR_MT "mile.tensor"
#define LMILE_RNG_MT "mile.Generator"

/* Raise a Lua error "<fname>: <mile_last_error()>" unless status is MILE_OK. */
void lmile_check(lua_State *L, mile_status status, const char *fname);

/* Push a userdata box for t, taking over the caller's reference (t may not be
 * NULL), and tell the GC what the storage costs. */
void lmile_push_tensor(lua_State *L, mile_tensor *t);
/* mile.tensor.mlp_plan{{W, b, act}, ...} (lplan.c) */
int lmile_mlp_plan(lua_State *L);
/* A new contiguous tensor, already pushed; raises on failure. */
mile_tensor *lmile_push_new_tensor(lua_State *L, mile_dtype dtype, int32_t ndim, const int64_t *shape);
/* Run a recordable op (mile/tape.h: recorded when a step is being recorded) and push
 * its outputs (nil for a NULL one); raises the op's error. Returns the count pushed. */
int lmile_call(lua_State *L, mile_call *c, const char *fname);
/* The input list of a mile_call literal: .in and .n_in from the tensors given. */
#define LMILE_IN(...)                                                                                                  \
  .in = (mile_tensor *const[]){__VA_ARGS__},                                                                           \
  .n_in = (int32_t)(sizeof((mile_tensor *const[]){__VA_ARGS__}) / sizeof(mile_tensor *))
/* While a step is recorded: something that cannot be replayed happened (`what` names
 * it; `why` says what kind of thing it is); the recording is refused. */
void lmile_unrecorded(lua_State *L, const char *what, const char *why);
/* While a step is recorded: the Lua list of step counts at idx belongs to the
 * optimiser call just recorded; each replay writes the tape's counts back into it. */
void lmile_note_steps(lua_State *L, int idx);
/* The tensor at idx, or a Lua error naming the argument. */
mile_tensor *lmile_check_tensor(lua_State *L, int idx);
/* The tensor at idx, or NULL when the value is not a mile tensor. */
mile_tensor *lmile_to_tensor(lua_State *L, int idx);
/* The generator at idx, or a Lua error. */
mile_rng *lmile_check_rng(lua_State *L, int idx);

/* The Lua thread running the current backward (custom Lua nodes call into it). */
extern lua_State *lmile_backward_L;

/* Register the C modules of mile in package.preload (mile.tensor, mile.sys, the
 * mile.<name>.core modules and mile.core itself). */
void lmile_preload(lua_State *L);

/* luaopen functions of the C modules. */
int luaopen_mile_tensor(lua_State *L);
int luaopen_mile_intervention_core(lua_State *L);
int luaopen_mile_autograd_core(lua_State *L);
int luaopen_mile_optim_core(lua_State *L);
int luaopen_mile_compile_core(lua_State *L);
int luaopen_mile_sys(lua_State *L);
int luaopen_mile_envs_core(lua_State *L);
int luaopen_mile_io_core(lua_State *L);
int luaopen_mile_data_core(lua_State *L);
int luaopen_mile_teleop_core(lua_State *L);
int luaopen_mile_core(lua_State *L);

/* 1-based dim argument at idx (negative counts from the end) -> 0-based C dim. */
int32_t lmile_check_dim(lua_State *L, int idx, const mile_tensor *t);
/* A shape given as a table {2,3} or as numbers from idx on; returns ndim. */
int32_t lmile_check_shape(lua_State *L, int idx, int64_t *shape);

#endif
