/* ldata.c - mile.data.core: intervention datasets (mile/data.h) for the Lua module
 * mile.data.
 *
 * A dataset is a "mile.data.Dataset" userdata box owning one mile_dataset and a
 * scratch row; a sampler is a "mile.data.Sampler" box owning one mile_sampler. Boxes
 * are created empty before anything is allocated, and their __gc is idempotent.
 * Scratch buffers are Lua userdata, so a raise frees them. Row indices are 1-based
 * here (Lua) and 0-based in the core; the conversion happens in this file only.
 *
 * Error convention (as mile.io): a file that cannot be opened, read or written gives
 * nil, message; a malformed file and misuse raise. Messages of malformed files start
 * with "<file>:<line>:<column>: ". */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmile.h"

#define LDATA_MT "mile.data.Dataset"
#define LSAMPLER_MT "mile.data.Sampler"

typedef struct ds_box {
  mile_dataset *ds;
  double *row; /* one row of scratch for append, malloc'ed */
} ds_box;

typedef struct sampler_box { mile_sampler *s; } sampler_box;

static int ds_gc(lua_State *L) {
  ds_box *box = luaL_checkudata(L, 1, LDATA_MT);
  mile_dataset_free(box->ds);
  free(box->row);
  box->ds = NULL, box->row = NULL;
  return 0;
}

static int sampler_gc(lua_State *L) {
  sampler_box *box = luaL_checkudata(L, 1, LSAMPLER_MT);
  mile_sampler_free(box->s);
  box->s = NULL;
  return 0;
}

/* Raise a formatted message (lua_pushfstring's formats) without luaL_error's position
 * prefix: that would name the line of mile/data.lua that called the core, where the
 * message is about the user's data ("<file>:<line>:<column>: ..." must come first). */
static int data_raise(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* Raise the core's message as it is (it names the file or the function already). */
static int raise_core(lua_State *L) { return data_raise(L, "%s", mile_last_error()); }

/* Raise the core's message under the Lua name of the function: "dataset_append: x"
 * becomes "append: x". */
static int raise_core_as(lua_State *L, const char *fname) {
  const char *msg = mile_last_error();
  if (!strncmp(msg, "dataset_", 8)) {
    const char *colon = strstr(msg, ": ");
    if (colon) msg = colon + 2;
  }
  return data_raise(L, "%s: %s", fname, msg);
}

/* A new empty box on the stack (its __gc is a no-op until filled). */
static ds_box *push_box(lua_State *L) {
  ds_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->ds = NULL, box->row = NULL;
  luaL_setmetatable(L, LDATA_MT);
  return box;
}

/* Hand ds (owned by the caller until now) to the box; tell the GC what it costs. */
static void fill_box(lua_State *L, ds_box *box, mile_dataset *ds) {
  box->ds = ds;
  box->row = malloc((size_t)mile_dataset_cols(ds) * sizeof(double));
  if (!box->row) data_raise(L, "mile.data: out of memory"); /* ds is freed with the box */
  size_t kib = (size_t)mile_dataset_rows(ds) * (size_t)mile_dataset_cols(ds) * sizeof(double) / 1024;
  if (kib >= 256) lua_gc(L, LUA_GCSTEP, (int)(kib > 1 << 30 ? 1 << 30 : kib));
}

static ds_box *check_box(lua_State *L, int idx) {
  ds_box *box = luaL_checkudata(L, idx, LDATA_MT);
  if (!box->ds) luaL_argerror(L, idx, "dataset was freed");
  return box;
}

static int32_t check_int32(lua_State *L, int idx, int32_t lo, int32_t hi, const char *what) {
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v < lo || v > hi) data_raise(L, "mile.data: %s must be in %d..%d, got %I", what, (int)lo, (int)hi, v);
  return (int32_t)v;
}

/* new(obs_dim, action_dim, discrete, has_p, n_actions) -> box */
static int d_new(lua_State *L) {
  int32_t obs_dim = check_int32(L, 1, 1, MILE_DATASET_MAX_DIM, "obs_dim");
  int32_t action_dim = check_int32(L, 2, 1, MILE_DATASET_MAX_DIM, "action_dim");
  int discrete = lua_toboolean(L, 3), has_p = lua_toboolean(L, 4);
  int32_t n_actions = lua_isnoneornil(L, 5) ? 0 : check_int32(L, 5, 0, INT32_MAX, "n_actions");
  ds_box *box = push_box(L);
  mile_dataset *ds;
  if (mile_dataset_new(&ds, obs_dim, action_dim, discrete, has_p) != MILE_OK) raise_core(L);
  fill_box(L, box, ds);
  if (mile_dataset_set_n_actions(ds, n_actions) != MILE_OK) raise_core(L);
  return 1;
}

/* load(path, n_actions, float_columns {names} | nil, max_bytes | nil) -> box | nil, msg */
static int d_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mile_dataset_load_options o = {0};
  o.n_actions = lua_isnoneornil(L, 2) ? 0 : check_int32(L, 2, 0, INT32_MAX, "n_actions");
  if (!lua_isnoneornil(L, 4)) {
    lua_Integer max = lua_isinteger(L, 4) ? lua_tointeger(L, 4) : 0;
    if (max < 1) data_raise(L, "data.load: max_bytes must be a positive integer");
    o.max_bytes = (int64_t)max;
  }
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) { /* the names, borrowed from the table (alive on the stack) */
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 3);
    if (n < 0 || n > 3 * MILE_DATASET_MAX_DIM + 8) data_raise(L, "data.load: float: too many names (%I)", n);
    const char **names = lua_newuserdatauv(L, (size_t)n * sizeof *names + 1, 0); /* stack: ..., names */
    for (lua_Integer i = 1; i <= n; i++) {
      size_t len;
      lua_geti(L, 3, i);
      const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      if (!name || strlen(name) != len)
        data_raise(L, "data.load: float must be a list of column names (\"t\", \"episode\", \"ar\", ...); item %I is %s",
                   i, name ? "a string with a zero byte" : luaL_typename(L, -1));
      names[i - 1] = name;
      lua_pop(L, 1);
    }
    o.n_float = (int32_t)n;
    o.float_columns = names;
  }
  ds_box *box = push_box(L);
  mile_dataset *ds;
  mile_status st = mile_dataset_load_with(&ds, path, &o);
  if (st == MILE_ERR_IO) {
    lua_pushnil(L);
    lua_pushstring(L, mile_last_error());
    return 2;
  }
  if (st != MILE_OK) raise_core(L);
  fill_box(L, box, ds);
  return 1;
}

/* layout(box) -> obs_dim, action_dim, discrete, has_p, n_actions, rows, cols */
static int d_layout(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds;
  lua_pushinteger(L, mile_dataset_obs_dim(ds));
  lua_pushinteger(L, mile_dataset_action_dim(ds));
  lua_pushboolean(L, mile_dataset_is_discrete(ds));
  lua_pushboolean(L, mile_dataset_has_p(ds));
  lua_pushinteger(L, mile_dataset_n_actions(ds));
  lua_pushinteger(L, (lua_Integer)mile_dataset_rows(ds));
  lua_pushinteger(L, mile_dataset_cols(ds));
  return 7;
}

static int d_rows(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mile_dataset_rows(check_box(L, 1)->ds));
  return 1;
}

static int d_n_interventions(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mile_dataset_count_interventions(check_box(L, 1)->ds));
  return 1;
}

static int d_columns(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds;
  int32_t n = mile_dataset_cols(ds);
  lua_createtable(L, n, 0);
  for (int32_t c = 0; c < n; c++) {
    lua_pushstring(L, mile_dataset_col_name(ds, c));
    lua_rawseti(L, -2, c + 1);
  }
  return 1;
}

static int d_set_n_actions(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds;
  int32_t n = check_int32(L, 2, 0, INT32_MAX, "n_actions");
  if (mile_dataset_set_n_actions(ds, n) != MILE_OK) raise_core_as(L, "set_n_actions");
  return 0;
}

/* ---- append ------------------------------------------------------------------------ */

static const char *const field_names[] = {"episode", "t",      "obs",  "robot_action", "human_action",
                                          "nu",      "reward", "done", "success",      "p",
                                          NULL};

/* Read `width` values of the tuple field at idx into dst: a number (width 1), a
 * boolean (flags), a tensor or a table of numbers with exactly width values. */
static void read_field(lua_State *L, int idx, double *dst, int32_t width, const char *name) {
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
      if (width != 1) data_raise(L, "append: %s has 1 value, expected %d", name, (int)width);
      dst[0] = lua_tonumber(L, idx);
      return;
    case LUA_TBOOLEAN:
      if (width != 1) data_raise(L, "append: %s is a boolean, expected %d values", name, (int)width);
      dst[0] = lua_toboolean(L, idx) ? 1 : 0;
      return;
    case LUA_TTABLE: {
      lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
      if (n != width) data_raise(L, "append: %s has %d values, expected %d", name, (int)n, (int)width);
      for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TNUMBER)
          data_raise(L, "append: %s[%d] is a %s, expected a number", name, (int)i, luaL_typename(L, -1));
        dst[i - 1] = lua_tonumber(L, -1);
        lua_pop(L, 1);
      }
      return;
    }
    default: {
      mile_tensor *t = lmile_to_tensor(L, idx);
      if (!t) data_raise(L, "append: %s is a %s, expected a number, a table or a tensor", name, luaL_typename(L, idx));
      if (mile_numel(t) != width)
        data_raise(L, "append: %s has %d values, expected %d", name, (int)mile_numel(t), (int)width);
      lmile_check(L, mile_to_doubles(t, dst), "append");
    }
  }
}

/* append(box, {episode=, t=, obs=, robot_action=, human_action=, nu=, reward=,
 * done=, success=, p=}) */
static int d_append(lua_State *L) {
  ds_box *box = check_box(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  mile_dataset *ds = box->ds;
  /* every key is a known field: a typo must not pass silently */
  lua_pushnil(L);
  while (lua_next(L, 2)) { /* stack: box, tuple, key, value */
    lua_pop(L, 1);
    bool known = false;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; field_names[i] && !known; i++) known = strcmp(lua_tostring(L, -1), field_names[i]) == 0;
    if (!known) {
      const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1);
      data_raise(L, "append: unknown field '%s' (fields: episode, t, obs, robot_action, human_action, nu, reward, "
                 "done, success, p)", k);
    }
  }
  double *row = box->row;
  for (int f = 0; f < MILE_DATA_FIELD_COUNT; f++) {
    const char *name = field_names[f];
    int32_t c0 = mile_dataset_field_col(ds, (mile_data_field)f), w = mile_dataset_field_width(ds, (mile_data_field)f);
    lua_getfield(L, 2, name); /* stack: box, tuple, value */
    bool missing = lua_isnil(L, 3);
    if (f == MILE_DATA_FIELD_P) {
      if (w == 0 && !missing) data_raise(L, "append: p given, but the dataset has no p column (create it with has_p = true)");
      if (w > 0 && missing) data_raise(L, "append: p is missing (the dataset has a p column)");
    } else if (f == MILE_DATA_FIELD_HUMAN_ACTION && missing) {
      /* filled in below from nu */
    } else if (missing) {
      data_raise(L, "append: %s is missing", name);
    }
    if (!missing && w > 0) read_field(L, 3, row + c0, w, name);
    lua_pop(L, 1);
  }
  int32_t ar = mile_dataset_field_col(ds, MILE_DATA_FIELD_ROBOT_ACTION);
  int32_t ah = mile_dataset_field_col(ds, MILE_DATA_FIELD_HUMAN_ACTION);
  int32_t d = mile_dataset_action_dim(ds);
  lua_getfield(L, 2, "human_action");
  if (lua_isnil(L, -1)) {
    if (row[mile_dataset_field_col(ds, MILE_DATA_FIELD_NU)] == 1)
      data_raise(L, "append: human_action is missing (it is required when nu = 1)");
    memcpy(row + ah, row + ar, (size_t)d * sizeof(double)); /* nu = 0: the robot's action (a bad nu is reported below) */
  }
  lua_pop(L, 1);
  if (mile_dataset_append(ds, 1, row) != MILE_OK) raise_core_as(L, "append");
  return 0;
}

/* append_rows(box, tensor [B, cols]) */
static int d_append_rows(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds;
  mile_tensor *t = lmile_check_tensor(L, 2), *c;
  int32_t cols = mile_dataset_cols(ds);
  if (t->ndim != 2 || t->shape[1] != cols)
    data_raise(L, "append_batch: the rows tensor must have shape {B, %d}", (int)cols);
  lmile_check(L, mile_to_dtype(&c, t, MILE_FLOAT64), "append_batch");
  lmile_push_tensor(L, c); /* anchored: a raise frees it */
  mile_tensor *cc;
  lmile_check(L, mile_contiguous(&cc, c), "append_batch");
  lmile_push_tensor(L, cc);
  if (mile_dataset_append(ds, t->shape[0], mile_data(cc)) != MILE_OK) raise_core_as(L, "append_batch");
  return 0;
}

static int d_extend(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds, *src = check_box(L, 2)->ds;
  if (mile_dataset_extend(ds, src) != MILE_OK) raise_core_as(L, "extend");
  return 0;
}

/* ---- columns, subsets ------------------------------------------------------------------ */

/* field(box, name, dtype) -> tensor */
static int d_field(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds;
  int f = luaL_checkoption(L, 2, NULL, field_names);
  static const char *const dtypes[] = {"float32", "float64", NULL};
  mile_dtype dtype = (mile_dtype)luaL_checkoption(L, 3, "float32", dtypes);
  mile_tensor *t;
  if (mile_dataset_field(&t, ds, (mile_data_field)f, dtype) != MILE_OK) raise_core_as(L, "column");
  lmile_push_tensor(L, t);
  return 1;
}

/* 1-based row indices (a tensor or a table of integers) at idx as 0-based int64,
 * in a scratch userdata pushed on the stack; returns the count. */
static int64_t check_rows(lua_State *L, int idx, int64_t nrows, int64_t **out, const char *fname) {
  mile_tensor *t = lmile_to_tensor(L, idx);
  int64_t n;
  if (t) n = mile_numel(t);
  else if (lua_type(L, idx) == LUA_TTABLE) n = (int64_t)lua_rawlen(L, idx);
  else return data_raise(L, "%s: indices must be a tensor or a table, got a %s", fname, luaL_typename(L, idx));
  /* one buffer: n int64 indices, then n doubles for a tensor's values */
  int64_t *rows = lua_newuserdatauv(L, (size_t)(n ? n : 1) * (sizeof(int64_t) + sizeof(double)), 0);
  double *vals = (double *)(rows + (n ? n : 1));
  if (t) lmile_check(L, mile_to_doubles(t, vals), fname);
  for (int64_t i = 0; i < n; i++) {
    double v;
    if (t) {
      v = vals[i];
    } else {
      if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TNUMBER)
        data_raise(L, "%s: index %d is a %s, expected an integer", fname, (int)i + 1, luaL_typename(L, -1));
      v = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
    if (!(v >= 1 && v <= (double)nrows) || v != floor(v)) {
      char shown[32];
      snprintf(shown, sizeof shown, "%.17g", v);
      data_raise(L, "%s: row index %s out of range 1..%d (indices are 1-based integers)", fname, shown, (int)nrows);
    }
    rows[i] = (int64_t)v - 1;
  }
  *out = rows;
  return n;
}

/* subset(box, indices) -> box */
static int d_subset(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds;
  int64_t *rows = NULL;
  int64_t n = check_rows(L, 2, mile_dataset_rows(ds), &rows, "subset");
  ds_box *box = push_box(L);
  mile_dataset *s;
  if (mile_dataset_subset(&s, ds, n, rows) != MILE_OK) raise_core_as(L, "subset");
  fill_box(L, box, s);
  return 1;
}

/* filter(box, mask tensor with one value per row: nonzero keeps the row) -> box */
static int d_filter(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds;
  mile_tensor *mask = lmile_check_tensor(L, 2);
  int64_t n = mile_dataset_rows(ds);
  if (mile_numel(mask) != n)
    data_raise(L, "filter: the mask has %d values, the dataset %d rows", (int)mile_numel(mask), (int)n);
  int64_t *rows = lua_newuserdatauv(L, (size_t)(n ? n : 1) * (sizeof(int64_t) + sizeof(double)), 0);
  double *vals = (double *)(rows + (n ? n : 1));
  lmile_check(L, mile_to_doubles(mask, vals), "filter");
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(vals[i])) data_raise(L, "filter: the mask holds NaN at %d", (int)i + 1);
    if (vals[i] != 0) rows[k++] = i;
  }
  ds_box *box = push_box(L);
  mile_dataset *s;
  if (mile_dataset_subset(&s, ds, k, rows) != MILE_OK) raise_core_as(L, "filter");
  fill_box(L, box, s);
  return 1;
}

/* ---- files --------------------------------------------------------------------------- */

static int io_result(lua_State *L, mile_status st) {
  if (st == MILE_ERR_IO) {
    lua_pushnil(L);
    lua_pushstring(L, mile_last_error());
    return 2;
  }
  if (st != MILE_OK) raise_core(L);
  lua_pushboolean(L, 1);
  return 1;
}

/* save(box, path) -> true | nil, msg */
static int d_save(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds;
  return io_result(L, mile_dataset_save(ds, luaL_checkstring(L, 2)));
}

/* append_to(box, path, from_row) -> true | nil, msg; from_row 1-based (rows + 1: nothing) */
static int d_append_to(lua_State *L) {
  mile_dataset *ds = check_box(L, 1)->ds;
  const char *path = luaL_checkstring(L, 2);
  lua_Integer from = luaL_checkinteger(L, 3);
  if (from < 1 || from > (lua_Integer)mile_dataset_rows(ds) + 1)
    data_raise(L, "append_to: from_row %I out of range 1..%I", from, (lua_Integer)mile_dataset_rows(ds) + 1);
  return io_result(L, mile_dataset_append_file(ds, path, (int64_t)from - 1));
}

/* ---- random order ------------------------------------------------------------------------ */

/* permutation(generator, n) -> float64 tensor: a random permutation of 1..n */
static int d_permutation(lua_State *L) {
  mile_rng *rng = lmile_check_rng(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0 && n <= ((lua_Integer)1 << 40), 2, "bad size");
  int64_t *perm = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *perm, 0);
  lmile_check(L, mile_randperm(rng, (int64_t)n, perm), "permutation");
  int64_t shape[1] = {(int64_t)n};
  double *out = mile_data(lmile_push_new_tensor(L, MILE_FLOAT64, 1, shape));
  for (lua_Integer i = 0; i < n; i++) out[i] = (double)(perm[i] + 1);
  return 1;
}

/* sampler(weights) -> sampler box */
static int d_sampler(lua_State *L) {
  mile_tensor *w = lmile_check_tensor(L, 1);
  sampler_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->s = NULL;
  luaL_setmetatable(L, LSAMPLER_MT);
  if (mile_sampler_new(&box->s, w) != MILE_OK) raise_core(L);
  return 1;
}

/* sampler_draw(sampler, generator, count) -> float64 tensor of 1-based indices */
static int d_sampler_draw(lua_State *L) {
  sampler_box *box = luaL_checkudata(L, 1, LSAMPLER_MT);
  if (!box->s) luaL_argerror(L, 1, "sampler was freed");
  mile_rng *rng = lmile_check_rng(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  luaL_argcheck(L, n >= 0 && n <= ((lua_Integer)1 << 32), 3, "bad count");
  int64_t *idx = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *idx, 0);
  if (mile_sampler_draw(box->s, rng, (int64_t)n, idx) != MILE_OK) raise_core(L);
  int64_t shape[1] = {(int64_t)n};
  double *out = mile_data(lmile_push_new_tensor(L, MILE_FLOAT64, 1, shape));
  for (lua_Integer i = 0; i < n; i++) out[i] = (double)(idx[i] + 1);
  return 1;
}

static int d_sampler_size(lua_State *L) {
  sampler_box *box = luaL_checkudata(L, 1, LSAMPLER_MT);
  lua_pushinteger(L, (lua_Integer)mile_sampler_size(box->s));
  return 1;
}

static const luaL_Reg functions[] = {
    {"new", d_new},           {"load", d_load},
    {"layout", d_layout},     {"rows", d_rows},
    {"columns", d_columns},   {"n_interventions", d_n_interventions},
    {"set_n_actions", d_set_n_actions},
    {"append", d_append},     {"append_rows", d_append_rows},
    {"extend", d_extend},     {"field", d_field},
    {"subset", d_subset},     {"filter", d_filter},
    {"save", d_save},         {"append_to", d_append_to},
    {"permutation", d_permutation},
    {"sampler", d_sampler},   {"sampler_draw", d_sampler_draw},
    {"sampler_size", d_sampler_size},
    {NULL, NULL}};

int luaopen_mile_data_core(lua_State *L) {
  if (luaL_newmetatable(L, LDATA_MT)) {
    lua_pushcfunction(L, ds_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, ds_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, LSAMPLER_MT)) {
    lua_pushcfunction(L, sampler_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, sampler_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, functions);
  return 1;
}
