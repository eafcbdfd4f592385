/* teleop.c - the HTTP + WebSocket server of `mile teleop` on libwebsockets (teleop.h).
 *
 * libwebsockets parses HTTP and WebSocket framing; this file decides who may connect
 * (the token), what the page is, and what each browser is sent. One protocol handles
 * both the HTTP request for the page and the WebSocket. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "teleop.h"

typedef struct msg { /* a queued text message, LWS_PRE bytes of headroom first */
  struct msg *next;
  size_t len;
  unsigned char buf[];
} msg;

typedef struct event_node {
  struct event_node *next;
  mile_teleop_event ev;
} event_node;

typedef struct session { /* lws allocates one per connection (per_session_data) */
  struct session *next;  /* the server's list of WebSockets */
  struct lws *wsi;
  int id;           /* 0 until the WebSocket is established */
  msg *head, *tail; /* text queue */
  int queued;
  unsigned long frame_sent; /* sequence number of the last frame sent */
  unsigned char *rx;        /* a fragmented message being received */
  size_t rx_len;
  int rx_bad;    /* the message being received is refused: 1 too long, 2 binary */
  int http_page; /* HTTP: the page is due in the next HTTP_WRITEABLE */
} session;

struct mile_teleop {
  struct lws_context *ctx;
  int port;
  char *token;
  unsigned char *page; /* LWS_PRE headroom, then the page */
  size_t page_len;
  session *sessions;
  int clients, next_id;
  unsigned char *frame; /* LWS_PRE headroom, then the latest frame */
  size_t frame_len, frame_cap;
  unsigned long frame_seq;
  long frames_dropped;
  event_node *ev_head, *ev_tail;
  int events;
  int closing;
};

static mile_teleop *server_of(struct lws *wsi) { return lws_context_user(lws_get_context(wsi)); }

static void push_event(mile_teleop *s, mile_teleop_event_kind kind, int client, const char *text, size_t len) {
  if (s->closing || s->events >= MILE_TELEOP_MAX_EVENTS) return; /* the caller stopped reading: drop */
  event_node *n = calloc(1, sizeof *n);
  if (!n) return;
  if (text) {
    n->ev.text = malloc(len + 1);
    if (!n->ev.text) {
      free(n);
      return;
    }
    memcpy(n->ev.text, text, len);
    n->ev.text[len] = '\0';
    n->ev.len = len;
  }
  n->ev.kind = kind;
  n->ev.client = client;
  if (s->ev_tail)
    s->ev_tail->next = n;
  else
    s->ev_head = n;
  s->ev_tail = n;
  s->events++;
}

/* The token in the request's query string equals the session's (compared in time
 * independent of where they differ). */
static int token_ok(mile_teleop *s, struct lws *wsi) {
  char buf[256];
  const char *v = lws_get_urlarg_by_name(wsi, "token=", buf, (int)sizeof buf);
  if (!v) return 0;
  size_t a = strlen(v), b = strlen(s->token);
  unsigned char diff = (unsigned char)(a != b);
  for (size_t i = 0; i < a && i < b; i++)
    diff |= (unsigned char)(v[i] ^ s->token[i]);
  return diff == 0;
}

static void session_free_queue(session *ss) {
  for (msg *m = ss->head, *next; m; m = next) {
    next = m->next;
    free(m);
  }
  ss->head = ss->tail = NULL;
  ss->queued = 0;
  free(ss->rx);
  ss->rx = NULL;
  ss->rx_len = 0;
}

static void unlink_session(mile_teleop *s, session *ss) {
  for (session **p = &s->sessions; *p; p = &(*p)->next)
    if (*p == ss) {
      *p = ss->next;
      s->clients--;
      return;
    }
}

/* One complete message (or a refusal) from a browser. */
static void receive(mile_teleop *s, session *ss, const void *in, size_t len, int binary, int final) {
  if (binary) ss->rx_bad = 2;
  if (!ss->rx_bad && ss->rx_len + len > MILE_TELEOP_MAX_MESSAGE) ss->rx_bad = 1;
  if (!ss->rx_bad && len > 0) {
    unsigned char *grown = realloc(ss->rx, ss->rx_len + len);
    if (!grown) {
      ss->rx_bad = 1;
    } else {
      ss->rx = grown;
      memcpy(ss->rx + ss->rx_len, in, len);
      ss->rx_len += len;
    }
  }
  if (!final) return;
  if (ss->rx_bad == 1)
    push_event(s, MILE_TELEOP_MALFORMED, ss->id, "message longer than 64 KiB", 26);
  else if (ss->rx_bad == 2)
    push_event(s, MILE_TELEOP_MALFORMED, ss->id, "binary message (the page sends text)", 36);
  else
    push_event(s, MILE_TELEOP_MESSAGE, ss->id, ss->rx ? (const char *)ss->rx : "", ss->rx_len);
  free(ss->rx);
  ss->rx = NULL;
  ss->rx_len = 0;
  ss->rx_bad = 0;
}

/* Send one pending thing to a WebSocket: the oldest text message, else the latest
 * frame if this browser has not had it. Asks to be called again while more waits. */
static int write_next(mile_teleop *s, session *ss) {
  if (ss->head) {
    msg *m = ss->head;
    ss->head = m->next;
    if (!ss->head) ss->tail = NULL;
    ss->queued--;
    int n = lws_write(ss->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
    free(m);
    if (n < 0) return -1;
  } else if (s->frame && ss->frame_sent != s->frame_seq) {
    ss->frame_sent = s->frame_seq;
    if (lws_write(ss->wsi, s->frame + LWS_PRE, s->frame_len, LWS_WRITE_BINARY) < 0) return -1;
  }
  if (ss->head || (s->frame && ss->frame_sent != s->frame_seq)) lws_callback_on_writable(ss->wsi);
  return 0;
}

static int serve_http(mile_teleop *s, session *ss, struct lws *wsi, const char *path) {
  if (strcmp(path, "/") != 0 && strcmp(path, "/index.html") != 0) {
    if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL)) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  }
  if (!token_ok(s, wsi)) {
    if (lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "wrong or missing token")) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  }
  unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
  if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/html; charset=utf-8", s->page_len, &p, end)) return 1;
  if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:", (const unsigned char *)"no-store", 8,
                                  &p, end))
    return 1;
  if (lws_finalize_write_http_header(wsi, start, &p, end)) return 1;
  ss->http_page = 1;
  lws_callback_on_writable(wsi);
  return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
  mile_teleop *s = server_of(wsi);
  session *ss = user;
  switch (reason) {
  case LWS_CALLBACK_HTTP:
    return serve_http(s, ss, wsi, in ? (const char *)in : "");
  case LWS_CALLBACK_HTTP_WRITEABLE:
    if (!ss || !ss->http_page) break;
    ss->http_page = 0;
    if (lws_write(wsi, s->page + LWS_PRE, s->page_len, LWS_WRITE_HTTP_FINAL) < 0) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    if (token_ok(s, wsi)) return 0;
    if (lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "wrong or missing token")) return -1;
    return 1; /* rejected with a response of our own */
  case LWS_CALLBACK_ESTABLISHED:
    memset(ss, 0, sizeof *ss);
    ss->wsi = wsi;
    ss->id = ++s->next_id;
    ss->frame_sent = s->frame_seq - 1; /* the latest frame (the state a paused episode waits in) */
    ss->next = s->sessions;
    s->sessions = ss;
    s->clients++;
    push_event(s, MILE_TELEOP_CONNECT, ss->id, NULL, 0);
    break;
  case LWS_CALLBACK_CLOSED:
    if (ss && ss->id) {
      unlink_session(s, ss);
      session_free_queue(ss);
      push_event(s, MILE_TELEOP_DISCONNECT, ss->id, NULL, 0);
      ss->id = 0;
    }
    break;
  case LWS_CALLBACK_RECEIVE:
    if (ss && ss->id) receive(s, ss, in, len, lws_frame_is_binary(wsi), lws_is_final_fragment(wsi));
    break;
  case LWS_CALLBACK_SERVER_WRITEABLE:
    if (ss && ss->id && !s->closing) return write_next(s, ss);
    break;
  default:
    break;
  }
  return 0;
}

static const struct lws_protocols protocols[] = {
    {"mile-teleop", callback, sizeof(session), 65536, 0, NULL, 4 << 20}, /* one send() per frame */
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* lws logs only errors, on stderr, marked as coming from mile teleop. */
static void log_line(int level, const char *line) {
  (void)level;
  fprintf(stderr, "mile teleop: libwebsockets: %s", line);
}

int mile_teleop_create(mile_teleop **out, const char *bind, int port, const char *token, const char *page,
                       size_t page_len, char *err, size_t errlen) {
  *out = NULL;
  mile_teleop *s = calloc(1, sizeof *s);
  if (!s || !(s->token = strdup(token)) || !(s->page = malloc(LWS_PRE + page_len + 1))) {
    snprintf(err, errlen, "out of memory");
    mile_teleop_destroy(s);
    return -1;
  }
  memcpy(s->page + LWS_PRE, page, page_len);
  s->page_len = page_len;
  lws_set_log_level(LLL_ERR, log_line);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = port;
  info.iface = bind && *bind ? bind : NULL;
  info.protocols = protocols;
  info.user = s;
  info.gid = -1;
  info.uid = -1;
  info.pt_serv_buf_size = 1 << 20; /* lws drains buffered output this much per service: a frame in one go */
  if (bind && strchr(bind, '.') && !strchr(bind, ':')) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  s->ctx = lws_create_context(&info);
  if (!s->ctx) {
    snprintf(err, errlen, "cannot listen on %s:%d (address in use, or not an address of this machine?)",
             bind && *bind ? bind : "*", port);
    mile_teleop_destroy(s);
    return -1;
  }
  struct lws_vhost *vh = lws_get_vhost_by_name(s->ctx, "default");
  s->port = vh ? lws_get_vhost_listen_port(vh) : port;
  *out = s;
  return 0;
}

void mile_teleop_destroy(mile_teleop *s) {
  if (!s) return;
  s->closing = 1;
  if (s->ctx) {
    lws_context_destroy(s->ctx); /* CLOSED callbacks free the sessions' queues */
  }
  mile_teleop_event ev;
  while (mile_teleop_next_event(s, &ev))
    free(ev.text);
  free(s->token);
  free(s->page);
  free(s->frame);
  free(s);
}

int mile_teleop_port(const mile_teleop *s) { return s->port; }

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* lws_service(ctx, -1) serves what is ready without waiting. Waiting is ours, in
 * steps of at most 1 ms: Debian's lws has no external-poll hooks to learn its sockets,
 * and its own wait (lws_service(ctx, 0)) does not end at a scheduled timer here. */
int mile_teleop_service(mile_teleop *s, int timeout_ms) {
  double deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  for (;;) {
    lws_service(s->ctx, -1);
    if (s->events) break;
    double remaining = deadline - now_ms();
    if (remaining <= 0) break;
    struct timespec ts = {0, remaining < 1.0 ? (long)(remaining * 1e6) : 1000000L};
    nanosleep(&ts, NULL);
  }
  return s->events;
}

int mile_teleop_next_event(mile_teleop *s, mile_teleop_event *ev) {
  event_node *n = s->ev_head;
  if (!n) return 0;
  s->ev_head = n->next;
  if (!s->ev_head) s->ev_tail = NULL;
  s->events--;
  *ev = n->ev;
  free(n);
  return 1;
}

static int queue_text(session *ss, const char *text, size_t len) {
  msg *m = malloc(sizeof *m + LWS_PRE + len);
  if (!m) return -1;
  m->next = NULL;
  m->len = len;
  memcpy(m->buf + LWS_PRE, text, len);
  if (ss->queued >= MILE_TELEOP_MAX_QUEUE) { /* a browser that stopped reading */
    msg *old = ss->head;
    ss->head = old->next;
    if (!ss->head) ss->tail = NULL;
    ss->queued--;
    free(old);
  }
  if (ss->tail)
    ss->tail->next = m;
  else
    ss->head = m;
  ss->tail = m;
  ss->queued++;
  lws_callback_on_writable(ss->wsi);
  return 0;
}

int mile_teleop_send_text(mile_teleop *s, int client, const char *text, size_t len) {
  int n = 0;
  for (session *ss = s->sessions; ss; ss = ss->next)
    if (client == 0 || ss->id == client) {
      if (queue_text(ss, text, len)) return -1;
      n++;
    }
  return n;
}

int mile_teleop_send_frame(mile_teleop *s, const void *data, size_t len) {
  if (LWS_PRE + len > s->frame_cap) {
    unsigned char *grown = realloc(s->frame, LWS_PRE + len);
    if (!grown) return -1;
    s->frame = grown;
    s->frame_cap = LWS_PRE + len;
  }
  for (session *ss = s->sessions; ss; ss = ss->next)
    if (s->frame_len && ss->frame_sent != s->frame_seq) s->frames_dropped++; /* never sent to this one */
  memcpy(s->frame + LWS_PRE, data, len);
  s->frame_len = len;
  s->frame_seq++;
  for (session *ss = s->sessions; ss; ss = ss->next)
    lws_callback_on_writable(ss->wsi);
  return 0;
}

int mile_teleop_clients(const mile_teleop *s) { return s->clients; }
long mile_teleop_frames_dropped(const mile_teleop *s) { return s->frames_dropped; }
