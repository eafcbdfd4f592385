/* fuzz_kernel_message.c - libFuzzer harness of the Jupyter kernel's message reader
 * (lua/host/kernel_message.c): what a client on the shell, control or stdin socket
 * controls.
 *
 * Input: one mode byte, then the message's parts separated by "\n--\n". Mode bit 0:
 * the connection has a key (else the unsigned mode); bit 1: the harness writes the
 * right signature into the part after the delimiter, so that the JSON parts are
 * reached with a key too. A message that parses has its content's "code" and
 * "cursor_pos" put through the cursor arithmetic of complete_request and
 * inspect_request, whose results must stay inside the code. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_message.h"

enum { MAX_PARTS = 64 };
#define SEP "\n--\n"

static EVP_MAC *mac;

static void check_cursor(const char *s, size_t len, json_int_t cursor) {
  size_t at = kmsg_utf8_offset(s, len, cursor), start, end;
  if (at > len) abort();
  size_t open = kmsg_string_start(s, at);
  if (open != (size_t)-1 && open > at) abort();
  kmsg_inspect_span(s, len, at, &start, &end);
  if (start > end || end > len) abort();
  if (kmsg_utf8_count(s, at) > kmsg_utf8_count(s, len)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const unsigned char key[] = "a1b2c3d4-fuzz-key";
  const void *part[MAX_PARTS];
  size_t len[MAX_PARTS], n = 0, i;
  char hex[65], *copy;
  const char *why = NULL;
  kmsg m;
  if (size < 1) return 0;
  if (mac == NULL && (mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) abort();
  int mode = data[0];
  kmsg_key k = {mac, key, (mode & 1) ? sizeof key - 1 : 0};
  /* a copy: the harness may write a signature into it */
  if ((copy = malloc(size)) == NULL) return 0;
  memcpy(copy, data + 1, size - 1);
  const char *p = copy, *stop = copy + size - 1;
  while (n < MAX_PARTS) {
    const char *q = p;
    while (q + 4 <= stop && memcmp(q, SEP, 4) != 0)
      q++;
    if (q + 4 > stop) q = stop;
    part[n] = p;
    len[n++] = (size_t)(q - p);
    if (q == stop) break;
    p = q + 4;
  }
  if (mode & 2) {
    for (i = 0; i < n; i++)
      if (len[i] == sizeof KMSG_DELIMITER - 1 && memcmp(part[i], KMSG_DELIMITER, len[i]) == 0) break;
    if (n >= 6 && i <= n - 6 && kmsg_sign(&k, part + i + 2, len + i + 2, 4, hex) == 0) {
      part[i + 1] = hex;
      len[i + 1] = strlen(hex);
    }
  }
  if (kmsg_parse(&m, &k, part, len, n, &why) == 0) {
    if (m.type == NULL || m.delim + 6 > n || why != NULL) abort();
    json_t *code = json_object_get(m.content, "code"), *cursor = json_object_get(m.content, "cursor_pos");
    if (json_is_string(code)) {
      const char *s = json_string_value(code);
      size_t slen = json_string_length(code);
      check_cursor(s, slen, json_is_integer(cursor) ? json_integer_value(cursor) : (json_int_t)slen);
      check_cursor(s, slen, 0);
      check_cursor(s, slen, -1);
      check_cursor(s, slen, INT64_MAX);
    }
    kmsg_clear(&m);
  } else if (why == NULL || m.header != NULL || m.content != NULL) {
    abort();
  }
  free(copy);
  return 0;
}
