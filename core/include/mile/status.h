/* mile/status.h - status codes, error messages and export macros shared by the core.
 *
 * Every public function of the core that can fail returns a mile_status (or NULL)
 * and leaves a human-readable message in a thread-local buffer read by
 * mile_last_error(). The core never aborts, exits or prints. */
#ifndef MILE_STATUS_H
#define MILE_STATUS_H

#ifndef MILE_CDEF
#include <stddef.h>
#include <stdint.h>
#endif

#if defined(MILE_CDEF)
#define MILE_API
#elif defined(MILE_BUILDING_CORE)
#define MILE_API __attribute__((visibility("default")))
#else
#define MILE_API
#endif

typedef enum mile_status {
  MILE_OK = 0,
  MILE_ERR_ARGUMENT = 1, /* a wrong value: bad dim, negative size, NULL handle */
  MILE_ERR_SHAPE = 2,    /* shapes that do not match or broadcast */
  MILE_ERR_DTYPE = 3,    /* dtypes that do not match */
  MILE_ERR_NOMEM = 4,    /* an allocation failed */
  MILE_ERR_RANGE = 5,    /* an index out of range */
  MILE_ERR_IO = 6,       /* a file could not be opened, read or written */
  MILE_ERR_FORMAT = 7,   /* a file or buffer is malformed */
  MILE_ERR_STATE = 8,    /* an object is in the wrong state (graph freed, ...) */
  MILE_ERR_CALLBACK = 9  /* a user callback (custom autograd op) failed */
} mile_status;

/* The message of the last failure on this thread ("" when none). Never NULL. */
MILE_API const char *mile_last_error(void);

/* Set the thread's error message (printf-style) and return `status`. Used by the core
 * and by callbacks that report failures back into it. */
MILE_API mile_status mile_set_error(mile_status status, const char *fmt, ...);

/* A short name for a status code ("shape", "nomem", ...). */
MILE_API const char *mile_status_name(mile_status status);

/* The library's version string, e.g. "0.1.0". */
MILE_API const char *mile_version(void);

#endif
