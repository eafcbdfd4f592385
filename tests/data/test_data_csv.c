/* test_data_csv.c - intervention datasets (mile/data.h): the CSV reader's checks and
 * messages, bit-exact round trips, the crash-safe writers, the table API and the
 * weighted sampler.
 *
 * Expected messages are written out in full ("t.csv:7:12: too many fields"), never
 * derived from the code under test. Files live in a fresh directory under /tmp that
 * is removed at the end. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, fork, kill, nanosleep */
#include <dirent.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mile/mile.h"

#include "../common/checks.h"



/* ---- files ----------------------------------------------------------------------------- */

static char dir[128];

static const char *in_dir(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static void write_text(const char *path, const char *text, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) fail_msg("cannot create %s", path);
  if (n && fwrite(text, 1, n, f) != n) fail_msg("cannot write %s", path);
  fclose(f);
}

/* The bytes of a file, NUL-terminated; *n its size. */
static char *read_text(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)size + 1);
  if (size && fread(s, 1, (size_t)size, f) != (size_t)size) fail_msg("cannot read %s", path);
  s[size] = '\0';
  fclose(f);
  if (n) *n = (size_t)size;
  return s;
}

static int setup_dir(void **state) {
  snprintf(dir, sizeof dir, "/tmp/mile-data-test-XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(in_dir(e->d_name));
  closedir(d);
  rmdir(dir);
  return 0;
}

/* Number of entries of the test directory whose name starts with prefix. */
static int count_files(const char *prefix) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
  closedir(d);
  return n;
}

/* ---- datasets to write ---------------------------------------------------------------------- */

/* Doubles that a sloppy printer or parser gets wrong. */
static const double tricky[] = {0.1, -0.0, 1.0 / 3, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                                -1e-300, 123456789.12345679, 0.30000000000000004, 1e22, 1e-7, -2.5,
                                4.9406564584124654e-320, 0.0};
enum { N_TRICKY = sizeof tricky / sizeof tricky[0] };

/* A valid dataset with `rows` rows of tricky and random values. */
static mile_dataset *make_dataset(int32_t obs_dim, int32_t action_dim, int discrete, int has_p, int64_t rows,
                                  uint64_t seed) {
  mile_dataset *ds;
  OK(mile_dataset_new(&ds, obs_dim, action_dim, discrete, has_p));
  if (discrete) OK(mile_dataset_set_n_actions(ds, 5));
  mile_rng rng;
  mile_rng_seed(&rng, seed);
  int32_t cols = mile_dataset_cols(ds);
  double *row = malloc((size_t)cols * sizeof *row);
  int32_t ar = mile_dataset_field_col(ds, MILE_DATA_FIELD_ROBOT_ACTION);
  int32_t ah = mile_dataset_field_col(ds, MILE_DATA_FIELD_HUMAN_ACTION);
  int32_t nu = mile_dataset_field_col(ds, MILE_DATA_FIELD_NU);
  for (int64_t i = 0; i < rows; i++) {
    int64_t k = 0;
    row[0] = (double)(i / 7), row[1] = (double)(i % 7);
    for (int32_t j = 0; j < obs_dim; j++)
      row[2 + j] = (i + j) % 3 == 0 ? tricky[(i * 3 + j) % N_TRICKY] : mile_rng_normal(&rng) * 1e3;
    int intervene = mile_rng_uniform(&rng) < 0.3;
    for (int32_t j = 0; j < action_dim; j++) {
      row[ar + j] = discrete ? (double)mile_rng_below(&rng, 5) : mile_rng_normal(&rng);
      row[ah + j] = !intervene ? row[ar + j] : discrete ? (double)mile_rng_below(&rng, 5) : tricky[(i + j) % N_TRICKY];
    }
    row[nu] = intervene;
    row[nu + 1] = tricky[(i + k) % N_TRICKY] * (i % 2 ? -1 : 1); /* reward */
    row[nu + 2] = i % 7 == 6;                                     /* done */
    row[nu + 3] = i % 7 == 6 && i % 2;                            /* success */
    if (has_p) row[nu + 4] = i % 5 == 0 ? (double)(i % 2) : mile_rng_uniform(&rng);
    OK(mile_dataset_append(ds, 1, row));
  }
  free(row);
  return ds;
}

/* Same columns and bit-identical values. */
static void assert_same(const mile_dataset *a, const mile_dataset *b) {
  assert_int_equal(mile_dataset_obs_dim(a), mile_dataset_obs_dim(b));
  assert_int_equal(mile_dataset_action_dim(a), mile_dataset_action_dim(b));
  assert_int_equal(mile_dataset_is_discrete(a), mile_dataset_is_discrete(b));
  assert_int_equal(mile_dataset_has_p(a), mile_dataset_has_p(b));
  assert_int_equal(mile_dataset_rows(a), mile_dataset_rows(b));
  int64_t n = mile_dataset_rows(a) * mile_dataset_cols(a);
  if (n && memcmp(mile_dataset_data(a), mile_dataset_data(b), (size_t)n * sizeof(double)) != 0) {
    for (int64_t i = 0; i < n; i++) {
      double x = mile_dataset_data(a)[i], y = mile_dataset_data(b)[i];
      if (memcmp(&x, &y, sizeof x))
        fail_msg("value %lld (row %lld, column %s) differs: %.17g vs %.17g", (long long)i,
                 (long long)(i / mile_dataset_cols(a)), mile_dataset_col_name(a, (int32_t)(i % mile_dataset_cols(a))), x, y);
    }
  }
}

/* ---- round trips ----------------------------------------------------------------------------- */

static void round_trip(int32_t obs_dim, int32_t action_dim, int discrete, int has_p) {
  mile_dataset *ds = make_dataset(obs_dim, action_dim, discrete, has_p, 300, 7), *back;
  const char *path = in_dir("rt.csv");
  OK(mile_dataset_save(ds, path));
  OK(mile_dataset_load(&back, path, discrete ? 5 : 0));
  assert_same(ds, back);
  assert_int_equal(mile_dataset_n_actions(back), discrete ? 5 : 0);
  /* saving what was loaded gives the same bytes */
  char *first = read_text(path, NULL);
  OK(mile_dataset_save(back, path));
  char *second = read_text(path, NULL);
  assert_string_equal(first, second);
  free(first), free(second);
  mile_dataset_free(ds), mile_dataset_free(back);
  assert_int_equal(count_files("rt.csv.tmp"), 0);
}

static void test_round_trip_discrete(void **state) { round_trip(4, 1, 1, 0); }
static void test_round_trip_discrete_p(void **state) { round_trip(3, 1, 1, 1); }
static void test_round_trip_continuous(void **state) { round_trip(5, 3, 0, 0); }
static void test_round_trip_continuous_p(void **state) { round_trip(2, 2, 0, 1); }

static void test_header_names(void **state) {
  mile_dataset *ds;
  OK(mile_dataset_new(&ds, 2, 2, 0, 1));
  const char *want[] = {"episode", "t", "s_0", "s_1", "ar_0", "ar_1", "ah_0", "ah_1", "nu", "reward", "done",
                        "success", "p"};
  assert_int_equal(mile_dataset_cols(ds), 13);
  for (int i = 0; i < 13; i++) assert_string_equal(mile_dataset_col_name(ds, i), want[i]);
  assert_null(mile_dataset_col_name(ds, 13));
  const char *path = in_dir("empty.csv");
  OK(mile_dataset_save(ds, path));
  char *text = read_text(path, NULL);
  assert_string_equal(text, "episode,t,s_0,s_1,ar_0,ar_1,ah_0,ah_1,nu,reward,done,success,p\n");
  free(text);
  mile_dataset_free(ds);
  OK(mile_dataset_new(&ds, 1, 1, 1, 0));
  OK(mile_dataset_save(ds, path));
  text = read_text(path, NULL);
  assert_string_equal(text, "episode,t,s_0,ar,ah,nu,reward,done,success\n");
  free(text);
  mile_dataset_free(ds);
}

/* The exact bytes mile writes for a small dataset (%.17g, LF). */
static void test_written_text(void **state) {
  mile_dataset *ds;
  OK(mile_dataset_new(&ds, 2, 1, 1, 1));
  double rows[] = {0, 0, 0.1, -0.0, 2, 2, 0, -1.5, 0, 0, 0.25,
                   0, 1, 1e22, 5e-324, 1, 3, 1, 10, 1, 1, 1};
  OK(mile_dataset_append(ds, 2, rows));
  const char *path = in_dir("text.csv");
  OK(mile_dataset_save(ds, path));
  char *text = read_text(path, NULL);
  assert_string_equal(text, "episode,t,s_0,s_1,ar,ah,nu,reward,done,success,p\n"
                            "0,0,0.10000000000000001,-0,2,2,0,-1.5,0,0,0.25\n"
                            "0,1,1e+22,4.9406564584124654e-324,1,3,1,10,1,1,1\n");
  free(text);
  mile_dataset_free(ds);
}

/* Every value is written as "%.17g" prints it (the writer's integer fast path
 * included): compare the reward fields with snprintf's output. */
static void test_number_text(void **state) {
  double values[] = {0, -0.0, 1, -1, 7, 10, 99, 100, 12345, -987654321, 999999999999999, -999999999999999,
                     1e15, 1e15 + 1, 1e16, 1e17, 123456789012345678.0, 9007199254740993.0, 0.5, -2.5, 1e-320,
                     4503599627370495.5, 1e300, -1e-5, 3.0000000000000004};
  enum { N = sizeof values / sizeof values[0] };
  mile_dataset *ds;
  OK(mile_dataset_new(&ds, 1, 1, 0, 0));
  mile_rng rng;
  mile_rng_seed(&rng, 99);
  double extra[200];
  for (int i = 0; i < 200; i++) { /* random integers of every size, both signs */
    double mag = floor(mile_rng_uniform(&rng) * pow(10, mile_rng_below(&rng, 18)));
    extra[i] = i % 2 ? -mag : mag;
  }
  for (int i = 0; i < N + 200; i++) {
    /* episode, t, s_0, ar_0, ah_0, nu, reward, done, success */
    double row[9] = {0, 0, 0, 0, 0, 0, i < N ? values[i] : extra[i - N], 0, 0};
    OK(mile_dataset_append(ds, 1, row));
  }
  const char *path = in_dir("numbers.csv");
  OK(mile_dataset_save(ds, path));
  char *text = read_text(path, NULL);
  char *line = strchr(text, '\n') + 1;
  for (int i = 0; i < N + 200; i++) {
    char want[64], got[64];
    snprintf(want, sizeof want, "%.17g", i < N ? values[i] : extra[i - N]);
    char *end = strchr(line, '\n');
    /* reward is the 7th field */
    char *f = line;
    for (int k = 0; k < 6; k++) f = strchr(f, ',') + 1;
    size_t len = (size_t)(strchr(f, ',') - f);
    snprintf(got, sizeof got, "%.*s", (int)len, f);
    assert_string_equal(got, want);
    line = end + 1;
  }
  free(text);
  mile_dataset_free(ds);
}

/* The whole header in another order: values land in the canonical columns. */
static void test_any_column_order(void **state) {
  const char *text = "success,done,reward,nu,ah,ar,s_1,s_0,t,episode\n"
                     "1,1,-2.5,1,3,0,0.5,0.25,4,2\n";
  mile_dataset *ds;
  OK(mile_dataset_parse(&ds, text, strlen(text), "t.csv", 0));
  const double want[] = {2, 4, 0.25, 0.5, 0, 3, 1, -2.5, 1, 1};
  assert_int_equal(mile_dataset_rows(ds), 1);
  assert_memory_equal(mile_dataset_data(ds), want, sizeof want);
  mile_dataset_free(ds);
}

/* ---- what the reader accepts ----------------------------------------------------------------- */

static const char *HEADER = "episode,t,s_0,s_1,s_2,ar,ah,nu,reward,done,success\n";

static mile_dataset *parse_ok(const char *text, size_t n) {
  mile_dataset *ds;
  OK(mile_dataset_parse(&ds, text, n, "t.csv", 0));
  return ds;
}

static void test_header_only(void **state) {
  mile_dataset *ds = parse_ok(HEADER, strlen(HEADER));
  assert_int_equal(mile_dataset_rows(ds), 0);
  assert_int_equal(mile_dataset_obs_dim(ds), 3);
  assert_true(mile_dataset_is_discrete(ds));
  assert_null(mile_dataset_data(ds));
  mile_tensor *t;
  OK(mile_dataset_field(&t, ds, MILE_DATA_FIELD_OBS, MILE_FLOAT32));
  assert_int_equal(t->ndim, 2);
  assert_int_equal(t->shape[0], 0);
  assert_int_equal(t->shape[1], 3);
  mile_tensor_release(t);
  mile_dataset_free(ds);
}

static void test_crlf_quotes_bom_blank_lines(void **state) {
  const char *lf = "episode,t,s_0,s_1,s_2,ar,ah,nu,reward,done,success\n"
                   "0,0,0.5,-1,2e-3,1,1,0,0.25,0,0\n"
                   "0,1,1,2,3,2,0,1,-7,1,1\n";
  const char *crlf = "\xEF\xBB\xBF" "\"episode\",t,s_0,s_1,s_2,ar,ah,nu,reward,done,success\r\n"
                     "\r\n"
                     "0, 0,\"0.5\",-1,2e-3,1,1,0,0.25,0,0\r\n"
                     "\n"
                     "0,1,\"1\",  2  ,3,2,0,1,\"-7\",1,1\r\n"
                     "\r\n";
  mile_dataset *a = parse_ok(lf, strlen(lf)), *b = parse_ok(crlf, strlen(crlf));
  assert_same(a, b);
  assert_int_equal(mile_dataset_rows(a), 2);
  assert_int_equal(mile_dataset_count_interventions(a), 1);
  mile_dataset_free(a), mile_dataset_free(b);
}

/* ---- what the reader rejects, and the message ------------------------------------------------- */

static void expect_format(const char *text, int32_t n_actions, const char *want) {
  mile_dataset *ds = (mile_dataset *)&ds;
  mile_set_error(MILE_OK, "%s", "");
  mile_status st = mile_dataset_parse(&ds, text, strlen(text), "t.csv", n_actions);
  if (st != MILE_ERR_FORMAT)
    fail_msg("parsing %s: got %s (%s), expected a format error \"%s\"", text, mile_status_name(st), mile_last_error(),
             want);
  assert_null(ds);
  if (strncmp(mile_last_error(), want, strlen(want)) != 0)
    fail_msg("message \"%s\" does not start with \"%s\"", mile_last_error(), want);
}

/* A file of `good` valid rows after the header, then `last` (a line). */
static char *rows_then(int good, const char *last) {
  size_t size = strlen(HEADER) + (size_t)good * 64 + strlen(last) + 1;
  char *s = malloc(size);
  size_t o = (size_t)snprintf(s, size, "%s", HEADER);
  for (int i = 0; i < good; i++) o += (size_t)snprintf(s + o, size - o, "0,%d,0.5,1,2,1,1,0,0,0,0\n", i);
  snprintf(s + o, size - o, "%s", last);
  return s;
}

static void expect_row_error(int good, const char *last, int32_t n_actions, const char *want) {
  char *text = rows_then(good, last);
  expect_format(text, n_actions, want);
  free(text);
}

static void test_bad_headers(void **state) {
  expect_format("", 0, "t.csv:1:1: empty file: no header row");
  expect_format("\n\r\n\n", 0, "t.csv:1:1: empty file: no header row");
  expect_format("0,0,0.5,1,2,1,1,0,0,0,0\n", 0,
                "t.csv:1:1: missing header row: the first row holds data (\"0\")");
  expect_format("episode,t,s_0,foo,ar,ah,nu,reward,done,success\n", 0,
                "t.csv:1:4: unknown column \"foo\" (expected episode, t, s_<i>");
  expect_format("episode,t,s_0,s_01,ar,ah,nu,reward,done,success\n", 0, "t.csv:1:4: unknown column \"s_01\"");
  expect_format("episode,t,S_0,ar,ah,nu,reward,done,success\n", 0, "t.csv:1:3: unknown column \"S_0\"");
  expect_format("episode,t,s_0,s_2,s_3,ar,ah,nu,reward,done,success\n", 0,
                "t.csv:1:4: column 's_2': 's_1' is missing (the s_<i> columns must be numbered 0, 1, 2, ...");
  expect_format("episode,t,s_1,ar,ah,nu,reward,done,success\n", 0, "t.csv:1:3: column 's_1': 's_0' is missing");
  expect_format("episode,t,s_0,s_1,s_0,ar,ah,nu,reward,done,success\n", 0,
                "t.csv:1:5: duplicate column \"s_0\" (also column 3)");
  expect_format("episode,t,s_0,ar,ah,nu,reward,done,success,t\n", 0, "t.csv:1:10: duplicate column \"t\" (also column 2)");
  expect_format("episode,t,s_0,ar,ah,nu,done,success\n", 0, "t.csv:1:1: missing column 'reward'");
  expect_format("t,s_0,ar,ah,nu,reward,done,success\n", 0, "t.csv:1:1: missing column 'episode'");
  expect_format("episode,t,ar,ah,nu,reward,done,success\n", 0, "t.csv:1:1: missing column 's_0'");
  expect_format("episode,t,s_0,ah,nu,reward,done,success\n", 0, "t.csv:1:1: missing column 'ar'");
  expect_format("episode,t,s_0,ar,nu,reward,done,success\n", 0, "t.csv:1:1: missing column 'ah'");
  expect_format("episode,t,s_0,ar,ar_0,ah,nu,reward,done,success\n", 0,
                "t.csv:1:5: column \"ar_0\": 'ar' (discrete) and 'ar_<i>' (continuous) columns cannot be mixed");
  expect_format("episode,t,s_0,ar,ah_0,nu,reward,done,success\n", 0,
                "t.csv:1:5: column \"ah_0\": the robot action is discrete ('ar') but the human action is continuous");
  expect_format("episode,t,s_0,ar_0,ar_1,ah_0,nu,reward,done,success\n", 0,
                "t.csv:1:5: column \"ar_1\" has no matching 'ah_1'");
  expect_format("episode,t,s_0,ar_0,ah_0,ah_1,nu,reward,done,success\n", 0,
                "t.csv:1:6: column \"ah_1\" has no matching 'ar_1'");
  expect_format("episode,t,s_0,ar_0,ar_2,ah_0,ah_1,ah_2,nu,reward,done,success\n", 0,
                "t.csv:1:5: column 'ar_2': 'ar_1' is missing");
  expect_format("episode,t,s_0,,ar,ah,nu,reward,done,success\n", 0,
                "t.csv:1:4: \"\" is not a column name (empty header field)");
  /* a truncated header (no newline) is not taken as a header with fewer columns */
  expect_format("episode,t,s_0,ar,ah,nu,reward,done,success", 0, "t.csv:1:9: truncated last line: 9 fields");
}

static void test_bad_rows(void **state) {
  /* wrong number of fields on line 7 (header, 5 good rows) */
  expect_row_error(5, "0,5,0.5,1,2,1,1,0,0,0,0,7\n", 0, "t.csv:7:12: too many fields: the header has 11 columns");
  expect_row_error(5, "0,5,0.5,1,2,1,1,0,0\n", 0,
                   "t.csv:7:10: too few fields: 9, the header has 11 (first missing: \"done\")");
  /* not a number at line 3, column 5 (s_2) */
  expect_row_error(1, "0,1,0.5,1,abc,1,1,0,0,0,0\n", 0, "t.csv:3:5: column 's_2': \"abc\" is not a number");
  expect_row_error(1, "0,1,0.5,1,0x10,1,1,0,0,0,0\n", 0, "t.csv:3:5: column 's_2': \"0x10\" is not a number");
  expect_row_error(1, "0,1,0.5,1,1e,1,1,0,0,0,0\n", 0, "t.csv:3:5: column 's_2': \"1e\" is not a number");
  expect_row_error(1, "0,1,0.5,1,.,1,1,0,0,0,0\n", 0, "t.csv:3:5: column 's_2': \".\" is not a number");
  expect_row_error(0, "0,1,0.5,1,\"1,5\",1,1,0,0,0,0\n", 0, "t.csv:2:5: column 's_2': \"1,5\" is not a number");
  expect_row_error(0, "0,0,,1,2,1,1,0,0,0,0\n", 0, "t.csv:2:3: column 's_0': empty field");
  /* NaN and infinities */
  expect_row_error(0, "0,0,nan,1,2,1,1,0,0,0,0\n", 0,
                   "t.csv:2:3: column 's_0': \"nan\": NaN and infinities are not allowed");
  expect_row_error(0, "0,0,0,1,2,1,1,0,-Inf,0,0\n", 0,
                   "t.csv:2:9: column 'reward': \"-Inf\": NaN and infinities are not allowed");
  expect_row_error(0, "0,0,0,1,infinity,1,1,0,1,0,0\n", 0, "t.csv:2:5: column 's_2': \"infinity\": NaN");
  expect_row_error(0, "0,0,0,1,1e999,1,1,0,1,0,0\n", 0,
                   "t.csv:2:5: column 's_2': \"1e999\" is out of the range of a double");
  /* flags, integers, actions */
  expect_row_error(2, "0,2,0.5,1,2,1,1,2,0,0,0\n", 0, "t.csv:4:8: column 'nu': must be 0 or 1, got 2");
  expect_row_error(0, "0,0,0.5,1,2,1,1,0,0,0.5,0\n", 0, "t.csv:2:10: column 'done': must be 0 or 1, got 0.5");
  expect_row_error(0, "0,0,0.5,1,2,1,1,0,0,0,-1\n", 0, "t.csv:2:11: column 'success': must be 0 or 1, got -1");
  expect_row_error(0, "0,-1,0.5,1,2,1,1,0,0,0,0\n", 0,
                   "t.csv:2:2: column 't': must be a non-negative integer, got -1");
  expect_row_error(0, "1.5,0,0.5,1,2,1,1,0,0,0,0\n", 0,
                   "t.csv:2:1: column 'episode': must be a non-negative integer, got 1.5");
  expect_row_error(0, "0,0,0.5,1,2,1.5,1.5,0,0,0,0\n", 0,
                   "t.csv:2:6: column 'ar': a discrete action must be a non-negative integer, got 1.5");
  expect_row_error(0, "0,0,0.5,1,2,-1,-1,0,0,0,0\n", 0,
                   "t.csv:2:6: column 'ar': a discrete action must be a non-negative integer, got -1");
  expect_row_error(0, "0,0,0.5,1,2,1,4,1,0,0,0\n", 4,
                   "t.csv:2:7: column 'ah': action 4 out of range 0..3 (n_actions = 4)");
  /* nu = 0: the human action columns must hold the robot action */
  expect_row_error(3, "0,3,0.5,1,2,1,2,0,0,0,0\n", 0,
                   "t.csv:5:7: column 'ah': nu = 0 but ah = 2 differs from ar = 1");
  expect_format("episode,t,s_0,ar_0,ar_1,ah_0,ah_1,nu,reward,done,success,p\n"
                "0,0,1,0.5,0.25,0.5,0.125,0,0,0,0,0.5\n", 0,
                "t.csv:2:7: column 'ah_1': nu = 0 but ah_1 = 0.125 differs from ar_1 = 0.25");
  expect_format("episode,t,s_0,ar,ah,nu,reward,done,success,p\n"
                "0,0,1,0,0,0,0,0,0,1.5\n", 0, "t.csv:2:10: column 'p': a probability must be in [0, 1], got 1.5");
  /* CSV-level problems */
  expect_row_error(1, "0,1,0.5,1,2\"x\",1,1,0,0,0,0\n", 0, "t.csv:3:5: malformed quoting");
  expect_row_error(1, "0,1,0.5,\"1\"2,2,1,1,0,0,0,0\n", 0, "t.csv:3:4: malformed quoting");
  expect_row_error(2, "0,2,0.5,1,2,1,1,0,0,0,\"0\n", 0,
                   "t.csv:4:11: unterminated quoted field at the end of the file");
  /* a truncated last line: fields missing, or complete fields but no final newline */
  expect_row_error(2, "0,2,0.5", 0, "t.csv:4:3: truncated last line: 3 fields and no newline at the end of the file");
  expect_row_error(2, "0,2,0.5,1,2,1,1,0,0,0,0", 0, "t.csv:4:11: truncated last line: 11 fields");
  /* CRLF files count lines the same way */
  expect_format("episode,t,s_0,ar,ah,nu,reward,done,success\r\n0,0,1,0,0,0,0,0,0\r\n\r\n0,1,1,0,0,0,0,0,x\r\n", 0,
                "t.csv:4:9: column 'success': \"x\" is not a number");
  /* a field of 2000 digits */
  char *big = malloc(4096);
  snprintf(big, 4096, "0,0,0.5,1,");
  size_t o = strlen(big);
  memset(big + o, '1', 2000);
  snprintf(big + o + 2000, 4096 - o - 2000, ",1,1,0,0,0,0\n");
  expect_row_error(0, big, 0, "t.csv:2:5: column 's_2': a field longer than 1024 bytes");
  free(big);
  /* bytes that are not text are shown escaped */
  expect_row_error(0, "0,0,0.5,1,2\x01\xff,1,1,0,0,0,0\n", 0, "t.csv:2:5: column 's_2': \"2\\x01\\xff\" is not a number");
}

/* A quote that never closes must not read the rest of a big file into one field. */
/* Parse with options; expect `want` (a status) and, on failure, a message starting with `msg`. */
static mile_dataset *parse_with(const char *text, const mile_dataset_load_options *o, mile_status want,
                                const char *msg) {
  mile_dataset *ds = (mile_dataset *)&ds;
  mile_set_error(MILE_OK, "%s", "");
  mile_status st = mile_dataset_parse_with(&ds, text, strlen(text), "t.csv", o);
  if (st != want)
    fail_msg("parsing %s: got %s (%s), expected %s", text, mile_status_name(st), mile_last_error(),
             mile_status_name(want));
  if (st != MILE_OK) {
    assert_null(ds);
    if (strncmp(mile_last_error(), msg, strlen(msg)) != 0)
      fail_msg("message \"%s\" does not start with \"%s\"", mile_last_error(), msg);
  }
  return st == MILE_OK ? ds : NULL;
}

/* The value of column `col` in the only row of a one-row file. */
static double only_value(const char *text, const mile_dataset_load_options *o, int32_t col) {
  mile_dataset *ds = parse_with(text, o, MILE_OK, "");
  assert_int_equal(mile_dataset_rows(ds), 1);
  double v = mile_dataset_data(ds)[col];
  mile_dataset_free(ds);
  return v;
}

/* Lossless or refused: a number in an exact column (episode, t, nu, done, success,
 * discrete actions) must be exactly the integer stored; 9007199254740993 used to
 * become 2^53 without a word. Float columns round as strtod does. */
static void test_exact_columns(void **state) {
  (void)state;
  char text[512];
#define ROW(fields) (snprintf(text, sizeof text, "%s%s\n", HEADER, fields), text)
  /* HEADER: episode,t,s_0,s_1,s_2,ar,ah,nu,reward,done,success */
  expect_format(ROW("0,9007199254740993,0,0,0,1,1,0,0,0,0"), 0,
                "t.csv:2:2: column 't': \"9007199254740993\" is an integer beyond 2^53, which a double cannot hold "
                "exactly (it would be read as 9007199254740992); declare the column float to accept the rounding");
  expect_format(ROW("9007199254740994,0,0,0,0,1,1,0,0,0,0"), 0, "t.csv:2:1: column 'episode': \"9007199254740994\" "
                "is an integer beyond 2^53");
  expect_format(ROW("0,1e16,0,0,0,1,1,0,0,0,0"), 0, "t.csv:2:2: column 't': \"1e16\" is an integer beyond 2^53");
  expect_format(ROW("0,123456789012345678901234567890,0,0,0,1,1,0,0,0,0"), 0, "t.csv:2:2: column 't': \"1234");
  expect_format(ROW("0,0,0,0,0,1,1,1.0000000000000001,0,0,0"), 0,
                "t.csv:2:8: column 'nu': \"1.0000000000000001\" is not an integer, but would be read as 1; declare "
                "the column float to accept the rounding");
  expect_format(ROW("0,0,0,0,0,1,1,0,0,1e-400,0"), 0, "t.csv:2:10: column 'done': \"1e-400\" is not an integer, but "
                "would be read as 0");
  expect_format(ROW("0,0,0,0,0,2.0000000000000001,2,0,0,0,0"), 0, "t.csv:2:6: column 'ar': \"2.0000000000000001\" is "
                "not an integer");
  expect_format(ROW("0,4.9999999999999999,0,0,0,1,1,0,0,0,0"), 0, "t.csv:2:2: column 't': \"4.9999999999999999\" is "
                "not an integer, but would be read as 5");
  /* a value that is not an integer at all keeps its message */
  expect_format(ROW("0,0,0,0,0,1,1,0.5,0,0,0"), 0, "t.csv:2:8: column 'nu': must be 0 or 1, got 0.5");
  /* exact spellings of integers load */
  assert_true(only_value(ROW("9007199254740992,0,0,0,0,1,1,0,0,0,0"), NULL, 0) == 9007199254740992.0);
  assert_true(only_value(ROW("9.007199254740992e15,0,0,0,0,1,1,0,0,0,0"), NULL, 0) == 9007199254740992.0);
  assert_true(only_value(ROW("9007199254740991.000,0,0,0,0,1,1,0,0,0,0"), NULL, 0) == 9007199254740991.0);
  assert_true(only_value(ROW("0,0,0,0,0,1,1,0.1e1,0,0,0"), NULL, 7) == 1);
  assert_true(only_value(ROW("0,0,0,0,0,1,1,100000000000000000000e-20,0,0,0"), NULL, 7) == 1);
  assert_true(only_value(ROW("0,0,0,0,0,1,1,0e999999999999,0,0,-0.000"), NULL, 7) == 0);
  assert_true(only_value(ROW("0,12e1,0,0,0,1,1,0,0,0,0"), NULL, 1) == 120);
  /* float columns round to the nearest double */
  assert_true(only_value(ROW("0,0,9007199254740993,0,0,1,1,0,0.1,0,0"), NULL, 2) == 9007199254740992.0);
  assert_true(only_value(ROW("0,0,9007199254740993,0,0,1,1,0,0.1,0,0"), NULL, 8) == 0.1);
  /* continuous actions are floats */
  const char *cont = "episode,t,s_0,ar_0,ah_0,nu,reward,done,success\n0,0,0,0.1,0.1,0,0,0,0\n";
  assert_true(only_value(cont, NULL, 3) == 0.1);
  /* declared float: the rounding is accepted, the column's checks still apply */
  const char *t_float[] = {"t"}, *unknown[] = {"s_9"}, *two[] = {"nu", "episode"};
  mile_dataset_load_options o = {.n_float = 1, .float_columns = t_float};
  assert_true(only_value(ROW("0,9007199254740993,0,0,0,1,1,0,0,0,0"), &o, 1) == 9007199254740992.0);
  parse_with(ROW("0,9007199254740995,0,0,0,1,1,0,0,0,0"), &o, MILE_ERR_FORMAT,
             "t.csv:2:2: column 't': must be a non-negative integer, got 9007199254740996");
  parse_with(ROW("0,0,0,0,0,1,1,1.0000000000000001,0,0,0"), &o, MILE_ERR_FORMAT, "t.csv:2:8: column 'nu'");
  mile_dataset_load_options o2 = {.n_float = 2, .float_columns = two};
  assert_true(only_value(ROW("0,0,0,0,0,1,1,1.0000000000000001,0,0,0"), &o2, 7) == 1);
  mile_dataset_load_options bad = {.n_float = 1, .float_columns = unknown};
  parse_with(ROW("0,0,0,0,0,1,1,0,0,0,0"), &bad, MILE_ERR_FORMAT,
             "t.csv:1:1: float column \"s_9\" is not a column of the file");
#undef ROW
  /* what mile writes, it reads back bit for bit: integers up to 2^53 in the exact columns */
  mile_dataset *ds, *back;
  OK(mile_dataset_new(&ds, 1, 1, 1, 0));
  double rows[2][9] = {{9007199254740992.0, 9007199254740991.0, 0.1, 2147483647.0, 2147483647.0, 0, -0.0, 1, 1},
                       {1e15 + 1, 4503599627370497.0, 1e300, 0, 3, 1, 5e-324, 0, 0}};
  OK(mile_dataset_append(ds, 2, &rows[0][0]));
  const char *path = in_dir("exact.csv");
  OK(mile_dataset_save(ds, path));
  OK(mile_dataset_load(&back, path, 0));
  assert_same(ds, back);
  mile_dataset_free(ds), mile_dataset_free(back);
}

/* Sizes the file declares are checked against what it holds before they size an
 * allocation, and max_bytes caps the table. */
static void test_declared_sizes_and_cap(void **state) {
  (void)state;
  /* s_1048575 among nine names: refused before ~12 MB of column maps are sized by it */
  expect_format("episode,t,s_1048575,ar,ah,nu,reward,done,success\n", 0,
                "t.csv:1:3: column 's_1048575': the header has 1 's_<i>' column, too few for s_0..s_1048575");
  expect_format("episode,t,s_0,ar_0,ah_999999,nu,reward,done,success\n", 0,
                "t.csv:1:5: column 'ah_999999': the header has 1 'ah_<i>' column, too few");
  /* max_bytes: 3 rows of 11 columns take 264 bytes */
  char *text = rows_then(3, "");
  mile_dataset_load_options o = {.max_bytes = 264};
  mile_dataset *ds = parse_with(text, &o, MILE_OK, "");
  assert_int_equal(mile_dataset_rows(ds), 3);
  mile_dataset_free(ds);
  o.max_bytes = 263;
  parse_with(text, &o, MILE_ERR_NOMEM,
             "t.csv:4:1: the dataset exceeds max_bytes = 263: 2 rows of 11 columns take 176 bytes, row 3 would need more");
  /* the same from a file */
  const char *path = in_dir("cap.csv");
  write_text(path, text, strlen(text));
  EXPECT_ERR_MSG(MILE_ERR_NOMEM, "cap.csv:4:1: the dataset exceeds max_bytes = 263", mile_dataset_load_with(&ds, path, &o));
  o.max_bytes = 0; /* no cap */
  OK(mile_dataset_load_with(&ds, path, &o));
  assert_int_equal(mile_dataset_rows(ds), 3);
  mile_dataset_free(ds);
  OK(mile_dataset_load_with(&ds, path, NULL));
  mile_dataset_free(ds);
  free(text);
  /* bad options */
  mile_dataset_load_options neg = {.max_bytes = -1}, nf = {.n_float = 1}, na = {.n_actions = -1};
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "max_bytes < 0", mile_dataset_parse_with(&ds, "", 0, NULL, &neg));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "float_columns NULL", mile_dataset_parse_with(&ds, "", 0, NULL, &nf));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "n_actions < 0", mile_dataset_load_with(&ds, path, &na));
}

static void test_unclosed_quote_is_bounded(void **state) {
  size_t n = 1 << 20;
  char *text = malloc(n + 200);
  size_t o = (size_t)snprintf(text, n + 200, "%s0,0,\"", HEADER);
  for (size_t i = o; i < n; i++) text[i] = i % 50 == 0 ? '\n' : '7';
  text[n] = '\0';
  expect_format(text, 0, "t.csv:");
  if (!strstr(mile_last_error(), "a field longer than 1024 bytes (an unclosed quote?)"))
    fail_msg("unexpected message %s", mile_last_error());
  free(text);
}

/* Every prefix of a valid file either loads (cut at a row boundary) or fails with a
 * format error: never a crash, never a silently shortened last value. */
static void test_every_prefix(void **state) {
  mile_dataset *ds = make_dataset(2, 2, 0, 1, 6, 3);
  const char *path = in_dir("prefix.csv");
  OK(mile_dataset_save(ds, path));
  size_t n;
  char *text = read_text(path, &n);
  size_t header_end = (size_t)(strchr(text, '\n') - text) + 1;
  for (size_t k = 0; k <= n; k++) {
    mile_dataset *back = NULL;
    mile_status st = mile_dataset_parse(&back, text, k, "p.csv", 0);
    bool at_boundary = k >= header_end && text[k - 1] == '\n';
    if (at_boundary) {
      if (st != MILE_OK) fail_msg("prefix of %zu bytes: %s", k, mile_last_error());
      int64_t lines = 0;
      for (size_t i = 0; i < k; i++) lines += text[i] == '\n';
      assert_int_equal(mile_dataset_rows(back), lines - 1);
    } else if (st != MILE_ERR_FORMAT) {
      fail_msg("prefix of %zu bytes: got %s, expected a format error", k, mile_status_name(st));
    }
    mile_dataset_free(back);
  }
  free(text);
  mile_dataset_free(ds);
}

/* Random edits of a valid file (bytes that matter to CSV and to numbers): the reader
 * returns OK or a format error with a file:line:column message, and what it accepts
 * survives a save/load round trip unchanged. */
static void test_mutations(void **state) {
  mile_dataset *ds = make_dataset(2, 1, 1, 1, 8, 23);
  const char *path = in_dir("mutate.csv");
  OK(mile_dataset_save(ds, path));
  size_t n;
  char *text = read_text(path, &n);
  char *buf = malloc(n + 8);
  static const char alphabet[] = {',', '"', '\n', '\r', '0', '1', 'e', '-', '.', ' ', 'x', '\0', (char)0xff};
  mile_rng rng;
  mile_rng_seed(&rng, 2024);
  int accepted = 0;
  for (int trial = 0; trial < 3000; trial++) {
    memcpy(buf, text, n);
    size_t m = n;
    int edits = 1 + (int)mile_rng_below(&rng, 3);
    for (int e = 0; e < edits; e++) {
      size_t at = (size_t)mile_rng_below(&rng, m);
      char c = alphabet[mile_rng_below(&rng, sizeof alphabet)];
      switch (mile_rng_below(&rng, 3)) {
        case 0: buf[at] = c; break;                                      /* replace */
        case 1: memmove(buf + at + 1, buf + at, m - at), buf[at] = c, m++; break; /* insert */
        default: memmove(buf + at, buf + at + 1, m - at - 1), m--; break;      /* delete */
      }
    }
    mile_dataset *back = NULL;
    mile_status st = mile_dataset_parse(&back, buf, m, "m.csv", 5);
    if (st == MILE_OK) {
      accepted++;
      mile_dataset *again;
      OK(mile_dataset_save(back, path));
      OK(mile_dataset_load(&again, path, 5));
      assert_same(back, again);
      mile_dataset_free(again);
    } else if (st != MILE_ERR_FORMAT || strncmp(mile_last_error(), "m.csv:", 6) != 0) {
      fail_msg("trial %d: %s: %s", trial, mile_status_name(st), mile_last_error());
    }
    mile_dataset_free(back);
  }
  print_message("mutations: %d of 3000 still valid files\n", accepted);
  free(buf), free(text);
  mile_dataset_free(ds);
}

static void test_io_errors(void **state) {
  mile_dataset *ds = (mile_dataset *)&ds;
  const char *missing = in_dir("no-such-file.csv");
  char want[300];
  snprintf(want, sizeof want, "%s: No such file or directory", missing);
  EXPECT_ERR_MSG(MILE_ERR_IO, want, mile_dataset_load(&ds, missing, 0));
  assert_null(ds);
  EXPECT_ERR_MSG(MILE_ERR_IO, dir, mile_dataset_load(&ds, dir, 0)); /* a directory */
  /* messages of files name the path */
  const char *bad = in_dir("bad.csv");
  write_text(bad, "episode,t\n", 10);
  snprintf(want, sizeof want, "%s:1:1: missing column 'nu'", bad);
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, want, mile_dataset_load(&ds, bad, 0));
  /* writing into a directory that does not exist */
  mile_dataset *d;
  OK(mile_dataset_new(&d, 1, 1, 1, 0));
  EXPECT_ERR_MSG(MILE_ERR_IO, "cannot create a temporary file", mile_dataset_save(d, in_dir("nope/x.csv")));
  EXPECT_ERR_MSG(MILE_ERR_IO, "cannot create a temporary file", mile_dataset_append_file(d, in_dir("nope/x.csv"), 0));
  EXPECT_ERR_MSG(MILE_ERR_IO, "not a regular file", mile_dataset_append_file(d, dir, 0));
  mile_dataset_free(d);
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "NULL", mile_dataset_load(&ds, NULL, 0));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "NULL", mile_dataset_load(NULL, missing, 0));
}

/* The reader and writer ignore the process's locale (a decimal comma would break both). */
static void test_locale_independent(void **state) {
  const char *loc = setlocale(LC_NUMERIC, "de_DE.UTF-8");
  if (!loc) loc = setlocale(LC_NUMERIC, "fr_FR.UTF-8");
  if (!loc) {
    skip(); /* no locale with a decimal comma installed */
    return;
  }
  mile_dataset *ds = make_dataset(2, 1, 1, 1, 20, 5), *back;
  const char *path = in_dir("locale.csv");
  OK(mile_dataset_save(ds, path));
  OK(mile_dataset_load(&back, path, 0));
  setlocale(LC_NUMERIC, "C");
  assert_same(ds, back);
  mile_dataset_free(ds), mile_dataset_free(back);
}

/* ---- appends ---------------------------------------------------------------------------------- */

static void test_append_file(void **state) {
  mile_dataset *ds = make_dataset(3, 1, 1, 1, 50, 11), *back;
  const char *path = in_dir("append.csv");
  /* a new file: header and the rows from from_row on */
  OK(mile_dataset_append_file(ds, path, 0));
  OK(mile_dataset_load(&back, path, 0));
  assert_same(ds, back);
  mile_dataset_free(back);
  /* rounds: 0..9 saved, then 10..29 and 30..49 appended */
  int64_t first[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  mile_dataset *head;
  OK(mile_dataset_subset(&head, ds, 10, first));
  OK(mile_dataset_save(head, path));
  mile_dataset *part;
  int64_t upto[30];
  for (int i = 0; i < 30; i++) upto[i] = i;
  OK(mile_dataset_subset(&part, ds, 30, upto));
  OK(mile_dataset_append_file(part, path, 10));
  OK(mile_dataset_append_file(ds, path, 30));
  OK(mile_dataset_load(&back, path, 0));
  assert_same(ds, back);
  mile_dataset_free(back);
  /* nothing to append: the file is left as it is */
  char *before = read_text(path, NULL);
  OK(mile_dataset_append_file(ds, path, 50));
  char *after = read_text(path, NULL);
  assert_string_equal(before, after);
  free(before), free(after);
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "from_row 51 out of range 0..50", mile_dataset_append_file(ds, path, 51));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "from_row -1 out of range", mile_dataset_append_file(ds, path, -1));
  /* an empty file (os.tmpname, touch) is taken as new */
  const char *empty = in_dir("append-empty.csv");
  write_text(empty, "", 0);
  OK(mile_dataset_append_file(ds, empty, 0));
  OK(mile_dataset_load(&back, empty, 0));
  assert_same(ds, back);
  mile_dataset_free(back);
  /* a CRLF header written by another tool is accepted */
  const char *crlf = in_dir("append-crlf.csv");
  const char *crlf_text = "episode,t,s_0,s_1,s_2,ar,ah,nu,reward,done,success,p\r\n";
  write_text(crlf, crlf_text, strlen(crlf_text));
  OK(mile_dataset_append_file(ds, crlf, 0));
  OK(mile_dataset_load(&back, crlf, 0));
  assert_same(ds, back);
  mile_dataset_free(back);
  mile_dataset_free(part), mile_dataset_free(head), mile_dataset_free(ds);
  assert_int_equal(count_files("append.csv.tmp"), 0);
}

static void test_append_file_refuses(void **state) {
  mile_dataset *ds = make_dataset(3, 1, 1, 1, 5, 11);
  const char *path = in_dir("refuse.csv");
  char want[400];
  /* another layout */
  const char *other = "episode,t,s_0,s_1,s_2,ar,ah,nu,reward,done,success\n0,0,1,2,3,0,0,0,0,0,0\n";
  write_text(path, other, strlen(other));
  snprintf(want, sizeof want, "%s:1:12: header does not match the dataset: the file has 11 columns, the dataset more "
           "(next: 'p')", path);
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, want, mile_dataset_append_file(ds, path, 0));
  const char *swapped = "episode,t,s_0,s_1,s_2,ah,ar,nu,reward,done,success,p\n";
  write_text(path, swapped, strlen(swapped));
  snprintf(want, sizeof want, "%s:1:6: header does not match the dataset: column 6 is \"ah\" in the file, 'ar' in "
           "the dataset", path);
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, want, mile_dataset_append_file(ds, path, 0));
  const char *longer = "episode,t,s_0,s_1,s_2,ar,ah,nu,reward,done,success,p,extra_column_name\n";
  write_text(path, longer, strlen(longer));
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, ":1:13: header does not match the dataset: the file has column \"ext",
             mile_dataset_append_file(ds, path, 0));
  /* a cut last row: not appended to (the file is left as it is) */
  const char *cut = "episode,t,s_0,s_1,s_2,ar,ah,nu,reward,done,success,p\n0,0,1,2,3,0,0,0,0,0,0,0.12";
  write_text(path, cut, strlen(cut));
  snprintf(want, sizeof want, "%s: does not end with a newline (a truncated last row?); not appending to it", path);
  EXPECT_ERR_MSG(MILE_ERR_FORMAT, want, mile_dataset_append_file(ds, path, 0));
  char *now = read_text(path, NULL);
  assert_string_equal(now, cut);
  free(now);
  mile_dataset_free(ds);
  assert_int_equal(count_files("refuse.csv.tmp"), 0);
}

/* Stray temporary files (of a crashed writer, here even with this process's own
 * names) change nothing: the dataset loads, appends go to fresh names. */
static void test_leftover_temporary_files(void **state) {
  mile_dataset *ds = make_dataset(2, 1, 1, 0, 40, 13), *back;
  int64_t first[20];
  for (int i = 0; i < 20; i++) first[i] = i;
  mile_dataset *head;
  OK(mile_dataset_subset(&head, ds, 20, first));
  const char *path = in_dir("crash.csv");
  OK(mile_dataset_save(head, path));
  char name[64];
  for (int k = 0; k < 3; k++) {
    snprintf(name, sizeof name, "crash.csv.tmp-%ld-%d", (long)getpid(), k);
    const char *junk = "episode,t,s_0,s_1,ar,ah,nu,rew";
    write_text(in_dir(name), junk, strlen(junk));
  }
  OK(mile_dataset_load(&back, path, 0));
  assert_same(head, back);
  mile_dataset_free(back);
  OK(mile_dataset_append_file(ds, path, 20));
  OK(mile_dataset_load(&back, path, 0));
  assert_same(ds, back);
  mile_dataset_free(back);
  assert_int_equal(count_files("crash.csv.tmp"), 3); /* the strays, untouched */
  for (int k = 0; k < 3; k++) {
    snprintf(name, sizeof name, "crash.csv.tmp-%ld-%d", (long)getpid(), k);
    char *junk = read_text(in_dir(name), NULL);
    assert_string_equal(junk, "episode,t,s_0,s_1,ar,ah,nu,rew");
    free(junk);
  }
  mile_dataset_free(head), mile_dataset_free(ds);
}

/* A writer killed at an arbitrary moment (SIGKILL) leaves the old file or the new one,
 * never a half-written row. */
static void test_killed_writer(void **state) {
  mile_dataset *ds = make_dataset(6, 2, 0, 1, 10000, 17);
  int64_t n_base = 200;
  int64_t *first = malloc((size_t)n_base * sizeof *first);
  for (int64_t i = 0; i < n_base; i++) first[i] = i;
  mile_dataset *base;
  OK(mile_dataset_subset(&base, ds, n_base, first));
  free(first);
  const char *path = in_dir("killed.csv");
  /* how long one write takes here: the kills are spread over 0 .. 1.25 times that */
  struct timespec t0, t1;
  OK(mile_dataset_save(base, path));
  clock_gettime(CLOCK_MONOTONIC, &t0);
  OK(mile_dataset_append_file(ds, path, n_base));
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double took = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  int saw_old = 0, saw_new = 0;
  for (int trial = 0; trial < 16; trial++) {
    OK(mile_dataset_save(base, path));
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork failed");
    if (pid == 0) {
      mile_status st = trial % 2 ? mile_dataset_append_file(ds, path, n_base) : mile_dataset_save(ds, path);
      _exit(st == MILE_OK ? 0 : 1);
    }
    double wait = took * 1.25 * trial / 15;
    struct timespec delay = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
    nanosleep(&delay, NULL);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    mile_dataset *back;
    OK(mile_dataset_load(&back, path, 0));
    int64_t rows = mile_dataset_rows(back);
    if (rows == n_base) saw_old++, assert_same(base, back);
    else if (rows == mile_dataset_rows(ds)) saw_new++, assert_same(ds, back);
    else fail_msg("trial %d: the file has %lld rows, neither %lld nor %lld", trial, (long long)rows,
                  (long long)n_base, (long long)mile_dataset_rows(ds));
    mile_dataset_free(back);
  }
  assert_int_equal(saw_old + saw_new, 16);
  print_message("killed writers (a write takes %.0f ms): %d left the old file, %d the new one\n", took * 1e3,
                saw_old, saw_new);
  mile_dataset_free(base), mile_dataset_free(ds);
  /* the strays of the killed writers: remove them for the next tests */
  DIR *d = opendir(dir);
  struct dirent *e;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, "killed.csv.tmp", 14)) unlink(in_dir(e->d_name));
  closedir(d);
}

/* ---- the table API ------------------------------------------------------------------------------ */

static void test_new_and_append_checks(void **state) {
  mile_dataset *ds = (mile_dataset *)&ds;
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "obs_dim must be in 1..", mile_dataset_new(&ds, 0, 1, 1, 0));
  assert_null(ds);
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "a discrete dataset has action_dim 1, got 2", mile_dataset_new(&ds, 3, 2, 1, 0));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "action_dim must be in 1..", mile_dataset_new(&ds, 3, 0, 0, 0));
  OK(mile_dataset_new(&ds, 2, 1, 1, 0));
  OK(mile_dataset_set_n_actions(ds, 3));
  /* episode, t, s_0, s_1, ar, ah, nu, reward, done, success */
  double good[] = {0, 0, 1, 2, 1, 1, 0, 0.5, 0, 0};
  double rows[30];
  for (int i = 0; i < 3; i++) memcpy(rows + 10 * i, good, sizeof good);
  rows[10 + 6] = 2; /* nu of row 1 */
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "dataset_append: column 'nu': must be 0 or 1, got 2 (row 1 of 3, 0-based)",
             mile_dataset_append(ds, 3, rows));
  assert_int_equal(mile_dataset_rows(ds), 0); /* nothing added */
  rows[16] = 1, rows[25] = 2;                   /* ah of row 2 differs with nu = 0 */
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "column 'ah': nu = 0 but ah = 2 differs from ar = 1", mile_dataset_append(ds, 3, rows));
  rows[25] = 1, rows[24] = 3, rows[26] = 1;
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "column 'ar': action 3 out of range 0..2", mile_dataset_append(ds, 3, rows));
  rows[24] = 2, rows[22] = NAN;
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "column 's_0': NaN is not a finite number", mile_dataset_append(ds, 3, rows));
  rows[22] = INFINITY;
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "column 's_0': inf is not a finite number", mile_dataset_append(ds, 3, rows));
  rows[22] = 1;
  OK(mile_dataset_append(ds, 3, rows));
  assert_int_equal(mile_dataset_rows(ds), 3);
  assert_int_equal(mile_dataset_count_interventions(ds), 2);
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "row 2, column 'ar': action 2 out of range 0..1", mile_dataset_set_n_actions(ds, 2));
  assert_int_equal(mile_dataset_n_actions(ds), 3);
  OK(mile_dataset_set_n_actions(ds, 0));
  /* extend with itself doubles the rows (the source moves while the table grows) */
  for (int k = 0; k < 8; k++) OK(mile_dataset_extend(ds, ds));
  assert_int_equal(mile_dataset_rows(ds), 3 * 256);
  assert_memory_equal(mile_dataset_data(ds) + 3 * 255 * 10, rows, sizeof rows);
  mile_dataset *cont;
  OK(mile_dataset_new(&cont, 2, 1, 0, 0));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "different columns", mile_dataset_extend(ds, cont));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "continuous actions", mile_dataset_set_n_actions(cont, 3));
  mile_dataset_free(cont);
  mile_dataset_free(ds);
  mile_dataset_free(NULL);
}

static void test_fields_and_subset(void **state) {
  mile_dataset *ds = make_dataset(3, 2, 0, 1, 25, 19), *sub;
  const double *data = mile_dataset_data(ds);
  int32_t cols = mile_dataset_cols(ds);
  mile_tensor *t;
  OK(mile_dataset_field(&t, ds, MILE_DATA_FIELD_OBS, MILE_FLOAT64));
  assert_int_equal(t->ndim, 2);
  assert_int_equal(t->shape[0], 25);
  assert_int_equal(t->shape[1], 3);
  for (int i = 0; i < 25; i++)
    for (int j = 0; j < 3; j++) assert_memory_equal(&((double *)mile_data(t))[i * 3 + j], &data[i * cols + 2 + j], 8);
  mile_tensor_release(t);
  OK(mile_dataset_field(&t, ds, MILE_DATA_FIELD_HUMAN_ACTION, MILE_FLOAT32));
  assert_int_equal(t->ndim, 2);
  assert_int_equal(t->shape[1], 2);
  for (int i = 0; i < 25; i++)
    assert_true(((float *)mile_data(t))[i * 2 + 1] == (float)data[i * cols + 2 + 3 + 2 + 1]);
  mile_tensor_release(t);
  OK(mile_dataset_field(&t, ds, MILE_DATA_FIELD_P, MILE_FLOAT64));
  assert_int_equal(t->ndim, 1);
  assert_int_equal(t->shape[0], 25);
  mile_tensor_release(t);
  mile_dataset *nop;
  OK(mile_dataset_new(&nop, 1, 1, 1, 0));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "no p column", mile_dataset_field(&t, nop, MILE_DATA_FIELD_P, MILE_FLOAT32));
  assert_int_equal(mile_dataset_field_col(nop, MILE_DATA_FIELD_P), -1);
  assert_int_equal(mile_dataset_field_width(nop, MILE_DATA_FIELD_P), 0);
  OK(mile_dataset_field(&t, nop, MILE_DATA_FIELD_ROBOT_ACTION, MILE_FLOAT32));
  assert_int_equal(t->ndim, 1); /* discrete: one value per row */
  mile_tensor_release(t);
  mile_dataset_free(nop);
  int64_t pick[] = {24, 0, 0, 7};
  OK(mile_dataset_subset(&sub, ds, 4, pick));
  assert_int_equal(mile_dataset_rows(sub), 4);
  for (int k = 0; k < 4; k++)
    assert_memory_equal(mile_dataset_data(sub) + k * cols, data + pick[k] * cols, (size_t)cols * 8);
  mile_dataset_free(sub);
  int64_t bad[] = {3, 25};
  EXPECT_ERR_MSG(MILE_ERR_RANGE, "row index 25 out of range 0..24 (at position 1)", mile_dataset_subset(&sub, ds, 2, bad));
  OK(mile_dataset_subset(&sub, ds, 0, NULL));
  assert_int_equal(mile_dataset_rows(sub), 0);
  mile_dataset_free(sub);
  mile_dataset_free(ds);
}

/* ---- the weighted sampler ------------------------------------------------------------------------- */

static void test_sampler(void **state) {
  double w[] = {1, 0, 3, 0, 6, 0};
  int64_t shape[1] = {6};
  mile_tensor *wt;
  OK(mile_from_data(&wt, MILE_FLOAT64, 1, shape, w, MILE_FLOAT64));
  mile_sampler *s;
  OK(mile_sampler_new(&s, wt));
  assert_int_equal(mile_sampler_size(s), 6);
  enum { DRAWS = 200000 };
  int64_t *idx = malloc(DRAWS * sizeof *idx);
  mile_rng rng;
  mile_rng_seed(&rng, 123);
  OK(mile_sampler_draw(s, &rng, DRAWS, idx));
  int64_t count[6] = {0};
  for (int i = 0; i < DRAWS; i++) {
    assert_true(idx[i] >= 0 && idx[i] < 6);
    count[idx[i]]++;
  }
  for (int k = 0; k < 6; k++) {
    double p = w[k] / 10, mean = p * DRAWS, sd = sqrt(DRAWS * p * (1 - p));
    if (p == 0) assert_int_equal(count[k], 0);
    else if (fabs((double)count[k] - mean) > 5 * sd)
      fail_msg("index %d drawn %lld times, expected %.0f +- %.0f", k, (long long)count[k], mean, sd);
  }
  /* same seed, same draws */
  int64_t again[100];
  mile_rng_seed(&rng, 123);
  OK(mile_sampler_draw(s, &rng, 100, again));
  assert_memory_equal(again, idx, sizeof again);
  free(idx);
  mile_sampler_free(s);
  mile_sampler_free(NULL);
  /* bad weights */
  double neg[] = {1, -1};
  mile_tensor *bt;
  shape[0] = 2;
  OK(mile_from_data(&bt, MILE_FLOAT64, 1, shape, neg, MILE_FLOAT64));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "weight -1 at 0-based index 1", mile_sampler_new(&s, bt));
  mile_tensor_release(bt);
  double zero[] = {0, 0};
  OK(mile_from_data(&bt, MILE_FLOAT64, 1, shape, zero, MILE_FLOAT64));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "sum to 0", mile_sampler_new(&s, bt));
  mile_tensor_release(bt);
  double nan_w[] = {1, NAN};
  OK(mile_from_data(&bt, MILE_FLOAT64, 1, shape, nan_w, MILE_FLOAT64));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "weights must be finite", mile_sampler_new(&s, bt));
  mile_tensor_release(bt);
  mile_tensor_release(wt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_discrete),
      cmocka_unit_test(test_round_trip_discrete_p),
      cmocka_unit_test(test_round_trip_continuous),
      cmocka_unit_test(test_round_trip_continuous_p),
      cmocka_unit_test(test_header_names),
      cmocka_unit_test(test_written_text),
      cmocka_unit_test(test_number_text),
      cmocka_unit_test(test_any_column_order),
      cmocka_unit_test(test_header_only),
      cmocka_unit_test(test_crlf_quotes_bom_blank_lines),
      cmocka_unit_test(test_bad_headers),
      cmocka_unit_test(test_bad_rows),
      cmocka_unit_test(test_exact_columns),
      cmocka_unit_test(test_declared_sizes_and_cap),
      cmocka_unit_test(test_unclosed_quote_is_bounded),
      cmocka_unit_test(test_every_prefix),
      cmocka_unit_test(test_mutations),
      cmocka_unit_test(test_io_errors),
      cmocka_unit_test(test_locale_independent),
      cmocka_unit_test(test_append_file),
      cmocka_unit_test(test_append_file_refuses),
      cmocka_unit_test(test_leftover_temporary_files),
      cmocka_unit_test(test_killed_writer),
      cmocka_unit_test(test_new_and_append_checks),
      cmocka_unit_test(test_fields_and_subset),
      cmocka_unit_test(test_sampler),
  };
  return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
