/* lsys.c - mile.sys: what benchmarks and long runs need from the machine:
 * a monotonic clock, resident memory, and the BLAS thread count. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lmile.h"

/* OpenBLAS's own controls (declared in its cblas.h, which is not included here
 * to keep this file free of BLAS headers). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

static int sys_monotonic(lua_State *L) { /* seconds, for timing */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
  return 1;
}

static int sys_rss_mib(lua_State *L) { /* resident set size in MiB, or nil */
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) sscanf(line + 6, "%ld", &kb);
  if (f) fclose(f);
  if (kb < 0) lua_pushnil(L);
  else lua_pushnumber(L, (double)kb / 1024.0);
  return 1;
}

static int sys_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 1024, 1, "thread count out of range");
  openblas_set_num_threads((int)n);
  return 0;
}

static int sys_num_threads(lua_State *L) {
  lua_pushinteger(L, openblas_get_num_threads());
  return 1;
}

static const luaL_Reg functions[] = {{"monotonic", sys_monotonic}, {"rss_mib", sys_rss_mib},
                                     {"set_num_threads", sys_set_num_threads}, {"num_threads", sys_num_threads},
                                     {NULL, NULL}};

int luaopen_mile_sys(lua_State *L) {
  luaL_newlib(L, functions);
  return 1;
}
