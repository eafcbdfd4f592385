/* lenvs.c - `mile.envs.core`: the C simulators of mile/env.h as Lua userdata.
 *
 * The pure-Lua `mile.envs` builds Gymnasium's shape on top of this (info tables,
 * wrappers, spaces). Here: one "mile.Env" userdata per env, observations as 1-d
 * float64 mile tensors, actions from a number, a table or a tensor, rendering to a
 * string of RGB bytes and PNG files through libpng. Every argument is checked before
 * anything is allocated; env failures become Lua errors "<function>: <message>". */
#define _POSIX_C_SOURCE 200809L /* getpid for unique temporary file names */

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "lmile.h"
#include "mile/env.h"

#define LENV_MT "mile.Env"

enum { DEFAULT_RENDER_WIDTH = 600, DEFAULT_RENDER_HEIGHT = 400, MAX_RENDER_SIDE = 4096, MAX_STACKED_FRAMES = 16 };

typedef struct lenv {
  mile_env *env; /* NULL once closed */
} lenv;

/* Raise a formatted message (lua_pushfstring's %s %d %f) without luaL_error's
 * position prefix: that would name the line inside mile/envs.lua that called the
 * core, not the user's line (the host's traceback shows that). */
static int lenv_raise(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* Raise "<fname>: <env message>" (through "%s": the message may contain '%'). */
static int lenv_error(lua_State *L, const char *fname) { return lenv_raise(L, "%s: %s", fname, mile_env_last_error()); }

static mile_env *check_env(lua_State *L, int idx, const char *fname) {
  lenv *box = luaL_checkudata(L, idx, LENV_MT);
  if (box->env == NULL)
    lenv_raise(L, "%s: the env is closed", fname);
  return box->env;
}

/* --- values in: numbers, tables, tensors ------------------------------------- */

/* Reads the value at idx into buf (at most `capacity` values) and returns how many
 * values it has, which may exceed the capacity: then nothing is read past it and the
 * caller reports the size mismatch. `what` names the argument in messages. */
static int64_t read_values(lua_State *L, int idx, double *buf, int64_t capacity, const char *fname, const char *what) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    buf[0] = lua_tonumber(L, idx);
    return 1;
  }
  mile_tensor *t = lmile_to_tensor(L, idx);
  if (t != NULL) {
    int64_t n = mile_numel(t);
    if (n <= capacity)
      lmile_check(L, mile_to_doubles(t, buf), fname);
    return n;
  }
  if (lua_type(L, idx) == LUA_TTABLE) {
    int64_t n = (int64_t)lua_rawlen(L, idx);
    for (int64_t i = 1; i <= n && i <= capacity; i++) {
      int type = lua_rawgeti(L, idx, i);
      if (type != LUA_TNUMBER)
        lenv_raise(L, "%s: %s[%d] is a %s, expected a number", fname, what, (int)i, lua_typename(L, type));
      buf[i - 1] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
    return n;
  }
  return lenv_raise(L, "%s: %s must be a number, a table of numbers or a mile tensor, got %s", fname, what,
                    luaL_typename(L, idx));
}

static int32_t clamp_count(int64_t n) { return n > INT32_MAX ? INT32_MAX : (int32_t)n; }

/* --- values out ------------------------------------------------------------------ */

static void push_doubles_tensor(lua_State *L, const double *values, int32_t n) {
  int64_t shape[1] = {n};
  mile_tensor *t = lmile_push_new_tensor(L, MILE_FLOAT64, 1, shape);
  memcpy(mile_data(t), values, (size_t)n * sizeof *values);
}

static void push_number_list(lua_State *L, const double *values, int32_t n) {
  lua_createtable(L, n, 0);
  for (int32_t i = 0; i < n; i++) {
    lua_pushnumber(L, values[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* {type="discrete", n=} or {type="box", shape={n}, low={...}, high={...}} */
static void push_space(lua_State *L, const mile_env_space *space) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, space->discrete ? "discrete" : "box");
  lua_setfield(L, -2, "type");
  if (space->discrete) {
    lua_pushinteger(L, space->n);
    lua_setfield(L, -2, "n");
    return;
  }
  lua_createtable(L, 1, 0);
  lua_pushinteger(L, space->n);
  lua_rawseti(L, -2, 1);
  lua_setfield(L, -2, "shape");
  push_number_list(L, space->low, space->n);
  lua_setfield(L, -2, "low");
  push_number_list(L, space->high, space->n);
  lua_setfield(L, -2, "high");
}

/* --- module functions ----------------------------------------------------------- */

/* The options table at idx as "key=value,key=value", pushed as a string. Lua tables
 * have no order: mile_env_create treats the keys as a set. */
static const char *push_options_string(lua_State *L, int idx) {
  lua_newtable(L); /* the "key=value" items, joined below */
  int items = lua_gettop(L), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) { /* stack: ..., items, key, value */
    if (lua_type(L, -2) != LUA_TSTRING)
      lenv_raise(L, "envs.make: option names must be strings, got a %s", luaL_typename(L, -2));
    const char *key = lua_tostring(L, -2);
    if (strpbrk(key, ",=") != NULL)
      lenv_raise(L, "envs.make: option name '%s' may not contain ',' or '='", key);
    char number[64];
    const char *value = number;
    switch (lua_type(L, -1)) {
    case LUA_TBOOLEAN:
      value = lua_toboolean(L, -1) ? "true" : "false";
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, -1))
        snprintf(number, sizeof number, "%lld", (long long)lua_tointeger(L, -1));
      else
        snprintf(number, sizeof number, "%.17g", lua_tonumber(L, -1));
      break;
    case LUA_TSTRING:
      value = lua_tostring(L, -1);
      if (strpbrk(value, ",=") != NULL)
        lenv_raise(L, "envs.make: option %s: the value may not contain ',' or '='", key);
      break;
    default:
      lenv_raise(L, "envs.make: option %s must be a number, a boolean or a string, got %s", key, luaL_typename(L, -1));
    }
    lua_pushfstring(L, "%s=%s", key, value);
    lua_rawseti(L, items, ++count);
    lua_pop(L, 1); /* the value; the key stays for lua_next */
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= count; i++) {
    if (i > 1)
      luaL_addchar(&b, ',');
    lua_rawgeti(L, items, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_remove(L, items);
  return lua_tostring(L, -1);
}

/* core.make(name [, options]) -> env */
static int lenvs_make(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  /* the string stays on the stack until we return */
  const char *options = lua_istable(L, 2) ? push_options_string(L, 2) : NULL;
  lenv *box = lua_newuserdatauv(L, sizeof *box, 0); /* may raise: nothing owned yet */
  box->env = NULL;
  luaL_setmetatable(L, LENV_MT);
  if (mile_env_create(&box->env, name, options) != MILE_ENV_OK)
    return lenv_error(L, "envs.make");
  return 1;
}

/* core.names() -> {name, ...} */
static int lenvs_names(lua_State *L) {
  lua_newtable(L);
  for (int32_t i = 0; mile_env_name_at(i) != NULL; i++) {
    lua_pushstring(L, mile_env_name_at(i));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* core.concat(t1, t2, ...) -> a 1-d float64 tensor of all their elements in order
 * (FrameStack's stacked observation). */
static int lenvs_concat(lua_State *L) {
  int count = lua_gettop(L);
  if (count == 0)
    return lenv_raise(L, "envs.concat: expected at least one tensor");
  int64_t total = 0;
  for (int i = 1; i <= count; i++) {
    mile_tensor *t = lmile_to_tensor(L, i);
    if (t == NULL)
      return lenv_raise(L, "envs.concat: argument %d is a %s, expected a mile tensor", i, luaL_typename(L, i));
    total += mile_numel(t);
  }
  int64_t shape[1] = {total};
  mile_tensor *out = lmile_push_new_tensor(L, MILE_FLOAT64, 1, shape);
  double *dst = mile_data(out);
  for (int i = 1; i <= count; i++) {
    mile_tensor *t = lmile_to_tensor(L, i);
    lmile_check(L, mile_to_doubles(t, dst), "envs.concat");
    dst += mile_numel(t);
  }
  return 1;
}

/* Writes rgb (w*h*3 bytes) as an 8-bit RGB PNG to an open file; 0 on success. libpng
 * reports errors by longjmp to the setjmp here, never into Lua's frames. */
static int write_png_file(FILE *file, const unsigned char *rgb, int w, int h, char *err, size_t err_size) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (png == NULL || info == NULL) {
    png_destroy_write_struct(&png, &info);
    snprintf(err, err_size, "out of memory");
    return -1;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    snprintf(err, err_size, "libpng failed to encode the image");
    return -1;
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < h; y++)
    png_write_row(png, rgb + (size_t)y * w * 3);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  return 0;
}

/* core.save_png(rgb, width, height, path) -> true, or nil, message. The file appears
 * complete or not at all: written to a temporary name beside it, then renamed. */
static int lenvs_save_png(lua_State *L) {
  size_t len;
  const char *rgb = luaL_checklstring(L, 1, &len);
  lua_Integer w = luaL_checkinteger(L, 2), h = luaL_checkinteger(L, 3);
  const char *path = luaL_checkstring(L, 4);
  luaL_argcheck(L, w >= 1 && w <= MAX_RENDER_SIDE, 2, "width must be 1..4096");
  luaL_argcheck(L, h >= 1 && h <= MAX_RENDER_SIDE, 3, "height must be 1..4096");
  if (len != (size_t)(w * h * 3))
    return lenv_raise(L, "envs.save_png: %d x %d x 3 = %d bytes expected, the image has %d", (int)w, (int)h,
                      (int)(w * h * 3), (int)len);
  lua_pushfstring(L, "%s.tmp-%d", path, (int)getpid());
  const char *tmp = lua_tostring(L, -1);

  char err[256] = "";
  FILE *file = fopen(tmp, "wb");
  if (file == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "envs.save_png: cannot write %s: %s", tmp, strerror(errno));
    return 2;
  }
  int failed = write_png_file(file, (const unsigned char *)rgb, (int)w, (int)h, err, sizeof err);
  if (fclose(file) != 0 && !failed) {
    failed = 1;
    snprintf(err, sizeof err, "%s", strerror(errno));
  }
  if (!failed && rename(tmp, path) != 0) {
    failed = 1;
    snprintf(err, sizeof err, "cannot rename to %s: %s", path, strerror(errno));
  }
  if (failed) {
    remove(tmp);
    lua_pushnil(L);
    lua_pushfstring(L, "envs.save_png: %s: %s", path, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* --- env methods ------------------------------------------------------------------ */

/* env:reset(seed) -> obs */
static int lenv_reset(lua_State *L) {
  mile_env *env = check_env(L, 1, "env.reset");
  lua_Integer seed = luaL_checkinteger(L, 2);
  double obs[MILE_ENV_MAX_DIMS];
  if (mile_env_reset(env, (uint64_t)seed, obs) != MILE_ENV_OK)
    return lenv_error(L, "env.reset");
  push_doubles_tensor(L, obs, mile_env_observation_dim(env));
  return 1;
}

/* env:step(action) -> obs, reward, terminated, truncated, success */
static int lenv_step(lua_State *L) {
  mile_env *env = check_env(L, 1, "env.step");
  luaL_checkany(L, 2);
  double action[MILE_ENV_MAX_DIMS], obs[MILE_ENV_MAX_DIMS];
  int64_t n = read_values(L, 2, action, MILE_ENV_MAX_DIMS, "env.step", "action");
  mile_env_step_result result;
  if (mile_env_step(env, action, clamp_count(n), obs, &result) != MILE_ENV_OK)
    return lenv_error(L, "env.step");
  push_doubles_tensor(L, obs, mile_env_observation_dim(env));
  lua_pushnumber(L, result.reward);
  lua_pushboolean(L, result.terminated);
  lua_pushboolean(L, result.truncated);
  lua_pushboolean(L, result.success);
  return 5;
}

/* env:expert_act(obs [, frames]) -> an integer (discrete) or a float64 tensor (box).
 * With frames > 1, obs is a FrameStack observation of frames * observation_dim values,
 * oldest first: the expert acts on the newest frame. */
static int lenv_expert_act(lua_State *L) {
  mile_env *env = check_env(L, 1, "env.expert_act");
  luaL_checkany(L, 2);
  lua_Integer frames = luaL_optinteger(L, 3, 1);
  luaL_argcheck(L, frames >= 1 && frames <= MAX_STACKED_FRAMES, 3, "frames must be 1..16");
  double obs[MAX_STACKED_FRAMES * MILE_ENV_MAX_DIMS], action[MILE_ENV_MAX_DIMS];
  int64_t n = read_values(L, 2, obs, MAX_STACKED_FRAMES * MILE_ENV_MAX_DIMS, "env.expert_act", "observation");
  int32_t dim = mile_env_observation_dim(env);
  if (n != frames * dim)
    return lenv_raise(L, "env.expert_act: the observation has %d values, %s observes %d x %d frames",
                      (int)clamp_count(n), mile_env_name(env), (int)dim, (int)frames);
  if (mile_env_expert_act(env, obs + (frames - 1) * dim, action) != MILE_ENV_OK)
    return lenv_error(L, "env.expert_act");
  mile_env_space space;
  mile_env_action_space(env, &space);
  if (space.discrete)
    lua_pushinteger(L, (lua_Integer)action[0]);
  else
    push_doubles_tensor(L, action, space.n);
  return 1;
}

/* env:render([width [, height]]) -> rgb string (row-major, top row first), width, height */
static int lenv_render(lua_State *L) {
  mile_env *env = check_env(L, 1, "env.render");
  lua_Integer w = luaL_optinteger(L, 2, DEFAULT_RENDER_WIDTH);
  lua_Integer h = luaL_optinteger(L, 3, DEFAULT_RENDER_HEIGHT);
  luaL_argcheck(L, w >= 1 && w <= MAX_RENDER_SIDE, 2, "width must be 1..4096");
  luaL_argcheck(L, h >= 1 && h <= MAX_RENDER_SIDE, 3, "height must be 1..4096");
  size_t size = (size_t)w * (size_t)h * 3;
  luaL_Buffer b;
  uint8_t *rgb = (uint8_t *)luaL_buffinitsize(L, &b, size); /* owned by Lua: no leak on error */
  if (mile_env_render(env, rgb, (int32_t)w, (int32_t)h) != MILE_ENV_OK)
    return lenv_error(L, "env.render");
  luaL_pushresultsize(&b, size);
  lua_pushinteger(L, w);
  lua_pushinteger(L, h);
  return 3;
}

static int lenv_observation_space(lua_State *L) {
  mile_env_space space;
  mile_env_observation_space(check_env(L, 1, "env.observation_space"), &space);
  push_space(L, &space);
  return 1;
}

static int lenv_action_space(lua_State *L) {
  mile_env_space space;
  mile_env_action_space(check_env(L, 1, "env.action_space"), &space);
  push_space(L, &space);
  return 1;
}

static int lenv_name(lua_State *L) {
  lua_pushstring(L, mile_env_name(check_env(L, 1, "env.name")));
  return 1;
}

static int lenv_max_episode_steps(lua_State *L) {
  lua_pushinteger(L, mile_env_max_episode_steps(check_env(L, 1, "env.max_episode_steps")));
  return 1;
}

/* __gc, __close and env:close(): idempotent. */
static int lenv_close(lua_State *L) {
  lenv *box = luaL_checkudata(L, 1, LENV_MT);
  mile_env_destroy(box->env);
  box->env = NULL;
  return 0;
}

static int lenv_tostring(lua_State *L) {
  lenv *box = luaL_checkudata(L, 1, LENV_MT);
  if (box->env == NULL)
    lua_pushstring(L, "mile.Env (closed)");
  else
    lua_pushfstring(L, "mile.Env %s", mile_env_name(box->env));
  return 1;
}

static const luaL_Reg lenv_methods[] = {
    {"reset", lenv_reset},
    {"step", lenv_step},
    {"expert_act", lenv_expert_act},
    {"render", lenv_render},
    {"observation_space", lenv_observation_space},
    {"action_space", lenv_action_space},
    {"name", lenv_name},
    {"max_episode_steps", lenv_max_episode_steps},
    {"close", lenv_close},
    {NULL, NULL},
};

static const luaL_Reg lenv_metamethods[] = {
    {"__gc", lenv_close}, {"__close", lenv_close}, {"__tostring", lenv_tostring},
    {"__index", NULL}, /* set below to the methods table */
    {NULL, NULL},
};

static const luaL_Reg lenvs_functions[] = {
    {"make", lenvs_make}, {"names", lenvs_names}, {"concat", lenvs_concat}, {"save_png", lenvs_save_png}, {NULL, NULL},
};

int luaopen_mile_envs_core(lua_State *L) {
  /* observations are tensors: their metatable must exist before the first reset */
  luaL_requiref(L, "mile.tensor", luaopen_mile_tensor, 0);
  lua_pop(L, 1);
  if (luaL_newmetatable(L, LENV_MT)) {
    luaL_setfuncs(L, lenv_metamethods, 0);
    luaL_newlib(L, lenv_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, lenvs_functions);
  return 1;
}
