/* lsys.c - mile.sys: what benchmarks and long runs need from the machine: a
 * monotonic clock, resident memory, the matrix products' threads and library, and the few file
 * operations plain Lua lacks (atomic writes with fsync, mkdir -p, stat, listdir,
 * SHA-256 of a string: OpenSSL's, already linked for the Jupyter kernel). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lmile.h"

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
  if (kb < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, (double)kb / 1024.0);
  return 1;
}

/* sys.set_num_threads(n): n >= 1 threads for every matrix product, 0 for the
 * automatic choice per size (mile/compute.h). */
static int sys_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 1024, 1, "thread count out of range (0..1024; 0: automatic)");
  lmile_check(L, mile_set_num_threads((int32_t)n), "set_num_threads");
  return 0;
}

/* sys.num_threads(): the fixed count, or the cores the automatic choice uses. */
static int sys_num_threads(lua_State *L) {
  int32_t n = mile_num_threads();
  lua_pushinteger(L, n > 0 ? n : mile_max_threads());
  return 1;
}

/* sys.threading(): {fixed = n or false, cores = .., parallel_flops = ..} */
static int sys_threading(lua_State *L) {
  int32_t n = mile_num_threads();
  lua_createtable(L, 0, 3);
  if (n > 0) lua_pushinteger(L, n);
  else lua_pushboolean(L, 0);
  lua_setfield(L, -2, "fixed");
  lua_pushinteger(L, mile_max_threads());
  lua_setfield(L, -2, "cores");
  lua_pushnumber(L, mile_parallel_flops());
  lua_setfield(L, -2, "parallel_flops");
  return 1;
}

/* sys.gemm_backend([name]): the float32 GEMM library ("onednn" or "openblas"); with
 * a name, selects it first. */
static int sys_gemm_backend(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) lmile_check(L, mile_set_gemm_backend(luaL_checkstring(L, 1)), "gemm_backend");
  lua_pushstring(L, mile_gemm_backend());
  return 1;
}

/* Failure of a file operation: nil, "path: reason" (like io.open). */
static int fail(lua_State *L, const char *path, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, strerror(err));
  return 2;
}

/* write_atomic(path, data): write a temporary file beside path, fsync it, rename
 * it over path, fsync the directory. Readers see the old file or the new one,
 * never a part; a crash leaves at most a stray "<path>.tmp.<pid>". */
static int sys_write_atomic(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *tmp = lua_pushfstring(L, "%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail(L, path, errno);
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, data + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd), unlink(tmp);
      return fail(L, path, err);
    }
    done += (size_t)n;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    int err = errno;
    unlink(tmp);
    return fail(L, path, err);
  }
  if (rename(tmp, path) != 0) {
    int err = errno;
    unlink(tmp);
    return fail(L, path, err);
  }
  /* make the rename itself durable */
  const char *slash = strrchr(path, '/');
  const char *dir = slash ? lua_pushlstring(L, path, (size_t)(slash - path + (slash == path))) : ".";
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) fsync(dfd), close(dfd);
  lua_pushboolean(L, 1);
  return 1;
}

/* mkdir(path): create path and its missing parents (mode 0755); true or nil, msg. */
static int sys_mkdir(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  char *buf = lua_newuserdatauv(L, len + 1, 0);
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return fail(L, path, errno);
    buf[i] = saved;
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return fail(L, path, ENOTDIR);
  lua_pushboolean(L, 1);
  return 1;
}

/* stat(path): "file", "directory", "other", or nil when it does not exist. */
static int sys_stat(lua_State *L) {
  struct stat st;
  if (stat(luaL_checkstring(L, 1), &st) != 0) return 0;
  lua_pushstring(L, S_ISDIR(st.st_mode) ? "directory" : S_ISREG(st.st_mode) ? "file" : "other");
  return 1;
}

/* listdir(path): sorted names in a directory (without "." and ".."), or nil, msg. */
static int sys_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d) return fail(L, path, errno);
  lua_newtable(L);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  return 1;
}

/* isatty(fd = 1): whether a file descriptor is a terminal (progress bars). */
static int sys_isatty(lua_State *L) {
  lua_Integer fd = luaL_optinteger(L, 1, 1);
  lua_pushboolean(L, fd >= 0 && fd <= INT32_MAX && isatty((int)fd));
  return 1;
}

static int sys_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* getcwd() -> the working directory (relative plugin paths are made absolute). */
static int sys_getcwd(lua_State *L) {
  char buf[4096];
  if (getcwd(buf, sizeof buf) == NULL) return fail(L, ".", errno);
  lua_pushstring(L, buf);
  return 1;
}

/* sha256(s) -> 64 lowercase hex digits (plugins are recorded with their hash). */
static int sys_sha256(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  unsigned int i;
  if (!EVP_Digest(s, len, md, &md_len, EVP_sha256(), NULL))
    return luaL_error(L, "sha256: OpenSSL could not compute the digest");
  for (i = 0; i < md_len; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  lua_pushlstring(L, hex, 2 * md_len);
  return 1;
}

static const luaL_Reg functions[] = {{"monotonic", sys_monotonic},
                                     {"rss_mib", sys_rss_mib},
                                     {"set_num_threads", sys_set_num_threads},
                                     {"num_threads", sys_num_threads},
                                     {"threading", sys_threading},
                                     {"gemm_backend", sys_gemm_backend},
                                     {"write_atomic", sys_write_atomic},
                                     {"mkdir", sys_mkdir},
                                     {"stat", sys_stat},
                                     {"listdir", sys_listdir},
                                     {"getpid", sys_getpid},
                                     {"isatty", sys_isatty},
                                     {"sha256", sys_sha256},
                                     {"getcwd", sys_getcwd},
                                     {NULL, NULL}};

int luaopen_mile_sys(lua_State *L) {
  luaL_newlib(L, functions);
  return 1;
}
