/* host.h - the pieces of the `mile` program shared by mile.c (start-up, options,
 * scripts) and repl.c (the interactive loop).
 *
 * The host has lua.c's shape: main() runs everything inside one protected call,
 * every chunk runs through host_docall (traceback handler + Ctrl-C hook), and errors
 * are reported, never turned into exit() calls deep inside. */
#ifndef MILE_HOST_H
#define MILE_HOST_H

#include <lua.h>

/* Name printed before error messages (argv[0]); NULL inside the REPL, where the
 * prompt already says who is speaking. */
extern const char *host_progname;

/* Call the function below the narg arguments on top of the stack with a traceback
 * message handler, letting SIGINT stop it with an "interrupted!" error. Returns the
 * lua_pcall status; on error the message (with traceback) is on top. */
int host_docall(lua_State *L, int narg, int nres);

/* Print the error message on top of the stack (and pop it) when status is not
 * LUA_OK; returns status unchanged. */
int host_report(lua_State *L, int status);

/* Write "mile <version> (Lua 5.4.x)" on stdout. */
void host_print_version(void);

/* Run the read-eval-print loop until end of input. Uses GNU readline (history,
 * completion) when stdin is a terminal and MILE_NO_READLINE is not set; plain line
 * reading otherwise. */
void host_repl(lua_State *L);

/* Release what the REPL keeps between calls (the plain-mode line buffer); safe to
 * call when the REPL never ran or was left by a Lua error. */
void host_repl_release(void);

#endif
