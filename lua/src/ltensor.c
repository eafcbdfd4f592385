/* ltensor.c - the Lua 5.4 module mile.tensor: tensors as full userdata.
 *
 * A tensor value is a userdata box holding one reference to a mile_tensor
 * (views share storage through the core's refcount, so a view keeps its base
 * alive without a Lua-side anchor). Indices, dims and index tensors are 1-based
 * here and 0-based in the core; the conversion happens in this file only. */
#include <float.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmile.h"
#include "mile/checked.h"

/* ---- boxes and the GC ------------------------------------------------------ */

typedef struct tensor_box { mile_tensor *t; } tensor_box;

/* Bytes allocated since the collector was last told; it is paced in steps so
 * that large tensors make it run as if Lua itself had allocated them. */
static size_t gc_debt;

/* While a step is recorded, a tensor entering Lua must be one the tape can name: one
 * made by something unrecorded (a data loader, a plan) would be replayed as a constant. */
static void check_recorded(lua_State *L, const mile_tensor *t) {
  if (mile_tape_knows(t)) return;
  lua_Debug ar;
  const char *name = lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name ? ar.name : "a C function";
  lmile_unrecorded(L, name, "made a tensor that the recorder cannot replay");
}

void lmile_push_tensor(lua_State *L, mile_tensor *t) {
  if (mile_tape_recording()) check_recorded(L, t);
  tensor_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->t = NULL; /* __gc of a half-built box is a no-op */
  luaL_setmetatable(L, LMILE_TENSOR_MT);
  box->t = t;
  if (mile_storage_refcount(t) == 1) gc_debt += mile_storage_nbytes(t);
  if (gc_debt >= 256 * 1024) {
    int kib = gc_debt / 1024 > INT32_MAX ? INT32_MAX : (int)(gc_debt / 1024);
    gc_debt = 0;
    lua_gc(L, LUA_GCSTEP, kib);
  }
}

/* Push the tensor a core call wrote into out, or raise its error. A macro so that
 * the call is sequenced before out is read (the comma operator guarantees it). */
#define push_result(L, call, out, fname) (lmile_check((L), (call), (fname)), lmile_push_tensor((L), (out)), 1)
/* The same for a tensor made from Lua values (a factory): a constant of a recorded step. */
#define push_constant(L, call, out, fname)                                                                             \
  (lmile_check((L), (call), (fname)), mile_tape_constant(out), lmile_push_tensor((L), (out)), 1)

/* A new tensor boxed on the stack, not yet known to a recording. */
static mile_tensor *push_new_unchecked(lua_State *L, mile_dtype dtype, int32_t ndim, const int64_t *shape) {
  tensor_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->t = NULL;
  luaL_setmetatable(L, LMILE_TENSOR_MT);
  mile_tensor *t;
  lmile_check(L, mile_empty(&t, dtype, ndim, shape), "tensor");
  box->t = t;
  gc_debt += mile_storage_nbytes(t);
  return t;
}

mile_tensor *lmile_push_new_tensor(lua_State *L, mile_dtype dtype, int32_t ndim, const int64_t *shape) {
  mile_tensor *t = push_new_unchecked(L, dtype, ndim, shape);
  if (mile_tape_recording()) check_recorded(L, t); /* filled by its caller: not replayable */
  return t;
}

mile_tensor *lmile_to_tensor(lua_State *L, int idx) {
  tensor_box *box = luaL_testudata(L, idx, LMILE_TENSOR_MT);
  return box ? box->t : NULL;
}

mile_tensor *lmile_check_tensor(lua_State *L, int idx) {
  tensor_box *box = luaL_checkudata(L, idx, LMILE_TENSOR_MT);
  if (!box->t) luaL_argerror(L, idx, "tensor was freed");
  return box->t;
}

static int tensor_gc(lua_State *L) {
  tensor_box *box = luaL_checkudata(L, 1, LMILE_TENSOR_MT);
  mile_tensor_release(box->t);
  box->t = NULL;
  return 0;
}

/* ---- argument helpers ---------------------------------------------------------- */

static mile_dtype check_dtype(lua_State *L, int idx, mile_dtype def) {
  static const char *const names[] = {"float32", "float64", NULL};
  if (lua_isnoneornil(L, idx)) return def;
  return (mile_dtype)luaL_checkoption(L, idx, NULL, names);
}

int32_t lmile_check_dim(lua_State *L, int idx, const mile_tensor *t) {
  lua_Integer d = luaL_checkinteger(L, idx);
  lua_Integer nd = t->ndim;
  if (d < 0) d += nd + 1;
  if (d < 1 || d > nd)
    luaL_error(L, "dim %I out of range for a %I-d tensor (dims are 1-based)", luaL_checkinteger(L, idx), nd);
  return (int32_t)(d - 1);
}

int32_t lmile_check_shape(lua_State *L, int idx, int64_t *shape) {
  int32_t n = 0;
  if (lua_istable(L, idx)) {
    lua_Integer len = luaL_len(L, idx);
    if (len > MILE_MAX_DIMS) luaL_error(L, "shape has %I dims (at most %d)", len, MILE_MAX_DIMS);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_geti(L, idx, i);
      int ok;
      lua_Integer v = lua_tointegerx(L, -1, &ok);
      if (!ok) luaL_error(L, "shape entry %I is %s, not an integer", i, luaL_typename(L, -1));
      shape[n++] = v;
      lua_pop(L, 1);
    }
    return n;
  }
  int top = lua_gettop(L);
  for (int i = idx; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
    if (n == MILE_MAX_DIMS) luaL_error(L, "shape has more than %d dims", MILE_MAX_DIMS);
    shape[n++] = luaL_checkinteger(L, i);
  }
  if (n == 0 && !lua_isnoneornil(L, idx)) luaL_typeerror(L, idx, "shape (table or integers)");
  return n;
}

/* Index of the first argument after a shape given from idx on. */
static int after_shape(lua_State *L, int idx) {
  if (lua_istable(L, idx)) return idx + 1;
  while (lua_type(L, idx) == LUA_TNUMBER) idx++;
  return idx;
}

/* A tensor argument; a Lua number becomes a 0-d tensor of dtype `like`, boxed into
 * the stack slot idx (so a later argument error leaves the GC to free it). */
static mile_tensor *check_operand(lua_State *L, int idx, mile_dtype like) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    mile_tensor *t = push_new_unchecked(L, like, 0, NULL);
    lmile_check(L, mile_fill_(t, lua_tonumber(L, idx)), "tensor");
    mile_tape_constant(t); /* a number of the step, boxed */
    lua_replace(L, idx);
    return t;
  }
  return lmile_check_tensor(L, idx);
}

/* ---- constructors ------------------------------------------------------------- */

static int filled(lua_State *L, double value, bool use_arg) {
  int64_t shape[MILE_MAX_DIMS];
  int32_t nd = lmile_check_shape(L, 1, shape);
  int next = after_shape(L, 1);
  if (use_arg) value = luaL_checknumber(L, next++);
  mile_dtype dtype = check_dtype(L, next, MILE_FLOAT32);
  mile_tensor *t;
  return push_constant(L, mile_full(&t, dtype, nd, shape, value), t, "full");
}
static int t_zeros(lua_State *L) { return filled(L, 0, false); }
static int t_ones(lua_State *L) { return filled(L, 1, false); }
static int t_full(lua_State *L) { return filled(L, 0, true); }
static int t_empty(lua_State *L) { return filled(L, 0, false); }

static int t_scalar(lua_State *L) {
  double v = luaL_checknumber(L, 1);
  mile_tensor *t;
  return push_constant(L, mile_scalar(&t, check_dtype(L, 2, MILE_FLOAT32), v), t, "scalar");
}

/* arange(stop) or arange(start, stop [, step]) [, dtype], like PyTorch. */
static int t_arange(lua_State *L) {
  int nnum = 0;
  while (nnum < 3 && lua_type(L, nnum + 1) == LUA_TNUMBER) nnum++;
  if (nnum == 0) luaL_typeerror(L, 1, "number");
  double start = 0, stop, step = 1;
  if (nnum == 1) stop = lua_tonumber(L, 1);
  else start = lua_tonumber(L, 1), stop = lua_tonumber(L, 2);
  if (nnum == 3) step = lua_tonumber(L, 3);
  mile_tensor *t;
  return push_constant(L, mile_arange(&t, check_dtype(L, nnum + 1, MILE_FLOAT32), start, stop, step), t, "arange");
}

/* Walk a nested table: record its shape from the first elements at each depth,
 * then check every branch against it and copy the numbers. */
typedef struct nested {
  int32_t ndim;
  int64_t shape[MILE_MAX_DIMS];
  double *values;
  int64_t count;
} nested;

static void nested_shape(lua_State *L, int idx, nested *n) {
  lua_pushvalue(L, idx);
  while (lua_istable(L, -1)) {
    if (n->ndim == MILE_MAX_DIMS) luaL_error(L, "from: nested deeper than %d levels", MILE_MAX_DIMS);
    n->shape[n->ndim++] = (int64_t)luaL_len(L, -1);
    if (n->shape[n->ndim - 1] == 0) break;
    lua_geti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
}

static void nested_fill(lua_State *L, nested *n, int32_t depth, char *path, size_t pathlen) {
  /* stack: the table at this depth */
  if (luaL_len(L, -1) != n->shape[depth])
    luaL_error(L, "from: element %s has %I entries, expected %I (ragged nesting)", pathlen ? path : "{}",
               luaL_len(L, -1), (lua_Integer)n->shape[depth]);
  for (int64_t i = 1; i <= n->shape[depth]; i++) {
    lua_geti(L, -1, (lua_Integer)i);
    size_t len = pathlen + (size_t)snprintf(path + pathlen, 128 - pathlen, "[%lld]", (long long)i);
    if (depth + 1 < n->ndim) {
      if (!lua_istable(L, -1)) luaL_error(L, "from: element %s is %s, expected a table", path, luaL_typename(L, -1));
      nested_fill(L, n, depth + 1, path, len < 128 ? len : 127);
    } else {
      int isnum;
      double v = lua_tonumberx(L, -1, &isnum);
      if (!isnum || lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "from: element %s is %s, not a number", path, luaL_typename(L, -1));
      n->values[n->count++] = v;
    }
    path[pathlen] = '\0';
    lua_pop(L, 1);
  }
}

static int t_from(lua_State *L) {
  if (lua_type(L, 1) == LUA_TNUMBER) { /* a plain number: a 0-d tensor */
    mile_tensor *t;
    return push_constant(L, mile_scalar(&t, check_dtype(L, 2, MILE_FLOAT32), lua_tonumber(L, 1)), t, "from");
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  /* values computed in Lua (minibatch indices, masks) would be baked into the tape */
  lmile_unrecorded(L, "tensor.from{...}", "builds a tensor from Lua values inside the step (pass it as an argument)");
  mile_dtype dtype = check_dtype(L, 2, MILE_FLOAT32);
  nested n = {0};
  nested_shape(L, 1, &n);
  /* the value buffer lives in a userdata so a Lua error frees it */
  int64_t total = 0;
  size_t bytes = 0;
  if (!mile_numel_checked(n.ndim, n.shape, &total) || !mile_array_bytes(total ? total : 1, sizeof(double), &bytes))
    luaL_error(L, "from: the nested tables hold more than 2^40 values (the limit per tensor)");
  n.values = lua_newuserdatauv(L, bytes, 0);
  char path[128] = "";
  lua_pushvalue(L, 1);
  if (total > 0) nested_fill(L, &n, 0, path, 0);
  lua_pop(L, 1);
  mile_tensor *t;
  return push_constant(L, mile_from_data(&t, dtype, n.ndim, n.shape, n.values, MILE_FLOAT64), t, "from");
}

/* ---- generator ---------------------------------------------------------------- */

mile_rng *lmile_check_rng(lua_State *L, int idx) {
  mile_rng *rng = luaL_checkudata(L, idx, LMILE_RNG_MT);
  lmile_unrecorded(L, "a random draw", "cannot be replayed (a replay would repeat the recorded draws)");
  return rng;
}

static int t_generator(lua_State *L) {
  lua_Integer seed = luaL_optinteger(L, 1, 0);
  mile_rng *rng = lua_newuserdatauv(L, sizeof *rng, 0);
  luaL_setmetatable(L, LMILE_RNG_MT);
  mile_rng_seed(rng, (uint64_t)seed);
  return 1;
}
static int rng_seed(lua_State *L) {
  mile_rng_seed(lmile_check_rng(L, 1), (uint64_t)luaL_checkinteger(L, 2));
  lua_settop(L, 1);
  return 1;
}
static int rng_uniform(lua_State *L) { /* uniform() in [0,1), uniform(lo, hi) */
  mile_rng *rng = lmile_check_rng(L, 1);
  double lo = luaL_optnumber(L, 2, 0), hi = luaL_optnumber(L, 3, 1);
  lua_pushnumber(L, lo + (hi - lo) * mile_rng_uniform(rng));
  return 1;
}
static int rng_normal(lua_State *L) {
  mile_rng *rng = lmile_check_rng(L, 1);
  double mean = luaL_optnumber(L, 2, 0), std = luaL_optnumber(L, 3, 1);
  lua_pushnumber(L, mean + std * mile_rng_normal(rng));
  return 1;
}
static int rng_integer(lua_State *L) { /* integer(n): 1..n, integer(lo, hi): lo..hi, like math.random */
  mile_rng *rng = lmile_check_rng(L, 1);
  lua_Integer lo = 1, hi = luaL_checkinteger(L, 2);
  if (!lua_isnoneornil(L, 3)) lo = hi, hi = luaL_checkinteger(L, 3);
  luaL_argcheck(L, lo <= hi, 2, "interval is empty");
  /* in unsigned arithmetic: hi - lo overflows a lua_Integer for wide intervals, and
   * the count of the full range (2^64) wraps to 0, which mile_rng_below reads as 2^64 */
  uint64_t count = (uint64_t)hi - (uint64_t)lo + 1;
  lua_pushinteger(L, (lua_Integer)((uint64_t)lo + mile_rng_below(rng, count)));
  return 1;
}
static int rng_categorical(lua_State *L) { /* 0-based categories, like env action values */
  mile_rng *rng = lmile_check_rng(L, 1);
  mile_tensor *p = lmile_check_tensor(L, 2), *t;
  return push_result(L, mile_categorical(&t, rng, p), t, "categorical");
}
static int rng_permutation(lua_State *L) { /* a Lua array: a permutation of 1..n */
  mile_rng *rng = lmile_check_rng(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "negative size");
  luaL_argcheck(L, n < INT32_MAX, 2, "too large for a Lua array");
  int64_t *perm = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *perm, 0);
  lmile_check(L, mile_randperm(rng, n, perm), "permutation");
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 0; i < n; i++) {
    lua_pushinteger(L, perm[i] + 1);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}
static int rng_state(lua_State *L) { /* the state as a string, for checkpoints */
  mile_rng *rng = lmile_check_rng(L, 1);
  lua_pushlstring(L, (const char *)rng->s, sizeof rng->s);
  return 1;
}
static int rng_set_state(lua_State *L) {
  mile_rng *rng = lmile_check_rng(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  luaL_argcheck(L, len == sizeof rng->s, 2, "not a generator state");
  memcpy(rng->s, s, sizeof rng->s);
  lua_settop(L, 1);
  return 1;
}
static int rng_tostring(lua_State *L) {
  lua_pushfstring(L, "mile.Generator (%p)", lmile_check_rng(L, 1));
  return 1;
}

static int random_tensor(lua_State *L, bool normal) {
  int64_t shape[MILE_MAX_DIMS];
  int32_t nd = lmile_check_shape(L, 1, shape);
  int next = after_shape(L, 1);
  mile_rng *rng = lmile_check_rng(L, next);
  mile_dtype dtype = check_dtype(L, next + 1, MILE_FLOAT32);
  mile_tensor *t = lmile_push_new_tensor(L, dtype, nd, shape);
  lmile_check(L, normal ? mile_normal_(t, rng, 0, 1) : mile_uniform_(t, rng, 0, 1), normal ? "randn" : "rand");
  return 1;
}
static int t_randn(lua_State *L) { return random_tensor(L, true); }
static int t_rand(lua_State *L) { return random_tensor(L, false); }

/* ---- inspection ---------------------------------------------------------------- */

static int m_shape(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  lua_createtable(L, t->ndim, 0);
  for (int32_t i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}
static int m_size(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  if (lua_isnoneornil(L, 2)) return m_shape(L);
  lua_pushinteger(L, t->shape[lmile_check_dim(L, 2, t)]);
  return 1;
}
static int m_dim(lua_State *L) {
  lua_pushinteger(L, lmile_check_tensor(L, 1)->ndim);
  return 1;
}
static int m_numel(lua_State *L) {
  lua_pushinteger(L, mile_numel(lmile_check_tensor(L, 1)));
  return 1;
}
static int m_dtype(lua_State *L) {
  lua_pushstring(L, mile_dtype_name((mile_dtype)lmile_check_tensor(L, 1)->dtype));
  return 1;
}
static int m_is_contiguous(lua_State *L) {
  lua_pushboolean(L, mile_is_contiguous(lmile_check_tensor(L, 1)));
  return 1;
}
static int m_item(lua_State *L) {
  double v;
  lmile_unrecorded(L, "item()", "reads a tensor's value into Lua (the recording would fix it)");
  lmile_check(L, mile_item(lmile_check_tensor(L, 1), &v), "item");
  lua_pushnumber(L, v);
  return 1;
}
static int m_stride(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  lua_createtable(L, t->ndim, 0);
  for (int32_t i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->stride[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* Values as nested tables (a number for a 0-d tensor). */
static void push_table(lua_State *L, const double *v, const mile_tensor *t, int32_t d, int64_t *pos) {
  if (d == t->ndim) {
    lua_pushnumber(L, v[(*pos)++]);
    return;
  }
  lua_createtable(L, t->shape[d] < INT32_MAX ? (int)t->shape[d] : 0, 0); /* a size hint */
  for (int64_t i = 0; i < t->shape[d]; i++) {
    push_table(L, v, t, d + 1, pos);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}
static int m_totable(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int64_t n = mile_numel(t), pos = 0;
  double *v = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *v, 0);
  lmile_unrecorded(L, "totable()", "reads a tensor's values into Lua (the recording would fix them)");
  lmile_check(L, mile_to_doubles(t, v), "totable");
  luaL_checkstack(L, t->ndim + 4, "totable");
  push_table(L, v, t, 0, &pos);
  return 1;
}

/* ---- printing (Torch7 style: values, then "[mile.tensor of size 2x3 float32]") --- */

enum { EDGE = 3, SUMMARY_THRESHOLD = 1000 };

typedef struct printer {
  luaL_Buffer *b;
  const double *v;
  const mile_tensor *t;
  bool summarise;
  char fmt[32];
} printer;

/* Positions printed along a dim of size n: all, or the first and last EDGE. */
static bool skip_position(const printer *p, int64_t n, int64_t i) { return p->summarise && n > 2 * EDGE && i >= EDGE && i < n - EDGE; }

static void add_number(printer *p, double x) {
  char s[48];
  snprintf(s, sizeof s, p->fmt, x);
  luaL_addstring(p->b, s);
}

static int64_t flat_offset(const mile_tensor *t, const int64_t *idx) {
  int64_t off = 0, mul = 1;
  for (int32_t d = t->ndim - 1; d >= 0; d--) off += idx[d] * mul, mul *= t->shape[d];
  return off;
}

/* Print the last two dims as a matrix at the leading position idx. */
static void add_matrix(printer *p, int64_t *idx, int32_t rows_dim) {
  const mile_tensor *t = p->t;
  int64_t rows = rows_dim >= 0 ? t->shape[rows_dim] : 1, cols = t->shape[t->ndim - 1];
  for (int64_t r = 0; r < rows; r++) {
    if (skip_position(p, rows, r)) {
      if (r == EDGE) luaL_addstring(p->b, " ...\n");
      continue;
    }
    if (rows_dim >= 0) idx[rows_dim] = r;
    for (int64_t c = 0; c < cols; c++) {
      if (skip_position(p, cols, c)) {
        if (c == EDGE) luaL_addstring(p->b, "  ...");
        continue;
      }
      idx[t->ndim - 1] = c;
      add_number(p, p->v[flat_offset(t, idx)]);
    }
    luaL_addchar(p->b, '\n');
  }
}

static void add_slices(printer *p, int64_t *idx, int32_t d) {
  const mile_tensor *t = p->t;
  if (d == t->ndim - 2) {
    luaL_addchar(p->b, '(');
    for (int32_t k = 0; k < d; k++) {
      char s[32];
      snprintf(s, sizeof s, "%lld,", (long long)idx[k] + 1);
      luaL_addstring(p->b, s);
    }
    luaL_addstring(p->b, ".,.) = \n");
    add_matrix(p, idx, d);
    luaL_addchar(p->b, '\n');
    return;
  }
  for (int64_t i = 0; i < t->shape[d]; i++) {
    if (skip_position(p, t->shape[d], i)) {
      if (i == EDGE) luaL_addstring(p->b, "...\n\n");
      continue;
    }
    idx[d] = i;
    add_slices(p, idx, d + 1);
  }
}

static void choose_format(printer *p, int64_t n) {
  double maxabs = 0;
  bool integral = true;
  for (int64_t i = 0; i < n; i++) {
    double x = p->v[i];
    if (!isfinite(x)) continue;
    if (fabs(x) > maxabs) maxabs = fabs(x);
    if (x != floor(x)) integral = false;
  }
  if (integral && maxabs < 1e9) snprintf(p->fmt, sizeof p->fmt, " %%%dg", maxabs >= 1 ? (int)log10(maxabs) + 2 : 2);
  else if (maxabs < 1e5 && maxabs >= 1e-3) snprintf(p->fmt, sizeof p->fmt, " %%%d.4f", maxabs >= 1 ? (int)log10(maxabs) + 7 : 7);
  else strcpy(p->fmt, " %11.4e");
}

static int m_tostring(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int64_t n = mile_numel(t);
  double *v = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *v, 0);
  lmile_unrecorded(L, "tostring()", "reads a tensor's values into Lua");
  lmile_check(L, mile_to_doubles(t, v), "tostring");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  printer p = {&b, v, t, n > SUMMARY_THRESHOLD, ""};
  choose_format(&p, n);
  int64_t idx[MILE_MAX_DIMS] = {0};
  if (t->ndim == 0) {
    add_number(&p, v[0]);
    luaL_addchar(&b, '\n');
  } else if (n > 0) {
    if (t->ndim == 1) add_matrix(&p, idx, -1);
    else if (t->ndim == 2) add_matrix(&p, idx, 0);
    else add_slices(&p, idx, 0);
  }
  luaL_addstring(&b, "[mile.tensor of size ");
  for (int32_t d = 0; d < t->ndim; d++) {
    char s[32];
    snprintf(s, sizeof s, d ? "x%lld" : "%lld", (long long)t->shape[d]);
    luaL_addstring(&b, s);
  }
  if (t->ndim == 0) luaL_addstring(&b, "scalar");
  luaL_addchar(&b, ' ');
  luaL_addstring(&b, mile_dtype_name((mile_dtype)t->dtype));
  if (t->grad_fn) {
    luaL_addstring(&b, ", grad_fn=");
    luaL_addstring(&b, mile_grad_fn_name(t));
  } else if (t->requires_grad) {
    luaL_addstring(&b, ", requires_grad");
  }
  luaL_addchar(&b, ']');
  luaL_pushresult(&b);
  return 1;
}

/* ---- views --------------------------------------------------------------------- */

/* view, reshape, expand: an op with a shape argument */
static int push_dims(lua_State *L, mile_op op, mile_tensor *t, int32_t nd, const int64_t *shape, const char *fname) {
  mile_call c = {.op = op, LMILE_IN(t), .i = {nd}};
  for (int32_t k = 0; k < nd; k++)
    c.i[1 + k] = shape[k];
  return lmile_call(L, &c, fname);
}

static int m_view_like(lua_State *L, bool copy_ok) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int64_t shape[MILE_MAX_DIMS];
  int32_t nd = lmile_check_shape(L, 2, shape);
  return push_dims(L, copy_ok ? MILE_OP_RESHAPE : MILE_OP_VIEW, t, nd, shape, copy_ok ? "reshape" : "view");
}
static int m_view(lua_State *L) { return m_view_like(L, false); }
static int m_reshape(lua_State *L) { return m_view_like(L, true); }

static int m_expand(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int64_t shape[MILE_MAX_DIMS];
  int32_t nd = lmile_check_shape(L, 2, shape);
  return push_dims(L, MILE_OP_EXPAND, t, nd, shape, "expand");
}
static int m_expand_as(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1), *o = lmile_check_tensor(L, 2);
  return push_dims(L, MILE_OP_EXPAND, t, o->ndim, o->shape, "expand_as");
}

static int m_transpose(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d0 = lmile_check_dim(L, 2, t), d1 = lmile_check_dim(L, 3, t);
  return lmile_call(L, &(mile_call){.op = MILE_OP_TRANSPOSE, LMILE_IN(t), .i = {d0, d1}}, "transpose");
}
static int m_t(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  if (t->ndim != 2) luaL_error(L, "t: needs a 2-d tensor, got %d dims (use transpose)", t->ndim);
  return lmile_call(L, &(mile_call){.op = MILE_OP_TRANSPOSE, LMILE_IN(t), .i = {0, 1}}, "t");
}
static int m_permute(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int64_t dims[MILE_MAX_DIMS];
  int32_t nd = lmile_check_shape(L, 2, dims);
  mile_call c = {.op = MILE_OP_PERMUTE, LMILE_IN(t)};
  if (nd != t->ndim) luaL_error(L, "permute: %d dims given for a %d-d tensor", nd, t->ndim);
  for (int32_t i = 0; i < nd; i++) { /* range-checked before narrowing to int32_t */
    if (dims[i] < 1 || dims[i] > nd)
      luaL_error(L, "permute: dim %I out of range for a %d-d tensor (dims are 1-based)", (lua_Integer)dims[i], nd);
    c.i[i] = dims[i] - 1;
  }
  return lmile_call(L, &c, "permute");
}
static int m_narrow(lua_State *L) { /* narrow(dim, start, length), start 1-based */
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d = lmile_check_dim(L, 2, t);
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  if (start < 1 || start > t->shape[d] + 1) /* before start - 1, which could overflow */
    luaL_error(L, "narrow: start %I out of range 1..%I for dim %d", start, (lua_Integer)t->shape[d] + 1, d + 1);
  return lmile_call(L, &(mile_call){.op = MILE_OP_NARROW, LMILE_IN(t), .i = {d, start - 1, len}}, "narrow");
}
static int m_select(lua_State *L) { /* select(dim, index), index 1-based */
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d = lmile_check_dim(L, 2, t);
  lua_Integer i = luaL_checkinteger(L, 3);
  if (i < 1 || i > t->shape[d])
    luaL_error(L, "select: index %I out of range for dim %d of size %I", i, d + 1, (lua_Integer)t->shape[d]);
  return lmile_call(L, &(mile_call){.op = MILE_OP_SELECT, LMILE_IN(t), .i = {d, i - 1}}, "select");
}
static int m_squeeze(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d = lua_isnoneornil(L, 2) ? -1 : lmile_check_dim(L, 2, t);
  return lmile_call(L, &(mile_call){.op = MILE_OP_SQUEEZE, LMILE_IN(t), .i = {d}}, "squeeze");
}
static int m_unsqueeze(lua_State *L) { /* unsqueeze(d): the new dim is d (1-based, up to ndim+1) */
  mile_tensor *t = lmile_check_tensor(L, 1);
  lua_Integer d = luaL_checkinteger(L, 2);
  if (d < 0) d += t->ndim + 2;
  if (d < 1 || d > t->ndim + 1) luaL_error(L, "unsqueeze: dim %I out of range for a %d-d tensor", d, t->ndim);
  return lmile_call(L, &(mile_call){.op = MILE_OP_UNSQUEEZE, LMILE_IN(t), .i = {d - 1}}, "unsqueeze");
}
static int m_contiguous(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  return lmile_call(L, &(mile_call){.op = MILE_OP_CONTIGUOUS, LMILE_IN(t)}, "contiguous");
}
static int m_clone(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  return lmile_call(L, &(mile_call){.op = MILE_OP_CLONE, LMILE_IN(t)}, "clone");
}
static int m_to(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  mile_dtype d = check_dtype(L, 2, MILE_FLOAT32);
  return lmile_call(L, &(mile_call){.op = MILE_OP_TO_DTYPE, LMILE_IN(t), .i = {d}}, "to");
}
static int m_float(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  return lmile_call(L, &(mile_call){.op = MILE_OP_TO_DTYPE, LMILE_IN(t), .i = {MILE_FLOAT32}}, "float");
}
static int m_double(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  return lmile_call(L, &(mile_call){.op = MILE_OP_TO_DTYPE, LMILE_IN(t), .i = {MILE_FLOAT64}}, "double");
}

/* ---- elementwise ----------------------------------------------------------------- */

static int unary(lua_State *L, mile_unary_op op) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  return lmile_call(L, &(mile_call){.op = MILE_OP_UNARY, LMILE_IN(t), .i = {op}}, mile_unary_name(op));
}
#define UNARY_METHOD(NAME, OP) \
  static int m_##NAME(lua_State *L) { return unary(L, OP); }
UNARY_METHOD(neg, MILE_NEG)
UNARY_METHOD(exp, MILE_EXP)
UNARY_METHOD(log, MILE_LOG)
UNARY_METHOD(log1p, MILE_LOG1P)
UNARY_METHOD(expm1, MILE_EXPM1)
UNARY_METHOD(sqrt, MILE_SQRT)
UNARY_METHOD(abs, MILE_ABS)
UNARY_METHOD(tanh, MILE_TANH)
UNARY_METHOD(sigmoid, MILE_SIGMOID)
UNARY_METHOD(relu, MILE_RELU)
UNARY_METHOD(normal_cdf, MILE_NORMAL_CDF)
UNARY_METHOD(log_normal_cdf, MILE_LOG_NORMAL_CDF)
UNARY_METHOD(softplus, MILE_SOFTPLUS)

/* a op b where either side may be a Lua number (metamethods get them in any order) */
static int binary(lua_State *L, mile_binary_op op) {
  const char *name = mile_binary_name(op);
  mile_tensor *a = lmile_to_tensor(L, 1), *b = lmile_to_tensor(L, 2);
  if (a && b) return lmile_call(L, &(mile_call){.op = MILE_OP_BINARY, LMILE_IN(a, b), .i = {op}}, name);
  if (a && lua_type(L, 2) == LUA_TNUMBER)
    return lmile_call(
        L, &(mile_call){.op = MILE_OP_BINARY_SCALAR, LMILE_IN(a), .i = {op, 0}, .d = {lua_tonumber(L, 2)}}, name);
  if (b && lua_type(L, 1) == LUA_TNUMBER)
    return lmile_call(
        L, &(mile_call){.op = MILE_OP_BINARY_SCALAR, LMILE_IN(b), .i = {op, 1}, .d = {lua_tonumber(L, 1)}}, name);
  return luaL_error(L, "%s: expected tensors or numbers, got %s and %s", name, luaL_typename(L, 1),
                    luaL_typename(L, 2));
}
#define BINARY_METHOD(NAME, OP) \
  static int m_##NAME(lua_State *L) { return binary(L, OP); }
BINARY_METHOD(add, MILE_ADD)
BINARY_METHOD(sub, MILE_SUB)
BINARY_METHOD(mul, MILE_MUL)
BINARY_METHOD(div, MILE_DIV)
BINARY_METHOD(pow, MILE_POW)
BINARY_METHOD(maximum, MILE_MAXIMUM)
BINARY_METHOD(minimum, MILE_MINIMUM)
BINARY_METHOD(eq, MILE_EQ)
BINARY_METHOD(ne, MILE_NE)
BINARY_METHOD(lt, MILE_LT)
BINARY_METHOD(le, MILE_LE)
BINARY_METHOD(gt, MILE_GT)
BINARY_METHOD(ge, MILE_GE)

static int m_clamp(lua_State *L) { /* clamp(lo, hi); nil leaves a side open */
  mile_tensor *t = lmile_check_tensor(L, 1);
  double lo = luaL_optnumber(L, 2, -INFINITY), hi = luaL_optnumber(L, 3, INFINITY);
  return lmile_call(L, &(mile_call){.op = MILE_OP_CLAMP, LMILE_IN(t), .d = {lo, hi}}, "clamp");
}

static int t_where(lua_State *L) { /* where(cond, a, b); a and b may be numbers */
  mile_tensor *cond = lmile_check_tensor(L, 1);
  mile_tensor *a = check_operand(L, 2, (mile_dtype)cond->dtype);
  mile_tensor *b = check_operand(L, 3, (mile_dtype)a->dtype);
  return lmile_call(L, &(mile_call){.op = MILE_OP_WHERE, LMILE_IN(cond, a, b)}, "where");
}

/* ---- reductions ------------------------------------------------------------------ */

/* (dim, keepdim) arguments at idx: no dim means all dims. */
static int32_t opt_dim(lua_State *L, int idx, const mile_tensor *t) {
  return lua_isnoneornil(L, idx) ? MILE_ALL_DIMS : lmile_check_dim(L, idx, t);
}

static int reduce(lua_State *L, mile_reduce_op op) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d = opt_dim(L, 2, t);
  return lmile_call(L, &(mile_call){.op = MILE_OP_REDUCE, LMILE_IN(t), .i = {op, d, lua_toboolean(L, 3)}},
                    mile_reduce_name(op));
}
static int m_sum(lua_State *L) { return reduce(L, MILE_SUM); }
static int m_mean(lua_State *L) { return reduce(L, MILE_MEAN); }
static int m_logsumexp(lua_State *L) { return reduce(L, MILE_LOGSUMEXP); }

/* 0-based positions from the core (on the stack top) to 1-based Lua indices (replacing them) */
static void one_based(lua_State *L) {
  mile_tensor *idx = lmile_check_tensor(L, -1);
  lmile_call(L, &(mile_call){.op = MILE_OP_BINARY_SCALAR, LMILE_IN(idx), .i = {MILE_ADD, 0}, .d = {1}}, "index");
  lua_remove(L, -2);
}

/* max() -> 0-d tensor; max(dim [, keepdim]) -> values, 1-based indices */
static int extreme(lua_State *L, mile_reduce_op op) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  if (lua_isnoneornil(L, 2)) return reduce(L, op);
  int32_t d = lmile_check_dim(L, 2, t);
  mile_call c = {.op = op == MILE_MAX ? MILE_OP_MAX_DIM : MILE_OP_MIN_DIM, LMILE_IN(t), .i = {d, lua_toboolean(L, 3)}};
  lmile_call(L, &c, mile_reduce_name(op));
  one_based(L);
  return 2;
}
static int m_max(lua_State *L) { return extreme(L, MILE_MAX); }
static int m_min(lua_State *L) { return extreme(L, MILE_MIN); }

static int arg_extreme(lua_State *L, bool max) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d = opt_dim(L, 2, t);
  lmile_call(L, &(mile_call){.op = max ? MILE_OP_ARGMAX : MILE_OP_ARGMIN, LMILE_IN(t), .i = {d, lua_toboolean(L, 3)}},
             max ? "argmax" : "argmin");
  one_based(L);
  return 1;
}
static int m_argmax(lua_State *L) { return arg_extreme(L, true); }
static int m_argmin(lua_State *L) { return arg_extreme(L, false); }

static int m_softmax(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d = lua_isnoneornil(L, 2) ? t->ndim - 1 : lmile_check_dim(L, 2, t);
  return lmile_call(L, &(mile_call){.op = MILE_OP_SOFTMAX, LMILE_IN(t), .i = {d}}, "softmax");
}
static int m_log_softmax(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d = lua_isnoneornil(L, 2) ? t->ndim - 1 : lmile_check_dim(L, 2, t);
  return lmile_call(L, &(mile_call){.op = MILE_OP_LOG_SOFTMAX, LMILE_IN(t), .i = {d}}, "log_softmax");
}

/* ---- indexing ops ------------------------------------------------------------------ */

/* A 1-based Lua index tensor (or table) as a 0-based core index tensor. */
static mile_tensor *zero_based_index(lua_State *L, int idx, mile_dtype like) {
  mile_tensor *given = lmile_to_tensor(L, idx);
  if (!given) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushcfunction(L, t_from);
    lua_pushvalue(L, idx);
    lua_pushstring(L, mile_dtype_name(like));
    lua_call(L, 2, 1);
    given = lmile_check_tensor(L, -1);
    lua_replace(L, idx);
  }
  lmile_call(L, &(mile_call){.op = MILE_OP_BINARY_SCALAR, LMILE_IN(given), .i = {MILE_SUB, 0}, .d = {1}}, "index");
  return lmile_check_tensor(L, -1); /* anchored on the stack until the call returns */
}

static int m_gather(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d = lmile_check_dim(L, 2, t);
  mile_tensor *idx = zero_based_index(L, 3, (mile_dtype)t->dtype);
  return lmile_call(L, &(mile_call){.op = MILE_OP_GATHER, LMILE_IN(t, idx), .i = {d}}, "gather");
}
static int m_index_select(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  int32_t d = lmile_check_dim(L, 2, t);
  mile_tensor *idx = zero_based_index(L, 3, (mile_dtype)t->dtype);
  return lmile_call(L, &(mile_call){.op = MILE_OP_INDEX_SELECT, LMILE_IN(t, idx), .i = {d}}, "index_select");
}

static int t_cat(lua_State *L) { /* cat({a, b, ...} [, dim = 1]) */
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 1 && n < 1 << 20, 1, "needs a list of tensors");
  mile_tensor **list = lua_newuserdatauv(L, (size_t)n * sizeof *list, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    list[i - 1] = lmile_to_tensor(L, -1);
    if (!list[i - 1]) luaL_error(L, "cat: element %I is %s, not a tensor", i, luaL_typename(L, -1));
    lua_pop(L, 1); /* still referenced by the table */
  }
  int32_t d = 0;
  if (!lua_isnoneornil(L, 2)) {
    lua_pushvalue(L, 2);
    d = lmile_check_dim(L, -1, list[0]);
    lua_pop(L, 1);
  }
  return lmile_call(L, &(mile_call){.op = MILE_OP_CAT, .n_in = (int32_t)n, .in = list, .i = {d}}, "cat");
}

static int m_matmul(lua_State *L) {
  mile_tensor *a = lmile_check_tensor(L, 1), *b = lmile_check_tensor(L, 2);
  return lmile_call(L, &(mile_call){.op = MILE_OP_MATMUL, LMILE_IN(a, b)}, "matmul");
}
/* x:linear(W [, b [, act]]) = act(x W^T + b), act "relu" | "tanh" | "sigmoid" | "none"
 * (one fused op, mile_linear_act) */
static int m_linear(lua_State *L) {
  static const char *const acts[] = {"none", "relu", "tanh", "sigmoid", NULL};
  mile_tensor *x = lmile_check_tensor(L, 1), *w = lmile_check_tensor(L, 2);
  mile_tensor *b = lua_isnoneornil(L, 3) ? NULL : lmile_check_tensor(L, 3);
  int act = luaL_checkoption(L, 4, "none", acts);
  return lmile_call(L, &(mile_call){.op = MILE_OP_LINEAR, LMILE_IN(x, w, b), .i = {act}}, "linear");
}

/* ---- in place ------------------------------------------------------------------- */

static int m_fill_(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  lmile_call(L, &(mile_call){.op = MILE_OP_FILL, LMILE_IN(t), .d = {luaL_checknumber(L, 2)}}, "fill_");
  lua_settop(L, 1);
  return 1;
}
static int m_zero_(lua_State *L) {
  lmile_call(L, &(mile_call){.op = MILE_OP_FILL, LMILE_IN(lmile_check_tensor(L, 1))}, "zero_");
  lua_settop(L, 1);
  return 1;
}
static int m_copy_(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  mile_tensor *src = check_operand(L, 2, (mile_dtype)t->dtype);
  lmile_call(L, &(mile_call){.op = MILE_OP_COPY, LMILE_IN(t, src)}, "copy_");
  lua_settop(L, 1);
  return 1;
}
static int m_uniform_(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  mile_rng *rng = lmile_check_rng(L, 2);
  lmile_check(L, mile_uniform_(t, rng, luaL_optnumber(L, 3, 0), luaL_optnumber(L, 4, 1)), "uniform_");
  lua_settop(L, 1);
  return 1;
}
static int m_normal_(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  mile_rng *rng = lmile_check_rng(L, 2);
  lmile_check(L, mile_normal_(t, rng, luaL_optnumber(L, 3, 0), luaL_optnumber(L, 4, 1)), "normal_");
  lua_settop(L, 1);
  return 1;
}

/* ---- metamethods: t[i], t[i] = v, #t --------------------------------------------- */

static int methods_index; /* registry key of the method table */

static int tensor_index(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    int isint;
    lua_Integer i = lua_tointegerx(L, 2, &isint);
    if (!isint) luaL_error(L, "index: %s is not an integer", lua_tostring(L, 2));
    if (t->ndim == 0) luaL_error(L, "index: cannot index a 0-d tensor (use :item())");
    if (i < 1 || i > t->shape[0])
      luaL_error(L, "index %I out of range for dim 1 of size %I", i, (lua_Integer)t->shape[0]);
    if (t->ndim == 1) {
      double v;
      lmile_unrecorded(L, "t[i]", "reads a tensor's value into Lua (the recording would fix it)");
      int64_t at = i - 1;
      lmile_check(L, mile_get(t, &at, &v), "index");
      lua_pushnumber(L, v);
      return 1;
    }
    return lmile_call(L, &(mile_call){.op = MILE_OP_SELECT, LMILE_IN(t), .i = {0, i - 1}}, "index");
  }
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "grad") == 0) return lmile_call(L, &(mile_call){.op = MILE_OP_GRAD, LMILE_IN(t)}, "grad");
    if (strcmp(k, "grad_fn") == 0) {
      lua_pushstring(L, mile_grad_fn_name(t));
      return 1;
    }
    if (strcmp(k, "is_leaf") == 0) {
      lua_pushboolean(L, t->grad_fn == NULL);
      return 1;
    }
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &methods_index);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int tensor_newindex(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  lmile_unrecorded(L, "t[i] = v", "writes tensor elements from Lua");
  lua_Integer i = luaL_checkinteger(L, 2);
  if (t->ndim == 0) luaL_error(L, "index: cannot index a 0-d tensor");
  if (i < 1 || i > t->shape[0])
    luaL_error(L, "index %I out of range for dim 1 of size %I", i, (lua_Integer)t->shape[0]);
  mile_tensor *row;
  lmile_check(L, mile_select(&row, t, 0, i - 1), "index");
  mile_tensor *src = lmile_to_tensor(L, 3);
  mile_status st;
  if (src) st = mile_copy_(row, src);
  else if (lua_type(L, 3) == LUA_TNUMBER) st = mile_fill_(row, lua_tonumber(L, 3));
  else st = mile_set_error(MILE_ERR_ARGUMENT, "index: cannot assign %s to a tensor element", luaL_typename(L, 3));
  mile_tensor_release(row);
  lmile_check(L, st, "index");
  return 0;
}

static int tensor_len(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  lua_pushinteger(L, t->ndim ? t->shape[0] : 0);
  return 1;
}

/* ---- autograd methods --------------------------------------------------------------- */

static int m_requires_grad(lua_State *L) { /* requires_grad() -> flag; requires_grad(flag) -> self */
  mile_tensor *t = lmile_check_tensor(L, 1);
  if (lua_isnone(L, 2)) {
    lua_pushboolean(L, mile_requires_grad(t));
    return 1;
  }
  lmile_call(L, &(mile_call){.op = MILE_OP_SET_REQUIRES_GRAD, LMILE_IN(t), .i = {lua_toboolean(L, 2)}},
             "requires_grad");
  lua_settop(L, 1);
  return 1;
}
/* backward() | backward(grad) | backward(grad, retain_graph) | backward{grad=, retain_graph=} */
static int m_backward(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1), *seed = NULL;
  int retain = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "grad");
    seed = lua_isnil(L, -1) ? NULL : lmile_check_tensor(L, -1);
    lua_getfield(L, 2, "retain_graph");
    retain = lua_toboolean(L, -1);
  } else if (!lua_isnoneornil(L, 2)) {
    seed = lmile_check_tensor(L, 2);
    retain = lua_toboolean(L, 3);
  }
  lua_State *previous = lmile_backward_L;
  lmile_backward_L = L; /* custom nodes written in Lua run their backward on this thread */
  mile_call c = {.op = MILE_OP_BACKWARD, LMILE_IN(t, seed), .i = {retain}};
  mile_status st = mile_call_run(&c);
  lmile_backward_L = previous;
  lmile_check(L, st, "backward");
  return 0;
}
static int m_zero_grad(lua_State *L) {
  lmile_call(L, &(mile_call){.op = MILE_OP_ZERO_GRAD, LMILE_IN(lmile_check_tensor(L, 1))}, "zero_grad");
  lua_settop(L, 1);
  return 1;
}
static int m_detach(lua_State *L) {
  mile_tensor *t = lmile_check_tensor(L, 1);
  return lmile_call(L, &(mile_call){.op = MILE_OP_DETACH, LMILE_IN(t)}, "detach");
}
static int m_set_grad(lua_State *L) { /* set_grad(tensor or nil): what optimisers and tests need */
  mile_tensor *t = lmile_check_tensor(L, 1);
  mile_tensor *g = lua_isnoneornil(L, 2) ? NULL : lmile_check_tensor(L, 2);
  lmile_call(L, &(mile_call){.op = MILE_OP_SET_GRAD, LMILE_IN(t, g)}, "set_grad");
  return 0;
}
static int m_storage_id(lua_State *L) { /* identity of the storage (to tell views apart from copies) */
  lua_pushlightuserdata(L, lmile_check_tensor(L, 1)->storage);
  return 1;
}

static const luaL_Reg tensor_methods[] = {
    {"shape", m_shape}, {"size", m_size}, {"dim", m_dim}, {"numel", m_numel}, {"dtype", m_dtype},
    {"stride", m_stride}, {"is_contiguous", m_is_contiguous}, {"item", m_item}, {"totable", m_totable},
    {"view", m_view}, {"reshape", m_reshape}, {"expand", m_expand}, {"expand_as", m_expand_as},
    {"transpose", m_transpose}, {"t", m_t}, {"permute", m_permute}, {"narrow", m_narrow}, {"select", m_select},
    {"squeeze", m_squeeze}, {"unsqueeze", m_unsqueeze}, {"contiguous", m_contiguous}, {"clone", m_clone},
    {"to", m_to}, {"float", m_float}, {"double", m_double},
    {"neg", m_neg}, {"exp", m_exp}, {"log", m_log}, {"log1p", m_log1p}, {"expm1", m_expm1}, {"sqrt", m_sqrt},
    {"abs", m_abs}, {"tanh", m_tanh}, {"sigmoid", m_sigmoid}, {"relu", m_relu}, {"normal_cdf", m_normal_cdf},
    {"log_normal_cdf", m_log_normal_cdf}, {"softplus", m_softplus},
    {"add", m_add}, {"sub", m_sub}, {"mul", m_mul}, {"div", m_div}, {"pow", m_pow}, {"maximum", m_maximum},
    {"minimum", m_minimum}, {"eq", m_eq}, {"ne", m_ne}, {"lt", m_lt}, {"le", m_le}, {"gt", m_gt}, {"ge", m_ge},
    {"clamp", m_clamp}, {"sum", m_sum}, {"mean", m_mean}, {"logsumexp", m_logsumexp}, {"max", m_max},
    {"min", m_min}, {"argmax", m_argmax}, {"argmin", m_argmin}, {"softmax", m_softmax},
    {"log_softmax", m_log_softmax}, {"gather", m_gather}, {"index_select", m_index_select},
    {"matmul", m_matmul}, {"linear", m_linear},
    {"fill_", m_fill_}, {"zero_", m_zero_}, {"copy_", m_copy_}, {"uniform_", m_uniform_}, {"normal_", m_normal_},
    {"requires_grad", m_requires_grad}, {"backward", m_backward}, {"zero_grad", m_zero_grad},
    {"detach", m_detach}, {"set_grad", m_set_grad}, {"storage_id", m_storage_id},
    {NULL, NULL}};

static const luaL_Reg tensor_meta[] = {
    {"__index", tensor_index}, {"__newindex", tensor_newindex}, {"__len", tensor_len},
    {"__tostring", m_tostring}, {"__gc", tensor_gc}, {"__close", tensor_gc},
    {"__add", m_add}, {"__sub", m_sub}, {"__mul", m_mul}, {"__div", m_div}, {"__pow", m_pow}, {"__unm", m_neg},
    {NULL, NULL}};

static const luaL_Reg rng_methods[] = {
    {"seed", rng_seed}, {"uniform", rng_uniform}, {"normal", rng_normal}, {"integer", rng_integer},
    {"categorical", rng_categorical}, {"permutation", rng_permutation}, {"state", rng_state},
    {"set_state", rng_set_state}, {NULL, NULL}};

/* alloc_budget(bytes | nil) -> the budget left before (nil when unbounded): bound the
 * bytes new tensors may take from now on (nil removes the bound); see mile_alloc_budget. */
static int t_alloc_budget(lua_State *L) {
  int64_t bytes = -1;
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer b = luaL_checkinteger(L, 1);
    luaL_argcheck(L, b >= 0, 1, "a budget is a byte count >= 0 (nil for none)");
    bytes = b;
  }
  int64_t previous = mile_alloc_budget(bytes);
  if (previous < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, previous);
  return 1;
}

static int t_is_tensor(lua_State *L) {
  lua_pushboolean(L, lmile_to_tensor(L, 1) != NULL);
  return 1;
}

static const luaL_Reg module_functions[] = {
    {"zeros", t_zeros}, {"ones", t_ones}, {"full", t_full}, {"empty", t_empty}, {"scalar", t_scalar},
    {"arange", t_arange}, {"from", t_from}, {"randn", t_randn}, {"rand", t_rand}, {"Generator", t_generator},
    {"cat", t_cat}, {"where", t_where}, {"is_tensor", t_is_tensor}, {"alloc_budget", t_alloc_budget},
    {"mlp_plan", lmile_mlp_plan}, {NULL, NULL}};

int luaopen_mile_tensor(lua_State *L) {
  luaL_newlib(L, module_functions);
  /* methods are also module functions: mile.tensor.exp(t) == t:exp() */
  luaL_newlib(L, tensor_methods);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &methods_index);
  lua_pushnil(L);
  while (lua_next(L, -2)) { /* stack: M, methods, key, value */
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, -5);
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, LMILE_TENSOR_MT)) {
    luaL_setfuncs(L, tensor_meta, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &methods_index);
    lua_setfield(L, -2, "__methods"); /* for completion and help in the REPL */
  }
  lua_setfield(L, -2, "metatable");
  if (luaL_newmetatable(L, LMILE_RNG_MT)) {
    luaL_newlib(L, rng_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, rng_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  return 1;
}
