/* kernel.c - `mile --kernel CONNECTION_FILE`: the mile host as a Jupyter kernel.
 *
 * The Jupyter messaging protocol 5.3 over ZeroMQ: shell, control, stdin, iopub and
 * heartbeat sockets as the connection file names them, JSON by jansson, HMAC-SHA256
 * signatures by OpenSSL. Threads:
 *
 *   main       shell requests and the control requests the control thread forwards;
 *              runs the cells (a lua_State belongs to one thread)
 *   control    owns the control socket; answers interrupt_request at once by sending
 *              SIGINT to the main thread, so a cell stops exactly as with Ctrl-C (the
 *              host's one-shot hook), and forwards everything else over an inproc pair
 *   heartbeat  echoes pings (zmq_proxy of a ROUTER onto itself, as ipykernel does)
 *
 * A cell runs like a REPL entry: `return <cell>` first, else the cell, its trailing
 * expression (if any) returned so that its value becomes the execute_result. print,
 * io.write, io.stdout:write and io.stderr:write go to `stream` messages; io.read on
 * stdin becomes an input_request. Messages with a wrong signature, bad JSON or missing
 * fields are dropped (a line on stderr); nothing is ever written on stdout. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zmq.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"
#include "kernel_message.h"

#ifndef MILE_VERSION_STRING
#define MILE_VERSION_STRING "unknown"
#endif

#define PROTOCOL_VERSION "5.3"
#define DELIMITER KMSG_DELIMITER

enum { STREAM_OUT, STREAM_ERR };
enum {
  LINGER_MS = 1000,              /* how long closing sockets may still deliver replies */
  FLUSH_INTERVAL_NS = 100000000, /* coalesce a burst of prints into one message per 0.1 s */
  FLUSH_BYTES = 1 << 16
};

/* ------------------------------------------------------------------------- */
/* Multipart messages                                                         */
/* ------------------------------------------------------------------------- */

typedef struct {
  zmq_msg_t *part;
  size_t n, cap;
} frames;

static void frames_free(frames *f) {
  size_t i;
  for (i = 0; i < f->n; i++)
    zmq_msg_close(&f->part[i]);
  free(f->part);
  memset(f, 0, sizeof *f);
}

/* Receive every part of one message. A signal (EINTR) does not lose a part: the
 * same receive is tried again. Returns 0, or -1 when the socket failed (ETERM). */
static int frames_recv(void *sock, frames *f) {
  int more = 1;
  memset(f, 0, sizeof *f);
  while (more) {
    if (f->n == f->cap) {
      size_t cap = f->cap ? 2 * f->cap : 8;
      zmq_msg_t *grown = realloc(f->part, cap * sizeof *grown);
      if (grown == NULL) { /* drain the rest; the message is lost */
        zmq_msg_t skip;
        zmq_msg_init(&skip);
        while (zmq_msg_recv(&skip, sock, 0) >= 0 || errno == EINTR)
          if (!zmq_msg_more(&skip))
            break;
        zmq_msg_close(&skip);
        frames_free(f);
        return -1;
      }
      f->part = grown;
      f->cap = cap;
    }
    zmq_msg_init(&f->part[f->n]);
    while (zmq_msg_recv(&f->part[f->n], sock, 0) < 0) {
      if (errno != EINTR) {
        zmq_msg_close(&f->part[f->n]);
        frames_free(f);
        return -1;
      }
    }
    more = zmq_msg_more(&f->part[f->n]);
    f->n++;
  }
  return 0;
}

static int send_part(void *sock, const void *data, size_t len, int more) {
  while (zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0) < 0)
    if (errno != EINTR)
      return -1;
  return 0;
}

/* Send parts [from, from + n) of f, the last one ending the message unless more. */
static int frames_send(void *sock, const frames *f, size_t from, size_t n, int more) {
  size_t i;
  for (i = from; i < from + n; i++) {
    zmq_msg_t *p = &f->part[i];
    if (send_part(sock, zmq_msg_data(p), zmq_msg_size(p), more || i + 1 < from + n) < 0)
      return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------------- */
/* The kernel's state                                                         */
/* ------------------------------------------------------------------------- */

typedef struct {
  char *buf;
  size_t len, cap;
} stream_buf;

/* A received message: its parts, and the parsed JSON of the four signed ones. */
typedef struct {
  frames raw;
  size_t delim; /* index of the "<IDS|MSG>" part; the routing ids come before it */
  json_t *header, *parent, *metadata, *content;
  const char *type; /* header.msg_type */
} message;

/* One kernel per process: the signal handler and the Lua functions reach it here. */
static struct {
  lua_State *L;
  void *ctx;
  void *shell, *iopub, *stdin_sock, *control_pair; /* the main thread's sockets */
  void *control, *control_thread_pair, *heartbeat; /* handed to the threads */
  pthread_t main_thread, control_thread, heartbeat_thread;
  int control_started, heartbeat_started;
  EVP_MAC *mac;
  unsigned char *key;
  size_t key_len;
  char session[37];
  int execution_count;
  message *request;  /* the request being handled: the parent of what is published */
  int allow_stdin;   /* of the execute_request running now */
  stream_buf stream[2];
  int pending;       /* the stream that holds unsent text, or -1 */
  struct timespec last_flush;
  message *held; /* requests taken off the queue behind a failed cell */
  size_t held_n, held_cap;
  int shutdown;
} K;

static volatile sig_atomic_t cell_running, interrupted;

/* SIGINT, from a terminal, from the frontend (interrupt_mode "signal") or from the
 * control thread: stop the running cell; between cells there is nothing to stop. */
static void on_sigint(int sig) {
  (void)sig;
  if (cell_running) {
    interrupted = 1;
    host_interrupt(K.L);
  }
}

/* One line on stderr (Jupyter shows the kernel's stderr in its own log). Lines may
 * echo what a client sent (an unknown msg_type of 100 KB): at most LOG_MAX bytes of
 * the formatted text are written, cut on a UTF-8 boundary and marked with "...", and
 * control characters become '?' so that input cannot forge further log lines. */
enum { LOG_MAX = 200 };
static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
  char buf[LOG_MAX + 8];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = (size_t)n < LOG_MAX ? (size_t)n : LOG_MAX;
  if ((size_t)n > LOG_MAX)
    while (len > 0 && ((unsigned char)buf[len] & 0xC0) == 0x80)
      len--; /* not inside a UTF-8 sequence */
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) buf[i] = '?';
  fputs("mile kernel: ", stderr);
  fwrite(buf, 1, len, stderr);
  if ((size_t)n > LOG_MAX) fprintf(stderr, "... (%d bytes)", n);
  fputc('\n', stderr);
  fflush(stderr);
}

/* ------------------------------------------------------------------------- */
/* JSON, UTF-8, signatures                                                    */
/* ------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
  size_t len, i;
  uint32_t cp;
  if (s[0] < 0x80)
    return 1;
  if (s[0] >= 0xC2 && s[0] <= 0xDF)
    len = 2, cp = s[0] & 0x1F;
  else if (s[0] >= 0xE0 && s[0] <= 0xEF)
    len = 3, cp = s[0] & 0x0F;
  else if (s[0] >= 0xF0 && s[0] <= 0xF4)
    len = 4, cp = s[0] & 0x07;
  else
    return 0;
  if (len > n)
    return 0;
  for (i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return len;
}

/* A JSON string of bytes that may not be UTF-8 (Lua strings are bytes): invalid
 * sequences become U+FFFD. NULL only when memory runs out. */
static json_t *json_bytes(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, k, o = 0;
  char *clean;
  json_t *j;
  while (i < n && (k = utf8_sequence(u + i, n - i)) > 0)
    i += k;
  if (i == n)
    return json_stringn(s, n);
  if ((clean = malloc(3 * n)) == NULL) /* each bad byte grows to 3 */
    return NULL;
  for (i = 0; i < n;) {
    if ((k = utf8_sequence(u + i, n - i)) > 0) {
      memcpy(clean + o, s + i, k);
      o += k, i += k;
    } else {
      memcpy(clean + o, "\xEF\xBF\xBD", 3);
      o += 3, i++;
    }
  }
  j = json_stringn(clean, o);
  free(clean);
  return j;
}

/* Bytes of s before a UTF-8 sequence cut short at its end (kept for the next flush). */
static size_t utf8_complete_prefix(const char *s, size_t n) {
  size_t back;
  for (back = 1; back <= 3 && back <= n; back++) {
    unsigned char c = (unsigned char)s[n - back];
    if ((c & 0xC0) == 0x80)
      continue; /* a continuation byte: look further back for the lead byte */
    if (c >= 0xC0) {
      size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      return need > back ? n - back : n;
    }
    break;
  }
  return n;
}

/* HMAC-SHA256 of the parts with the connection's key (kernel_message.c). */
static int sign(const void *const *data, const size_t *len, int n, char hex[65]) {
  kmsg_key k = {K.mac, K.key, K.key_len};
  return kmsg_sign(&k, data, len, n, hex);
}

static void message_free(message *m) {
  frames_free(&m->raw);
  json_decref(m->header);
  json_decref(m->parent);
  json_decref(m->metadata);
  json_decref(m->content);
  memset(m, 0, sizeof *m);
}

/* Check the signature and parse m->raw (kernel_message.c). Returns 0, or -1 (and
 * logs why) when the message must be dropped. */
static int message_parse(message *m) {
  const void **data;
  size_t *len, i;
  const char *why = "dropped a message: not enough memory";
  kmsg parsed;
  int rc = -1;
  data = malloc((m->raw.n + 1) * sizeof *data);
  len = malloc((m->raw.n + 1) * sizeof *len);
  if (data != NULL && len != NULL) {
    kmsg_key k = {K.mac, K.key, K.key_len};
    for (i = 0; i < m->raw.n; i++) {
      data[i] = zmq_msg_data(&m->raw.part[i]);
      len[i] = zmq_msg_size(&m->raw.part[i]);
    }
    rc = kmsg_parse(&parsed, &k, data, len, m->raw.n, &why);
  }
  free(data);
  free(len);
  if (rc < 0) {
    log_line("%s", why);
    return -1;
  }
  m->delim = parsed.delim;
  m->header = parsed.header;
  m->parent = parsed.parent;
  m->metadata = parsed.metadata;
  m->content = parsed.content;
  m->type = parsed.type;
  return 0;
}

static void new_uuid(char out[37]) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) { /* cannot happen on Linux; ids need only be unique */
    static unsigned counter;
    memset(b, 0, sizeof b);
    memcpy(b, &counter, sizeof counter);
    counter++;
  }
  b[6] = (unsigned char)((b[6] & 0x0F) | 0x40); /* version 4 */
  b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
           b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static json_t *now_iso8601(void) {
  struct timespec ts;
  struct tm tm;
  char s[64];
  size_t n;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = strftime(s, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(s + n, sizeof s - n, ".%06dZ", (int)(ts.tv_nsec / 1000) % 1000000);
  return json_string(s);
}

/* Send one message: routing ids (parts [0, nids) of ids) or a pub topic, then the
 * signed parts. Takes over content; parent may be NULL ({}). Runs on any thread:
 * it touches only sock and the read-only session and key. */
static int send_message(void *sock, const frames *ids, size_t nids, const char *topic, const char *type,
                        json_t *parent, json_t *content) {
  char id[37], hex[65];
  char *part[4] = {NULL, NULL, NULL, NULL};
  size_t len[4];
  json_t *header = json_object();
  int i, rc = -1;
  new_uuid(id);
  json_object_set_new(header, "msg_id", json_string(id));
  json_object_set_new(header, "session", json_string(K.session));
  json_object_set_new(header, "username", json_string("mile"));
  json_object_set_new(header, "date", now_iso8601());
  json_object_set_new(header, "msg_type", json_string(type));
  json_object_set_new(header, "version", json_string(PROTOCOL_VERSION));
  part[0] = json_dumps(header, JSON_COMPACT);
  part[1] = parent != NULL ? json_dumps(parent, JSON_COMPACT) : strdup("{}");
  part[2] = strdup("{}");
  part[3] = content != NULL ? json_dumps(content, JSON_COMPACT) : NULL;
  for (i = 0; i < 4; i++) {
    if (part[i] == NULL)
      goto done;
    len[i] = strlen(part[i]);
  }
  if (sign((const void *const *)part, len, 4, hex) < 0)
    goto done;
  if (ids != NULL ? frames_send(sock, ids, 0, nids, 1) < 0 : send_part(sock, topic, strlen(topic), 1) < 0)
    goto done;
  if (send_part(sock, DELIMITER, sizeof DELIMITER - 1, 1) < 0 || send_part(sock, hex, strlen(hex), 1) < 0)
    goto done;
  for (i = 0; i < 4; i++)
    if (send_part(sock, part[i], len[i], i < 3) < 0)
      goto done;
  rc = 0;
done:
  for (i = 0; i < 4; i++)
    free(part[i]);
  json_decref(header);
  json_decref(content);
  return rc;
}

static void reply(const message *req, void *sock, const char *type, json_t *content) {
  send_message(sock, &req->raw, req->delim, NULL, type, req->header, content);
}

/* Publish on iopub with the request being handled as parent. */
static void publish(const char *type, json_t *content) {
  char topic[64];
  snprintf(topic, sizeof topic, "kernel.%s.%s", K.session, type);
  send_message(K.iopub, NULL, 0, topic, type, K.request != NULL ? K.request->header : NULL, content);
}

static void publish_status(const char *state) {
  publish("status", json_pack("{ss}", "execution_state", state));
}

/* ------------------------------------------------------------------------- */
/* Streams                                                                    */
/* ------------------------------------------------------------------------- */

static int64_t elapsed_ns(const struct timespec *since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)(now.tv_sec - since->tv_sec) * 1000000000 + (now.tv_nsec - since->tv_nsec);
}

/* Send the pending text of stream s; a UTF-8 sequence cut at the end waits for its
 * last bytes unless this is the final flush of the cell. */
static void flush_stream(int s, int final) {
  stream_buf *b = &K.stream[s];
  size_t n = final ? b->len : utf8_complete_prefix(b->buf, b->len);
  json_t *text;
  if (n > 0 && (text = json_bytes(b->buf, n)) != NULL)
    publish("stream", json_pack("{s:s, s:o}", "name", s == STREAM_OUT ? "stdout" : "stderr", "text", text));
  memmove(b->buf, b->buf + n, b->len - n);
  b->len -= n;
  if (b->len == 0 && K.pending == s)
    K.pending = -1;
  clock_gettime(CLOCK_MONOTONIC, &K.last_flush);
}

static void flush_streams(int final) {
  if (K.pending >= 0)
    flush_stream(K.pending, final);
}

/* Queue text on stream s. Messages keep the order of writes: switching streams
 * sends what the other one holds first. A write after a quiet spell goes out at
 * once; a burst is coalesced. Returns -1 when memory runs out. */
static int stream_write(int s, const char *text, size_t n) {
  stream_buf *b = &K.stream[s];
  if (K.pending >= 0 && K.pending != s)
    flush_stream(K.pending, 1);
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *grown;
    while (cap < b->len + n)
      cap *= 2;
    if ((grown = realloc(b->buf, cap)) == NULL)
      return -1;
    b->buf = grown;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, text, n);
  b->len += n;
  K.pending = s;
  if (b->len >= FLUSH_BYTES || elapsed_ns(&K.last_flush) >= FLUSH_INTERVAL_NS)
    flush_stream(s, 0);
  return 0;
}

/* ------------------------------------------------------------------------- */
/* Lua: output, input, display                                                */
/* ------------------------------------------------------------------------- */

#define SAVED_KEY "mile.kernel.saved" /* registry: the functions the kernel replaced */

static void write_or_raise(lua_State *L, int s, const char *text, size_t n) {
  if (stream_write(s, text, n) < 0)
    luaL_error(L, "not enough memory for the cell's output");
}

/* STREAM_OUT / STREAM_ERR when the value at idx is the process's io.stdout /
 * io.stderr (as the kernel found them), else -1. */
static int stream_of(lua_State *L, int idx) {
  int s, found = -1;
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, SAVED_KEY);
  for (s = STREAM_OUT; s <= STREAM_ERR && found < 0; s++) {
    lua_getfield(L, -1, s == STREAM_OUT ? "stdout" : "stderr");
    if (lua_rawequal(L, -1, idx))
      found = s;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return found;
}

static int is_saved(lua_State *L, int idx, const char *name) {
  int same;
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, SAVED_KEY);
  lua_getfield(L, -1, name);
  same = lua_rawequal(L, -1, idx);
  lua_pop(L, 2);
  return same;
}

/* Call saved[name] with the arguments from 1 up; return its results. */
static int call_saved(lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, SAVED_KEY);
  lua_getfield(L, -1, name);
  lua_replace(L, -2);
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* The file that io.write / io.read use now (the original io.output / io.input). */
static void push_default_file(lua_State *L, const char *which) {
  lua_getfield(L, LUA_REGISTRYINDEX, SAVED_KEY);
  lua_getfield(L, -1, which);
  lua_replace(L, -2);
  lua_call(L, 0, 1);
}

/* print: the whole line is one write, so it never leaves in pieces. */
static int l_print(lua_State *L) {
  int n = lua_gettop(L), i;
  size_t len;
  const char *line;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    if (i > 1)
      luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  line = lua_tolstring(L, -1, &len);
  write_or_raise(L, STREAM_OUT, line, len);
  return 0;
}

/* The values from first on, as io.write writes them (numbers in Lua's formats). */
static void write_values(lua_State *L, int first, int s) {
  int n = lua_gettop(L), i;
  for (i = first; i <= n; i++) {
    char num[64];
    size_t len;
    const char *text;
    if (lua_type(L, i) == LUA_TNUMBER) {
      len = (size_t)(lua_isinteger(L, i) ? snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, i))
                                         : snprintf(num, sizeof num, LUA_NUMBER_FMT, (LUAI_UACNUMBER)lua_tonumber(L, i)));
      text = num;
    } else {
      text = luaL_checklstring(L, i, &len);
    }
    write_or_raise(L, s, text, len);
  }
}

static int l_io_write(lua_State *L) {
  int s;
  push_default_file(L, "io_output");
  s = stream_of(L, -1);
  if (s < 0) {
    lua_pop(L, 1);
    return call_saved(L, "io_write");
  }
  lua_insert(L, 1); /* stack: file, values... */
  write_values(L, 2, s);
  lua_settop(L, 1);
  return 1;
}

static int l_file_write(lua_State *L) {
  int s = stream_of(L, 1);
  if (s < 0)
    return call_saved(L, "file_write");
  write_values(L, 2, s);
  lua_settop(L, 1);
  return 1;
}

/* Ask the frontend for one line (input_request on the stdin socket, addressed to
 * whoever sent the execute_request) and push it. Raises when the frontend takes
 * no input or the cell is interrupted while waiting. */
static void push_input_line(lua_State *L) {
  const message *req = K.request;
  if (!K.allow_stdin || req == NULL)
    luaL_error(L, "io.read: this frontend does not send input (allow_stdin is false)");
  flush_streams(1);
  send_message(K.stdin_sock, &req->raw, req->delim, NULL, "input_request", req->header,
               json_pack("{ss sb}", "prompt", "", "password", 0));
  for (;;) {
    zmq_pollitem_t item = {K.stdin_sock, 0, ZMQ_POLLIN, 0};
    message m;
    json_t *value;
    if (zmq_poll(&item, 1, -1) < 0) {
      if (errno == EINTR && interrupted) {
        host_interrupt_clear(L);
        luaL_error(L, "interrupted!");
      }
      if (errno == EINTR)
        continue;
      luaL_error(L, "io.read: the stdin socket failed");
    }
    memset(&m, 0, sizeof m);
    if (frames_recv(K.stdin_sock, &m.raw) < 0)
      continue;
    if (message_parse(&m) < 0 || strcmp(m.type, "input_reply") != 0) {
      message_free(&m);
      continue;
    }
    value = json_object_get(m.content, "value");
    lua_pushlstring(L, json_is_string(value) ? json_string_value(value) : "",
                    json_is_string(value) ? json_string_length(value) : 0);
    message_free(&m); /* after the push: a memory error there would leak m */
    return;
  }
}

/* io.read's formats over lines typed in the frontend: "l" (default), "L", "n",
 * "a" (one line: input has no end), or a byte count (from one line). */
static int read_values(lua_State *L, int first) {
  int n = lua_gettop(L), i;
  if (n < first) {
    lua_pushliteral(L, "l");
    n++;
  }
  luaL_checkstack(L, n - first + 1 + LUA_MINSTACK, "too many arguments");
  for (i = first; i <= n; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      lua_Integer count = luaL_checkinteger(L, i);
      size_t len;
      const char *line;
      push_input_line(L);
      line = lua_tolstring(L, -1, &len);
      lua_pushlstring(L, line, count < 0 ? 0 : (size_t)count < len ? (size_t)count : len);
      lua_remove(L, -2);
    } else {
      const char *f = luaL_checkstring(L, i);
      if (*f == '*')
        f++; /* Lua 5.3 style "*l" */
      switch (*f) {
      case 'l':
      case 'a':
        push_input_line(L);
        break;
      case 'L':
        push_input_line(L);
        lua_pushliteral(L, "\n");
        lua_concat(L, 2);
        break;
      case 'n':
        push_input_line(L);
        if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0)
          lua_pushnil(L);
        lua_remove(L, -2);
        break;
      default:
        return luaL_argerror(L, i, "invalid format");
      }
    }
  }
  return n - first + 1;
}

static int l_io_read(lua_State *L) {
  push_default_file(L, "io_input");
  if (!is_saved(L, -1, "stdin")) {
    lua_pop(L, 1);
    return call_saved(L, "io_read");
  }
  lua_pop(L, 1);
  return read_values(L, 1);
}

static int l_file_read(lua_State *L) {
  if (!is_saved(L, 1, "stdin"))
    return call_saved(L, "file_read");
  return read_values(L, 2);
}

/* A Lua value as JSON, for display metadata: tables with 1..n become arrays,
 * other tables objects with their string keys; depth-limited (cycles). */
static json_t *to_json(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    return json_boolean(lua_toboolean(L, idx));
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      return json_integer((json_int_t)lua_tointeger(L, idx));
    return json_real(lua_tonumber(L, idx)); /* NaN and inf: NULL, left out */
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return json_bytes(s, len);
  }
  case LUA_TTABLE: {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), i;
    json_t *j;
    if (depth >= 16)
      return NULL;
    if (n > 0) {
      j = json_array();
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        json_array_append_new(j, to_json(L, -1, depth + 1));
        lua_pop(L, 1);
      }
      return j;
    }
    j = json_object();
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        json_t *v = to_json(L, -1, depth + 1);
        if (v != NULL)
          json_object_set_new(j, lua_tostring(L, -2), v);
      }
      lua_pop(L, 1);
    }
    return j;
  }
  default:
    return NULL;
  }
}

/* A mime bundle (a table mime type -> string) as JSON: binary images base64. */
static json_t *bundle_to_json(lua_State *L, int idx) {
  json_t *data = json_object();
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      const char *mime = lua_tostring(L, -2);
      size_t len;
      const char *v = lua_tolstring(L, -1, &len);
      json_t *j;
      if (strncmp(mime, "image/", 6) == 0 && strcmp(mime, "image/svg+xml") != 0) {
        unsigned char *b64 = malloc(4 * ((len + 2) / 3) + 1);
        j = NULL;
        if (b64 != NULL) {
          int n = EVP_EncodeBlock(b64, (const unsigned char *)v, (int)len);
          j = json_stringn((const char *)b64, (size_t)n);
          free(b64);
        }
      } else {
        j = json_bytes(v, len);
      }
      if (j != NULL)
        json_object_set_new(data, mime, j); /* a key that is not UTF-8 is refused */
    }
    lua_pop(L, 1);
  }
  return data;
}

/* mile.kernel.display(data [, metadata]): a display_data message. */
static int l_display(lua_State *L) {
  json_t *data, *meta;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  flush_streams(1);
  data = bundle_to_json(L, 1);
  meta = lua_istable(L, 2) ? to_json(L, 2, 0) : NULL;
  if (!json_is_object(meta)) {
    json_decref(meta);
    meta = json_object();
  }
  publish("display_data", json_pack("{s:o, s:o, s:{}}", "data", data, "metadata", meta, "transient"));
  return 0;
}

/* mile.kernel.clear_output([wait]): clear the cell's output (with wait, when the
 * next output arrives), for progress displays. */
static int l_clear_output(lua_State *L) {
  flush_streams(1);
  publish("clear_output", json_pack("{sb}", "wait", lua_toboolean(L, 1)));
  return 0;
}

static int l_flush(lua_State *L) {
  (void)L;
  flush_streams(1);
  return 0;
}

/* Box for open_memstream's FILE and buffer: freed by __gc even when the help text
 * is cut short by an error. */
typedef struct {
  FILE *f;
  char *buf;
  size_t len;
} membox;

static int membox_gc(lua_State *L) {
  membox *b = luaL_checkudata(L, 1, "mile.kernel.membox");
  if (b->f != NULL)
    fclose(b->f);
  free(b->buf);
  memset(b, 0, sizeof *b);
  return 0;
}

static membox *push_membox(lua_State *L) {
  membox *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  if (luaL_newmetatable(L, "mile.kernel.membox")) {
    lua_pushcfunction(L, membox_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if ((b->f = open_memstream(&b->buf, &b->len)) == NULL)
    luaL_error(L, "not enough memory");
  return b;
}

/* stack: box -> text (the box is closed and emptied). */
static void membox_finish(lua_State *L, membox *b) {
  fclose(b->f);
  b->f = NULL;
  lua_pushlstring(L, b->buf != NULL ? b->buf : "", b->len);
  free(b->buf);
  b->buf = NULL;
  lua_remove(L, -2);
}

static const char kernel_help[] =
    "In the mile kernel:\n"
    "  a cell runs like a REPL entry: the value of its last expression is its result\n"
    "  help(x)        the documentation of x (mile.doc), else its type and fields\n"
    "  Tab            complete globals and fields: mile.te<Tab>, t:su<Tab>, file names in strings\n"
    "  Shift-Tab      help for the name at the cursor\n"
    "  Interrupt      stop the running cell ('interrupted!'); the kernel's state stays\n"
    "  mile.display   .png(path or bytes), .markdown(s), .html(s), .tensor(t), .table(rows)\n";

/* help(x) in a cell: the REPL's help, written on the cell's stdout. */
static int l_help(lua_State *L) {
  membox *b;
  size_t len;
  const char *text;
  if (lua_isnone(L, 1)) {
    write_or_raise(L, STREAM_OUT, kernel_help, sizeof kernel_help - 1);
    return 0;
  }
  lua_settop(L, 1);
  b = push_membox(L);
  host_help(L, 1, b->f);
  membox_finish(L, b);
  text = lua_tolstring(L, -1, &len);
  write_or_raise(L, STREAM_OUT, text, len);
  return 0;
}

/* Replace print, io.write, io.read, the write and read methods of files and help;
 * keep the originals (and io.stdin/stdout/stderr as found) in the registry. */
static int l_install(lua_State *L) {
  static const luaL_Reg kernel_module[] = {
      {"display", l_display}, {"clear_output", l_clear_output}, {"flush", l_flush}, {NULL, NULL}};
  lua_newtable(L); /* 1: saved */
  lua_pushglobaltable(L);
  lua_getfield(L, -1, "print");
  lua_setfield(L, 1, "print");
  lua_getfield(L, -1, "help");
  lua_setfield(L, 1, "help");
  if (lua_getfield(L, -1, "io") != LUA_TTABLE) /* stack: saved, _G, io */
    return luaL_error(L, "the io library is not loaded");
  lua_getfield(L, -1, "write");
  lua_setfield(L, 1, "io_write");
  lua_getfield(L, -1, "read");
  lua_setfield(L, 1, "io_read");
  lua_getfield(L, -1, "output");
  lua_setfield(L, 1, "io_output");
  lua_getfield(L, -1, "input");
  lua_setfield(L, 1, "io_input");
  lua_getfield(L, -1, "stdout");
  lua_setfield(L, 1, "stdout");
  lua_getfield(L, -1, "stderr");
  lua_setfield(L, 1, "stderr");
  lua_getfield(L, -1, "stdin");
  lua_setfield(L, 1, "stdin");
  luaL_getmetatable(L, LUA_FILEHANDLE); /* stack: saved, _G, io, mt */
  if (lua_getfield(L, -1, "__index") != LUA_TTABLE)
    return luaL_error(L, "file handles have no method table");
  lua_getfield(L, -1, "write"); /* stack: saved, _G, io, mt, methods, write */
  lua_setfield(L, 1, "file_write");
  lua_getfield(L, -1, "read");
  lua_setfield(L, 1, "file_read");
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, SAVED_KEY);
  lua_pushcfunction(L, l_file_write);
  lua_setfield(L, -2, "write");
  lua_pushcfunction(L, l_file_read);
  lua_setfield(L, -2, "read");
  lua_pop(L, 2);
  lua_pushcfunction(L, l_io_write); /* stack: saved, _G, io */
  lua_setfield(L, -2, "write");
  lua_pushcfunction(L, l_io_read);
  lua_setfield(L, -2, "read");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_print);
  lua_setfield(L, -2, "print");
  lua_pushcfunction(L, l_help);
  lua_setfield(L, -2, "help");
  /* require "mile.kernel": what mile.display talks to */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  luaL_newlib(L, kernel_module);
  lua_pushliteral(L, PROTOCOL_VERSION);
  lua_setfield(L, -2, "protocol_version");
  lua_setfield(L, -2, "mile.kernel");
  return 0;
}

/* Put back what l_install replaced (finalizers that print after the kernel has
 * stopped then reach the real stdout). */
static int l_uninstall(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, SAVED_KEY) != LUA_TTABLE) /* 1: saved */
    return 0;
  lua_pushglobaltable(L);
  lua_getfield(L, 1, "print");
  lua_setfield(L, 2, "print");
  lua_getfield(L, 1, "help");
  lua_setfield(L, 2, "help");
  if (lua_getfield(L, 2, "io") == LUA_TTABLE) {
    lua_getfield(L, 1, "io_write");
    lua_setfield(L, -2, "write");
    lua_getfield(L, 1, "io_read");
    lua_setfield(L, -2, "read");
  }
  luaL_getmetatable(L, LUA_FILEHANDLE);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "__index") == LUA_TTABLE) {
    lua_getfield(L, 1, "file_write");
    lua_setfield(L, -2, "write");
    lua_getfield(L, 1, "file_read");
    lua_setfield(L, -2, "read");
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  lua_setfield(L, -2, "mile.kernel");
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, SAVED_KEY);
  return 0;
}

/* ------------------------------------------------------------------------- */
/* Cells                                                                      */
/* ------------------------------------------------------------------------- */

static int load_text(lua_State *L, const char *s, size_t n, const char *name) {
  return luaL_loadbufferx(L, s, n, name, "t"); /* never bytecode from the wire */
}

/* A syntax error at <eof>: the input is not finished. stack: message */
static int ends_early(lua_State *L, int status) {
  static const char mark[] = "<eof>";
  size_t len;
  const char *msg;
  if (status != LUA_ERRSYNTAX)
    return 0;
  msg = lua_tolstring(L, -1, &len);
  return len >= sizeof mark - 1 && strcmp(msg + len - (sizeof mark - 1), mark) == 0;
}

/* Compile "<a>return <b>" (a may be empty); leaves nothing on failure. */
static int load_with_return(lua_State *L, const char *a, size_t alen, const char *b, size_t blen, const char *name) {
  int status;
  lua_pushlstring(L, a, alen);
  lua_pushliteral(L, "return ");
  lua_pushlstring(L, b, blen);
  lua_concat(L, 3);
  status = load_text(L, lua_tostring(L, -1), lua_rawlen(L, -1), name);
  lua_remove(L, -2);
  if (status != LUA_OK)
    lua_pop(L, 1);
  return status;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

/* load_cell(code, chunkname) -> function | nil, message.
 *
 * Like the REPL: `return <cell>` when the whole cell is an expression. Otherwise the
 * cell's trailing expression, the shortest run of last lines L such that the lines
 * before it compile on their own and `return L` compiles, is returned, so `x = 1`
 * then `x + 1` on the last line shows 2 (IPython's rule). When the cell compiles
 * as it is, a split must not change its meaning: Lua reads `f` + newline + `(g)(1)`
 * as one call, so a trailing line must also stand as a statement of its own and
 * not start with '('. Line numbers are the cell's either way. */
static int l_load_cell(lua_State *L) {
  size_t len, n, k, nlines = 0;
  const char *code = luaL_checklstring(L, 1, &len);
  const char *name = luaL_checkstring(L, 2);
  size_t *starts;
  int whole;
  lua_settop(L, 2);
  if (load_with_return(L, "", 0, code, len, name) == LUA_OK)
    return 1;
  whole = load_text(L, code, len, name); /* 3: the cell as it is, or its error */
  for (n = len; n > 0 && is_blank(code[n - 1]); n--)
    ;
  /* the start of every line of code[0, n), in a userdata so an error frees it */
  for (k = 0; k < n; k++)
    nlines += code[k] == '\n';
  starts = lua_newuserdatauv(L, (nlines + 1) * sizeof *starts, 0); /* 4 */
  starts[0] = 0;
  for (k = 0, nlines = 1; k < n; k++)
    if (code[k] == '\n')
      starts[nlines++] = k + 1;
  for (k = nlines; k-- > 0;) {
    const char *tail = code + starts[k];
    size_t tail_len = n - starts[k], skip = 0;
    while (skip < tail_len && is_blank(tail[skip]))
      skip++;
    if (skip == tail_len || (tail_len - skip >= 2 && tail[skip] == '-' && tail[skip + 1] == '-'))
      continue; /* blank or a comment: the expression is above */
    if (load_with_return(L, "", 0, tail, tail_len, name) != LUA_OK)
      continue;
    lua_pop(L, 1);
    if (k > 0) {
      if (load_text(L, code, starts[k], name) != LUA_OK) {
        lua_pop(L, 1);
        continue;
      }
      lua_pop(L, 1);
    }
    if (whole == LUA_OK) {
      int status;
      if (tail[skip] == '(')
        continue;
      lua_pushlstring(L, tail, tail_len);
      lua_pushliteral(L, ";");
      lua_insert(L, -2);
      lua_concat(L, 2);
      status = load_text(L, lua_tostring(L, -1), lua_rawlen(L, -1), name);
      lua_pop(L, 2);
      if (status != LUA_OK)
        continue;
    }
    if (load_with_return(L, code, starts[k], tail, tail_len, name) == LUA_OK)
      return 1;
  }
  lua_settop(L, 3);
  if (whole == LUA_OK)
    return 1;
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* is_complete(code) -> "complete" | "incomplete" | "invalid" */
static int l_is_complete(lua_State *L) {
  size_t len;
  const char *code = luaL_checklstring(L, 1, &len);
  int status;
  lua_pushcfunction(L, l_load_cell);
  lua_pushvalue(L, 1);
  lua_pushliteral(L, "=cell");
  lua_call(L, 2, 1);
  if (!lua_isnil(L, -1)) {
    lua_pushliteral(L, "complete");
    return 1;
  }
  status = load_text(L, code, len, "=cell");
  lua_pushstring(L, ends_early(L, status) ? "incomplete" : "invalid");
  return 1;
}

/* Results of a cell as a mime bundle: one value through mile.display.bundle
 * (tensors add an HTML table), several as tab-separated text. */
static int l_result_bundle(lua_State *L) {
  int n = lua_gettop(L), i;
  luaL_Buffer b;
  if (n == 1) { /* a failing bundle still leaves the text */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "mile.display");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1) && lua_getfield(L, -1, "bundle") == LUA_TFUNCTION) {
      lua_pushvalue(L, 1);
      if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1))
        return 1;
    }
    lua_settop(L, 1);
  }
  lua_createtable(L, 0, 1);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    if (i > 1)
      luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_setfield(L, -2, "text/plain");
  return 1;
}

/* An error message with traceback (host_msghandler's) as ename, evalue and the
 * traceback's lines, the kernel's own frames left out. */
static json_t *error_content(const char *msg, int was_interrupt) {
  const char *tb = strstr(msg, "\nstack traceback:\n");
  size_t evalue_len = tb != NULL ? (size_t)(tb - msg) : strlen(msg);
  json_t *lines = json_array(), *evalue = json_bytes(msg, evalue_len);
  const char *p = msg;
  while (*p != '\0') {
    const char *eol = strchr(p, '\n');
    size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);
    if (!(n == 12 && strncmp(p, "\t[C]: in ?", 10) == 0) && strncmp(p, "\t[C]: in ?", n) != 0)
      json_array_append_new(lines, json_bytes(p, n));
    p += n + (eol != NULL);
  }
  return json_pack("{s:s, s:o, s:o}", "ename", was_interrupt ? "Interrupted" : "LuaError", "evalue",
                   evalue != NULL ? evalue : json_string(""), "traceback", lines);
}

/* Run fn(args) protected, without the SIGINT hook (kernel work, not user work). */
static int protected_call(lua_State *L, lua_CFunction fn, int nargs, int nres) {
  lua_pushcfunction(L, fn);
  lua_insert(L, -nargs - 1);
  return lua_pcall(L, nargs, nres, 0);
}

/* user_expressions of an execute_request: each evaluated, errors reported. */
static json_t *user_expressions(lua_State *L, json_t *exprs) {
  json_t *out = json_object(), *v;
  const char *key;
  int top = lua_gettop(L);
  json_object_foreach(exprs, key, v) {
    int status;
    if (!json_is_string(v))
      continue;
    lua_pushliteral(L, "return ");
    lua_pushlstring(L, json_string_value(v), json_string_length(v));
    lua_concat(L, 2);
    status = load_text(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=user_expression");
    lua_remove(L, -2); /* stack: function or message */
    if (status == LUA_OK) {
      lua_pushcfunction(L, host_msghandler);
      lua_insert(L, -2);
      cell_running = 1; /* user code: an interrupt stops it */
      status = lua_pcall(L, 0, LUA_MULTRET, top + 1);
      cell_running = 0;
      host_interrupt_clear(L);
      if (status == LUA_OK) {
        int n = lua_gettop(L) - top - 1;
        status = protected_call(L, l_result_bundle, n, 1);
      }
    }
    if (status == LUA_OK && lua_istable(L, -1)) {
      json_object_set_new(out, key, json_pack("{s:s, s:o, s:{}}", "status", "ok", "data",
                                              bundle_to_json(L, -1), "metadata"));
    } else {
      const char *msg = lua_tostring(L, -1);
      json_object_set_new(out, key, error_content(msg != NULL ? msg : "error", 0));
      json_object_set_new(json_object_get(out, key), "status", json_string("error"));
    }
    lua_settop(L, top);
  }
  return out;
}

/* Take the requests already queued on the shell socket when a cell fails, before
 * its reply goes out: the frontend sent them without seeing the failure (run all),
 * so their execute_requests are answered "aborted" (stop_on_error), after the
 * failed cell's reply and idle. A request sent after the reply is run as usual. */
static void hold_queued(void) {
  for (;;) {
    zmq_pollitem_t item = {K.shell, 0, ZMQ_POLLIN, 0};
    message *grown;
    if (zmq_poll(&item, 1, 0) <= 0)
      return;
    if (K.held_n == K.held_cap) {
      size_t cap = K.held_cap ? 2 * K.held_cap : 4;
      if ((grown = realloc(K.held, cap * sizeof *grown)) == NULL)
        return; /* the rest stays queued and runs */
      K.held = grown;
      K.held_cap = cap;
    }
    memset(&K.held[K.held_n], 0, sizeof K.held[0]);
    if (frames_recv(K.shell, &K.held[K.held_n].raw) < 0)
      return;
    if (message_parse(&K.held[K.held_n]) == 0)
      K.held_n++;
    else
      message_free(&K.held[K.held_n]);
  }
}

static void dispatch(message *m, void *sock);

static void release_held(void) {
  size_t i;
  for (i = 0; i < K.held_n; i++) {
    message m = K.held[i];
    if (strcmp(m.type, "execute_request") == 0) {
      K.request = &m;
      publish_status("busy");
      reply(&m, K.shell, "execute_reply", json_pack("{ss si}", "status", "aborted", "execution_count", K.execution_count));
      publish_status("idle");
      K.request = NULL;
    } else {
      dispatch(&m, K.shell);
    }
    message_free(&m);
  }
  K.held_n = 0;
}

static void execute(message *m, void *sock) {
  lua_State *L = K.L;
  json_t *c = m->content, *code = json_object_get(c, "code"), *v;
  int silent = json_is_true(json_object_get(c, "silent"));
  int store = (v = json_object_get(c, "store_history")) != NULL ? json_is_true(v) : 1;
  int stop_on_error = (v = json_object_get(c, "stop_on_error")) != NULL ? json_is_true(v) : 1;
  int top = lua_gettop(L), status, count, was_interrupt;
  char name[48];
  json_t *err = NULL;
  if (!json_is_string(code)) {
    reply(m, sock, "execute_reply",
          json_pack("{ss ss ss s[] si}", "status", "error", "ename", "BadRequest", "evalue",
                    "execute_request without a code string", "traceback", "execution_count", K.execution_count));
    return;
  }
  if (!silent && store)
    K.execution_count++;
  count = K.execution_count;
  K.allow_stdin = json_is_true(json_object_get(c, "allow_stdin"));
  if (!silent)
    publish("execute_input", json_pack("{s:O, s:i}", "code", code, "execution_count", count));
  snprintf(name, sizeof name, "=cell[%d]", count);
  lua_pushlstring(L, json_string_value(code), json_string_length(code));
  lua_pushstring(L, name);
  status = protected_call(L, l_load_cell, 2, 2);
  if (status == LUA_OK && lua_isnil(L, -2)) {
    status = LUA_ERRSYNTAX; /* stack: nil, message */
  } else if (status == LUA_OK) {
    lua_pop(L, 1); /* stack: function */
    lua_pushcfunction(L, host_msghandler);
    lua_insert(L, top + 1);
    interrupted = 0;
    cell_running = 1;
    status = lua_pcall(L, 0, LUA_MULTRET, top + 1);
    cell_running = 0;
    host_interrupt_clear(L);
    lua_remove(L, top + 1); /* the handler */
  }
  was_interrupt = interrupted;
  interrupted = 0;
  flush_streams(1);
  if (status == LUA_OK) {
    int n = lua_gettop(L) - top;
    if (!silent && n > 0) {
      if (protected_call(L, l_result_bundle, n, 1) == LUA_OK && lua_istable(L, -1)) {
        publish("execute_result",
                json_pack("{s:i, s:o, s:{}}", "execution_count", count, "data", bundle_to_json(L, -1), "metadata"));
      } else { /* a __tostring that fails: the cell ran, its value cannot be shown */
        const char *msg = lua_tostring(L, -1);
        const char *shown = lua_pushfstring(L, "error showing the result: %s\n", msg != NULL ? msg : "?");
        stream_write(STREAM_ERR, shown, strlen(shown));
        flush_streams(1);
      }
    }
  } else {
    const char *msg = lua_tostring(L, -1);
    err = error_content(msg != NULL ? msg : "(error object is not a string)", was_interrupt);
    publish("error", json_incref(err));
  }
  lua_settop(L, top);
  if (err != NULL) {
    json_object_set_new(err, "status", json_string("error"));
    json_object_set_new(err, "execution_count", json_integer(count));
    json_object_set_new(err, "user_expressions", json_object());
    if (stop_on_error && sock == K.shell)
      hold_queued();
    reply(m, sock, "execute_reply", err);
    return;
  }
  v = json_object_get(c, "user_expressions");
  reply(m, sock, "execute_reply",
        json_pack("{ss si so s[]}", "status", "ok", "execution_count", count, "user_expressions",
                  json_is_object(v) ? user_expressions(L, v) : json_object(), "payload"));
}

/* ------------------------------------------------------------------------- */
/* Completion, inspection, completeness                                       */
/* ------------------------------------------------------------------------- */

static int compare_json_strings(const void *a, const void *b) {
  return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* File names that complete word (the text after an opening quote), directories
 * with a trailing '/', sorted; hidden files only when asked for. */
static void complete_file_names(const char *word, size_t len, json_t *matches) {
  const char *slash = NULL, *base;
  char dir[4096];
  size_t base_len, i, n = 0;
  json_t **found = NULL;
  struct dirent *e;
  DIR *d;
  for (i = 0; i < len; i++)
    if (word[i] == '/')
      slash = word + i;
  base = slash != NULL ? slash + 1 : word;
  base_len = len - (size_t)(base - word);
  if (slash == word)
    snprintf(dir, sizeof dir, "/");
  else
    snprintf(dir, sizeof dir, "%.*s", slash != NULL ? (int)(slash - word) : 1, slash != NULL ? word : ".");
  if ((d = opendir(dir)) == NULL)
    return;
  while ((e = readdir(d)) != NULL) {
    char path[8192];
    struct stat st;
    json_t **grown;
    if (strncmp(e->d_name, base, base_len) != 0 || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
        (e->d_name[0] == '.' && base_len == 0))
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if ((grown = realloc(found, (n + 1) * sizeof *found)) == NULL)
      break;
    found = grown;
    snprintf(path, sizeof path, "%.*s%s%s", (int)(base - word), word, e->d_name,
             stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? "/" : "");
    if ((found[n] = json_bytes(path, strlen(path))) != NULL)
      n++;
  }
  closedir(d);
  if (n > 0)
    qsort(found, n, sizeof *found, compare_json_strings);
  for (i = 0; i < n; i++)
    json_array_append_new(matches, found[i]);
  free(found);
}

static void complete(const message *m, void *sock) {
  lua_State *L = K.L;
  json_t *code = json_object_get(m->content, "code"), *cursor = json_object_get(m->content, "cursor_pos");
  json_t *matches = json_array();
  const char *s = json_is_string(code) ? json_string_value(code) : "";
  size_t len = json_is_string(code) ? json_string_length(code) : 0, end, start;
  int top = lua_gettop(L);
  end = json_is_integer(cursor) ? kmsg_utf8_offset(s, len, json_integer_value(cursor)) : len;
  if ((start = kmsg_string_start(s, end)) != (size_t)-1) {
    complete_file_names(s + start, end - start, matches);
  } else {
    for (start = end; start > 0 && s[start - 1] != '\0' && strchr(host_completion_breaks, s[start - 1]) == NULL;
         start--)
      ;
    lua_pushlstring(L, s + start, end - start);
    if (host_complete(L, lua_tostring(L, -1)) == LUA_OK) { /* stack: word, candidates */
      lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
      for (i = 1; i <= n; i++) {
        size_t clen;
        const char *cand;
        if (lua_rawgeti(L, -1, i) == LUA_TSTRING) {
          cand = lua_tolstring(L, -1, &clen);
          json_array_append_new(matches, json_bytes(cand, clen));
        }
        lua_pop(L, 1);
      }
    }
    lua_settop(L, top);
  }
  reply(m, sock, "complete_reply",
        json_pack("{s:o, s:I, s:I, s:{}, s:s}", "matches", matches, "cursor_start", kmsg_utf8_count(s, start),
                  "cursor_end", kmsg_utf8_count(s, end), "metadata", "status", "ok"));
}

/* inspect(path) -> help text, or nothing when the path names no value. */
static int l_inspect(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  membox *b;
  if (!host_lookup(L, path, len))
    return 0;
  b = push_membox(L); /* stack: path, value, box */
  fprintf(b->f, "%s\n", path);
  host_help(L, 2, b->f);
  membox_finish(L, b);
  return 1;
}

static void inspect(const message *m, void *sock) {
  lua_State *L = K.L;
  json_t *code = json_object_get(m->content, "code"), *cursor = json_object_get(m->content, "cursor_pos");
  json_t *data = json_object();
  const char *s = json_is_string(code) ? json_string_value(code) : "";
  size_t len = json_is_string(code) ? json_string_length(code) : 0, at, start, end;
  int top = lua_gettop(L), found = 0;
  at = json_is_integer(cursor) ? kmsg_utf8_offset(s, len, json_integer_value(cursor)) : len;
  kmsg_inspect_span(s, len, at, &start, &end);
  if (end > start) {
    lua_pushlstring(L, s + start, end - start);
    if (protected_call(L, l_inspect, 1, 1) == LUA_OK && lua_isstring(L, -1)) {
      size_t n;
      const char *text = lua_tolstring(L, -1, &n);
      json_object_set_new(data, "text/plain", json_bytes(text, n));
      found = 1;
    }
    lua_settop(L, top);
  }
  reply(m, sock, "inspect_reply",
        json_pack("{s:s, s:b, s:o, s:{}}", "status", "ok", "found", found, "data", data, "metadata"));
}

static void is_complete(const message *m, void *sock) {
  lua_State *L = K.L;
  json_t *code = json_object_get(m->content, "code");
  const char *verdict = "unknown";
  int top = lua_gettop(L);
  if (json_is_string(code)) {
    lua_pushlstring(L, json_string_value(code), json_string_length(code));
    if (protected_call(L, l_is_complete, 1, 1) == LUA_OK && lua_isstring(L, -1)) {
      const char *v = lua_tostring(L, -1);
      verdict = strcmp(v, "complete") == 0 ? "complete" : strcmp(v, "incomplete") == 0 ? "incomplete" : "invalid";
    }
    lua_settop(L, top);
  }
  if (strcmp(verdict, "incomplete") == 0)
    reply(m, sock, "is_complete_reply", json_pack("{ss ss}", "status", verdict, "indent", "  "));
  else
    reply(m, sock, "is_complete_reply", json_pack("{ss}", "status", verdict));
}

/* ------------------------------------------------------------------------- */
/* Requests                                                                   */
/* ------------------------------------------------------------------------- */

static void kernel_info(const message *m, void *sock) {
  const char *version = strncmp(LUA_RELEASE, "Lua ", 4) == 0 ? LUA_RELEASE + 4 : LUA_RELEASE;
  char banner[128];
  snprintf(banner, sizeof banner, "mile %s (%s)\nhelp() for what the kernel offers", MILE_VERSION_STRING, LUA_RELEASE);
  reply(m, sock, "kernel_info_reply",
        json_pack("{ss ss ss ss s{ss ss ss ss ss ss} ss s[] sb}", "status", "ok", "protocol_version", PROTOCOL_VERSION,
                  "implementation", "mile", "implementation_version", MILE_VERSION_STRING, "language_info", "name",
                  "lua", "version", version, "mimetype", "text/x-lua", "file_extension", ".lua", "pygments_lexer",
                  "lua", "codemirror_mode", "lua", "banner", banner, "help_links", "debugger", 0));
}

static void shutdown_request(const message *m, void *sock) {
  int restart = json_is_true(json_object_get(m->content, "restart"));
  json_t *content = json_pack("{ss sb}", "status", "ok", "restart", restart);
  publish("shutdown_reply", json_incref(content)); /* older frontends listen on iopub */
  reply(m, sock, "shutdown_reply", content);
  K.shutdown = 1;
}

/* Answer one request (replies go back on sock), between busy and idle. */
static void dispatch(message *m, void *sock) {
  const char *type = m->type;
  K.request = m;
  publish_status("busy");
  if (strcmp(type, "execute_request") == 0)
    execute(m, sock);
  else if (strcmp(type, "kernel_info_request") == 0)
    kernel_info(m, sock);
  else if (strcmp(type, "complete_request") == 0)
    complete(m, sock);
  else if (strcmp(type, "inspect_request") == 0)
    inspect(m, sock);
  else if (strcmp(type, "is_complete_request") == 0)
    is_complete(m, sock);
  else if (strcmp(type, "shutdown_request") == 0)
    shutdown_request(m, sock);
  else if (strcmp(type, "interrupt_request") == 0) /* nothing runs while we are here */
    reply(m, sock, "interrupt_reply", json_pack("{ss}", "status", "ok"));
  else if (strcmp(type, "history_request") == 0)
    reply(m, sock, "history_reply", json_pack("{ss s[]}", "status", "ok", "history"));
  else if (strcmp(type, "comm_info_request") == 0)
    reply(m, sock, "comm_info_reply", json_pack("{ss s{}}", "status", "ok", "comms"));
  else if (strncmp(type, "comm_", 5) != 0) /* comms (widgets) are not offered: ignored quietly */
    log_line("ignored a message of type '%s'", type);
  flush_streams(1); /* output of finalizers that ran in the meantime */
  publish_status("idle");
  K.request = NULL;
}

static void handle(void *sock) {
  message m;
  memset(&m, 0, sizeof m);
  if (frames_recv(sock, &m.raw) < 0)
    return;
  if (message_parse(&m) == 0)
    dispatch(&m, sock);
  message_free(&m);
}

/* ------------------------------------------------------------------------- */
/* Threads                                                                    */
/* ------------------------------------------------------------------------- */

static void *heartbeat_main(void *arg) {
  (void)arg;
  zmq_proxy(K.heartbeat, K.heartbeat, NULL); /* returns when the context ends */
  zmq_close(K.heartbeat);
  return NULL;
}

/* Interrupts are answered here, whatever the main thread is doing; the rest goes
 * to the main thread through the pair, and its replies come back the same way. An
 * empty one-part message on the pair means stop. */
static void *control_main(void *arg) {
  zmq_pollitem_t items[2];
  (void)arg;
  items[0].socket = K.control;
  items[1].socket = K.control_thread_pair;
  items[0].events = items[1].events = ZMQ_POLLIN;
  items[0].fd = items[1].fd = 0;
  for (;;) {
    if (zmq_poll(items, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      frames f;
      int stop;
      if (frames_recv(K.control_thread_pair, &f) < 0)
        break;
      stop = f.n == 1 && zmq_msg_size(&f.part[0]) == 0;
      if (!stop)
        frames_send(K.control, &f, 0, f.n, 0);
      frames_free(&f);
      if (stop)
        break;
    }
    if (items[0].revents & ZMQ_POLLIN) {
      message m;
      memset(&m, 0, sizeof m);
      if (frames_recv(K.control, &m.raw) < 0)
        break;
      if (message_parse(&m) == 0) {
        if (strcmp(m.type, "interrupt_request") == 0) {
          pthread_kill(K.main_thread, SIGINT);
          reply(&m, K.control, "interrupt_reply", json_pack("{ss}", "status", "ok"));
        } else {
          frames_send(K.control_thread_pair, &m.raw, 0, m.raw.n, 0);
        }
      }
      message_free(&m);
    }
  }
  zmq_close(K.control);
  zmq_close(K.control_thread_pair);
  return NULL;
}

/* ------------------------------------------------------------------------- */
/* Start and stop                                                             */
/* ------------------------------------------------------------------------- */

typedef struct {
  char transport[16], ip[256];
  int port[5]; /* shell, iopub, stdin, control, hb */
} connection;

static const char *const port_names[5] = {"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"};

/* Read the connection file; returns NULL or why it cannot be used. */
static const char *read_connection(const char *path, connection *c) {
  static char why[512];
  json_error_t jerr;
  json_t *j = json_load_file(path, 0, &jerr), *v;
  const char *scheme, *key;
  int i;
  if (j == NULL) {
    snprintf(why, sizeof why, "%s:%d: %s", path, jerr.line, jerr.text);
    return why;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    return "the connection file does not hold a JSON object";
  }
  snprintf(c->transport, sizeof c->transport, "%s",
           json_is_string(v = json_object_get(j, "transport")) ? json_string_value(v) : "tcp");
  snprintf(c->ip, sizeof c->ip, "%s", json_is_string(v = json_object_get(j, "ip")) ? json_string_value(v) : "127.0.0.1");
  for (i = 0; i < 5; i++) {
    v = json_object_get(j, port_names[i]);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535) {
      snprintf(why, sizeof why, "%s: '%s' is missing or not a port number", path, port_names[i]);
      json_decref(j);
      return why;
    }
    c->port[i] = (int)json_integer_value(v);
  }
  key = json_is_string(v = json_object_get(j, "key")) ? json_string_value(v) : "";
  scheme = json_is_string(v = json_object_get(j, "signature_scheme")) ? json_string_value(v) : "hmac-sha256";
  if (key[0] != '\0' && strcmp(scheme, "hmac-sha256") != 0) {
    snprintf(why, sizeof why, "%s: signature scheme '%.100s' is not supported (only hmac-sha256)", path, scheme);
    json_decref(j);
    return why;
  }
  K.key_len = strlen(key);
  K.key = (unsigned char *)strdup(key);
  json_decref(j);
  if (K.key == NULL)
    return "not enough memory";
  if (strcmp(c->transport, "tcp") != 0 && strcmp(c->transport, "ipc") != 0)
    return "the transport must be tcp or ipc";
  return NULL;
}

static void *open_socket(int type, const connection *c, int which, const char **why) {
  static char msg[600];
  char endpoint[400];
  int linger = LINGER_MS;
  void *s = zmq_socket(K.ctx, type);
  if (s == NULL) {
    *why = zmq_strerror(errno);
    return NULL;
  }
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  if (type == ZMQ_PAIR) { /* which: 0 binds, 1 connects */
    if ((which == 0 ? zmq_bind(s, "inproc://mile-control") : zmq_connect(s, "inproc://mile-control")) == 0)
      return s;
  } else {
    if (strcmp(c->transport, "ipc") == 0)
      snprintf(endpoint, sizeof endpoint, "ipc://%s-%d", c->ip, c->port[which]);
    else
      snprintf(endpoint, sizeof endpoint, "tcp://%s:%d",
               strcmp(c->ip, "0.0.0.0") == 0 ? "*" : c->ip, c->port[which]);
    if (zmq_bind(s, endpoint) == 0)
      return s;
    snprintf(msg, sizeof msg, "cannot bind %s: %s", endpoint, zmq_strerror(errno));
  }
  *why = type == ZMQ_PAIR ? zmq_strerror(errno) : msg;
  zmq_close(s);
  return NULL;
}

/* Sockets and threads; SIGINT is blocked while the threads start so that they
 * never take it (libzmq blocks signals in its own threads). */
static const char *start(const connection *c) {
  const char *why = NULL;
  sigset_t block, old;
  int ok;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  K.main_thread = pthread_self();
  ok = (K.ctx = zmq_ctx_new()) != NULL;
  if (!ok)
    why = "cannot create a ZeroMQ context";
  ok = ok && (K.shell = open_socket(ZMQ_ROUTER, c, 0, &why)) != NULL;
  ok = ok && (K.iopub = open_socket(ZMQ_PUB, c, 1, &why)) != NULL;
  ok = ok && (K.stdin_sock = open_socket(ZMQ_ROUTER, c, 2, &why)) != NULL;
  ok = ok && (K.control = open_socket(ZMQ_ROUTER, c, 3, &why)) != NULL;
  ok = ok && (K.heartbeat = open_socket(ZMQ_ROUTER, c, 4, &why)) != NULL;
  ok = ok && (K.control_pair = open_socket(ZMQ_PAIR, c, 0, &why)) != NULL;
  ok = ok && (K.control_thread_pair = open_socket(ZMQ_PAIR, c, 1, &why)) != NULL;
  if (ok && pthread_create(&K.heartbeat_thread, NULL, heartbeat_main, NULL) == 0)
    K.heartbeat_started = 1;
  else if (ok)
    ok = 0, why = "cannot start the heartbeat thread";
  if (ok && pthread_create(&K.control_thread, NULL, control_main, NULL) == 0)
    K.control_started = 1;
  else if (ok)
    ok = 0, why = "cannot start the control thread";
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return ok ? NULL : why;
}

/* Close everything start() opened, whatever state it reached. The threads close
 * their own sockets; zmq_ctx_term ends the heartbeat thread's proxy and waits (up
 * to LINGER_MS) for the last replies to leave. */
static void stop(void) {
  if (K.control_started) {
    send_part(K.control_pair, "", 0, 0);
    pthread_join(K.control_thread, NULL);
  } else {
    if (K.control != NULL)
      zmq_close(K.control);
    if (K.control_thread_pair != NULL)
      zmq_close(K.control_thread_pair);
  }
  if (!K.heartbeat_started && K.heartbeat != NULL)
    zmq_close(K.heartbeat);
  if (K.shell != NULL)
    zmq_close(K.shell);
  if (K.iopub != NULL)
    zmq_close(K.iopub);
  if (K.stdin_sock != NULL)
    zmq_close(K.stdin_sock);
  if (K.control_pair != NULL)
    zmq_close(K.control_pair);
  if (K.ctx != NULL)
    while (zmq_ctx_term(K.ctx) < 0 && errno == EINTR)
      ;
  if (K.heartbeat_started)
    pthread_join(K.heartbeat_thread, NULL);
}

int host_kernel(lua_State *L, const char *connection_file) {
  connection c;
  struct sigaction sa, old_sa;
  const char *why;
  int devnull, s, status;
  memset(&K, 0, sizeof K);
  K.L = L;
  K.pending = -1;
  json_object_seed(0); /* before any thread makes objects */
  memset(&c, 0, sizeof c);
  why = read_connection(connection_file, &c);
  if (why == NULL && (K.mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
    why = "OpenSSL offers no HMAC";
  if (why == NULL)
    why = start(&c);
  if (why == NULL) {
    lua_pushcfunction(L, l_install);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
      why = lua_tostring(L, -1);
      log_line("%s", why != NULL ? why : "cannot set up Lua");
      lua_pop(L, 1);
      why = "cannot set up the Lua side";
    }
  }
  if (why != NULL) {
    fprintf(stderr, "%s: kernel: %s\n", host_progname != NULL ? host_progname : "mile", why);
    fflush(stderr);
    stop();
    EVP_MAC_free(K.mac);
    free(K.key);
    return 1;
  }
  new_uuid(K.session);
  clock_gettime(CLOCK_MONOTONIC, &K.last_flush);
  /* cells read input through input_request; C-level reads of stdin see its end */
  if ((devnull = open("/dev/null", O_RDONLY)) >= 0) {
    dup2(devnull, STDIN_FILENO);
    close(devnull);
  }
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_sa); /* no SA_RESTART: a blocking read in a cell ends */
  host_load_mile_global(L);
  publish_status("starting");
  while (!K.shutdown) {
    zmq_pollitem_t items[2];
    if (K.held_n > 0) {
      release_held();
      continue;
    }
    items[0].socket = K.control_pair;
    items[1].socket = K.shell;
    items[0].events = items[1].events = ZMQ_POLLIN;
    items[0].fd = items[1].fd = 0;
    if (zmq_poll(items, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (items[0].revents & ZMQ_POLLIN) /* control before shell */
      handle(K.control_pair);
    else if (items[1].revents & ZMQ_POLLIN)
      handle(K.shell);
  }
  flush_streams(1);
  sigaction(SIGINT, &old_sa, NULL);
  lua_pushcfunction(L, l_uninstall);
  status = lua_pcall(L, 0, 0, 0);
  if (status != LUA_OK)
    lua_pop(L, 1);
  stop();
  for (s = 0; s < 2; s++)
    free(K.stream[s].buf);
  for (; K.held_n > 0; K.held_n--) /* a shutdown came first */
    message_free(&K.held[K.held_n - 1]);
  free(K.held);
  EVP_MAC_free(K.mac);
  free(K.key);
  memset(&K, 0, sizeof K);
  return 0;
}
