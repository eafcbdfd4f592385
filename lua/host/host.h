/* host.h - the pieces of the `mile` program shared by mile.c (start-up, options,
 * scripts), repl.c (the interactive loop) and kernel.c (the Jupyter kernel).
 *
 * The host has lua.c's shape: main() runs everything inside one protected call,
 * every chunk runs through host_docall (traceback handler + Ctrl-C hook), and errors
 * are reported, never turned into exit() calls deep inside. */
#ifndef MILE_HOST_H
#define MILE_HOST_H

#include <stdio.h>

#include <lua.h>

/* Name printed before error messages (argv[0]); NULL inside the REPL, where the
 * prompt already says who is speaking. */
extern const char *host_progname;

/* Call the function below the narg arguments on top of the stack with a traceback
 * message handler, letting SIGINT stop it with an "interrupted!" error. Returns the
 * lua_pcall status; on error the message (with traceback) is on top. */
int host_docall(lua_State *L, int narg, int nres);

/* The message handler of host_docall: a traceback appended to string errors;
 * other error objects give their __tostring or a description. */
int host_msghandler(lua_State *L);

/* Make L stop with the error "interrupted!" at its next instruction, call or line
 * (a one-shot hook). Safe to call from a signal handler running on L's thread. */
void host_interrupt(lua_State *L);

/* Remove an interrupt that came too late to stop anything. */
void host_interrupt_clear(lua_State *L);

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

/* Characters that end the word being completed (readline's word breaks). */
extern const char host_completion_breaks[];

/* Push a Lua array of the completions of text: a bare name completes globals and
 * keywords, "a.b.c" the fields of a.b, "t:m" the functions reachable through t's
 * metatable; each candidate is the whole text completed. Follows tables and __index
 * tables only, never runs user code. Returns the lua_pcall status; on error the
 * message is pushed instead. */
int host_complete(lua_State *L, const char *text);

/* Push the value of a path of names ("mile.tensor.zeros", "t:sum") looked up as
 * completion looks names up (no user code runs) and return 1; push nothing and
 * return 0 when a name is missing or the path is not one of names. */
int host_lookup(lua_State *L, const char *path, size_t len);

/* Write what help(x) says about the value at idx on out: its documentation in
 * require("mile").doc, else its type, fields, definition site and methods. May run
 * a __tostring metamethod: call it in protected mode. */
void host_help(lua_State *L, int idx, FILE *out);

/* Set the global `mile` to require "mile" unless it is set; a failure other than
 * a missing module is reported on stderr. */
void host_load_mile_global(lua_State *L);

/* Run as a Jupyter kernel (protocol 5.3) on the sockets named by the connection
 * file until a shutdown_request; replaces the script and the REPL. Returns 0 after
 * a shutdown, 1 when the kernel could not start (the reason is on stderr). */
int host_kernel(lua_State *L, const char *connection_file);

#endif
