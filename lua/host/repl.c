/* repl.c - the interactive loop of the `mile` program.
 *
 * Each entry is first compiled as `return <line>;` so expressions print their
 * values; otherwise as a statement, reading more lines with the ">>" prompt while
 * the parser stops at <eof>. On a terminal, GNU readline gives line editing, a
 * persistent history and completion of globals and fields; with a pipe (or
 * MILE_NO_READLINE=1) lines are read plainly, which is how the tests drive it.
 *
 * Ctrl-C while a chunk runs stops the chunk (host_docall's hook); Ctrl-C while a
 * line is being typed discards the entry. Neither leaves the REPL. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"

enum { HISTORY_MAX = 1000 };

/* what reading one line gave */
enum { READ_EOF, READ_LINE, READ_INTERRUPTED };
/* what loading one entry gave, besides a lua_load status (all >= 0) */
enum { ENTRY_EOF = -1, ENTRY_INTERRUPTED = -2 };

static int use_readline;
static char *history_path;      /* NULL: no history file */
static char *plain_buf;         /* getline's buffer, reused for every line */
static size_t plain_cap;
static lua_State *completion_L; /* readline's callbacks take no user pointer */
static volatile sig_atomic_t got_sigint, got_sigwinch;

/* ------------------------------------------------------------------------- */
/* Reading lines                                                              */
/* ------------------------------------------------------------------------- */

static void on_sigint_reading(int sig) {
  (void)sig;
  got_sigint = 1;
}

static void on_sigwinch(int sig) {
  (void)sig;
  got_sigwinch = 1;
}

/* Install handler without SA_RESTART, so that a blocked read returns EINTR. */
static void catch_signal(int sig, void (*handler)(int), struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, old);
}

static char *entered_line;
static int line_entered;

static void on_readline_line(char *line) {
  entered_line = line;
  line_entered = 1;
  rl_callback_handler_remove(); /* back to the terminal's normal mode while Lua runs */
}

/* readline's callback interface: unlike readline(), it lets a Ctrl-C end the wait
 * for input, so the entry can be discarded instead of killing the process. */
static int read_line_readline(const char *prompt, char **line, size_t *len) {
  int fd = fileno(rl_instream != NULL ? rl_instream : stdin);
  entered_line = NULL;
  line_entered = 0;
  rl_callback_handler_install(prompt, on_readline_line);
  while (!line_entered) {
    fd_set fds;
    if (got_sigwinch) {
      got_sigwinch = 0;
      rl_resize_terminal();
    }
    if (got_sigint) {
      rl_free_line_state();
      rl_callback_sigcleanup();
      rl_callback_handler_remove();
      fputc('\n', stdout);
      fflush(stdout);
      return READ_INTERRUPTED;
    }
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    if (select(fd + 1, &fds, NULL, NULL, NULL) < 0) {
      if (errno == EINTR)
        continue; /* a signal: handled at the top of the loop */
      rl_callback_handler_remove();
      return READ_EOF;
    }
    rl_callback_read_char();
  }
  if (entered_line == NULL)
    return READ_EOF;
  *line = entered_line;
  *len = strlen(entered_line);
  return READ_LINE;
}

static int read_line_plain(const char *prompt, char **line, size_t *len) {
  ssize_t n;
  fputs(prompt, stdout);
  fflush(stdout);
  for (;;) {
    errno = 0;
    n = getline(&plain_buf, &plain_cap, stdin);
    if (n >= 0)
      break;
    if (errno != EINTR)
      return READ_EOF;
    clearerr(stdin);
    if (got_sigint) {
      fputc('\n', stdout);
      fflush(stdout);
      return READ_INTERRUPTED;
    }
  }
  if (n > 0 && plain_buf[n - 1] == '\n')
    plain_buf[--n] = '\0';
  *line = plain_buf;
  *len = (size_t)n;
  return READ_LINE;
}

/* Read one line with the first or the continuation prompt (_PROMPT, _PROMPT2 when
 * set, like lua) and push it. A first line "=expr" means "return expr", as in
 * lua. Returns READ_*; pushes only on READ_LINE. */
static int push_line(lua_State *L, int first) {
  struct sigaction old_int, old_winch;
  const char *prompt;
  char *line = NULL;
  size_t len = 0;
  int r;
  /* raw: an erroring __index on _G must not end the REPL */
  lua_pushglobaltable(L);
  lua_pushstring(L, first ? "_PROMPT" : "_PROMPT2");
  lua_rawget(L, -2);
  lua_remove(L, -2);
  prompt = lua_tostring(L, -1);
  if (prompt == NULL)
    prompt = first ? "> " : ">> ";
  got_sigint = 0;
  catch_signal(SIGINT, on_sigint_reading, &old_int);
  if (use_readline) {
    catch_signal(SIGWINCH, on_sigwinch, &old_winch);
    r = read_line_readline(prompt, &line, &len);
    sigaction(SIGWINCH, &old_winch, NULL);
  } else {
    r = read_line_plain(prompt, &line, &len);
  }
  sigaction(SIGINT, &old_int, NULL);
  lua_pop(L, 1); /* prompt */
  if (r != READ_LINE)
    return r;
  if (first && line[0] == '=')
    lua_pushfstring(L, "return %s", line + 1);
  else
    lua_pushlstring(L, line, len);
  if (use_readline)
    free(line);
  return READ_LINE;
}

/* ------------------------------------------------------------------------- */
/* History                                                                    */
/* ------------------------------------------------------------------------- */

/* Keep an entry (a whole multi-line chunk is one entry). It is appended to the
 * file at once, so a session ended by os.exit() or a crash keeps its history;
 * failures to write are ignored: history is a convenience. */
static void remember(const char *code) {
  HIST_ENTRY *last;
  if (!use_readline || code[0] == '\0')
    return;
  last = history_get(history_base + history_length - 1);
  if (last != NULL && strcmp(last->line, code) == 0)
    return; /* the same entry again */
  add_history(code);
  if (history_path != NULL && append_history(1, history_path) != 0)
    (void)write_history(history_path); /* the file does not exist yet */
}

/* $MILE_HISTORY (empty: none), else ~/.mile_history. */
static char *make_history_path(void) {
  const char *env = getenv("MILE_HISTORY"), *home;
  char *path;
  if (env != NULL)
    return env[0] != '\0' ? strdup(env) : NULL;
  home = getenv("HOME");
  if (home == NULL || home[0] == '\0')
    return NULL;
  path = malloc(strlen(home) + sizeof "/.mile_history");
  if (path != NULL)
    sprintf(path, "%s/.mile_history", home);
  return path;
}

/* ------------------------------------------------------------------------- */
/* Completion                                                                 */
/* ------------------------------------------------------------------------- */

static const char *const lua_keywords[] = {
    "and",   "break", "do",   "else", "elseif", "end",    "false", "for",  "function", "goto", "if",
    "in",    "local", "nil",  "not",  "or",     "repeat", "return", "then", "true",    "until", "while",
    NULL};

const char host_completion_breaks[] = " \t\n\"'`@$><=;|&{(,)[]+-*%^~#";

static int is_name_start(char c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static int is_identifier(const char *s, size_t len) {
  size_t i;
  if (len == 0 || !is_name_start(s[0]))
    return 0;
  for (i = 1; i < len; i++)
    if (!is_name_start(s[i]) && !(s[i] >= '0' && s[i] <= '9'))
      return 0;
  return 1;
}

/* stack: v -> the table where v's methods live, and 1; or v left alone and 0.
 * That is getmetatable(v).__index when it is a table; when __index is a function
 * (tensors index numbers too), the metatable's __methods table, or else the module
 * named by its __name (STYLE rule 6: metatables are named after their module, and
 * mile's methods are module functions too). Only tables are followed: completion
 * must never run user code. */
static int step_to_methods(lua_State *L) {
  static const char *const fields[] = {"__index", "__methods"};
  size_t i;
  if (!lua_getmetatable(L, -1))
    return 0;
  for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    lua_pushstring(L, fields[i]);
    if (lua_rawget(L, -2) == LUA_TTABLE) { /* stack: v, mt, methods */
      lua_remove(L, -2);
      lua_remove(L, -2);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pushliteral(L, "__name");
  if (lua_rawget(L, -2) == LUA_TSTRING) { /* stack: v, mt, name */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_insert(L, -2);
    if (lua_rawget(L, -2) == LUA_TTABLE) { /* stack: v, mt, loaded, module */
      lua_replace(L, -4);
      lua_pop(L, 2);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return 0;
}

/* The umbrella module loads its submodules lazily, through an __index function
 * that completion does not call; its modules() lists them. When the value at idx
 * is package.loaded.mile, push modules()'s list and return 1. */
static int push_lazy_modules(lua_State *L, int idx) {
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushliteral(L, "mile");
  if (lua_rawget(L, -2) == LUA_TTABLE && lua_rawequal(L, -1, idx)) {
    lua_pushliteral(L, "modules");
    if (lua_rawget(L, -2) == LUA_TFUNCTION && lua_pcall(L, 0, 1, 0) == LUA_OK && lua_istable(L, -1)) {
      lua_replace(L, top + 1);
      lua_settop(L, top + 1);
      return 1;
    }
  }
  lua_settop(L, top);
  return 0;
}

/* stack: v -> v[key] (nil when absent), through __index tables only. The depth
 * bound stops a cycle of __index tables. */
static void get_field_raw(lua_State *L, const char *key, size_t len) {
  int depth;
  for (depth = 0; depth < 16; depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushlstring(L, key, len);
      if (lua_rawget(L, -2) != LUA_TNIL) {
        lua_remove(L, -2);
        return;
      }
      lua_pop(L, 1);
    }
    if (!step_to_methods(L))
      break;
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/* Append prefix..name to the result array at index res unless already seen (set
 * at index res + 1). stack: name -> name */
static void add_candidate(lua_State *L, int res, const char *prefix, size_t plen) {
  lua_pushvalue(L, -1);
  if (lua_rawget(L, res + 1) == LUA_TNIL) {
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, res + 1);
    lua_pushlstring(L, prefix, plen);
    lua_pushvalue(L, -3);
    lua_concat(L, 2);
    lua_rawseti(L, res, (lua_Integer)lua_rawlen(L, res) + 1);
  }
  lua_pop(L, 1);
}

/* Run under lua_pcall with the text to complete (a light userdata: pushing a
 * string outside could raise): returns an array of candidates. "a.b.c" completes
 * the fields of a.b, "t:m" the functions reachable through t's __index tables, a
 * bare name the globals and keywords. */
static int collect_candidates(lua_State *L) {
  const char *text = (const char *)lua_touserdata(L, 1);
  const char *sep = NULL, *partial, *p, *seg;
  size_t partial_len;
  int methods, depth, res;
  for (p = text; *p != '\0'; p++)
    if (*p == '.' || *p == ':')
      sep = p;
  partial = sep != NULL ? sep + 1 : text;
  partial_len = strlen(partial);
  methods = sep != NULL && *sep == ':';
  lua_settop(L, 0);
  lua_newtable(L); /* 1: candidates */
  lua_newtable(L); /* 2: the set of names already added */
  res = 1;
  if (sep == NULL) {
    const char *const *k;
    for (k = lua_keywords; *k != NULL; k++)
      if (strncmp(*k, partial, partial_len) == 0) {
        lua_pushstring(L, *k);
        add_candidate(L, res, "", 0);
        lua_pop(L, 1);
      }
  }
  lua_pushglobaltable(L); /* 3: the value whose fields complete the text */
  for (seg = text; sep != NULL && seg < partial; seg = p + 1) {
    for (p = seg; *p != '.' && *p != ':'; p++)
      ;
    if (!is_identifier(seg, (size_t)(p - seg)) || (*p == ':' && p != sep)) {
      lua_settop(L, 1);
      return 1; /* not a plain path of names: nothing to offer */
    }
    get_field_raw(L, seg, (size_t)(p - seg));
  }
  if (!methods && push_lazy_modules(L, 3)) { /* stack: ..., names */
    lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      size_t klen;
      const char *key;
      if (lua_rawgeti(L, -1, i) == LUA_TSTRING) {
        key = lua_tolstring(L, -1, &klen);
        if (is_identifier(key, klen) && strncmp(key, partial, partial_len) == 0)
          add_candidate(L, res, text, (size_t)(partial - text));
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  for (depth = 0; depth < 16; depth++) {
    if (lua_type(L, 3) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, 3)) { /* stack: ..., key, value */
        size_t klen;
        const char *key;
        if (lua_type(L, -2) == LUA_TSTRING && (!methods || lua_type(L, -1) == LUA_TFUNCTION)) {
          key = lua_tolstring(L, -2, &klen);
          if (is_identifier(key, klen) && strncmp(key, partial, partial_len) == 0) {
            lua_pushvalue(L, -2);
            add_candidate(L, res, text, (size_t)(partial - text));
            lua_pop(L, 1);
          }
        }
        lua_pop(L, 1);
      }
    }
    if (!step_to_methods(L))
      break;
  }
  lua_settop(L, 1);
  return 1;
}

static char **matches;
static size_t match_count, match_next;

static void drop_matches(void) {
  while (match_next < match_count)
    free(matches[match_next++]);
  free(matches);
  matches = NULL;
  match_count = match_next = 0;
}

int host_complete(lua_State *L, const char *text) {
  if (!lua_checkstack(L, 4))
    return LUA_ERRMEM;
  lua_pushcfunction(L, collect_candidates);
  lua_pushlightuserdata(L, (void *)text);
  return lua_pcall(L, 1, 1, 0);
}

static void gather_matches(const char *text) {
  lua_State *L = completion_L;
  int top = lua_gettop(L);
  if (host_complete(L, text) == LUA_OK) {
    size_t n = lua_rawlen(L, -1), i;
    matches = malloc((n > 0 ? n : 1) * sizeof *matches);
    for (i = 0; matches != NULL && i < n; i++) {
      lua_rawgeti(L, -1, (lua_Integer)i + 1);
      matches[match_count] = strdup(lua_tostring(L, -1));
      if (matches[match_count] != NULL)
        match_count++;
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
}

/* readline's generator: called with state 0 first, then until it returns NULL;
 * each string returned becomes readline's to free. */
static char *next_match(const char *text, int state) {
  if (state == 0) {
    drop_matches();
    gather_matches(text);
  }
  if (match_next < match_count)
    return matches[match_next++];
  drop_matches();
  return NULL;
}

static char **complete(const char *text, int start, int end) {
  (void)start;
  (void)end;
  if (rl_completion_quote_character != 0)
    return NULL; /* inside a string: let readline complete file names */
  rl_attempted_completion_over = 1;
  rl_completion_suppress_append = 1; /* "mile.tensor" may go on with "." or ":" */
  return rl_completion_matches(text, next_match);
}

/* ------------------------------------------------------------------------- */
/* help(x)                                                                    */
/* ------------------------------------------------------------------------- */

static const char repl_help[] =
    "In the mile REPL:\n"
    "  an expression prints its values; a statement runs; '=expr' is 'return expr'\n"
    "  incomplete input continues on a '>>' line\n"
    "  help(x)   the documentation of x (mile.doc), else its type and fields; also ?x\n"
    "  Tab       complete globals and fields: mile.te<Tab>, t:su<Tab>\n"
    "  Ctrl-C    stop the running chunk, or discard the line being typed\n"
    "  Ctrl-D    leave; the history is kept in ~/.mile_history\n";

/* stack: x -> x, doc; returns 1 when require("mile").doc[x] is a string. */
static int push_doc(lua_State *L) {
  int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "mile") == LUA_TTABLE && lua_getfield(L, -1, "doc") == LUA_TTABLE) {
    lua_pushvalue(L, top);
    if (lua_gettable(L, -2) == LUA_TSTRING) {
      lua_replace(L, top + 1);
      lua_settop(L, top + 1);
      return 1;
    }
  }
  lua_settop(L, top);
  return 0;
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Write "<title> (N):" and the sorted string keys of the table on top of the
 * stack on out, wrapped at 78 columns. Pops the table. */
static void print_names(lua_State *L, const char *title, FILE *out) {
  int t = lua_gettop(L), names, col = 0;
  size_t n = 0, others = 0, i;
  const char **sorted;
  lua_newtable(L); /* the names, kept alive while the C array points at them */
  names = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, names, (lua_Integer)++n);
    } else {
      others++;
    }
  }
  sorted = lua_newuserdatauv(L, (n > 0 ? n : 1) * sizeof *sorted, 0);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, names, (lua_Integer)i + 1);
    sorted[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  qsort(sorted, n, sizeof *sorted, compare_strings);
  fprintf(out, "%s (%zu", title, n);
  if (others > 0)
    fprintf(out, ", and %zu key%s that are not strings", others, others == 1 ? "" : "s");
  fputs("):\n", out);
  for (i = 0; i < n; i++) {
    int w = (int)strlen(sorted[i]);
    if (col > 0 && col + 2 + w > 78) {
      fputc('\n', out);
      col = 0;
    }
    col += fprintf(out, "  %s", sorted[i]);
  }
  if (col > 0)
    fputc('\n', out);
  lua_settop(L, t - 1);
}

void host_help(lua_State *L, int idx, FILE *out) {
  int top = lua_gettop(L);
  lua_pushvalue(L, idx); /* stack: ..., x */
  idx = top + 1;
  if (push_doc(L)) {
    fprintf(out, "%s\n", lua_tostring(L, -1));
    lua_settop(L, top);
    return;
  }
  switch (lua_type(L, idx)) {
  case LUA_TFUNCTION: {
    lua_Debug ar;
    lua_pushvalue(L, idx);
    lua_getinfo(L, ">S", &ar);
    if (ar.what[0] == 'C')
      fprintf(out, "function (built in, no documentation)\n");
    else
      fprintf(out, "function defined at %s:%d (no documentation)\n", ar.short_src, ar.linedefined);
    break;
  }
  case LUA_TTABLE:
    lua_pushvalue(L, idx);
    print_names(L, "table fields", out);
    if (push_lazy_modules(L, idx)) { /* stack: ..., x, list -> ..., x, list, set */
      lua_Integer i, n = (lua_Integer)lua_rawlen(L, idx + 1);
      lua_newtable(L);
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, idx + 1, i);
        lua_pushboolean(L, 1);
        lua_rawset(L, idx + 2);
      }
      print_names(L, "submodules, loaded on first use", out);
    }
    break;
  case LUA_TUSERDATA:
    if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING)
      fprintf(out, "userdata (%s)\n", lua_tostring(L, -1));
    else
      fprintf(out, "userdata\n");
    break;
  default:
    fprintf(out, "%s: %s\n", luaL_typename(L, idx), luaL_tolstring(L, idx, NULL));
    break;
  }
  lua_settop(L, idx);
  /* the methods behind the metatable, for tensors and objects (not strings: the
   * whole string library would show) */
  lua_pushvalue(L, idx);
  if (lua_type(L, idx) != LUA_TSTRING && step_to_methods(L)) { /* stack: ..., x, index */
    const char *name = NULL;
    if (luaL_getmetafield(L, idx, "__name") != LUA_TNIL) /* stack: ..., x, index, name */
      name = lua_tostring(L, -1);
    lua_pushfstring(L, "%s methods", name != NULL ? name : "metatable");
    lua_pushvalue(L, idx + 1);
    print_names(L, lua_tostring(L, -2), out);
  }
  lua_settop(L, top);
}

/* help(x): mile's documentation of x when registered, else what x is. */
static int l_help(lua_State *L) {
  if (lua_isnone(L, 1))
    fputs(repl_help, stdout);
  else
    host_help(L, 1, stdout);
  return 0;
}

int host_lookup(lua_State *L, const char *path, size_t len) {
  const char *p = path, *end = path + len;
  lua_pushglobaltable(L);
  for (;;) {
    const char *seg = p;
    while (p < end && *p != '.' && *p != ':')
      p++;
    if (!is_identifier(seg, (size_t)(p - seg)))
      break;
    get_field_raw(L, seg, (size_t)(p - seg));
    if (lua_isnil(L, -1))
      break;
    if (p == end)
      return 1;
    p++; /* '.' or ':': both look the name up through tables and __index tables */
  }
  lua_pop(L, 1);
  return 0;
}

/* ------------------------------------------------------------------------- */
/* The loop                                                                   */
/* ------------------------------------------------------------------------- */

/* A syntax error at <eof> means the entry is not finished yet. */
static int incomplete(lua_State *L, int status) {
  static const char eof_mark[] = "<eof>";
  size_t len;
  const char *msg;
  if (status != LUA_ERRSYNTAX)
    return 0;
  msg = lua_tolstring(L, -1, &len);
  return len >= sizeof eof_mark - 1 && strcmp(msg + len - (sizeof eof_mark - 1), eof_mark) == 0;
}

/* stack: line -> function, or line (when it is no expression). */
static int try_expression(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *code = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, code, strlen(code), "=stdin");
  if (status == LUA_OK) { /* stack: line, code, function */
    lua_remove(L, -2);
    remember(line);
    lua_remove(L, -2);
  } else {
    lua_pop(L, 2);
  }
  return status;
}

/* stack: line -> function or error message; reads more lines while the chunk is
 * incomplete. */
static int load_statement(lua_State *L) {
  for (;;) {
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    int status = luaL_loadbuffer(L, code, len, "=stdin"); /* stack: code, result */
    int r;
    if (!incomplete(L, status)) {
      remember(code);
      lua_remove(L, -2);
      return status;
    }
    r = push_line(L, 0);
    if (r == READ_EOF) { /* report the <eof> error, as lua does */
      lua_remove(L, -2);
      return status;
    }
    if (r == READ_INTERRUPTED) {
      lua_pop(L, 2);
      return ENTRY_INTERRUPTED;
    }
    lua_remove(L, -2); /* the <eof> message; stack: code, line */
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* "?x" is help(x), "?" is help(), as in trepl. stack: line -> line */
static void rewrite_question(lua_State *L) {
  const char *line = lua_tostring(L, -1), *p = line;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p != '?') return;
  p++;
  while (*p == ' ' || *p == '\t')
    p++;
  lua_pushfstring(L, "help(%s)", p);
  lua_replace(L, -2);
}

/* Read and compile one entry: a lua_load status with the function or message on
 * top, or ENTRY_EOF / ENTRY_INTERRUPTED with nothing pushed. */
static int load_entry(lua_State *L) {
  int status;
  switch (push_line(L, 1)) {
  case READ_EOF:
    return ENTRY_EOF;
  case READ_INTERRUPTED:
    return ENTRY_INTERRUPTED;
  default:
    break;
  }
  rewrite_question(L);
  status = try_expression(L);
  if (status != LUA_OK)
    status = load_statement(L);
  return status;
}

/* stack: v -> v, text; returns 1 when v is a table without __tostring and
 * require("mile.pretty").format printed it (trepl style: nested, sorted keys). */
static int push_pretty(lua_State *L, int i) {
  int top = lua_gettop(L);
  if (lua_type(L, i) != LUA_TTABLE || luaL_getmetafield(L, i, "__tostring") != LUA_TNIL) {
    lua_settop(L, top);
    return 0;
  }
  lua_getglobal(L, "require");
  lua_pushliteral(L, "mile.pretty");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_getfield(L, -1, "format") == LUA_TFUNCTION) {
    lua_pushvalue(L, i);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
      lua_replace(L, top + 1);
      lua_settop(L, top + 1);
      return 1;
    }
  }
  lua_settop(L, top);
  return 0;
}

/* Print its arguments tab-separated: plain tables through mile.pretty, the rest
 * through tostring (__tostring, __name). */
static int print_values(lua_State *L) {
  int n = lua_gettop(L), i;
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s = push_pretty(L, i) ? lua_tolstring(L, -1, &len) : luaL_tolstring(L, i, &len);
    if (i > 1)
      fputc('\t', stdout);
    fwrite(s, 1, len, stdout);
    lua_pop(L, 1);
  }
  fputc('\n', stdout);
  fflush(stdout);
  return 0;
}

/* The values above base are the entry's results. */
static void print_results(lua_State *L, int base) {
  int n = lua_gettop(L) - base;
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_pushcfunction(L, print_values);
    lua_insert(L, base + 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK) {
      const char *msg = lua_pushfstring(L, "error printing results (%s)", lua_tostring(L, -1));
      fprintf(stderr, "%s\n", msg);
      fflush(stderr);
    }
  }
}

/* In the REPL, the umbrella module is at hand as the global `mile`. Loading it is
 * best effort: a missing module is silent, a broken one is reported. */
void host_load_mile_global(lua_State *L) {
  int status;
  lua_pushglobaltable(L);
  lua_pushliteral(L, "mile");
  if (lua_rawget(L, -2) != LUA_TNIL) {
    lua_pop(L, 2);
    return;
  }
  lua_pop(L, 2);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "mile");
  status = lua_pcall(L, 1, 1, 0); /* no traceback: the message says enough */
  if (status == LUA_OK) {
    lua_setglobal(L, "mile");
  } else {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL || strstr(msg, "module 'mile' not found") == NULL)
      fprintf(stderr, "warning: require \"mile\" failed: %s\n", msg != NULL ? msg : "?");
    lua_pop(L, 1);
  }
}

static void open_readline(lua_State *L) {
  completion_L = L;
  rl_readline_name = "mile"; /* for $if mile in ~/.inputrc */
  rl_attempted_completion_function = complete;
  /* '.' and ':' are not word breaks: "mile.tensor.ze" is one word to complete;
   * nor is '/', which readline would skip at the start of a quoted file name */
  rl_completer_word_break_characters = host_completion_breaks;
  rl_completer_quote_characters = "\"'";
  using_history();
  stifle_history(HISTORY_MAX);
  /* timestamps mark where an entry starts, so multi-line entries come back whole */
  history_comment_char = '#';
  history_write_timestamps = 1;
  history_multiline_entries = 1;
  history_path = make_history_path();
  if (history_path != NULL)
    (void)read_history(history_path);
}

static void close_readline(void) {
  if (history_path != NULL)
    (void)history_truncate_file(history_path, HISTORY_MAX);
  clear_history();
  drop_matches();
  free(history_path);
  history_path = NULL;
  completion_L = NULL;
}

void host_repl(lua_State *L) {
  const char *progname = host_progname;
  int base = lua_gettop(L), status;
  const char *no_rl = getenv("MILE_NO_READLINE");
  use_readline = isatty(STDIN_FILENO) && !(no_rl != NULL && no_rl[0] != '\0' && strcmp(no_rl, "0") != 0);
  host_progname = NULL; /* errors in the REPL are not prefixed by the program */
  lua_pushcfunction(L, l_help);
  lua_setglobal(L, "help");
  host_load_mile_global(L);
  if (use_readline)
    open_readline(L);
  while ((status = load_entry(L)) != ENTRY_EOF) {
    if (status == LUA_OK)
      status = host_docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      print_results(L, base);
    else if (status != ENTRY_INTERRUPTED)
      host_report(L, status);
    lua_settop(L, base);
  }
  fputc('\n', stdout);
  fflush(stdout);
  if (use_readline)
    close_readline();
  use_readline = 0;
  host_progname = progname;
}

void host_repl_release(void) {
  free(plain_buf);
  plain_buf = NULL;
  plain_cap = 0;
  if (use_readline)
    close_readline();
  use_readline = 0;
}
