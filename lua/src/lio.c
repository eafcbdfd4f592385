/* lio.c - mile.io.core: safetensors files and JSON for the Lua module mile.io.
 *
 * The public functions live in lua/mile/io.lua, which checks and sorts arguments;
 * this file is the thin layer over the core's safetensors reader/writer and over
 * jansson. Anything C allocates is owned by a userdata box before the first call
 * that may raise, so a Lua error (or an out-of-memory) never leaks it. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lmile.h"

#define LIO_SAFETENSORS_MT "mile.io.safetensors"
#define LIO_JSON_MT "mile.io.json"

/* ---- boxes ---------------------------------------------------------------------- */

typedef struct st_box { mile_safetensors *st; } st_box;
typedef struct json_box {
  json_t *root;
  char *text; /* json_dumps output, until Lua has copied it */
} json_box;

static int st_box_gc(lua_State *L) {
  st_box *box = luaL_checkudata(L, 1, LIO_SAFETENSORS_MT);
  mile_safetensors_free(box->st);
  box->st = NULL;
  return 0;
}

static void json_box_gc_now(json_box *box);

static int json_box_gc(lua_State *L) {
  json_box_gc_now(luaL_checkudata(L, 1, LIO_JSON_MT));
  return 0;
}

static void json_box_gc_now(json_box *box) {
  json_decref(box->root);
  box->root = NULL;
  free(box->text);
  box->text = NULL;
}

static json_box *push_json_box(lua_State *L) {
  json_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->root = NULL;
  box->text = NULL;
  luaL_setmetatable(L, LIO_JSON_MT);
  return box;
}

/* One entry of a {string = value} table, for sorting by key. */
typedef struct named {
  const char *name; /* a key of the table: alive while the table is */
  const void *value; /* the tensor or the string it maps to (alive as long) */
} named;

static int named_cmp(const void *a, const void *b) {
  return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* Count the entries of the table at idx; raise unless every key is a string without
 * zero bytes (and, for metadata, every value a string without zero bytes). */
static lua_Integer check_string_keys(lua_State *L, int idx, const char *path, const char *what, bool string_values) {
  lua_Integer n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* stack: key, value */
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "save_safetensors: %s: %s keys must be strings, got a %s key", path, what, luaL_typename(L, -2));
    size_t len;
    const char *key = lua_tolstring(L, -2, &len);
    if (strlen(key) != len) luaL_error(L, "save_safetensors: %s: a %s key contains a zero byte", path, what);
    if (string_values && lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "save_safetensors: %s: metadata must map strings to strings ('%s' holds a %s)", path, key,
                 luaL_typename(L, -1));
    size_t vlen = 0;
    const char *value = string_values ? lua_tolstring(L, -1, &vlen) : NULL;
    if (value && memchr(value, 0, vlen)) /* C would cut it there */
      luaL_error(L, "save_safetensors: %s: metadata value of '%s' contains a zero byte (refused: it would be cut "
                 "at the zero)", path, key);
    if (!string_values && !lmile_to_tensor(L, -1))
      luaL_error(L, "save_safetensors: %s: '%s' is a %s, not a tensor", path, key, luaL_typename(L, -1));
    if (++n > INT32_MAX / 8) luaL_error(L, "save_safetensors: %s: too many %s entries", path, what);
    lua_pop(L, 1);
  }
  return n;
}

/* The n entries of the table at idx (checked by check_string_keys), sorted by key. */
static void sorted_entries(lua_State *L, int idx, named *entries, lua_Integer n, bool string_values) {
  lua_Integer i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* stack: key, value */
    if (i < n) {
      entries[i].name = lua_tostring(L, -2);
      entries[i].value = string_values ? (const void *)lua_tostring(L, -1) : (const void *)lmile_to_tensor(L, -1);
    }
    i++;
    lua_pop(L, 1);
  }
  if (n > 1) qsort(entries, (size_t)n, sizeof *entries, named_cmp);
}

/* ---- safetensors ---------------------------------------------------------------- */

/* The path argument: a string without zero bytes (a C path would stop at one). */
static const char *check_path(lua_State *L, int idx) {
  size_t len;
  const char *path = luaL_checklstring(L, idx, &len);
  if (strlen(path) != len) luaL_argerror(L, idx, "path contains a zero byte");
  return path;
}

/* save(path, tensors {name = tensor}, [metadata {key = string}]) -> true | nil, msg
 * Tensors are written sorted by name and metadata sorted by key, so the same
 * tables give the same bytes. Misuse raises; I/O failures return nil, msg. */
static int io_save(lua_State *L) {
  const char *path = check_path(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (lua_isnoneornil(L, 3)) {
    lua_settop(L, 2);
    lua_newtable(L);
  }
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  lua_Integer n = check_string_keys(L, 2, path, "tensor", false);
  lua_Integer m = check_string_keys(L, 3, path, "metadata", true);
  /* every array lives in one userdata: a raise below frees it with the userdata */
  size_t sn = (size_t)n, sm = (size_t)m;
  size_t bytes = (sn + sm) * sizeof(named) + (2 * sn + 2 * sm) * sizeof(void *) + 1;
  unsigned char *mem = lua_newuserdatauv(L, bytes, 0); /* stack: path, tensors, metadata, mem */
  named *tsort = (named *)mem;
  named *msort = tsort + sn;
  const char **names = (const char **)(mem + (sn + sm) * sizeof(named));
  mile_tensor **tensors = (mile_tensor **)(names + sn);
  const char **keys = (const char **)(tensors + sn);
  const char **values = keys + sm;
  sorted_entries(L, 2, tsort, n, false);
  sorted_entries(L, 3, msort, m, true);
  for (size_t i = 0; i < sn; i++) {
    names[i] = tsort[i].name;
    tensors[i] = (mile_tensor *)tsort[i].value;
  }
  for (size_t i = 0; i < sm; i++) {
    keys[i] = msort[i].name;
    values[i] = msort[i].value;
  }
  mile_status st = mile_safetensors_save(path, (int32_t)n, names, tensors, (int32_t)m, keys, values);
  if (st == MILE_ERR_IO) {
    lua_pushnil(L);
    lua_pushstring(L, mile_last_error());
    return 2;
  }
  lmile_check(L, st, "save_safetensors");
  lua_pushboolean(L, 1);
  return 1;
}

/* load(path [, {max_bytes = n}]) -> tensors {name = tensor}, metadata {key = value},
 *               names {in file order}, file_dtypes {name = "F32"|...}
 *             | nil, msg  when the file cannot be opened or read.
 * A malformed file raises; so does one whose tensors need more than max_bytes (or
 * than the thread's allocation budget), before any tensor is allocated. */
static int io_load(lua_State *L) {
  const char *path = check_path(L, 1);
  lua_Integer max_bytes = -1;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "max_bytes");
    if (!lua_isnil(L, -1)) {
      max_bytes = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
      if (max_bytes < 0) luaL_error(L, "load_safetensors: max_bytes must be a non-negative integer");
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  st_box *box = lua_newuserdatauv(L, sizeof *box, 0); /* stack: path, box */
  box->st = NULL;
  luaL_setmetatable(L, LIO_SAFETENSORS_MT);
  /* max_bytes narrows the thread's budget for this call; what the tensors took is
   * charged to the outer budget afterwards (nothing below raises before that) */
  int64_t outer = mile_alloc_budget(-1);
  int64_t limit = max_bytes >= 0 && (outer < 0 || max_bytes < outer) ? (int64_t)max_bytes : outer;
  mile_alloc_budget(limit);
  mile_status status = mile_safetensors_load(&box->st, path);
  int64_t left = mile_alloc_budget(-1);
  mile_alloc_budget(outer < 0 ? -1 : outer - (limit - left));
  if (status == MILE_ERR_IO) {
    lua_pushnil(L);
    lua_pushstring(L, mile_last_error());
    return 2;
  }
  lmile_check(L, status, "load_safetensors");
  mile_safetensors *st = box->st;
  int32_t n = mile_safetensors_count(st), m = mile_safetensors_metadata_count(st);
  lua_createtable(L, 0, n); /* 3: tensors */
  lua_createtable(L, 0, m); /* 4: metadata */
  lua_createtable(L, n, 0); /* 5: names */
  lua_createtable(L, 0, n); /* 6: file dtypes */
  for (int32_t i = 0; i < n; i++) {
    const char *name = mile_safetensors_name(st, i);
    lua_pushstring(L, name);
    lmile_push_tensor(L, mile_tensor_retain(mile_safetensors_tensor(st, i)));
    lua_rawset(L, 3);
    lua_pushstring(L, name);
    lua_rawseti(L, 5, i + 1);
    lua_pushstring(L, mile_safetensors_file_dtype(st, i));
    lua_setfield(L, 6, name);
  }
  for (int32_t i = 0; i < m; i++) {
    lua_pushstring(L, mile_safetensors_metadata_value(st, i));
    lua_setfield(L, 4, mile_safetensors_metadata_key(st, i));
  }
  mile_safetensors_free(st); /* the tensors live on in their Lua boxes */
  box->st = NULL;
  return 4;
}

/* ---- JSON ----------------------------------------------------------------------- */

enum { JSON_MAX_DEPTH = 200 };

/* Where the encoder is, for messages: "spec.layers[2].fn". */
typedef struct json_path {
  char text[256];
  size_t len;
} json_path;

static size_t path_push_key(json_path *p, lua_State *L, int key_idx) {
  size_t old = p->len;
  int n;
  if (lua_type(L, key_idx) == LUA_TSTRING)
    n = snprintf(p->text + p->len, sizeof p->text - p->len, ".%s", lua_tostring(L, key_idx));
  else
    n = snprintf(p->text + p->len, sizeof p->text - p->len, "[%lld]", (long long)lua_tointeger(L, key_idx));
  p->len += n < 0 ? 0 : (size_t)n;
  if (p->len >= sizeof p->text) p->len = sizeof p->text - 1;
  return old;
}

static int json_fail(lua_State *L, const json_path *p, const char *what) {
  return luaL_error(L, "json_encode: %s (at %s)", what, p->len ? p->text : "top level");
}

/* Whether the table at idx is a non-empty sequence 1..n with no other key; raises
 * on keys JSON cannot hold. */
static bool table_is_array(lua_State *L, int idx, const json_path *p) {
  lua_Integer count = 0, max = 0;
  bool strings = false, integers = false;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1); /* stack: key */
    count++;
    if (lua_type(L, -1) == LUA_TSTRING) {
      strings = true;
    } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      integers = true;
      if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
    } else {
      lua_pop(L, 1);
      json_fail(L, p, "a table key that is neither a string nor a positive integer");
    }
  }
  if (strings && integers) json_fail(L, p, "a table with both string and integer keys");
  if (integers && max != count) json_fail(L, p, "an array with holes");
  return integers;
}

/* A new JSON value for the scalar at idx, or NULL when it is a table (raises on
 * values JSON cannot hold; allocates nothing before raising). */
static json_t *encode_scalar(lua_State *L, int idx, const json_path *p) {
  json_t *v = NULL;
  switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: v = json_boolean(lua_toboolean(L, idx)); break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        v = json_integer((json_int_t)lua_tointeger(L, idx));
      } else {
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) json_fail(L, p, "a number that is not finite (JSON has no inf or nan)");
        v = json_real(d);
      }
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      if (memchr(s, 0, len)) json_fail(L, p, "a string with a zero byte");
      v = json_stringn(s, len);
      if (!v) json_fail(L, p, "a string that is not valid UTF-8");
      break;
    }
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {
        v = json_null();
        break;
      }
      /* fall through */
    default: {
      char what[64];
      snprintf(what, sizeof what, "a value of type %s", luaL_typename(L, idx));
      json_fail(L, p, what);
    }
  }
  if (!v) luaL_error(L, "json_encode: out of memory");
  return v;
}

/* Fill the container c (already owned by the tree) from the table at idx. */
static void encode_table(lua_State *L, int idx, json_t *c, json_path *p, int depth);

/* Encode the value at idx into container c, under `key` (NULL: append to an array). */
static void encode_into(lua_State *L, int idx, json_t *c, const char *key, json_path *p, int depth) {
  if (key) { /* jansson refuses keys that are not UTF-8: say so before anything is allocated */
    json_t *k = json_string(key);
    if (!k) json_fail(L, p, "a key that is not valid UTF-8");
    json_decref(k);
  }
  json_t *v;
  bool table = lua_type(L, idx) == LUA_TTABLE;
  if (table) {
    if (depth >= JSON_MAX_DEPTH) json_fail(L, p, "tables nested too deeply (a cycle?)");
    v = table_is_array(L, idx, p) ? json_array() : json_object();
    if (!v) luaL_error(L, "json_encode: out of memory");
  } else {
    v = encode_scalar(L, idx, p);
  }
  /* set_new/append_new take v even when they fail */
  int rc = key ? json_object_set_new(c, key, v) : json_array_append_new(c, v);
  if (rc != 0) luaL_error(L, "json_encode: out of memory");
  if (table) encode_table(L, idx, v, p, depth + 1);
}

static void encode_table(lua_State *L, int idx, json_t *c, json_path *p, int depth) {
  luaL_checkstack(L, 4, "json_encode: tables nested too deeply");
  if (json_is_array(c)) {
    lua_Integer n = (lua_Integer)luaL_len(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_pushinteger(L, i);
      size_t mark = path_push_key(p, L, -1);
      lua_pop(L, 1);
      lua_geti(L, idx, i);
      encode_into(L, lua_gettop(L), c, NULL, p, depth);
      lua_pop(L, 1);
      p->len = mark;
      p->text[mark] = '\0';
    }
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* stack: key, value; keys are strings here */
    size_t mark = path_push_key(p, L, -2);
    size_t klen;
    const char *key = lua_tolstring(L, -2, &klen);
    if (strlen(key) != klen) json_fail(L, p, "a key with a zero byte");
    encode_into(L, lua_gettop(L), c, key, p, depth);
    lua_pop(L, 1);
    p->len = mark;
    p->text[mark] = '\0';
  }
}

/* json_encode(value) -> string: compact JSON, object keys sorted. */
static int io_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  json_box *box = push_json_box(L); /* stack: value, box */
  json_path p = {.len = 0};
  p.text[0] = '\0';
  /* an array of one element holds the root, so the root has a parent like any value */
  box->root = json_array();
  if (!box->root) luaL_error(L, "json_encode: out of memory");
  encode_into(L, 1, box->root, NULL, &p, 0);
  box->text = json_dumps(json_array_get(box->root, 0), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  if (!box->text) luaL_error(L, "json_encode: out of memory");
  lua_pushstring(L, box->text); /* may raise: the box frees text either way */
  json_box_gc_now(box);
  return 1;
}

static void decode_push(lua_State *L, json_t *v, int depth) {
  luaL_checkstack(L, 3, "json_decode: nested too deeply");
  switch (json_typeof(v)) {
    case JSON_OBJECT: {
      lua_createtable(L, 0, (int)json_object_size(v));
      const char *key;
      json_t *child;
      json_object_foreach(v, key, child) {
        decode_push(L, child, depth + 1);
        lua_setfield(L, -2, key);
      }
      break;
    }
    case JSON_ARRAY: {
      size_t n = json_array_size(v);
      lua_createtable(L, (int)n, 0);
      for (size_t i = 0; i < n; i++) {
        decode_push(L, json_array_get(v, i), depth + 1);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    case JSON_NULL: lua_pushlightuserdata(L, NULL); break;
  }
}

/* json_decode(string) -> value; JSON null becomes mile.io.null (a NULL light userdata). */
static int io_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  json_box *box = push_json_box(L);
  json_error_t err;
  box->root = json_loadb(s, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
  if (!box->root) luaL_error(L, "json_decode: line %d, column %d: %s", err.line, err.column, err.text);
  decode_push(L, box->root, 0);
  return 1;
}

static const luaL_Reg functions[] = {{"save", io_save},
                                     {"load", io_load},
                                     {"json_encode", io_json_encode},
                                     {"json_decode", io_json_decode},
                                     {NULL, NULL}};

int luaopen_mile_io_core(lua_State *L) {
  static const luaL_Reg st_meta[] = {{"__gc", st_box_gc}, {"__close", st_box_gc}, {NULL, NULL}};
  static const luaL_Reg json_meta[] = {{"__gc", json_box_gc}, {"__close", json_box_gc}, {NULL, NULL}};
  if (luaL_newmetatable(L, LIO_SAFETENSORS_MT)) luaL_setfuncs(L, st_meta, 0);
  if (luaL_newmetatable(L, LIO_JSON_MT)) luaL_setfuncs(L, json_meta, 0);
  lua_pop(L, 2);
  luaL_newlib(L, functions);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
