/* mile.c - the `mile` program: Lua 5.4 with mile's C modules preloaded.
 *
 *   mile                      REPL (or run stdin when it is not a terminal)
 *   mile FILE.lua args...     run a script, `arg` and `...` set as lua sets them
 *   mile <command> args...    run <scripts dir>/cli/<command>.lua (train, eval, ...)
 *
 * Shaped like lua.c: main() runs pmain() under lua_pcall, so even a memory error
 * during start-up is reported instead of aborting; every chunk runs through
 * host_docall(); failures travel back up as statuses and main() turns them into the
 * exit status. */
#define _XOPEN_SOURCE 700 /* realpath, strndup, readlink */

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "host.h"
#include "lmile.h"

#ifndef MILE_VERSION_STRING
#define MILE_VERSION_STRING "unknown"
#endif

const char *host_progname = "mile";

/* ------------------------------------------------------------------------- */
/* Running chunks: traceback handler and Ctrl-C                               */
/* ------------------------------------------------------------------------- */

/* The state a Ctrl-C should stop. A signal handler gets no argument, so it has to
 * be a global; it is set before the handler is installed. */
static lua_State *running_L = NULL;

/* Runs inside the interrupted chunk at its next call, return, line or instruction,
 * where raising an error is safe (unlike in the signal handler itself). */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* lua_sethook is the one Lua call documented as safe inside a signal handler. */
void host_interrupt(lua_State *L) {
  lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

void host_interrupt_clear(lua_State *L) {
  if (lua_gethook(L) == stop_hook)
    lua_sethook(L, NULL, 0, 0);
}

/* The handler is installed with SA_RESETHAND, so a second Ctrl-C while the hook
 * cannot run (a long C call) kills the process the usual way. */
static void on_sigint_running(int sig) {
  (void)sig;
  host_interrupt(running_L);
}

int host_msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1; /* the object describes itself; no traceback */
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int host_docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg; /* index of the function */
  struct sigaction sa, old;
  int status;
  lua_pushcfunction(L, host_msghandler);
  lua_insert(L, base);
  running_L = L;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint_running;
  sigemptyset(&sa.sa_mask);
  /* no SA_RESTART: a Ctrl-C also ends a blocking read (io.read) of the chunk */
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, &old);
  status = lua_pcall(L, narg, nres, base);
  sigaction(SIGINT, &old, NULL);
  /* a Ctrl-C that came as the chunk returned must not stop the next one */
  host_interrupt_clear(L);
  lua_remove(L, base);
  return status;
}

static void print_message(const char *pname, const char *msg) {
  if (pname != NULL)
    fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

int host_report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    print_message(host_progname, msg != NULL ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return status;
}

void host_print_version(void) {
  printf("mile %s (%s)\n", MILE_VERSION_STRING, LUA_RELEASE);
  fflush(stdout);
}

/* ------------------------------------------------------------------------- */
/* Where mile's Lua modules and scripts live                                  */
/* ------------------------------------------------------------------------- */

static char lua_dir[4096];     /* holds mile/init.lua, mile/<module>.lua */
static char scripts_dir[4096]; /* holds cli/<command>.lua */
static int from_build_tree;

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The program runs from the build tree when its own directory holds CMakeCache.txt:
 * CMake writes `mile` into the top of the build directory, and an installed bin/
 * never holds that file. Without /proc, fall back to whichever tree exists. An
 * installation moved from its prefix is found next to the program
 * (<bin>/../share/mile/lua). MILE_SCRIPTS_DIR names another scripts directory. */
static void find_dirs(void) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  const char *build_lua = MILE_LUA_DIR_BUILD, *install_lua = MILE_LUA_DIR_INSTALL;
  const char *env_scripts = getenv("MILE_SCRIPTS_DIR");
  char *slash;
  if (n > 0) {
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash != NULL && (size_t)(slash - exe) + sizeof "/../share/mile/lua" <= sizeof exe) {
      strcpy(slash, "/CMakeCache.txt");
      from_build_tree = is_file(exe) && is_dir(build_lua);
      strcpy(slash, "/../share/mile/lua");
      if (!from_build_tree && !is_dir(install_lua) && is_dir(exe)) { /* relocated */
        char *real = realpath(exe, NULL);
        if (real != NULL) {
          snprintf(exe, sizeof exe, "%s", real);
          free(real);
        }
        install_lua = exe;
      }
    }
  } else {
    from_build_tree = !is_dir(install_lua) && is_dir(build_lua);
  }
  if (from_build_tree) {
    snprintf(lua_dir, sizeof lua_dir, "%s", build_lua);
    snprintf(scripts_dir, sizeof scripts_dir, "%s", MILE_SCRIPTS_DIR_BUILD);
  } else {
    /* installed: <datadir>/mile/lua and its sibling <datadir>/mile/scripts */
    snprintf(lua_dir, sizeof lua_dir, "%s", install_lua);
    slash = strrchr(lua_dir, '/');
    snprintf(scripts_dir, sizeof scripts_dir, "%.*s/scripts",
             slash != NULL ? (int)(slash - lua_dir) : 0, lua_dir);
  }
  if (env_scripts != NULL && env_scripts[0] != '\0')
    snprintf(scripts_dir, sizeof scripts_dir, "%s", env_scripts);
}

/* Put mile's directory in front of package.path (which already holds LUA_PATH or
 * LUA_PATH_5_4 with ";;" expanded), so `require "mile"` finds mile/init.lua. */
static void set_search_path(lua_State *L) {
  lua_getglobal(L, "package"); /* stack: package */
  lua_getfield(L, -1, "path"); /* stack: package, path */
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

/* package.loaded["mile.host"]: what the host knows about itself, for scripts that
 * need the scripts directory or the version without guessing. */
static void register_host_info(lua_State *L, const char *progname) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_createtable(L, 0, 6);
  lua_pushliteral(L, MILE_VERSION_STRING);
  lua_setfield(L, -2, "version");
  lua_pushliteral(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua_version");
  lua_pushstring(L, lua_dir);
  lua_setfield(L, -2, "lua_dir");
  lua_pushstring(L, scripts_dir);
  lua_setfield(L, -2, "scripts_dir");
  lua_pushboolean(L, from_build_tree);
  lua_setfield(L, -2, "build_tree");
  lua_pushstring(L, progname);
  lua_setfield(L, -2, "program");
  lua_setfield(L, -2, "mile.host");
  lua_pop(L, 1);
}

/* ------------------------------------------------------------------------- */
/* Subcommands                                                                */
/* ------------------------------------------------------------------------- */

/* A word that names a subcommand rather than a file: letters, digits, '_', '-'. */
static int is_command_word(const char *s) {
  if (*s == '\0' || *s == '-')
    return 0;
  for (; *s != '\0'; s++)
    if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
          *s == '_' || *s == '-'))
      return 0;
  return 1;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Print the sorted command names found in <scripts dir>/cli on f, after lead. */
static void list_commands(FILE *f, const char *lead) {
  char dir[4200];
  char **names = NULL;
  size_t count = 0, cap = 0, i;
  struct dirent *e;
  DIR *d;
  snprintf(dir, sizeof dir, "%s/cli", scripts_dir);
  d = opendir(dir);
  if (d == NULL)
    return;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len > 4 && strcmp(e->d_name + len - 4, ".lua") == 0) {
      if (count == cap) {
        char **grown = realloc(names, (cap = cap ? 2 * cap : 8) * sizeof *names);
        if (grown == NULL)
          break;
        names = grown;
      }
      if ((names[count] = strndup(e->d_name, len - 4)) == NULL)
        break;
      count++;
    }
  }
  closedir(d);
  if (count > 0) {
    qsort(names, count, sizeof *names, compare_names);
    fputs(lead, f);
    for (i = 0; i < count; i++)
      fprintf(f, "%s%s", i ? ", " : "", names[i]);
    fputc('\n', f);
  }
  for (i = 0; i < count; i++)
    free(names[i]);
  free(names);
}

/* ------------------------------------------------------------------------- */
/* Options                                                                    */
/* ------------------------------------------------------------------------- */

enum {
  HAS_ERROR = 1, /* bad option */
  HAS_I = 2,     /* -i */
  HAS_V = 4,     /* -v, --version */
  HAS_E = 8,     /* -e */
  HAS_NOENV = 16, /* -E */
  HAS_HELP = 32, /* -h, --help */
  HAS_KERNEL = 64 /* --kernel FILE */
};

/* argv index of the connection file after --kernel */
static int kernel_arg;

static void print_usage(FILE *f) {
  fprintf(f,
          "usage: %s [options] [script [args]]\n"
          "       %s <command> [args]      run <scripts>/cli/<command>.lua\n"
          "Options:\n"
          "  -e chunk       run the Lua string 'chunk'\n"
          "  -i             enter the REPL after running 'script'\n"
          "  -l mod         require module 'mod' into global 'mod'\n"
          "  -l g=mod       require module 'mod' into global 'g'\n"
          "  -v, --version  show version information\n"
          "  -h, --help     show this help\n"
          "  -E             ignore environment variables (LUA_PATH, LUA_CPATH)\n"
          "  -W             turn warnings on\n"
          "  --kernel FILE  run as a Jupyter kernel (FILE: the connection file)\n"
          "  --             stop handling options\n"
          "  -              stop handling options and run stdin\n"
          "Without arguments: the REPL when stdin is a terminal, else run stdin.\n",
          host_progname, host_progname);
  list_commands(f, "Commands: ");
  fflush(f);
}

/* Scan the options before the script. Returns a HAS_* set; *script is the index
 * of the script name (argc when there is none), *bad the offending argument. */
static int collect_options(char **argv, int *script, int *bad) {
  int flags = 0, i;
  if (argv[0] == NULL) { /* no program name at all: nothing to scan */
    *script = 0;
    return 0;
  }
  for (i = 1; argv[i] != NULL; i++) {
    const char *a = argv[i];
    *bad = i;
    if (a[0] != '-') { /* the script */
      *script = i;
      return flags;
    }
    if (strcmp(a, "--version") == 0) {
      flags |= HAS_V;
      continue;
    }
    if (strcmp(a, "--help") == 0) {
      flags |= HAS_HELP;
      continue;
    }
    if (strcmp(a, "--kernel") == 0) {
      if (argv[i + 1] == NULL || argv[i + 1][0] == '-')
        return flags | HAS_ERROR;
      flags |= HAS_KERNEL;
      kernel_arg = ++i;
      continue;
    }
    switch (a[1]) {
    case '-': /* "--" ends the options; the next argument is the script */
      if (a[2] != '\0')
        return flags | HAS_ERROR;
      *script = i + 1;
      return flags;
    case '\0': /* "-": the script is stdin */
      *script = i;
      return flags;
    case 'E':
    case 'W':
    case 'i':
    case 'v':
    case 'h':
      if (a[2] != '\0')
        return flags | HAS_ERROR;
      flags |= a[1] == 'E' ? HAS_NOENV : a[1] == 'i' ? HAS_I | HAS_V /* like lua: -i shows the version */
                           : a[1] == 'v' ? HAS_V : a[1] == 'h' ? HAS_HELP : 0;
      break;
    case 'e':
      /* -e and -l both take an argument, glued ("-eprint(1)") or next */
      flags |= HAS_E;
      /* FALLTHROUGH */
    case 'l':
      if (a[2] == '\0') {
        i++;
        if (argv[i] == NULL || argv[i][0] == '-')
          return flags | HAS_ERROR;
      }
      break;
    default:
      return flags | HAS_ERROR;
    }
  }
  *script = i;
  return flags;
}

/* `arg` as lua makes it: arg[0] is the script, the program and options below it,
 * the script's arguments above. Without a script arg[0] is the program. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  int i;
  if (script == argc)
    script = 0;
  lua_createtable(L, argc - script - 1 > 0 ? argc - script - 1 : 0, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* require "mod" into a global; spec is "mod" or "g=mod". */
static int run_require(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  const char *mod = eq != NULL ? eq + 1 : spec;
  int status;
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  status = host_docall(L, 1, 1);
  if (status == LUA_OK) { /* stack: module */
    lua_pushglobaltable(L);
    if (eq != NULL)
      lua_pushlstring(L, spec, (size_t)(eq - spec));
    else
      lua_pushstring(L, spec);
    lua_rotate(L, -3, -1); /* stack: _G, name, module */
    lua_settable(L, -3);
    lua_pop(L, 1);
  }
  return host_report(L, status);
}

static int run_chunk(lua_State *L, const char *chunk) {
  int status = luaL_loadbuffer(L, chunk, strlen(chunk), "=(command line)");
  if (status == LUA_OK)
    status = host_docall(L, 0, 0);
  return host_report(L, status);
}

/* Run -e, -l and -W in the order given; stop at the first failure (returns 0). */
static int run_options(lua_State *L, char **argv, int script) {
  int i;
  for (i = 1; i < script; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || a[1] == '-')
      continue;
    if (a[1] == 'W') {
      lua_warning(L, "@on", 0);
    } else if (a[1] == 'e' || a[1] == 'l') {
      const char *value = a[2] != '\0' ? a + 2 : argv[++i];
      int status = a[1] == 'e' ? run_chunk(L, value) : run_require(L, value);
      if (status != LUA_OK)
        return 0;
    }
  }
  return 1;
}

/* Push arg[1..#arg] for the script's `...`; returns how many. */
static int push_script_args(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -i); /* the arg table */
  return n;
}

/* Run a Lua file (NULL: stdin) with the script arguments. */
static int run_file(lua_State *L, const char *fname) {
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = push_script_args(L);
    status = host_docall(L, n, 0);
  }
  return host_report(L, status);
}

/* The script position names a script file, stdin ("-"), or a subcommand. A
 * subcommand wins over a file of the same name in the working directory, so
 * `mile train` means the same thing wherever it is typed. Returns 0 on failure. */
static int run_script(lua_State *L, char **argv, int script) {
  const char *name = argv[script];
  if (strcmp(name, "-") == 0 && strcmp(argv[script - 1], "--") != 0)
    return run_file(L, NULL) == LUA_OK;
  if (is_command_word(name)) {
    const char *path = lua_pushfstring(L, "%s/cli/%s.lua", scripts_dir, name);
    if (is_file(path)) {
      int status;
      /* the command's script stands where a script would: arg[0] */
      lua_getglobal(L, "arg");
      lua_pushvalue(L, -2);
      lua_rawseti(L, -2, 0);
      lua_pop(L, 1);
      status = run_file(L, path);
      lua_pop(L, 1); /* path */
      return status == LUA_OK;
    }
    lua_pop(L, 1);
    if (!is_file(name)) {
      fprintf(stderr, "%s: unknown command '%s' (no file '%s', no %s/cli/%s.lua)\n",
              host_progname, name, name, scripts_dir, name);
      list_commands(stderr, "available commands: ");
      fprintf(stderr, "run '%s --help' for usage\n", host_progname);
      return 0;
    }
  }
  return run_file(L, name) == LUA_OK;
}

static int stdin_is_tty(void) { return isatty(STDIN_FILENO); }

/* Everything runs here, in protected mode. Pushes true on success. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = argc, bad = 0;
  int flags = collect_options(argv, &script, &bad);
  luaL_checkversion(L);
  find_dirs();
  if (flags & HAS_ERROR) {
    const char *a = argv[bad];
    if (((a[1] == 'e' || a[1] == 'l') && a[2] == '\0') || strcmp(a, "--kernel") == 0)
      fprintf(stderr, "%s: '%s' needs an argument\n", host_progname, a);
    else
      fprintf(stderr, "%s: unrecognized option '%s'\n", host_progname, a);
    print_usage(stderr);
    return 0;
  }
  if (flags & HAS_HELP) {
    print_usage(stdout);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (flags & HAS_V)
    host_print_version();
  if (flags & HAS_NOENV) { /* the package library reads this before the environment */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  create_arg_table(L, argv, argc, script);
  set_search_path(L);
  register_host_info(L, argv[0]);
  lmile_preload(L);
  if (!run_options(L, argv, script))
    return 0;
  if (flags & HAS_KERNEL) { /* the kernel replaces the script and the REPL */
    if (script < argc || (flags & HAS_I)) {
      fprintf(stderr, "%s: --kernel takes no script and no -i\n", host_progname);
      return 0;
    }
    lua_pushboolean(L, host_kernel(L, argv[kernel_arg]) == 0);
    return 1;
  }
  if (script < argc && !run_script(L, argv, script))
    return 0;
  if (flags & HAS_I) {
    host_repl(L);
  } else if (script == argc && !(flags & (HAS_E | HAS_V))) {
    if (stdin_is_tty()) {
      host_print_version();
      host_repl(L);
    } else if (run_file(L, NULL) != LUA_OK) {
      return 0;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  int status, ok;
  lua_State *L;
  if (argv[0] != NULL && argv[0][0] != '\0')
    host_progname = argv[0];
  L = luaL_newstate();
  if (L == NULL) {
    print_message(host_progname, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  ok = lua_toboolean(L, -1);
  host_report(L, status);
  lua_close(L);
  host_repl_release();
  return ok && status == LUA_OK ? EXIT_SUCCESS : EXIT_FAILURE;
}
