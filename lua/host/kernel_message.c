/* kernel_message.c - reading a client's messages: signatures, JSON parts, cursor
 * positions (see kernel_message.h). No sockets, no Lua, no global state. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "kernel_message.h"

int kmsg_sign(const kmsg_key *k, const void *const *data, const size_t *len, int n, char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  char digest_name[] = "SHA256";
  OSSL_PARAM params[2];
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t out_len = 0, i;
  EVP_MAC_CTX *ctx;
  int j, ok;
  hex[0] = '\0';
  if (k->len == 0) return 0;
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0);
  params[1] = OSSL_PARAM_construct_end();
  if ((ctx = EVP_MAC_CTX_new(k->mac)) == NULL) return -1;
  ok = EVP_MAC_init(ctx, k->key, k->len, params);
  for (j = 0; ok && j < n; j++)
    ok = EVP_MAC_update(ctx, data[j], len[j]);
  ok = ok && EVP_MAC_final(ctx, out, &out_len, sizeof out) && out_len == 32;
  EVP_MAC_CTX_free(ctx);
  if (!ok) return -1;
  for (i = 0; i < 32; i++) {
    hex[2 * i] = digits[out[i] >> 4];
    hex[2 * i + 1] = digits[out[i] & 15];
  }
  hex[64] = '\0';
  return 0;
}

static json_t *parse_object(const void *data, size_t len) {
  json_t *j = json_loadb(data, len, JSON_ALLOW_NUL, NULL);
  if (j != NULL && !json_is_object(j)) {
    json_decref(j);
    j = NULL;
  }
  return j;
}

void kmsg_clear(kmsg *m) {
  json_decref(m->header);
  json_decref(m->parent);
  json_decref(m->metadata);
  json_decref(m->content);
  memset(m, 0, sizeof *m);
}

int kmsg_parse(kmsg *m, const kmsg_key *k, const void *const *part, const size_t *len, size_t n, const char **why) {
  const size_t dlen = sizeof KMSG_DELIMITER - 1;
  char hex[65];
  json_t *type;
  size_t i;
  memset(m, 0, sizeof *m);
  for (i = 0; i < n; i++)
    if (len[i] == dlen && memcmp(part[i], KMSG_DELIMITER, dlen) == 0) break;
  if (i >= n || n - i < 6) { /* the delimiter, signature and four JSON parts */
    *why = "dropped a message that is not a Jupyter message (too few parts)";
    return -1;
  }
  m->delim = i;
  if (kmsg_sign(k, part + i + 2, len + i + 2, 4, hex) < 0 || len[i + 1] != strlen(hex) ||
      CRYPTO_memcmp(part[i + 1], hex, strlen(hex)) != 0) {
    *why = "dropped a message with an invalid signature";
    memset(m, 0, sizeof *m);
    return -1;
  }
  m->header = parse_object(part[i + 2], len[i + 2]);
  m->parent = parse_object(part[i + 3], len[i + 3]);
  m->metadata = parse_object(part[i + 4], len[i + 4]);
  m->content = parse_object(part[i + 5], len[i + 5]);
  type = json_object_get(m->header, "msg_type");
  if (m->header == NULL || m->parent == NULL || m->metadata == NULL || m->content == NULL || !json_is_string(type)) {
    *why = "dropped a message with malformed JSON or no msg_type";
    kmsg_clear(m);
    return -1;
  }
  m->type = json_string_value(type);
  return 0;
}

size_t kmsg_utf8_offset(const char *s, size_t n, json_int_t cp) {
  size_t i = 0;
  for (; cp > 0 && i < n; cp--) {
    i++;
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
      i++;
  }
  return i;
}

json_int_t kmsg_utf8_count(const char *s, size_t n) {
  json_int_t c = 0;
  size_t i;
  for (i = 0; i < n; i++)
    c += ((unsigned char)s[i] & 0xC0) != 0x80;
  return c;
}

size_t kmsg_string_start(const char *s, size_t end) {
  size_t i = end, open = (size_t)-1;
  char quote = 0;
  while (i > 0 && s[i - 1] != '\n')
    i--;
  for (; i < end; i++) {
    if (quote != 0) {
      if (s[i] == '\\')
        i++;
      else if (s[i] == quote)
        quote = 0;
    } else if (s[i] == '"' || s[i] == '\'') {
      quote = s[i];
      open = i + 1;
    } else if (s[i] == '-' && i + 1 < end && s[i + 1] == '-') {
      return (size_t)-1; /* a comment */
    }
  }
  return quote != 0 ? open : (size_t)-1;
}

static int is_path_char(char c) {
  return c == '_' || c == '.' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

void kmsg_inspect_span(const char *s, size_t len, size_t at, size_t *start_out, size_t *end_out) {
  size_t start, end;
  for (;;) {
    for (start = at; start > 0 && is_path_char(s[start - 1]); start--)
      ;
    for (end = at; end < len && is_path_char(s[end]) && s[end] != '.' && s[end] != ':'; end++)
      ;
    if (end > start || at == 0) break;
    while (at > 0 && s[at - 1] != '(')
      if (s[--at] == ')' || s[at] == '\n') break;
    if (at == 0 || s[at - 1] != '(') break;
    at--;
  }
  while (start < end && (s[start] == '.' || s[start] == ':' || (s[start] >= '0' && s[start] <= '9')))
    start++;
  while (end > start && (s[end - 1] == '.' || s[end - 1] == ':'))
    end--;
  *start_out = start;
  *end_out = end;
}
