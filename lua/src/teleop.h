/* teleop.h - the HTTP + WebSocket server of `mile teleop` (libwebsockets), no Lua.
 *
 * One page (given as bytes) is served at "/" to requests that carry the session's
 * token (?token=...); the page's WebSocket (any path, same token) joins the session.
 * A request without the token, or with a wrong one, gets HTTP 403, page and WebSocket
 * alike. Everything runs on the caller's thread: mile_teleop_service() runs the event
 * loop for a while; nothing happens between calls (connections wait in the kernel).
 *
 * Messages to browsers: text (queued per browser, in order) and frames (binary; only
 * the latest frame is kept, so a slow browser skips frames instead of slowing the
 * caller). Messages from browsers arrive as events. */
#ifndef MILE_TELEOP_H
#define MILE_TELEOP_H

#include <stddef.h>

typedef struct mile_teleop mile_teleop;

typedef enum mile_teleop_event_kind {
  MILE_TELEOP_CONNECT = 1,    /* a browser opened the WebSocket */
  MILE_TELEOP_DISCONNECT = 2, /* its WebSocket closed */
  MILE_TELEOP_MESSAGE = 3,    /* a text message (text, len) */
  MILE_TELEOP_MALFORMED = 4,  /* a message refused by the server (text: why) */
} mile_teleop_event_kind;

/* An event popped by mile_teleop_next_event. text is owned by the caller (free()),
 * NUL-terminated, NULL for CONNECT/DISCONNECT. client: the browser's id (1, 2, ...). */
typedef struct mile_teleop_event {
  mile_teleop_event_kind kind;
  int client;
  char *text;
  size_t len;
} mile_teleop_event;

enum { MILE_TELEOP_MAX_MESSAGE = 65536, MILE_TELEOP_MAX_QUEUE = 256, MILE_TELEOP_MAX_EVENTS = 4096 };

/* Start listening on bind:port (port 0: a free port) and keep a copy of token and
 * page. Returns 0, or -1 with a message in err (errlen bytes, NUL-terminated). */
int mile_teleop_create(mile_teleop **out, const char *bind, int port, const char *token, const char *page,
                       size_t page_len, char *err, size_t errlen);

/* Stop listening, close every connection, free everything. NULL-safe. */
void mile_teleop_destroy(mile_teleop *s);

/* The port the server listens on. */
int mile_teleop_port(const mile_teleop *s);

/* Run the event loop until an event is queued or timeout_ms have passed (0: serve
 * what is pending and return). Returns the number of queued events. */
int mile_teleop_service(mile_teleop *s, int timeout_ms);

/* Pop the oldest event into ev; returns 1, or 0 when there is none. */
int mile_teleop_next_event(mile_teleop *s, mile_teleop_event *ev);

/* Queue a text message for one browser (client > 0) or all (client 0). A browser
 * that has MILE_TELEOP_MAX_QUEUE messages waiting loses its oldest. Returns the
 * number of browsers it was queued for, -1 when out of memory. */
int mile_teleop_send_text(mile_teleop *s, int client, const char *text, size_t len);

/* Make data the latest frame (binary message) for every browser; a browser still
 * sending an older one gets this one next and never the ones in between. Returns 0,
 * -1 when out of memory. */
int mile_teleop_send_frame(mile_teleop *s, const void *data, size_t len);

/* Number of open WebSockets; frames and messages dropped so far (all browsers). */
int mile_teleop_clients(const mile_teleop *s);
long mile_teleop_frames_dropped(const mile_teleop *s);

#endif
