/* fuzz_lua.c - libFuzzer harness that embeds Lua 5.4 with mile's C modules preloaded
 * (as the `mile` host does) and hands each input to a Lua driver.
 *
 * FUZZ_DRIVER (a compile definition) names a Lua file that returns a function
 * f(data, dir): data is the input as a string, dir a private temporary directory.
 * f raises only when it finds a bug (an error message that is not one of the clear
 * errors the code under test promises); the harness then prints it and aborts, and
 * libFuzzer keeps the input. Errors the inputs cause inside f are caught by f.
 *
 * libFuzzer sees the C code's edges; the Lua code under test runs in the uninstrumented
 * VM, so a line hook feeds it Lua's (previous line, line) pairs as extra counters.
 *
 * One lua_State serves every input. Its allocator is capped (MEMORY_CAP): a Lua
 * value of gigabytes (("x"):rep(2^31) in a data file) becomes a Lua memory error,
 * as it would with a little less memory, not a libFuzzer out-of-memory report. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lmile.h"

enum { MEMORY_CAP = 256 << 20, LUA_EDGES = 1 << 16 };

/* libFuzzer reads counters in this section as coverage, next to the compiler's */
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t lua_edges[LUA_EDGES];
static uintptr_t previous_line;

static void line_hook(lua_State *S, lua_Debug *ar) {
  if (lua_getinfo(S, "S", ar) == 0) return;
  /* Lua keeps one string per chunk name: its address tells the files apart */
  uintptr_t here = ((uintptr_t)ar->source >> 4) * 2654435761u + (uintptr_t)ar->currentline;
  lua_edges[(here ^ (previous_line >> 1)) % LUA_EDGES]++;
  previous_line = here;
}

static lua_State *L;
static size_t lua_bytes;
static char dir[64];

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    free(ptr);
    lua_bytes -= osize;
    return NULL;
  }
  if (nsize > osize && nsize - osize > MEMORY_CAP - lua_bytes) return NULL;
  void *p = realloc(ptr, nsize);
  if (p != NULL) lua_bytes = lua_bytes - osize + nsize;
  return p;
}

/* Remove the temporary directory and close the state, so that LeakSanitizer's check
 * at exit sees what mile's C code leaked, not what Lua still held. */
static void cleanup(void) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[512];
  if (L != NULL) lua_close(L);
  L = NULL;
  if (d != NULL) {
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    }
    closedir(d);
  }
  rmdir(dir);
}

static int traceback(lua_State *S) {
  luaL_traceback(S, S, lua_tostring(S, 1), 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* tmpfs where there is one: the checkpoint writer fsyncs every file */
  snprintf(dir, sizeof dir, "%s/mile-fuzz-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    abort();
  }
  L = lua_newstate(capped_alloc, NULL);
  if (L == NULL) abort();
  luaL_openlibs(L);
  lmile_preload(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, FUZZ_LUA_DIR "/?.lua;" FUZZ_LUA_DIR "/?/init.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, FUZZ_DRIVER) != LUA_OK || lua_pcall(L, 0, 1, -2) != LUA_OK || !lua_isfunction(L, -1)) {
    fprintf(stderr, "fuzz: cannot load the driver %s: %s\n", FUZZ_DRIVER, lua_tostring(L, -1));
    abort();
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "mile.fuzz.driver"); /* stack: traceback */
  lua_pop(L, 1);
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  atexit(cleanup);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_pushcfunction(L, traceback);
  lua_getfield(L, LUA_REGISTRYINDEX, "mile.fuzz.driver");
  lua_pushlstring(L, (const char *)data, size);
  lua_pushstring(L, dir);
  if (lua_pcall(L, 2, 0, -4) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "fuzz: the driver found a bug: %s\n", msg != NULL ? msg : "(not a string)");
    abort();
  }
  lua_pop(L, 1);
  return 0;
}
