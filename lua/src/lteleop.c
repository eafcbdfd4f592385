/* lteleop.c - `mile.teleop.core`: the teleop server (teleop.h) as a Lua userdata.
 *
 *   local core = require "mile.teleop.core"
 *   local srv = core.serve { bind = "127.0.0.1", port = 0, token = "...", page = html }
 *   srv:port()                      -- the port it listens on
 *   for _, ev in ipairs(srv:poll(20)) do ... end  -- {kind = "connect"|"disconnect"|
 *                                                 --  "message"|"malformed", client = id, text = s}
 *   srv:send(client, text)          -- client 0: every browser
 *   srv:frame(bytes)                -- the latest frame (binary) for every browser
 *   srv:clients(), srv:frames_dropped(), srv:close()   (also __gc, __close)
 *
 * mile.teleop (lua/mile/teleop.lua) builds the session on top of this. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lmile.h"
#include "teleop.h"

#define LTELEOP_MT "mile.teleop.Server"

typedef struct lserver {
  mile_teleop *s; /* NULL until started and once closed */
} lserver;

static mile_teleop *check_server(lua_State *L, int idx) {
  lserver *box = luaL_checkudata(L, idx, LTELEOP_MT);
  if (!box->s) luaL_error(L, "teleop: the server is closed");
  return box->s;
}

static const char *opt_field_string(lua_State *L, int t, const char *key, const char *def, size_t *len) {
  int type = lua_getfield(L, t, key);
  const char *v = def;
  if (type == LUA_TSTRING)
    v = lua_tolstring(L, -1, len);
  else if (type != LUA_TNIL)
    luaL_error(L, "teleop.serve: %s must be a string, got %s", key, luaL_typename(L, -1));
  else if (len)
    *len = def ? strlen(def) : 0;
  lua_pop(L, 1); /* the string stays alive in the options table */
  return v;
}

/* serve{bind=, port=, token=, page=} -> server, or nil, message when it cannot listen. */
static int teleop_serve(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t page_len = 0;
  const char *bind = opt_field_string(L, 1, "bind", "127.0.0.1", NULL);
  const char *token = opt_field_string(L, 1, "token", NULL, NULL);
  const char *page = opt_field_string(L, 1, "page", "", &page_len);
  lua_getfield(L, 1, "port");
  lua_Integer port = lua_isnil(L, -1) ? 0 : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  if (port < 0 || port > 65535) return luaL_error(L, "teleop.serve: port %I is not in 0..65535", port);
  if (!token || strlen(token) < 16) return luaL_error(L, "teleop.serve: token must be a string of 16 bytes or more");
  if (strlen(token) > 200) return luaL_error(L, "teleop.serve: token longer than 200 bytes");
  lserver *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->s = NULL;
  luaL_setmetatable(L, LTELEOP_MT);
  char err[256];
  if (mile_teleop_create(&box->s, bind, (int)port, token, page, page_len, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int server_port(lua_State *L) {
  lua_pushinteger(L, mile_teleop_port(check_server(L, 1)));
  return 1;
}

static const char *const kind_names[] = {"", "connect", "disconnect", "message", "malformed"};

/* poll([ms]) -> a list of events (empty when ms passed without one). */
static int server_poll(lua_State *L) {
  mile_teleop *s = check_server(L, 1);
  lua_Integer ms = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, ms >= 0 && ms <= 3600000, 2, "timeout out of range (0 .. 3600000 ms)");
  lua_createtable(L, 0, 0); /* the list first: nothing popped is lost if this raises */
  mile_teleop_service(s, (int)ms);
  mile_teleop_event ev;
  for (int i = 1; mile_teleop_next_event(s, &ev); i++) {
    /* stack: list; box the text in a Lua string before anything else can raise */
    lua_createtable(L, 0, 3);
    lua_pushstring(L, kind_names[ev.kind]);
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, ev.client);
    lua_setfield(L, -2, "client");
    if (ev.text) {
      lua_pushlstring(L, ev.text, ev.len);
      free(ev.text);
      lua_setfield(L, -2, "text");
    }
    lua_rawseti(L, -2, i);
  }
  return 1;
}

static int server_send(lua_State *L) {
  mile_teleop *s = check_server(L, 1);
  lua_Integer client = luaL_checkinteger(L, 2);
  size_t len;
  const char *text = luaL_checklstring(L, 3, &len);
  luaL_argcheck(L, client >= 0 && client <= 0x7fffffff, 2, "client id out of range");
  int n = mile_teleop_send_text(s, (int)client, text, len);
  if (n < 0) return luaL_error(L, "teleop.send: out of memory");
  lua_pushinteger(L, n);
  return 1;
}

static int server_frame(lua_State *L) {
  mile_teleop *s = check_server(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (mile_teleop_send_frame(s, data, len)) return luaL_error(L, "teleop.frame: out of memory");
  return 0;
}

static int server_clients(lua_State *L) {
  lua_pushinteger(L, mile_teleop_clients(check_server(L, 1)));
  return 1;
}

static int server_frames_dropped(lua_State *L) {
  lua_pushinteger(L, mile_teleop_frames_dropped(check_server(L, 1)));
  return 1;
}

static int server_close(lua_State *L) { /* idempotent: also __gc and __close */
  lserver *box = luaL_checkudata(L, 1, LTELEOP_MT);
  mile_teleop *s = box->s;
  box->s = NULL;
  mile_teleop_destroy(s);
  return 0;
}

static const luaL_Reg server_methods[] = {
    {"port", server_port},       {"poll", server_poll},
    {"send", server_send},       {"frame", server_frame},
    {"clients", server_clients}, {"frames_dropped", server_frames_dropped},
    {"close", server_close},     {NULL, NULL},
};

static const luaL_Reg module_functions[] = {
    {"serve", teleop_serve},
    {NULL, NULL},
};

int luaopen_mile_teleop_core(lua_State *L) {
  luaL_newmetatable(L, LTELEOP_MT);
  luaL_newlib(L, server_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, server_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, server_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  luaL_newlib(L, module_functions);
  return 1;
}
