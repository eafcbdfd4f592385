/* lcompile.c - mile.compile.core: recording a step's ops on a tape and replaying it
 * (mile/tape.h). The Lua side (lua/mile/compile.lua) decides when to record, guards
 * the arguments and falls back; this file only moves tensors across.
 *
 *   core.begin({x, y, ...})          start recording; the tensors are the step's inputs
 *   core.finish({out, ...}) -> tape  stop; nil, reason when it cannot be replayed
 *   core.abort()                     stop and drop (the step raised)
 *   core.recording() -> bool
 *   tape:replay({x, y, ...}) -> {out, ...}
 *   tape:matches({x, y, ...}) -> true | false, why (shapes, dtypes, grad mode)
 *   tape:ops() -> {"linear", "relu", ...} */
#include <stdbool.h>

#include "lmile.h"

#define LTAPE_MT "mile.Tape"

typedef struct tape_box {
  mile_tape *tape;
} tape_box;

/* registry key of the list of step-count tables noted by the recording in progress;
 * a finished tape keeps that list as its user value */
static int steps_key;

void lmile_note_steps(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &steps_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* The tensors of the list at idx, in a userdata buffer left on the stack. */
static mile_tensor **tensor_list(lua_State *L, int idx, int32_t *count, bool allow_nil) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, idx);
  luaL_argcheck(L, n >= 0 && n < (1 << 20), idx, "too many tensors");
  mile_tensor **list = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *list, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    list[i - 1] = lmile_to_tensor(L, -1);
    if (!list[i - 1] && !(allow_nil && lua_isnil(L, -1)))
      luaL_error(L, "compile: element %d of the list is %s, not a tensor", (int)i, luaL_typename(L, -1));
    lua_pop(L, 1); /* still referenced by the list */
  }
  *count = (int32_t)n;
  return list;
}

static int c_begin(lua_State *L) {
  int32_t n;
  mile_tensor **inputs = tensor_list(L, 1, &n, false);
  lmile_check(L, mile_tape_begin(n, inputs), "compile");
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &steps_key);
  return 0;
}

static int tape_gc(lua_State *L) {
  tape_box *box = luaL_checkudata(L, 1, LTAPE_MT);
  mile_tape_free(box->tape);
  box->tape = NULL;
  return 0;
}

static mile_tape *check_tape(lua_State *L, int idx) {
  tape_box *box = luaL_checkudata(L, idx, LTAPE_MT);
  if (!box->tape) luaL_error(L, "compile: the tape was freed");
  return box->tape;
}

/* The optimisers' step counts (the Lua lists noted while recording, the user value of
 * the tape at index 1) into the tape before a replay, and back out after it: the
 * optimiser may also step outside the compiled step. */
static void sync_steps(lua_State *L, mile_tape *tape, bool into_tape) {
  lua_getiuservalue(L, 1, 1);
  lua_Integer n_opt = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
  for (lua_Integer j = 1; j <= n_opt; j++) {
    int32_t count;
    int64_t *steps;
    if (mile_tape_steps(tape, (int32_t)j - 1, &count, &steps) != MILE_OK) break;
    lua_rawgeti(L, -1, j);
    for (int32_t i = 0; i < count; i++) {
      if (into_tape) {
        lua_rawgeti(L, -1, i + 1);
        steps[i] = (int64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
      } else {
        lua_pushinteger(L, steps[i]);
        lua_rawseti(L, -2, i + 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int tape_replay(lua_State *L) {
  mile_tape *tape = check_tape(L, 1);
  int32_t n;
  mile_tensor **inputs = tensor_list(L, 2, &n, false);
  int32_t n_out = mile_tape_n_outputs(tape);
  mile_tensor **outputs = lua_newuserdatauv(L, (size_t)(n_out ? n_out : 1) * sizeof *outputs, 0);
  sync_steps(L, tape, true);
  lua_State *previous = lmile_backward_L;
  lmile_backward_L = L;
  mile_status st = mile_tape_replay(tape, n, inputs, outputs);
  lmile_backward_L = previous;
  sync_steps(L, tape, false); /* also after a failed replay: what ran, ran */
  lmile_check(L, st, "compile");
  lua_createtable(L, n_out, 0);
  for (int32_t k = 0; k < n_out; k++) {
    if (outputs[k]) {
      lmile_push_tensor(L, outputs[k]);
      outputs[k] = NULL;
    } else {
      lua_pushnil(L);
    }
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

static int tape_matches(lua_State *L) { /* tape:matches({x, ...}) -> true | false, why */
  mile_tape *tape = check_tape(L, 1);
  int32_t n;
  mile_tensor **inputs = tensor_list(L, 2, &n, false);
  if (mile_tape_check_inputs(tape, n, inputs) == MILE_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, mile_last_error());
  return 2;
}

static int tape_ops(lua_State *L) {
  mile_tape *tape = check_tape(L, 1);
  int32_t n = mile_tape_n_ops(tape);
  lua_createtable(L, n, 0);
  for (int32_t k = 0; k < n; k++) {
    lua_pushstring(L, mile_tape_op_name(tape, k));
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

static int tape_tostring(lua_State *L) {
  tape_box *box = luaL_checkudata(L, 1, LTAPE_MT);
  if (!box->tape)
    lua_pushstring(L, "mile.Tape (freed)");
  else
    lua_pushfstring(L, "mile.Tape (%d ops, %d inputs, %d outputs)", (int)mile_tape_n_ops(box->tape),
                    (int)mile_tape_n_inputs(box->tape), (int)mile_tape_n_outputs(box->tape));
  return 1;
}

static int c_finish(lua_State *L) {
  int32_t n;
  mile_tensor **outputs = tensor_list(L, 1, &n, true);
  tape_box *box = lua_newuserdatauv(L, sizeof *box, 1);
  box->tape = NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &steps_key);
  lua_setiuservalue(L, -2, 1);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &steps_key);
  if (luaL_newmetatable(L, LTAPE_MT)) {
    static const luaL_Reg methods[] = {
        {"replay", tape_replay}, {"matches", tape_matches}, {"ops", tape_ops}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", tape_gc}, {"__tostring", tape_tostring}, {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  if (mile_tape_finish(&box->tape, n, outputs) != MILE_OK) {
    lua_pushnil(L);
    lua_pushstring(L, mile_last_error());
    return 2;
  }
  return 1;
}

static int c_abort(lua_State *L) {
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &steps_key);
  mile_tape_abort();
  return 0;
}

static int c_recording(lua_State *L) {
  lua_pushboolean(L, mile_tape_recording());
  return 1;
}

static int c_invalidate(lua_State *L) {
  mile_tape_invalidate(luaL_checkstring(L, 1));
  return 0;
}

static const luaL_Reg functions[] = {{"begin", c_begin},         {"finish", c_finish},         {"abort", c_abort},
                                     {"recording", c_recording}, {"invalidate", c_invalidate}, {NULL, NULL}};

int luaopen_mile_compile_core(lua_State *L) {
  luaL_newlib(L, functions);
  return 1;
}
