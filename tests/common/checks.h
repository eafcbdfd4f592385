/* checks.h - status assertions shared by every cmocka test of mile's C code.
 * Include after <cmocka.h> and "mile/mile.h". */
#ifndef MILE_TEST_CHECKS_H
#define MILE_TEST_CHECKS_H

#include <string.h>

/* A call that must succeed. */
#define OK(expr)                                                                                 \
  do {                                                                                           \
    mile_status ok_status_ = (expr);                                                             \
    if (ok_status_ != MILE_OK)                                                                   \
      fail_msg("%s returned %s: %s", #expr, mile_status_name(ok_status_), mile_last_error());     \
  } while (0)

/* A call that must fail with `code` and leave a message (cleared before the call). */
#define EXPECT_ERR(code, expr) EXPECT_ERR_MSG(code, "", expr)

/* A call that must fail with `code` and a message containing `part`. */
#define EXPECT_ERR_MSG(code, part, expr)                                                         \
  do {                                                                                           \
    mile_set_error(MILE_OK, "%s", "");                                                           \
    mile_status err_status_ = (expr);                                                            \
    if (err_status_ != (code))                                                                   \
      fail_msg("%s returned %s, expected %s (message: %s)", #expr, mile_status_name(err_status_), \
               mile_status_name(code), mile_last_error());                                       \
    if (mile_last_error()[0] == '\0') fail_msg("%s: no error message", #expr);                   \
    if (!strstr(mile_last_error(), (part)))                                                      \
      fail_msg("%s: message \"%s\" lacks \"%s\"", #expr, mile_last_error(), (part));             \
  } while (0)

#endif
