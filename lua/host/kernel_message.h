/* kernel_message.h - the parts of the Jupyter kernel (kernel.c) that read what a
 * client sends, apart from sockets and Lua, so that a fuzzer (tests/fuzz/kernel_message)
 * can call them directly: signature check and JSON parse of a message's parts, and
 * the cursor arithmetic of complete_request and inspect_request. */
#ifndef MILE_KERNEL_MESSAGE_H
#define MILE_KERNEL_MESSAGE_H

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

/* The delimiter part between the routing ids and the signature. */
#define KMSG_DELIMITER "<IDS|MSG>"

/* The connection's signing key: HMAC-SHA256 through `mac` (EVP_MAC_fetch(NULL,
 * "HMAC", NULL)) with key[0..len); len 0 is the protocol's unsigned mode. Borrowed. */
typedef struct {
  EVP_MAC *mac;
  const unsigned char *key;
  size_t len;
} kmsg_key;

/* The parsed parts of a received message. header, parent, metadata and content are
 * owned (kmsg_clear releases them); type points into header. */
typedef struct {
  size_t delim; /* index of the delimiter part; the routing ids come before it */
  json_t *header, *parent, *metadata, *content;
  const char *type; /* header.msg_type */
} kmsg;

/* HMAC-SHA256 of the n byte strings data[i][0..len[i]), as 64 lowercase hex digits
 * and a NUL in hex; "" when k->len is 0. Returns 0, or -1 when OpenSSL fails. */
int kmsg_sign(const kmsg_key *k, const void *const *data, const size_t *len, int n, char hex[65]);

/* Parse the n parts part[i][0..len[i]) of a message: find the delimiter, check the
 * signature of the four parts after it, parse them as JSON objects and find
 * header.msg_type. Returns 0 with *m filled; or -1 with *m empty and *why (static
 * text) saying why the message must be dropped. */
int kmsg_parse(kmsg *m, const kmsg_key *k, const void *const *part, const size_t *len, size_t n, const char **why);

/* Release the JSON of m and zero it. NULL-safe fields. */
void kmsg_clear(kmsg *m);

/* Byte offset of code point cp in s[0..n) (the protocol counts cursor positions in
 * code points); clamped to 0..n. */
size_t kmsg_utf8_offset(const char *s, size_t n, json_int_t cp);

/* Number of code points in s[0..n) (bytes that are not UTF-8 continuation bytes). */
json_int_t kmsg_utf8_count(const char *s, size_t n);

/* When offset end of s is inside a quoted string of its line, the offset just after
 * the opening quote; else (size_t)-1. Long strings are not followed. */
size_t kmsg_string_start(const char *s, size_t end);

/* The name that inspect_request asks about in s[0..len) with the cursor at byte
 * `at` (<= len): the dotted path under the cursor, or, right after "f(" or "f(x, ",
 * the function f. Sets start <= end <= len (empty when there is none). */
void kmsg_inspect_span(const char *s, size_t len, size_t at, size_t *start, size_t *end);

#endif
