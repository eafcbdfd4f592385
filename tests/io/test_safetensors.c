/* test_safetensors.c - the safetensors reader and writer (core/src/safetensors.c).
 *
 * Round trips are compared byte for byte; the layout is checked against header text
 * written out in the test and against a JSON parse of the header; hand-assembled
 * files stand in for files written by other implementations; malformed files must
 * each fail with MILE_ERR_FORMAT and a message naming the file and the problem,
 * never crash (run this under the ASan build: -DMILE_SANITIZE=ON). */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, setrlimit */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "mile/mile.h"

#include "../common/checks.h"



static char tmpdir[256];

static int setup_dir(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mile-test-io-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state) {
  (void)state;
  DIR *d = opendir(tmpdir);
  if (!d) return 0;
  struct dirent *e;
  char path[512];
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) rmdir(path);
    else unlink(path);
  }
  closedir(d);
  rmdir(tmpdir);
  return 0;
}

static const char *in_tmp(const char *name) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  return path;
}

/* Number of entries of dir whose name contains ".tmp-" (leftover temporary files). */
static int count_temp_files(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp-")) n++;
  closedir(d);
  return n;
}

static unsigned char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

static void write_file(const char *path, const void *buf, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static uint64_t u64le(const unsigned char *b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
  return v;
}

/* A file: 8-byte length of `header`, header, then `data`. */
static unsigned char *assemble(const char *header, const void *data, size_t data_len, size_t *size) {
  size_t h = strlen(header);
  unsigned char *buf = malloc(8 + h + data_len + 1);
  assert_non_null(buf);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(buf + 8, header, h);
  if (data_len) memcpy(buf + 8 + h, data, data_len);
  *size = 8 + h + data_len;
  return buf;
}

static mile_tensor *tensor_of(mile_dtype dtype, int32_t ndim, const int64_t *shape, const void *data) {
  mile_tensor *t;
  OK(mile_from_data(&t, dtype, ndim, shape, data, dtype));
  return t;
}

/* t is contiguous, has dtype/shape and exactly the bytes `want`. */
static void assert_tensor_bytes(const mile_tensor *t, mile_dtype dtype, int32_t ndim, const int64_t *shape,
                                const void *want, size_t nbytes) {
  assert_non_null(t);
  assert_int_equal(t->dtype, dtype);
  assert_int_equal(t->ndim, ndim);
  for (int32_t i = 0; i < ndim; i++) assert_int_equal(t->shape[i], shape[i]);
  assert_true(mile_is_contiguous(t));
  assert_int_equal((size_t)mile_numel(t) * mile_dtype_size(dtype), nbytes);
  if (nbytes) assert_memory_equal(mile_data(t), want, nbytes);
}

/* ---- round trips -------------------------------------------------------------- */

/* Values whose bits must survive: signed zero, infinities, a NaN payload, subnormals. */
static float f32_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}
static double f64_bits(uint64_t b) {
  double d;
  memcpy(&d, &b, 8);
  return d;
}

static void test_round_trip_bit_exact(void **state) {
  (void)state;
  const float a_data[6] = {1.5f, -0.0f, f32_bits(0x7f800000u), f32_bits(0x7fc01234u), f32_bits(0x00000001u), 3e38f};
  const double b_data[4] = {0.1, -f64_bits(0x7ff0000000000000ull), f64_bits(0x7ff8000000abcdefull),
                            f64_bits(0x0000000000000001ull)};
  const float s_data[1] = {42.25f};
  const double d_data[1] = {-7.0};
  const int64_t a_shape[2] = {2, 3}, b_shape[1] = {4}, e_shape[1] = {0}, e3_shape[3] = {3, 0, 2};
  mile_tensor *ts[6];
  ts[0] = tensor_of(MILE_FLOAT32, 2, a_shape, a_data);
  ts[1] = tensor_of(MILE_FLOAT64, 1, b_shape, b_data);
  ts[2] = tensor_of(MILE_FLOAT32, 0, NULL, s_data); /* 0-d */
  ts[3] = tensor_of(MILE_FLOAT64, 0, NULL, d_data);
  OK(mile_empty(&ts[4], MILE_FLOAT32, 1, e_shape)); /* empty */
  OK(mile_empty(&ts[5], MILE_FLOAT64, 3, e3_shape));
  const char *names[6] = {"layer.weight", "b64", "scalar32", "scalar64", "empty", "empty3"};
  const char *keys[3] = {"mile.spec", "note", "unicode"};
  const char *values[3] = {"{\"type\":\"Linear\"}", "", "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93"};
  const char *path = in_tmp("round.safetensors");
  OK(mile_safetensors_save(path, 6, names, ts, 3, keys, values));

  mile_safetensors *st;
  OK(mile_safetensors_load(&st, path));
  assert_int_equal(mile_safetensors_count(st), 6);
  for (int i = 0; i < 6; i++) assert_string_equal(mile_safetensors_name(st, i), names[i]); /* order kept */
  assert_tensor_bytes(mile_safetensors_tensor(st, 0), MILE_FLOAT32, 2, a_shape, a_data, sizeof a_data);
  assert_tensor_bytes(mile_safetensors_tensor(st, 1), MILE_FLOAT64, 1, b_shape, b_data, sizeof b_data);
  assert_tensor_bytes(mile_safetensors_tensor(st, 2), MILE_FLOAT32, 0, NULL, s_data, sizeof s_data);
  assert_tensor_bytes(mile_safetensors_tensor(st, 3), MILE_FLOAT64, 0, NULL, d_data, sizeof d_data);
  assert_tensor_bytes(mile_safetensors_tensor(st, 4), MILE_FLOAT32, 1, e_shape, NULL, 0);
  assert_tensor_bytes(mile_safetensors_tensor(st, 5), MILE_FLOAT64, 3, e3_shape, NULL, 0);
  assert_string_equal(mile_safetensors_file_dtype(st, 0), "F32");
  assert_string_equal(mile_safetensors_file_dtype(st, 1), "F64");
  assert_int_equal(mile_safetensors_find(st, "scalar64"), 3);
  assert_int_equal(mile_safetensors_find(st, "nope"), -1);
  assert_int_equal(mile_safetensors_metadata_count(st), 3);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(mile_safetensors_metadata_key(st, i), keys[i]);
    assert_string_equal(mile_safetensors_metadata_value(st, i), values[i]);
  }
  assert_string_equal(mile_safetensors_metadata_get(st, "unicode"), values[2]);
  assert_null(mile_safetensors_metadata_get(st, "absent"));
  /* out of range accessors */
  assert_null(mile_safetensors_name(st, 6));
  assert_null(mile_safetensors_tensor(st, -1));
  assert_null(mile_safetensors_file_dtype(st, 99));
  assert_null(mile_safetensors_metadata_key(st, 3));
  assert_null(mile_safetensors_metadata_value(st, -1));

  /* a tensor retained by the caller outlives the handle */
  mile_tensor *kept = mile_tensor_retain(mile_safetensors_tensor(st, 0));
  mile_safetensors_free(st);
  assert_memory_equal(mile_data(kept), a_data, sizeof a_data);
  mile_tensor_release(kept);
  mile_safetensors_free(NULL);
  assert_int_equal(mile_safetensors_count(NULL), 0);
  for (int i = 0; i < 6; i++) mile_tensor_release(ts[i]);
}

/* Views (transposed, narrowed, expanded) are written as their elements, row-major. */
static void test_views_are_written_row_major(void **state) {
  (void)state;
  const float data[6] = {1, 2, 3, 4, 5, 6};
  const int64_t shape[2] = {2, 3};
  mile_tensor *base = tensor_of(MILE_FLOAT32, 2, shape, data);
  mile_tensor *tr, *nar, *ex;
  OK(mile_transpose(&tr, base, 0, 1));
  OK(mile_narrow(&nar, base, 1, 1, 2));
  const int64_t one[1] = {1}, ex_shape[2] = {3, 2};
  mile_tensor *col, *scalar = tensor_of(MILE_FLOAT32, 1, one, data);
  OK(mile_view(&col, scalar, 1, one));
  OK(mile_expand(&ex, col, 2, ex_shape));
  mile_tensor *ts[3] = {tr, nar, ex};
  const char *names[3] = {"t", "n", "e"};
  const char *path = in_tmp("views.safetensors");
  OK(mile_safetensors_save(path, 3, names, ts, 0, NULL, NULL));
  mile_safetensors *st;
  OK(mile_safetensors_load(&st, path));
  const float want_t[6] = {1, 4, 2, 5, 3, 6}, want_n[4] = {2, 3, 5, 6}, want_e[6] = {1, 1, 1, 1, 1, 1};
  const int64_t t_shape[2] = {3, 2}, n_shape[2] = {2, 2};
  assert_tensor_bytes(mile_safetensors_tensor(st, 0), MILE_FLOAT32, 2, t_shape, want_t, sizeof want_t);
  assert_tensor_bytes(mile_safetensors_tensor(st, 1), MILE_FLOAT32, 2, n_shape, want_n, sizeof want_n);
  assert_tensor_bytes(mile_safetensors_tensor(st, 2), MILE_FLOAT32, 2, ex_shape, want_e, sizeof want_e);
  mile_safetensors_free(st);
  mile_tensor_release(tr);
  mile_tensor_release(nar);
  mile_tensor_release(ex);
  mile_tensor_release(col);
  mile_tensor_release(scalar);
  mile_tensor_release(base);
}

static void test_no_tensors_no_metadata(void **state) {
  (void)state;
  const char *path = in_tmp("empty.safetensors");
  OK(mile_safetensors_save(path, 0, NULL, NULL, 0, NULL, NULL));
  size_t n;
  unsigned char *buf = read_file(path, &n);
  assert_int_equal(n, 8 + 8); /* "{}" padded to 8 bytes */
  assert_int_equal(u64le(buf), 8);
  assert_memory_equal(buf + 8, "{}      ", 8);
  free(buf);
  mile_safetensors *st;
  OK(mile_safetensors_load(&st, path));
  assert_int_equal(mile_safetensors_count(st), 0);
  assert_int_equal(mile_safetensors_metadata_count(st), 0);
  mile_safetensors_free(st);
}

/* ---- the byte layout --------------------------------------------------------------- */

static void test_byte_layout(void **state) {
  (void)state;
  const float w[6] = {1, 2, 3, 4, 5, 6};
  const double b[2] = {0.5, -1.0};
  const float s[1] = {7};
  const int64_t w_shape[2] = {2, 3}, b_shape[1] = {2};
  mile_tensor *ts[3] = {tensor_of(MILE_FLOAT32, 2, w_shape, w), tensor_of(MILE_FLOAT64, 1, b_shape, b),
                        tensor_of(MILE_FLOAT32, 0, NULL, s)};
  const char *names[3] = {"w", "b", "s"};
  const char *keys[1] = {"k"}, *values[1] = {"v"};
  const char *path = in_tmp("layout.safetensors");
  OK(mile_safetensors_save(path, 3, names, ts, 1, keys, values));
  size_t size;
  unsigned char *buf = read_file(path, &size);

  /* the header, exactly: metadata first, tensors in the order given, compact */
  const char *want = "{\"__metadata__\":{\"k\":\"v\"},"
                     "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                     "\"b\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[24,40]},"
                     "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[40,44]}}";
  size_t wlen = strlen(want);
  uint64_t hlen = u64le(buf);
  assert_true(hlen >= wlen && hlen < wlen + 8);
  assert_int_equal((8 + hlen) % 8, 0); /* data starts 8-byte aligned */
  assert_memory_equal(buf + 8, want, wlen);
  for (uint64_t i = wlen; i < hlen; i++) assert_int_equal(buf[8 + i], ' '); /* padding is spaces */
  assert_int_equal(size, 8 + hlen + 44);

  /* the same header through a JSON parser: keys, dtypes, shapes, offsets */
  json_error_t err;
  json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, 0, &err);
  assert_non_null(root);
  assert_true(json_is_object(root));
  assert_int_equal(json_object_size(root), 4);
  assert_string_equal(json_string_value(json_object_get(json_object_get(root, "__metadata__"), "k")), "v");
  json_t *e = json_object_get(root, "b");
  assert_int_equal(json_object_size(e), 3);
  assert_string_equal(json_string_value(json_object_get(e, "dtype")), "F64");
  assert_int_equal(json_integer_value(json_array_get(json_object_get(e, "shape"), 0)), 2);
  assert_int_equal(json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 0)), 24);
  assert_int_equal(json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 1)), 40);
  json_decref(root);

  /* the data: little-endian, row-major, back to back */
  const unsigned char *data = buf + 8 + hlen;
  const unsigned char one_f32[4] = {0x00, 0x00, 0x80, 0x3f};                          /* 1.0f */
  const unsigned char half_f64[8] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x3f}; /* 0.5 */
  const unsigned char seven_f32[4] = {0x00, 0x00, 0xe0, 0x40};                        /* 7.0f */
  assert_memory_equal(data, one_f32, 4);
  assert_memory_equal(data + 24, half_f64, 8);
  assert_memory_equal(data + 40, seven_f32, 4);

  /* the same inputs give the same bytes */
  const char *path2 = in_tmp("layout2.safetensors");
  OK(mile_safetensors_save(path2, 3, names, ts, 1, keys, values));
  size_t size2;
  unsigned char *buf2 = read_file(path2, &size2);
  assert_int_equal(size, size2);
  assert_memory_equal(buf, buf2, size);
  free(buf);
  free(buf2);
  for (int i = 0; i < 3; i++) mile_tensor_release(ts[i]);
}

/* ---- files written by hand (other implementations) ----------------------------------- */

static void test_hand_written_file(void **state) {
  (void)state;
  /* as the safetensors package writes it: tensors in any key order, data sorted by
   * offset, the header not padded to 8 here, metadata last, whitespace in the JSON */
  const char *header = "{ \"b\" : {\"dtype\":\"F64\", \"shape\":[1], \"data_offsets\":[8, 16]},\n"
                       "  \"a\": {\"data_offsets\":[0,8], \"shape\":[2], \"dtype\":\"F32\"},\n"
                       "  \"__metadata__\": {\"format\": \"pt\"} }";
  unsigned char data[16];
  const float a[2] = {-2.5f, 0.25f};
  const double b = 1e-300;
  memcpy(data, a, 8); /* the test host is little-endian (x86-64, aarch64) */
  memcpy(data + 8, &b, 8);
  size_t n;
  unsigned char *file = assemble(header, data, sizeof data, &n);
  const char *path = in_tmp("hand.safetensors");
  write_file(path, file, n);
  free(file);
  mile_safetensors *st;
  OK(mile_safetensors_load(&st, path));
  assert_int_equal(mile_safetensors_count(st), 2);
  assert_string_equal(mile_safetensors_name(st, 0), "a"); /* file order: by offset */
  assert_string_equal(mile_safetensors_name(st, 1), "b");
  const int64_t a_shape[1] = {2}, b_shape[1] = {1};
  assert_tensor_bytes(mile_safetensors_tensor(st, 0), MILE_FLOAT32, 1, a_shape, a, sizeof a);
  assert_tensor_bytes(mile_safetensors_tensor(st, 1), MILE_FLOAT64, 1, b_shape, &b, sizeof b);
  assert_string_equal(mile_safetensors_metadata_get(st, "format"), "pt");
  mile_safetensors_free(st);
}

/* F16 and BF16 are read as float32, exactly. */
static void test_half_dtypes_convert_to_float32(void **state) {
  (void)state;
  const char *header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]},"
                       "\"bf\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[12,18]}}";
  const uint16_t h[6] = {0x3c00, 0xc000, 0x7c00, 0x0001, 0x7bff, 0x8000}; /* 1 -2 inf 2^-24 65504 -0 */
  const uint16_t bf[3] = {0x3f80, 0xc040, 0xff80};                        /* 1 -3 -inf */
  unsigned char data[18];
  for (int i = 0; i < 6; i++) data[2 * i] = (unsigned char)h[i], data[2 * i + 1] = (unsigned char)(h[i] >> 8);
  for (int i = 0; i < 3; i++)
    data[12 + 2 * i] = (unsigned char)bf[i], data[12 + 2 * i + 1] = (unsigned char)(bf[i] >> 8);
  size_t n;
  unsigned char *file = assemble(header, data, sizeof data, &n);
  mile_safetensors *st;
  OK(mile_safetensors_parse(&st, file, n, "half"));
  free(file);
  const float want_h[6] = {1.0f, -2.0f, f32_bits(0x7f800000u), 0x1p-24f, 65504.0f, -0.0f};
  const float want_bf[3] = {1.0f, -3.0f, f32_bits(0xff800000u)};
  const int64_t h_shape[1] = {6}, bf_shape[1] = {3};
  assert_tensor_bytes(mile_safetensors_tensor(st, 0), MILE_FLOAT32, 1, h_shape, want_h, sizeof want_h);
  assert_tensor_bytes(mile_safetensors_tensor(st, 1), MILE_FLOAT32, 1, bf_shape, want_bf, sizeof want_bf);
  assert_string_equal(mile_safetensors_file_dtype(st, 0), "F16");
  assert_string_equal(mile_safetensors_file_dtype(st, 1), "BF16");
  mile_safetensors_free(st);
}

/* ---- malformed files ----------------------------------------------------------------- */

/* The header (plus data) must fail to parse with FORMAT and a message naming the
 * buffer and containing `part`. */
static void expect_bad_header(const char *header, const void *data, size_t data_len, const char *part) {
  size_t n;
  unsigned char *file = assemble(header, data, data_len, &n);
  mile_safetensors *st = (mile_safetensors *)(uintptr_t)1;
  mile_set_error(MILE_OK, "%s", "");
  mile_status status = mile_safetensors_parse(&st, file, n, "bad.safetensors");
  free(file);
  if (status != MILE_ERR_FORMAT)
    fail_msg("header %s: got %s (%s), expected format", header, mile_status_name(status), mile_last_error());
  assert_null(st);
  if (!strstr(mile_last_error(), part) || !strstr(mile_last_error(), "bad.safetensors"))
    fail_msg("header %s: message \"%s\" lacks \"%s\" or the file name", header, mile_last_error(), part);
}

static void test_bad_headers(void **state) {
  (void)state;
  unsigned char z[64] = {0};
#define ENTRY(dtype, shape, offsets) "{\"w\":{\"dtype\":" dtype ",\"shape\":" shape ",\"data_offsets\":" offsets "}}"
  /* JSON */
  expect_bad_header("{\"w\": }", NULL, 0, "not valid JSON");
  expect_bad_header("{\"a\":1,", NULL, 0, "not valid JSON");
  expect_bad_header("{\"w\":{} } x", NULL, 0, "not valid JSON");
  expect_bad_header("[1, 2]", NULL, 0, "not start with '{'");
  expect_bad_header(" {}", NULL, 0, "not start with '{'");
  expect_bad_header("{\"\xff\":1}", NULL, 0, "not valid JSON");                          /* invalid UTF-8 */
  expect_bad_header("{\"a\\u0000b\":1}", NULL, 0, "not valid JSON");                     /* NUL in a key */
  expect_bad_header("{\"w\":1,\"w\":2}", NULL, 0, "not valid JSON");                     /* duplicate key */
  expect_bad_header("{}x", NULL, 0, "not valid JSON");
  /* structure */
  expect_bad_header("{\"w\":[1]}", NULL, 0, "tensor 'w': entry is not a JSON object");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", z, 4, "missing key 'data_offsets'");
  expect_bad_header("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", z, 4, "missing key 'dtype'");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", z, 4, "missing key 'shape'");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":0}}", z, 4,
                    "unexpected key 'x'");
  expect_bad_header("{\"__metadata__\":[\"a\"]}", NULL, 0, "__metadata__ is not a JSON object");
  expect_bad_header("{\"__metadata__\":{\"a\":1}}", NULL, 0, "__metadata__ value of 'a' is not a string");
  /* dtype */
  expect_bad_header(ENTRY("\"I64\"", "[1]", "[0,8]"), z, 8, "unsupported dtype 'I64'");
  expect_bad_header(ENTRY("\"BOOL\"", "[1]", "[0,1]"), z, 1, "unsupported dtype 'BOOL'");
  expect_bad_header(ENTRY("\"f32\"", "[1]", "[0,4]"), z, 4, "unsupported dtype 'f32'");
  expect_bad_header(ENTRY("4", "[1]", "[0,4]"), z, 4, "dtype is not a string");
  /* shape */
  expect_bad_header(ENTRY("\"F32\"", "[-1]", "[0,4]"), z, 4, "non-negative integers");
  expect_bad_header(ENTRY("\"F32\"", "[1.0]", "[0,4]"), z, 4, "non-negative integers");
  expect_bad_header(ENTRY("\"F32\"", "[\"1\"]", "[0,4]"), z, 4, "non-negative integers");
  expect_bad_header(ENTRY("\"F32\"", "3", "[0,12]"), z, 12, "shape is not a list");
  expect_bad_header(ENTRY("\"F32\"", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), z, 4, "9 dims");
  expect_bad_header(ENTRY("\"F32\"", "[4294967296,4294967296]", "[0,4]"), z, 4, "too large");
  expect_bad_header(ENTRY("\"F32\"", "[4294967296,4294967296,0]", "[0,0]"), NULL, 0, "too large");
  expect_bad_header(ENTRY("\"F32\"", "[99999999999999999999]", "[0,4]"), z, 4, "not valid JSON"); /* > int64 */
  /* offsets */
  expect_bad_header(ENTRY("\"F32\"", "[1]", "[0]"), z, 4, "two non-negative integers");
  expect_bad_header(ENTRY("\"F32\"", "[1]", "[0,4,8]"), z, 4, "two non-negative integers");
  expect_bad_header(ENTRY("\"F32\"", "[1]", "[-4,0]"), z, 4, "two non-negative integers");
  expect_bad_header(ENTRY("\"F32\"", "[1]", "[4,0]"), z, 4, "end before they begin");
  expect_bad_header(ENTRY("\"F32\"", "[2]", "[0,4]"), z, 4, "hold 4 bytes but shape {2} of F32 needs 8");
  expect_bad_header(ENTRY("\"F32\"", "[1]", "[0,4]"), z, 2, "out of range");
  expect_bad_header(ENTRY("\"F32\"", "[1]", "[9223372036854775800,9223372036854775804]"), z, 4, "out of range");
  expect_bad_header(ENTRY("\"F32\"", "[1]", "[4,8]"), z, 8, "hole");
  expect_bad_header(ENTRY("\"F32\"", "[1]", "[0,4]"), z, 8, "4 trailing bytes");
  expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                    z, 12, "tensor 'b': data_offsets [4, 12] overlap tensor 'a'");
  expect_bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                    z, 4, "overlap");
  /* a name from the file is printed with control bytes escaped */
  expect_bad_header("{\"x\\u001b[2J\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", z, 1,
                    "tensor 'x\\x1b[2J'");
#undef ENTRY
}

/* A NUL (\u0000) in a string value would be cut where the handle hands out C strings:
 * refused, with the key named, instead of read back as a shorter value. */
static void test_nul_in_strings(void **state) {
  (void)state;
  unsigned char z[4] = {0};
  expect_bad_header("{\"__metadata__\":{\"ok\":\"v\",\"k\":\"ab\\u0000cd\"}}", NULL, 0,
                    "__metadata__ value of 'k' contains a NUL byte");
  expect_bad_header("{\"__metadata__\":{\"k\":\"\\u0000\"}}", NULL, 0, "value of 'k' contains a NUL");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\\u0000x\",\"shape\":[1],\"data_offsets\":[0,4]}}", z, 4,
                    "tensor 'w': dtype contains a NUL byte");
  /* other escapes still load, and nothing is cut */
  size_t n;
  unsigned char *file = assemble("{\"__metadata__\":{\"k\":\"a\\u0001b\\\"c\"}}", NULL, 0, &n);
  mile_safetensors *st;
  OK(mile_safetensors_parse(&st, file, n, "ok.safetensors"));
  assert_string_equal(mile_safetensors_metadata_get(st, "k"), "a\x01" "b\"c");
  mile_safetensors_free(st);
  free(file);
}

/* The bytes the tensors take in memory are checked against the thread's allocation
 * budget before the first one is allocated: a file that does not fit takes nothing
 * (it used to allocate the tensors that fit and then fail). */
static void test_budget_checked_before_allocating(void **state) {
  (void)state;
  float v[16] = {0};
  const int64_t shape[1] = {16};
  mile_tensor *a = tensor_of(MILE_FLOAT32, 1, shape, v), *b = tensor_of(MILE_FLOAT32, 1, shape, v);
  mile_tensor *both[2] = {a, b};
  const char *names[2] = {"a", "b"};
  const char *path = in_tmp("budget.safetensors");
  OK(mile_safetensors_save(path, 2, names, both, 0, NULL, NULL));
  mile_tensor_release(a), mile_tensor_release(b);
  mile_safetensors *st = NULL;
  mile_alloc_budget(100); /* the file needs 128 */
  EXPECT_ERR_MSG(MILE_ERR_NOMEM, "take 128 bytes in memory, more than the allocation budget allows (100 bytes left)",
                 mile_safetensors_load(&st, path));
  assert_null(st);
  assert_non_null(strstr(mile_last_error(), path));
  assert_int_equal(mile_alloc_budget(128), 100); /* nothing was charged */
  OK(mile_safetensors_load(&st, path));
  assert_int_equal(mile_alloc_budget(-1), 0);
  mile_safetensors_free(st);
  /* F16 doubles in memory: 4 elements, 8 bytes in the file, 16 as float32 */
  unsigned char half[8] = {0};
  size_t n;
  unsigned char *file = assemble("{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", half, 8, &n);
  mile_alloc_budget(15);
  EXPECT_ERR_MSG(MILE_ERR_NOMEM, "take 16 bytes", mile_safetensors_parse(&st, file, n, "half"));
  assert_int_equal(mile_alloc_budget(16), 15);
  OK(mile_safetensors_parse(&st, file, n, "half"));
  mile_safetensors_free(st);
  mile_alloc_budget(-1);
  free(file);
}

static void test_bad_lengths(void **state) {
  (void)state;
  mile_safetensors *st;
  /* shorter than the length field */
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, "too short", mile_safetensors_parse(&st, "\x02\x00\x00", 3, "short"));
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, "0 bytes", mile_safetensors_parse(&st, NULL, 0, NULL));
  assert_non_null(strstr(mile_last_error(), "<memory>"));
  /* header length past the end of the file, and absurd */
  unsigned char buf[16] = {0x10, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, "larger than the rest of the file", mile_safetensors_parse(&st, buf, 10, "l"));
  memset(buf, 0xff, 8);
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, "exceeds the limit", mile_safetensors_parse(&st, buf, 16, "l"));
  buf[0] = 0, buf[1] = 0, buf[2] = 0, buf[3] = 0x10, buf[4] = 0, buf[5] = 0, buf[6] = 0, buf[7] = 0;
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, "exceeds the limit", mile_safetensors_parse(&st, buf, 16, "l"));
  /* a header too short for an object */
  unsigned char one[9] = {1, 0, 0, 0, 0, 0, 0, 0, '{'};
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, "too short", mile_safetensors_parse(&st, one, 9, "l"));
  /* arguments */
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "NULL", mile_safetensors_parse(NULL, buf, 16, "l"));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "NULL", mile_safetensors_parse(&st, NULL, 16, "l"));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "NULL", mile_safetensors_load(&st, NULL));
}

/* A small valid file with metadata, every dtype mile writes, an empty and a 0-d tensor. */
static unsigned char *small_file(size_t *size) {
  const float w[3] = {1, 2, 3};
  const double d[2] = {4, 5};
  const int64_t w_shape[1] = {3}, d_shape[2] = {1, 2}, e_shape[2] = {0, 4};
  mile_tensor *ts[4] = {tensor_of(MILE_FLOAT32, 1, w_shape, w), tensor_of(MILE_FLOAT64, 2, d_shape, d),
                        tensor_of(MILE_FLOAT32, 0, NULL, w), NULL};
  OK(mile_empty(&ts[3], MILE_FLOAT64, 2, e_shape));
  const char *names[4] = {"w", "d", "s", "e"};
  const char *keys[2] = {"mile.spec", "x"}, *values[2] = {"{\"type\":\"Linear\",\"args\":[3,1]}", "y"};
  const char *path = in_tmp("small.safetensors");
  OK(mile_safetensors_save(path, 4, names, ts, 2, keys, values));
  for (int i = 0; i < 4; i++) mile_tensor_release(ts[i]);
  return read_file(path, size);
}

/* Every proper prefix of a valid file fails cleanly, from memory and from disk. */
static void test_truncated_files(void **state) {
  (void)state;
  size_t n;
  unsigned char *full = small_file(&n);
  mile_safetensors *st;
  OK(mile_safetensors_parse(&st, full, n, "full"));
  assert_int_equal(mile_safetensors_count(st), 4);
  mile_safetensors_free(st);
  const char *path = in_tmp("prefix.safetensors");
  for (size_t len = 0; len < n; len++) {
    st = (mile_safetensors *)(uintptr_t)1;
    mile_status status = mile_safetensors_parse(&st, full, len, "prefix");
    if (status != MILE_ERR_FORMAT) fail_msg("prefix of %zu/%zu bytes: %s", len, n, mile_status_name(status));
    assert_null(st);
    write_file(path, full, len);
    status = mile_safetensors_load(&st, path);
    if (status != MILE_ERR_FORMAT) fail_msg("file prefix of %zu/%zu bytes: %s", len, n, mile_status_name(status));
    assert_non_null(strstr(mile_last_error(), path));
  }
  free(full);
}

/* Random damage to a valid file: never a crash, never a leak (ASan), a status always. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void) { /* xorshift64* with a fixed seed */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

static void test_fuzz_byte_flips(void **state) {
  (void)state;
  size_t n;
  unsigned char *full = small_file(&n);
  unsigned char *copy = malloc(n);
  assert_non_null(copy);
  uint64_t hlen = u64le(full);
  /* the positions of digits and letters in the header: flipping those reaches the
   * checks behind the JSON parser (shapes, offsets, dtypes) */
  size_t spots[1024], n_spots = 0;
  for (size_t i = 8; i < 8 + hlen && n_spots < 1024; i++)
    if ((full[i] >= '0' && full[i] <= '9') || (full[i] >= 'A' && full[i] <= 'Z')) spots[n_spots++] = i;
  assert_true(n_spots > 10);
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 6000; iter++) {
    memcpy(copy, full, n);
    size_t len = n;
    int mode = (int)(next_random() % 4);
    int flips = 1 + (int)(next_random() % 4);
    for (int k = 0; k < flips; k++) {
      if (mode == 0) { /* any byte, any value */
        copy[next_random() % n] = (unsigned char)next_random();
      } else if (mode == 1) { /* one bit of the header */
        size_t at = 8 + next_random() % hlen;
        copy[at] ^= (unsigned char)(1u << (next_random() % 8));
      } else if (mode == 2) { /* a digit or dtype letter into another */
        size_t at = spots[next_random() % n_spots];
        copy[at] = copy[at] >= 'A' ? (unsigned char)('A' + next_random() % 26)
                                   : (unsigned char)('0' + next_random() % 10);
      } else { /* the length field */
        copy[next_random() % 8] ^= (unsigned char)(1u << (next_random() % 8));
      }
    }
    if (next_random() % 8 == 0) len = next_random() % (n + 1);
    mile_safetensors *st;
    mile_status status = mile_safetensors_parse(&st, copy, len, "fuzz");
    if (status == MILE_OK) {
      accepted++;
      for (int32_t i = 0; i < mile_safetensors_count(st); i++) { /* a valid handle: touch everything */
        mile_tensor *t = mile_safetensors_tensor(st, i);
        assert_non_null(t);
        assert_non_null(mile_safetensors_name(st, i));
        volatile unsigned char sink = 0;
        size_t nb = (size_t)mile_numel(t) * mile_dtype_size(t->dtype);
        for (size_t b = 0; b < nb; b++) sink ^= ((unsigned char *)mile_data(t))[b];
        (void)sink;
      }
      mile_safetensors_free(st);
    } else {
      rejected++;
      assert_null(st);
      if (status != MILE_ERR_FORMAT)
        fail_msg("iteration %d: %s: %s", iter, mile_status_name(status), mile_last_error());
      assert_non_null(strstr(mile_last_error(), "fuzz"));
    }
  }
  print_message("fuzz: %d damaged files accepted (valid by chance), %d rejected\n", accepted, rejected);
  assert_true(rejected > 3000);
  free(copy);
  free(full);
}

/* ---- I/O errors and atomic writes ----------------------------------------------------- */

static void test_missing_file(void **state) {
  (void)state;
  mile_safetensors *st = (mile_safetensors *)(uintptr_t)1;
  const char *path = in_tmp("does-not-exist.safetensors");
  EXPECT_ERR_MSG(MILE_ERR_IO, "No such file", mile_safetensors_load(&st, path));
  assert_null(st);
  assert_non_null(strstr(mile_last_error(), path));
  EXPECT_ERR_MSG(MILE_ERR_IO, "not a regular file", mile_safetensors_load(&st, tmpdir));
}

static void test_save_argument_errors(void **state) {
  (void)state;
  const float v[1] = {1};
  const int64_t shape[1] = {1};
  mile_tensor *t = tensor_of(MILE_FLOAT32, 1, shape, v);
  mile_tensor *two[2] = {t, t};
  const char *path = in_tmp("args.safetensors");
  const char *dup[2] = {"a", "a"}, *empty[1] = {""}, *meta_name[1] = {"__metadata__"}, *bad_utf8[1] = {"\xc3("};
  const char *null_name[1] = {NULL};
  mile_tensor *null_tensor[1] = {NULL};
  const char *ok_name[1] = {"a"};
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "path is NULL", mile_safetensors_save(NULL, 1, ok_name, two, 0, NULL, NULL));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "negative", mile_safetensors_save(path, -1, ok_name, two, 0, NULL, NULL));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "NULL", mile_safetensors_save(path, 1, NULL, two, 0, NULL, NULL));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "appears twice", mile_safetensors_save(path, 2, dup, two, 0, NULL, NULL));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "empty name", mile_safetensors_save(path, 1, empty, two, 0, NULL, NULL));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "NULL name", mile_safetensors_save(path, 1, null_name, two, 0, NULL, NULL));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "cannot name", mile_safetensors_save(path, 1, meta_name, two, 0, NULL, NULL));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "'\\xc3(' is not valid UTF-8",
             mile_safetensors_save(path, 1, bad_utf8, two, 0, NULL, NULL));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "is NULL", mile_safetensors_save(path, 1, ok_name, null_tensor, 0, NULL, NULL));
  const char *keys[2] = {"k", "k"}, *values[2] = {"1", "2"}, *bad_values[1] = {"\xff"};
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "metadata key 'k' appears twice",
             mile_safetensors_save(path, 1, ok_name, two, 2, keys, values));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "not valid UTF-8", mile_safetensors_save(path, 1, ok_name, two, 1, keys, bad_values));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "metadata", mile_safetensors_save(path, 1, ok_name, two, 1, NULL, values));
  assert_non_null(strstr(mile_last_error(), path));
  assert_int_equal(access(path, F_OK), -1); /* nothing was written */
  assert_int_equal(count_temp_files(tmpdir), 0);
  mile_tensor_release(t);
}

static void save_one(const char *path, mile_tensor *t, mile_status want) {
  const char *names[1] = {"t"};
  mile_status status = mile_safetensors_save(path, 1, names, &t, 0, NULL, NULL);
  if (status != want)
    fail_msg("save %s: %s (%s), expected %s", path, mile_status_name(status), mile_last_error(),
             mile_status_name(want));
}

static void test_atomic_write_failures(void **state) {
  (void)state;
  const int64_t small_shape[1] = {4}, big_shape[1] = {1 << 16};
  mile_tensor *small, *big;
  OK(mile_full(&small, MILE_FLOAT32, 1, small_shape, 1.0));
  OK(mile_full(&big, MILE_FLOAT32, 1, big_shape, 2.0));

  /* the target is a directory: the rename fails, the temporary file goes */
  char dir[512];
  snprintf(dir, sizeof dir, "%s", in_tmp("a-directory"));
  assert_int_equal(mkdir(dir, 0755), 0);
  save_one(dir, small, MILE_ERR_IO);
  assert_non_null(strstr(mile_last_error(), dir));
  assert_int_equal(count_temp_files(tmpdir), 0);
  rmdir(dir);

  /* the directory does not exist */
  save_one(in_tmp("no/such/dir/x.safetensors"), small, MILE_ERR_IO);
  assert_non_null(strstr(mile_last_error(), "No such file or directory"));

  /* an existing file survives a write that fails half-way (file size limit: EFBIG) */
  char path[512];
  snprintf(path, sizeof path, "%s", in_tmp("old.safetensors"));
  save_one(path, small, MILE_OK);
  size_t old_size;
  unsigned char *old = read_file(path, &old_size);
  struct rlimit saved, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
  lim = saved;
  lim.rlim_cur = 4096;
  signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  save_one(path, big, MILE_ERR_IO);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
  assert_non_null(strstr(mile_last_error(), "failed"));
  size_t now_size;
  unsigned char *now = read_file(path, &now_size);
  assert_int_equal(now_size, old_size);
  assert_memory_equal(now, old, old_size);
  free(now);
  assert_int_equal(count_temp_files(tmpdir), 0);

  /* a directory that is not writable (only meaningful when not root) */
  if (geteuid() != 0) {
    char ro[512];
    snprintf(ro, sizeof ro, "%s", in_tmp("read-only"));
    assert_int_equal(mkdir(ro, 0755), 0);
    char target[600];
    snprintf(target, sizeof target, "%s/x.safetensors", ro);
    save_one(target, small, MILE_OK);
    assert_int_equal(chmod(ro, 0555), 0);
    save_one(target, big, MILE_ERR_IO);
    assert_non_null(strstr(mile_last_error(), "Permission denied"));
    assert_int_equal(count_temp_files(ro), 0);
    chmod(ro, 0755);
    mile_safetensors *st;
    OK(mile_safetensors_load(&st, target)); /* still the small one */
    assert_int_equal(mile_numel(mile_safetensors_tensor(st, 0)), 4);
    mile_safetensors_free(st);
    unlink(target);
    rmdir(ro);
  }

  /* a successful save replaces the file whole */
  save_one(path, big, MILE_OK);
  mile_safetensors *st;
  OK(mile_safetensors_load(&st, path));
  assert_int_equal(mile_numel(mile_safetensors_tensor(st, 0)), 1 << 16);
  mile_safetensors_free(st);
  assert_int_equal(count_temp_files(tmpdir), 0);
  free(old);
  mile_tensor_release(small);
  mile_tensor_release(big);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_bit_exact),
      cmocka_unit_test(test_views_are_written_row_major),
      cmocka_unit_test(test_no_tensors_no_metadata),
      cmocka_unit_test(test_byte_layout),
      cmocka_unit_test(test_hand_written_file),
      cmocka_unit_test(test_half_dtypes_convert_to_float32),
      cmocka_unit_test(test_bad_headers),
      cmocka_unit_test(test_nul_in_strings),
      cmocka_unit_test(test_budget_checked_before_allocating),
      cmocka_unit_test(test_bad_lengths),
      cmocka_unit_test(test_truncated_files),
      cmocka_unit_test(test_fuzz_byte_flips),
      cmocka_unit_test(test_missing_file),
      cmocka_unit_test(test_save_argument_errors),
      cmocka_unit_test(test_atomic_write_failures),
  };
  return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
