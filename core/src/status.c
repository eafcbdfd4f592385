/* status.c - the thread-local error message behind mile_last_error(). */
#include <stdarg.h>
#include <stdio.h>

#include "mile/status.h"

static _Thread_local char last_error[512];

const char *mile_last_error(void) { return last_error; }

mile_status mile_set_error(mile_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

const char *mile_status_name(mile_status status) {
  static const char *const names[] = {"ok", "argument", "shape", "dtype", "nomem",
                                      "range", "io", "format", "state", "callback"};
  if ((unsigned)status < sizeof names / sizeof names[0]) return names[status];
  return "unknown";
}

const char *mile_version(void) { return MILE_VERSION_STRING; }
