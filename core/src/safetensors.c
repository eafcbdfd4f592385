/* safetensors.c - checkpoints in the safetensors format (see mile/io.h).
 *
 * Writing: the header is built with jansson, then the header and each tensor's
 * bytes are streamed into a temporary file that is fsync'ed and renamed over the
 * target. Reading: the header is parsed and every field checked before any tensor
 * is allocated, so allocations are bounded by the file's size; then each tensor's
 * bytes are read straight into its storage. */
#define _POSIX_C_SOURCE 200809L /* fdopen, fileno, fsync, fseeko, strerror_r */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "internal.h"

struct mile_safetensors {
  int32_t count;
  int32_t n_metadata;
  char **names;
  mile_tensor **tensors;
  const char **file_dtypes; /* static strings */
  char **metadata_keys;
  char **metadata_values;
};

/* ---- dtypes and byte order ------------------------------------------------------ */

typedef enum file_dtype { FD_F32, FD_F64, FD_F16, FD_BF16 } file_dtype;

static const struct {
  const char *name;
  size_t size;
  mile_dtype mile;
} dtypes[] = {
    [FD_F32] = {"F32", 4, MILE_FLOAT32},
    [FD_F64] = {"F64", 8, MILE_FLOAT64},
    [FD_F16] = {"F16", 2, MILE_FLOAT32},
    [FD_BF16] = {"BF16", 2, MILE_FLOAT32},
};

static int find_dtype(const char *name) {
  for (int i = 0; i < (int)(sizeof dtypes / sizeof dtypes[0]); i++)
    if (strcmp(name, dtypes[i].name) == 0) return i;
  return -1;
}

static bool host_is_little_endian(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

/* Reverse the bytes of each of n elements of `size` bytes, in place. */
static void swap_bytes(void *data, size_t n, size_t size) {
  unsigned char *p = data;
  for (size_t i = 0; i < n; i++, p += size)
    for (size_t a = 0, b = size - 1; a < b; a++, b--) {
      unsigned char t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
}

static uint64_t load_u64le(const unsigned char *b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
  return v;
}

static void store_u64le(unsigned char *b, uint64_t v) {
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static float f32_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* IEEE half -> float, exact (subnormals, infinities and NaNs included). */
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return f32_from_bits(sign);
    /* subnormal: mant * 2^-24 */
    float v = (float)mant * 0x1p-24f;
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* n 16-bit little-endian values at src -> n floats at dst. */
static void convert_16(float *dst, const unsigned char *src, size_t n, file_dtype fd) {
  for (size_t i = 0; i < n; i++) {
    uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
    dst[i] = fd == FD_BF16 ? f32_from_bits((uint32_t)h << 16) : half_to_float(h);
  }
}

/* s for a message: at most 60 bytes of it, control bytes (and, with `high`, bytes
 * >= 0x80) written as \xNN, so that no name from a file can garble a terminal. */
static const char *printable(const char *s, bool high, char *buf, size_t size) {
  size_t used = 0;
  for (size_t i = 0; s[i] && i < 60 && used + 5 < size; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != 0x7f && (c < 0x80 || !high)) buf[used++] = (char)c;
    else used += (size_t)snprintf(buf + used, size - used, "\\x%02x", c);
  }
  buf[used] = '\0';
  return buf;
}

static const char *sys_error(int err, char *buf, size_t size) {
  if (strerror_r(err, buf, size) != 0) snprintf(buf, size, "error %d", err);
  return buf;
}

/* ---- handles -------------------------------------------------------------------- */

void mile_safetensors_free(mile_safetensors *st) {
  if (!st) return;
  for (int32_t i = 0; i < st->count; i++) {
    if (st->names) free(st->names[i]);
    if (st->tensors) mile_tensor_release(st->tensors[i]);
  }
  for (int32_t i = 0; i < st->n_metadata; i++) {
    if (st->metadata_keys) free(st->metadata_keys[i]);
    if (st->metadata_values) free(st->metadata_values[i]);
  }
  free(st->names);
  free(st->tensors);
  free(st->file_dtypes);
  free(st->metadata_keys);
  free(st->metadata_values);
  free(st);
}

int32_t mile_safetensors_count(const mile_safetensors *st) { return st ? st->count : 0; }

const char *mile_safetensors_name(const mile_safetensors *st, int32_t i) {
  return st && i >= 0 && i < st->count ? st->names[i] : NULL;
}

mile_tensor *mile_safetensors_tensor(const mile_safetensors *st, int32_t i) {
  return st && i >= 0 && i < st->count ? st->tensors[i] : NULL;
}

const char *mile_safetensors_file_dtype(const mile_safetensors *st, int32_t i) {
  return st && i >= 0 && i < st->count ? st->file_dtypes[i] : NULL;
}

int32_t mile_safetensors_find(const mile_safetensors *st, const char *name) {
  if (!st || !name) return -1;
  for (int32_t i = 0; i < st->count; i++)
    if (strcmp(st->names[i], name) == 0) return i;
  return -1;
}

int32_t mile_safetensors_metadata_count(const mile_safetensors *st) { return st ? st->n_metadata : 0; }

const char *mile_safetensors_metadata_key(const mile_safetensors *st, int32_t i) {
  return st && i >= 0 && i < st->n_metadata ? st->metadata_keys[i] : NULL;
}

const char *mile_safetensors_metadata_value(const mile_safetensors *st, int32_t i) {
  return st && i >= 0 && i < st->n_metadata ? st->metadata_values[i] : NULL;
}

const char *mile_safetensors_metadata_get(const mile_safetensors *st, const char *key) {
  if (!st || !key) return NULL;
  for (int32_t i = 0; i < st->n_metadata; i++)
    if (strcmp(st->metadata_keys[i], key) == 0) return st->metadata_values[i];
  return NULL;
}

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c) memcpy(c, s, n);
  return c;
}

/* ---- reading -------------------------------------------------------------------- */

static const char LOAD[] = "load_safetensors";

/* Where the bytes come from: an open file or a memory buffer. */
typedef struct source {
  FILE *file;
  const unsigned char *mem;
  uint64_t size;
  const char *label; /* path or buffer name, for messages */
} source;

static mile_status source_read(const source *src, uint64_t offset, void *dst, size_t n) {
  if (n == 0) return MILE_OK;
  if (offset > src->size || n > src->size - offset)
    return mile_set_error(MILE_ERR_FORMAT, "%s: %s: unexpected end of file", LOAD, src->label);
  if (src->mem) {
    memcpy(dst, src->mem + offset, n);
    return MILE_OK;
  }
  char buf[128];
  if (fseeko(src->file, (off_t)offset, SEEK_SET) != 0)
    return mile_set_error(MILE_ERR_IO, "%s: %s: %s", LOAD, src->label, sys_error(errno, buf, sizeof buf));
  if (fread(dst, 1, n, src->file) != n) {
    if (ferror(src->file))
      return mile_set_error(MILE_ERR_IO, "%s: %s: %s", LOAD, src->label, sys_error(errno, buf, sizeof buf));
    /* the file shrank while being read */
    return mile_set_error(MILE_ERR_IO, "%s: %s: unexpected end of file (changed while reading?)", LOAD,
                          src->label);
  }
  return MILE_OK;
}

/* One tensor entry of the header, checked. */
typedef struct entry {
  const char *name; /* borrowed from the JSON tree */
  file_dtype dtype;
  int32_t ndim;
  int64_t shape[MILE_MAX_DIMS];
  uint64_t begin, end;
  size_t json_order; /* tie-break for the sort: order in the header */
} entry;

static int entry_cmp(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->json_order < y->json_order ? -1 : x->json_order > y->json_order;
}

static mile_status nomem(const source *src) {
  return mile_set_error(MILE_ERR_NOMEM, "%s: %s: out of memory", LOAD, src->label);
}

static mile_status bad(const source *src, const char *name, const char *what) {
  char pbuf[256];
  if (name)
    return mile_set_error(MILE_ERR_FORMAT, "%s: %s: tensor '%s': %s", LOAD, src->label,
                          printable(name, false, pbuf, sizeof pbuf), what);
  return mile_set_error(MILE_ERR_FORMAT, "%s: %s: %s", LOAD, src->label, what);
}

/* A JSON integer >= 0 (the header's shapes and offsets). */
static bool json_nonneg_int(const json_t *v, uint64_t *out) {
  if (!json_is_integer(v)) return false;
  json_int_t i = json_integer_value(v);
  if (i < 0) return false;
  *out = (uint64_t)i;
  return true;
}

/* Check one tensor entry (`value` under key `name`) into *e. */
static mile_status check_entry(const source *src, const char *name, json_t *value, entry *e) {
  char msg[512];
  if (!json_is_object(value)) return bad(src, name, "entry is not a JSON object");
  const char *key;
  json_t *field;
  json_object_foreach(value, key, field) {
    if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 && strcmp(key, "data_offsets") != 0) {
      char pbuf[256];
      snprintf(msg, sizeof msg, "unexpected key '%s' (expected dtype, shape, data_offsets)",
               printable(key, false, pbuf, sizeof pbuf));
      return bad(src, name, msg);
    }
  }
  json_t *dtype = json_object_get(value, "dtype");
  json_t *shape = json_object_get(value, "shape");
  json_t *offsets = json_object_get(value, "data_offsets");
  if (!dtype) return bad(src, name, "missing key 'dtype'");
  if (!shape) return bad(src, name, "missing key 'shape'");
  if (!offsets) return bad(src, name, "missing key 'data_offsets'");

  if (!json_is_string(dtype)) return bad(src, name, "dtype is not a string");
  /* "F32\u0000x" must not pass as "F32" */
  if (memchr(json_string_value(dtype), 0, json_string_length(dtype)))
    return bad(src, name, "dtype contains a NUL byte (\\u0000)");
  int fd = find_dtype(json_string_value(dtype));
  if (fd < 0) {
    char pbuf[256];
    snprintf(msg, sizeof msg, "unsupported dtype '%.24s' (mile reads F32, F64, and F16/BF16 as float32)",
             printable(json_string_value(dtype), false, pbuf, sizeof pbuf));
    return bad(src, name, msg);
  }
  e->dtype = (file_dtype)fd;

  if (!json_is_array(shape)) return bad(src, name, "shape is not a list");
  size_t ndim = json_array_size(shape);
  if (ndim > MILE_MAX_DIMS) {
    snprintf(msg, sizeof msg, "shape has %zu dims (mile supports at most %d)", ndim, MILE_MAX_DIMS);
    return bad(src, name, msg);
  }
  e->ndim = (int32_t)ndim;
  for (size_t i = 0; i < ndim; i++) {
    uint64_t d;
    if (!json_nonneg_int(json_array_get(shape, i), &d))
      return bad(src, name, "shape is not a list of non-negative integers");
    e->shape[i] = (int64_t)d;
  }

  if (!json_is_array(offsets) || json_array_size(offsets) != 2 ||
      !json_nonneg_int(json_array_get(offsets, 0), &e->begin) || !json_nonneg_int(json_array_get(offsets, 1), &e->end))
    return bad(src, name, "data_offsets is not a list of two non-negative integers");
  if (e->begin > e->end) {
    snprintf(msg, sizeof msg, "data_offsets [%llu, %llu] end before they begin", (unsigned long long)e->begin,
             (unsigned long long)e->end);
    return bad(src, name, msg);
  }
  e->name = name;
  return MILE_OK;
}

/* Number of bytes the shape needs, or false when the shape is too large for mile:
 * the product of its non-zero dims times 8 must fit in an int64 (a zero dim does
 * not make [2^40, 2^40, 0] acceptable: mile_empty would refuse it). */
static bool entry_nbytes(const entry *e, uint64_t *nbytes) {
  uint64_t n = 1;
  bool empty = false;
  for (int32_t i = 0; i < e->ndim; i++) {
    uint64_t d = (uint64_t)e->shape[i];
    if (d == 0) {
      empty = true;
      continue;
    }
    if (n > (uint64_t)INT64_MAX / 8 / d) return false;
    n *= d;
  }
  *nbytes = empty ? 0 : n * dtypes[e->dtype].size;
  return true;
}

/* Check the offsets of the sorted entries against the data section [0, data_len). */
static mile_status check_layout(const source *src, const entry *es, size_t n, uint64_t data_len) {
  char msg[512], dims[200];
  uint64_t expected = 0;
  for (size_t i = 0; i < n; i++) {
    const entry *e = &es[i];
    uint64_t need;
    if (!entry_nbytes(e, &need) || need != e->end - e->begin) {
      mile_dims_str(e->ndim, e->shape, dims, sizeof dims);
      if (!entry_nbytes(e, &need))
        snprintf(msg, sizeof msg, "shape %s is too large", dims);
      else
        snprintf(msg, sizeof msg, "data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s needs %llu",
                 (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)(e->end - e->begin),
                 dims, dtypes[e->dtype].name, (unsigned long long)need);
      return bad(src, e->name, msg);
    }
    if (e->end > data_len) {
      snprintf(msg, sizeof msg, "data_offsets [%llu, %llu] out of range (the data section has %llu bytes)",
               (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)data_len);
      return bad(src, e->name, msg);
    }
    if (e->begin < expected) {
      char pbuf[256];
      snprintf(msg, sizeof msg, "data_offsets [%llu, %llu] overlap tensor '%s' (which ends at %llu)",
               (unsigned long long)e->begin, (unsigned long long)e->end,
               printable(es[i - 1].name, false, pbuf, sizeof pbuf), (unsigned long long)expected);
      return bad(src, e->name, msg);
    }
    if (e->begin > expected) {
      snprintf(msg, sizeof msg, "data_offsets [%llu, %llu] leave a hole: bytes %llu..%llu belong to no tensor",
               (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)expected,
               (unsigned long long)e->begin);
      return bad(src, e->name, msg);
    }
    expected = e->end;
  }
  if (expected != data_len) {
    snprintf(msg, sizeof msg, "%llu trailing bytes after the last tensor's data",
             (unsigned long long)(data_len - expected));
    return bad(src, NULL, msg);
  }
  return MILE_OK;
}

/* The bytes the tensors will take in memory (F16/BF16 become float32: twice their
 * file size), checked against the thread's allocation budget (mile_alloc_budget)
 * before the first one is allocated, so a file that does not fit takes nothing. */
static mile_status check_budget(const source *src, const entry *es, size_t n) {
  int64_t left = mile_alloc_budget(-1); /* read the budget ... */
  mile_alloc_budget(left);              /* ... and put it back */
  if (left < 0) return MILE_OK;
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t bytes = es[i].end - es[i].begin; /* checked against the shape already */
    if (es[i].dtype == FD_F16 || es[i].dtype == FD_BF16) bytes *= 2;
    total += bytes; /* no wrap: each is at most twice its share of the file */
  }
  if (total <= (uint64_t)left) return MILE_OK;
  return mile_set_error(MILE_ERR_NOMEM,
                        "%s: %s: the file's %zu tensors take %llu bytes in memory, more than the allocation budget "
                        "allows (%lld bytes left)",
                        LOAD, src->label, n, (unsigned long long)total, (long long)left);
}

/* Copy the checked "__metadata__" object into the handle. */
static mile_status take_metadata(const source *src, json_t *meta, mile_safetensors *st) {
  if (!json_is_object(meta)) return bad(src, NULL, "__metadata__ is not a JSON object");
  size_t n = json_object_size(meta);
  const char *key;
  json_t *value;
  json_object_foreach(meta, key, value) {
    char msg[512], pbuf[256];
    if (!json_is_string(value)) {
      snprintf(msg, sizeof msg, "__metadata__ value of '%s' is not a string", printable(key, false, pbuf, sizeof pbuf));
      return bad(src, NULL, msg);
    }
    /* the header is parsed with JSON_ALLOW_NUL so that this can name the key: the
     * handle hands out C strings, which would end at the NUL */
    if (memchr(json_string_value(value), 0, json_string_length(value))) {
      snprintf(msg, sizeof msg, "__metadata__ value of '%s' contains a NUL byte (\\u0000), which mile cannot "
               "return without cutting the value", printable(key, false, pbuf, sizeof pbuf));
      return bad(src, NULL, msg);
    }
  }
  if (n == 0) return MILE_OK;
  if (n > INT32_MAX) return bad(src, NULL, "too many metadata entries");
  st->metadata_keys = calloc(n, sizeof *st->metadata_keys);
  st->metadata_values = calloc(n, sizeof *st->metadata_values);
  if (!st->metadata_keys || !st->metadata_values) return nomem(src);
  json_object_foreach(meta, key, value) {
    int32_t i = st->n_metadata++; /* counted before the copies so that free sees them */
    st->metadata_keys[i] = copy_string(key);
    st->metadata_values[i] = copy_string(json_string_value(value));
    if (!st->metadata_keys[i] || !st->metadata_values[i]) return nomem(src);
  }
  return MILE_OK;
}

/* Read tensor e's bytes (at data_start + begin) into a new tensor. */
static mile_status read_tensor(const source *src, const entry *e, uint64_t data_start, mile_tensor **out) {
  mile_tensor *t;
  mile_status made = mile_empty(&t, dtypes[e->dtype].mile, e->ndim, e->ndim ? e->shape : NULL);
  if (made != MILE_OK) { /* out of memory: say which file and tensor */
    char why[256];
    snprintf(why, sizeof why, "%s", mile_last_error());
    return mile_set_error(made, "%s: %s: tensor '%.60s': %s", LOAD, src->label, e->name, why);
  }
  size_t nbytes = (size_t)(e->end - e->begin);
  size_t numel = nbytes / dtypes[e->dtype].size;
  mile_status st = MILE_OK;
  if (e->dtype == FD_F32 || e->dtype == FD_F64) {
    st = source_read(src, data_start + e->begin, mile_data(t), nbytes);
    if (st == MILE_OK && !host_is_little_endian()) swap_bytes(mile_data(t), numel, dtypes[e->dtype].size);
  } else if (nbytes > 0) {
    unsigned char *raw = malloc(nbytes);
    if (!raw) st = nomem(src);
    if (st == MILE_OK) st = source_read(src, data_start + e->begin, raw, nbytes);
    if (st == MILE_OK) convert_16(mile_data(t), raw, numel, e->dtype);
    free(raw);
  }
  if (st != MILE_OK) {
    mile_tensor_release(t);
    return st;
  }
  *out = t;
  return MILE_OK;
}

static mile_status read_all(const source *src, mile_safetensors **out) {
  char msg[512];
  if (src->size < 8) {
    snprintf(msg, sizeof msg, "file is %llu bytes, too short for the 8-byte header length",
             (unsigned long long)src->size);
    return bad(src, NULL, msg);
  }
  unsigned char lenbuf[8];
  MILE_TRY(source_read(src, 0, lenbuf, 8));
  uint64_t hlen = load_u64le(lenbuf);
  if (hlen > MILE_SAFETENSORS_MAX_HEADER) {
    snprintf(msg, sizeof msg, "header length %llu exceeds the limit of %d bytes (not a safetensors file?)",
             (unsigned long long)hlen,
             MILE_SAFETENSORS_MAX_HEADER);
    return bad(src, NULL, msg);
  }
  if (hlen > src->size - 8) {
    snprintf(msg, sizeof msg, "header length %llu is larger than the rest of the file (%llu bytes): truncated?",
             (unsigned long long)hlen, (unsigned long long)(src->size - 8));
    return bad(src, NULL, msg);
  }
  if (hlen < 2) return bad(src, NULL, "header is too short to hold a JSON object");

  char *header = malloc((size_t)hlen);
  if (!header) return nomem(src);
  mile_status st = source_read(src, 8, header, (size_t)hlen);
  if (st != MILE_OK) {
    free(header);
    return st;
  }
  if (header[0] != '{') {
    free(header);
    return bad(src, NULL, "header does not start with '{' (not a JSON object)");
  }
  json_error_t jerr;
  /* NUL is allowed in string values here only to refuse it below with the key named
   * (jansson always refuses it in keys) */
  json_t *root = json_loadb(header, (size_t)hlen, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
  free(header);
  if (!root) {
    snprintf(msg, sizeof msg, "header is not valid JSON (byte %d: %.120s)", jerr.position, jerr.text);
    return bad(src, NULL, msg);
  }

  entry *es = NULL;
  mile_safetensors *h = calloc(1, sizeof *h);
  if (!h) st = nomem(src);
  if (st == MILE_OK && !json_is_object(root)) st = bad(src, NULL, "header is not a JSON object");
  json_t *meta = st == MILE_OK ? json_object_get(root, "__metadata__") : NULL;
  size_t n = st == MILE_OK ? json_object_size(root) - (meta ? 1 : 0) : 0;
  if (st == MILE_OK && n > INT32_MAX) st = bad(src, NULL, "too many tensors");
  if (st == MILE_OK && n > 0 && !(es = calloc(n, sizeof *es))) st = nomem(src);
  if (st == MILE_OK) {
    const char *key;
    json_t *value;
    size_t i = 0;
    json_object_foreach(root, key, value) {
      if (value == meta) continue;
      st = check_entry(src, key, value, &es[i]);
      if (st != MILE_OK) break;
      es[i].json_order = i;
      i++;
    }
  }
  if (st == MILE_OK && meta) st = take_metadata(src, meta, h);
  if (st == MILE_OK) {
    if (n > 1) qsort(es, n, sizeof *es, entry_cmp);
    st = check_layout(src, es, n, src->size - 8 - hlen);
  }
  if (st == MILE_OK) st = check_budget(src, es, n);
  /* every check passed: allocate and read, in file order */
  if (st == MILE_OK && n > 0) {
    h->names = calloc(n, sizeof *h->names);
    h->tensors = calloc(n, sizeof *h->tensors);
    h->file_dtypes = calloc(n, sizeof *h->file_dtypes);
    if (!h->names || !h->tensors || !h->file_dtypes) st = nomem(src);
    for (size_t i = 0; i < n && st == MILE_OK; i++) {
      int32_t k = h->count++; /* counted first so that free sees partial work */
      h->file_dtypes[k] = dtypes[es[i].dtype].name;
      h->names[k] = copy_string(es[i].name);
      if (!h->names[k]) st = nomem(src);
      if (st == MILE_OK) st = read_tensor(src, &es[i], 8 + hlen, &h->tensors[k]);
    }
  }
  free(es);
  json_decref(root);
  if (st != MILE_OK) {
    mile_safetensors_free(h);
    return st;
  }
  *out = h;
  return MILE_OK;
}

mile_status mile_safetensors_load(mile_safetensors **out, const char *path) {
  if (!out) return mile_set_error(MILE_ERR_ARGUMENT, "%s: out is NULL", LOAD);
  *out = NULL;
  if (!path) return mile_set_error(MILE_ERR_ARGUMENT, "%s: path is NULL", LOAD);
  char buf[128];
  FILE *f = fopen(path, "rb");
  if (!f) return mile_set_error(MILE_ERR_IO, "%s: %s: %s", LOAD, path, sys_error(errno, buf, sizeof buf));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0) {
    int err = errno;
    fclose(f);
    return mile_set_error(MILE_ERR_IO, "%s: %s: %s", LOAD, path, sys_error(err, buf, sizeof buf));
  }
  if (!S_ISREG(sb.st_mode)) {
    fclose(f);
    return mile_set_error(MILE_ERR_IO, "%s: %s: not a regular file", LOAD, path);
  }
  source src = {.file = f, .size = sb.st_size < 0 ? 0 : (uint64_t)sb.st_size, .label = path};
  mile_status st = read_all(&src, out);
  fclose(f);
  return st;
}

mile_status mile_safetensors_parse(mile_safetensors **out, const void *data, size_t size, const char *label) {
  if (!out) return mile_set_error(MILE_ERR_ARGUMENT, "%s: out is NULL", LOAD);
  *out = NULL;
  if (!data && size > 0) return mile_set_error(MILE_ERR_ARGUMENT, "%s: data is NULL", LOAD);
  static const unsigned char empty[1];
  source src = {.mem = data ? data : empty, .size = size, .label = label ? label : "<memory>"};
  return read_all(&src, out);
}

/* ---- writing -------------------------------------------------------------------- */

static const char SAVE[] = "save_safetensors";

/* The header for the given tensors and metadata, as a compact JSON string to free(). */
static mile_status build_header(const char *path, int32_t count, const char *const *names, mile_tensor *const *tensors,
                                int32_t n_metadata, const char *const *keys, const char *const *values,
                                char **out) {
  char pbuf[256];
  *out = NULL;
  mile_status st = MILE_OK;
  json_t *root = json_object();
  json_t *meta = n_metadata > 0 ? json_object() : NULL;
  if (!root || (n_metadata > 0 && !meta)) st = mile_set_error(MILE_ERR_NOMEM, "%s: %s: out of memory", SAVE, path);
  for (int32_t i = 0; i < n_metadata && st == MILE_OK; i++) {
    if (!keys[i] || !values[i]) {
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: metadata entry %d has a NULL key or value", SAVE, path, i);
    } else if (json_object_get(meta, keys[i])) {
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: metadata key '%.60s' appears twice", SAVE, path, keys[i]);
    } else {
      json_t *v = json_string(values[i]); /* NULL when not UTF-8 */
      if (!v)
        st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: metadata value of '%s' is not valid UTF-8", SAVE, path,
                            printable(keys[i], true, pbuf, sizeof pbuf));
      /* set_new consumes v even when it fails; it fails on a key that is not UTF-8 */
      else if (json_object_set_new(meta, keys[i], v) != 0)
        st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: metadata key '%s' is not valid UTF-8", SAVE, path,
                            printable(keys[i], true, pbuf, sizeof pbuf));
    }
  }
  if (st == MILE_OK && meta) {
    int rc = json_object_set_new(root, "__metadata__", meta);
    meta = NULL; /* consumed */
    if (rc != 0) st = mile_set_error(MILE_ERR_NOMEM, "%s: %s: out of memory", SAVE, path);
  }
  uint64_t offset = 0;
  for (int32_t i = 0; i < count && st == MILE_OK; i++) {
    const char *name = names[i];
    mile_tensor *t = tensors[i];
    if (!name || !*name)
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: tensor %d of %d has %s name", SAVE, path, i + 1, count,
                          name ? "an empty" : "a NULL");
    else if (strcmp(name, "__metadata__") == 0)
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: '__metadata__' cannot name a tensor", SAVE, path);
    else if (!t)
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: tensor '%.60s' is NULL", SAVE, path, name);
    else if (json_object_get(root, name))
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: tensor name '%.60s' appears twice", SAVE, path, name);
    else if (t->dtype != MILE_FLOAT32 && t->dtype != MILE_FLOAT64)
      st = mile_set_error(MILE_ERR_DTYPE, "%s: %s: tensor '%.60s' has an unknown dtype %d", SAVE, path, name, t->dtype);
    if (st != MILE_OK) break;

    uint64_t nbytes = (uint64_t)mile_numel(t) * mile_dtype_size(t->dtype);
    json_t *shape = json_array();
    bool ok = shape != NULL;
    for (int32_t d = 0; d < t->ndim && ok; d++) ok = json_array_append_new(shape, json_integer(t->shape[d])) == 0;
    json_t *item = ok ? json_pack("{s:s, s:O, s:[I,I]}", "dtype", t->dtype == MILE_FLOAT64 ? "F64" : "F32", "shape",
                                   shape, "data_offsets", (json_int_t)offset, (json_int_t)(offset + nbytes))
                       : NULL;
    json_decref(shape);
    if (!item) st = mile_set_error(MILE_ERR_NOMEM, "%s: %s: out of memory", SAVE, path);
    else if (json_object_set_new(root, name, item) != 0) /* consumes item */
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: tensor name '%s' is not valid UTF-8", SAVE, path,
                          printable(name, true, pbuf, sizeof pbuf));
    offset += nbytes;
  }
  if (st == MILE_OK && !(*out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER)))
    st = mile_set_error(MILE_ERR_NOMEM, "%s: %s: out of memory", SAVE, path);
  json_decref(meta);
  json_decref(root);
  return st;
}

/* Write one tensor's elements, row-major, little-endian. */
static mile_status write_tensor(mile_sink *s, mile_tensor *t) {
  mile_tensor *c;
  MILE_TRY(mile_contiguous(&c, t));
  size_t esize = mile_dtype_size(c->dtype);
  size_t nbytes = (size_t)mile_numel(c) * esize;
  const unsigned char *p = mile_data(c);
  if (host_is_little_endian()) {
    mile_sink_write(s, p, nbytes);
  } else {
    unsigned char chunk[4096];
    for (size_t done = 0; done < nbytes && !s->err; done += sizeof chunk) {
      size_t k = nbytes - done < sizeof chunk ? nbytes - done : sizeof chunk;
      memcpy(chunk, p + done, k);
      swap_bytes(chunk, k / esize, esize);
      mile_sink_write(s, chunk, k);
    }
  }
  mile_tensor_release(c);
  return MILE_OK;
}

mile_status mile_safetensors_save(const char *path, int32_t count, const char *const *names,
                                  mile_tensor *const *tensors, int32_t n_metadata, const char *const *metadata_keys,
                                  const char *const *metadata_values) {
  if (!path || !*path) return mile_set_error(MILE_ERR_ARGUMENT, "%s: path is %s", SAVE, path ? "empty" : "NULL");
  if (count < 0 || n_metadata < 0) return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: negative count", SAVE, path);
  if (count > 0 && (!names || !tensors))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: names or tensors is NULL", SAVE, path);
  if (n_metadata > 0 && (!metadata_keys || !metadata_values))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s: metadata keys or values is NULL", SAVE, path);

  char *header;
  MILE_TRY(build_header(path, count, names, tensors, n_metadata, metadata_keys, metadata_values, &header));
  size_t hlen = strlen(header);
  size_t pad = (8 - (8 + hlen) % 8) % 8; /* spaces so that the data starts 8-byte aligned */
  unsigned char lenbuf[8];
  store_u64le(lenbuf, (uint64_t)(hlen + pad));

  mile_sink s;
  mile_status st = mile_sink_open(&s, path, SAVE);
  if (st != MILE_OK) {
    free(header);
    return st;
  }
  mile_sink_write(&s, lenbuf, 8);
  mile_sink_write(&s, header, hlen);
  free(header);
  static const char spaces[8] = "        ";
  mile_sink_write(&s, spaces, pad);
  for (int32_t i = 0; i < count && !s.err && st == MILE_OK; i++) st = write_tensor(&s, tensors[i]);
  return mile_sink_close(&s, path, SAVE, st);
}
