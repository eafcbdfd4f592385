/* data_csv.c - intervention datasets: the in-memory table, its CSV reader (libcsv,
 * strict mode, streaming callbacks) and its crash-safe writer. See mile/data.h for
 * the format and the guarantees.
 *
 * Line numbers: the reader feeds libcsv one physical line at a time (split at LF),
 * so every callback knows the line it fires on. A field is reported at the line
 * where it ends (for a quoted field spanning lines, the line of its closing quote).
 *
 * Numbers are parsed and printed in the "C" locale whatever the process's locale
 * (a thread-local uselocale around each read and write). */
#define _POSIX_C_SOURCE 200809L /* fdopen, fileno, fsync, newlocale, uselocale */
#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

enum { CHUNK = 1 << 16 };
static const double MAX_EXACT_INT = 9007199254740992.0; /* 2^53 */

/* ---- the table -------------------------------------------------------------------- */

struct mile_dataset {
  int32_t obs_dim, action_dim, discrete, has_p, n_actions, cols;
  int32_t first[MILE_DATA_FIELD_COUNT]; /* first column of each field, -1 when absent */
  int32_t width[MILE_DATA_FIELD_COUNT];
  int64_t rows, cap;
  double *data; /* rows x cols, row-major */
  char **names; /* cols names, each its own allocation */
};

void mile_dataset_free(mile_dataset *ds) {
  if (!ds) return;
  if (ds->names)
    for (int32_t c = 0; c < ds->cols; c++) free(ds->names[c]);
  free(ds->names);
  free(ds->data);
  free(ds);
}

static char *format_name(const char *prefix, int32_t index) {
  char buf[32];
  if (index < 0) snprintf(buf, sizeof buf, "%s", prefix);
  else snprintf(buf, sizeof buf, "%s_%d", prefix, (int)index);
  size_t n = strlen(buf) + 1;
  char *s = malloc(n);
  if (s) memcpy(s, buf, n);
  return s;
}

mile_status mile_dataset_new(mile_dataset **out, int32_t obs_dim, int32_t action_dim, int32_t discrete,
                             int32_t has_p) {
  static const char FN[] = "dataset_new";
  if (!out) return mile_set_error(MILE_ERR_ARGUMENT, "%s: out is NULL", FN);
  *out = NULL;
  if (obs_dim < 1 || obs_dim > MILE_DATASET_MAX_DIM)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: obs_dim must be in 1..%d, got %d", FN, MILE_DATASET_MAX_DIM,
                          (int)obs_dim);
  if (action_dim < 1 || action_dim > MILE_DATASET_MAX_DIM)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: action_dim must be in 1..%d, got %d", FN, MILE_DATASET_MAX_DIM,
                          (int)action_dim);
  if (discrete && action_dim != 1)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: a discrete dataset has action_dim 1, got %d", FN, (int)action_dim);
  mile_dataset *ds = calloc(1, sizeof *ds);
  if (!ds) return mile_err_nomem(FN);
  ds->obs_dim = obs_dim, ds->action_dim = action_dim, ds->discrete = discrete != 0, ds->has_p = has_p != 0;
  static const int32_t widths_fixed[MILE_DATA_FIELD_COUNT] = {1, 1, 0, 0, 0, 1, 1, 1, 1, 1};
  int32_t col = 0;
  for (int f = 0; f < MILE_DATA_FIELD_COUNT; f++) {
    int32_t w = widths_fixed[f];
    if (f == MILE_DATA_FIELD_OBS) w = obs_dim;
    if (f == MILE_DATA_FIELD_ROBOT_ACTION || f == MILE_DATA_FIELD_HUMAN_ACTION) w = action_dim;
    if (f == MILE_DATA_FIELD_P && !ds->has_p) w = 0;
    ds->first[f] = w ? col : -1;
    ds->width[f] = w;
    col += w;
  }
  ds->cols = col;
  ds->names = calloc((size_t)col, sizeof *ds->names);
  if (!ds->names) {
    mile_dataset_free(ds);
    return mile_err_nomem(FN);
  }
  static const char *const scalar_names[MILE_DATA_FIELD_COUNT] = {"episode", "t",      NULL,   NULL,      NULL,
                                                                   "nu",      "reward", "done", "success", "p"};
  for (int f = 0; f < MILE_DATA_FIELD_COUNT; f++) {
    for (int32_t k = 0; k < ds->width[f]; k++) {
      const char *prefix = f == MILE_DATA_FIELD_OBS            ? "s"
                           : f == MILE_DATA_FIELD_ROBOT_ACTION ? "ar"
                           : f == MILE_DATA_FIELD_HUMAN_ACTION ? "ah"
                                                               : scalar_names[f];
      bool indexed = f == MILE_DATA_FIELD_OBS || ((f == MILE_DATA_FIELD_ROBOT_ACTION || f == MILE_DATA_FIELD_HUMAN_ACTION) && !ds->discrete);
      char **slot = &ds->names[ds->first[f] + k];
      *slot = format_name(prefix, indexed ? k : -1);
      if (!*slot) {
        mile_dataset_free(ds);
        return mile_err_nomem(FN);
      }
    }
  }
  *out = ds;
  return MILE_OK;
}

int64_t mile_dataset_rows(const mile_dataset *ds) { return ds ? ds->rows : 0; }
int32_t mile_dataset_cols(const mile_dataset *ds) { return ds ? ds->cols : 0; }
int32_t mile_dataset_obs_dim(const mile_dataset *ds) { return ds ? ds->obs_dim : 0; }
int32_t mile_dataset_action_dim(const mile_dataset *ds) { return ds ? ds->action_dim : 0; }
int32_t mile_dataset_is_discrete(const mile_dataset *ds) { return ds ? ds->discrete : 0; }
int32_t mile_dataset_has_p(const mile_dataset *ds) { return ds ? ds->has_p : 0; }
int32_t mile_dataset_n_actions(const mile_dataset *ds) { return ds ? ds->n_actions : 0; }
const double *mile_dataset_data(const mile_dataset *ds) { return ds && ds->rows ? ds->data : NULL; }

const char *mile_dataset_col_name(const mile_dataset *ds, int32_t col) {
  return ds && col >= 0 && col < ds->cols ? ds->names[col] : NULL;
}
int32_t mile_dataset_field_col(const mile_dataset *ds, mile_data_field field) {
  return ds && field >= 0 && field < MILE_DATA_FIELD_COUNT ? ds->first[field] : -1;
}
int32_t mile_dataset_field_width(const mile_dataset *ds, mile_data_field field) {
  return ds && field >= 0 && field < MILE_DATA_FIELD_COUNT ? ds->width[field] : 0;
}

int64_t mile_dataset_count_interventions(const mile_dataset *ds) {
  if (!ds) return 0;
  int64_t n = 0;
  for (int64_t i = 0; i < ds->rows; i++) n += ds->data[i * ds->cols + ds->first[MILE_DATA_FIELD_NU]] == 1;
  return n;
}

/* The field column `col` belongs to. */
static mile_data_field field_of(const mile_dataset *ds, int32_t col) {
  for (int f = MILE_DATA_FIELD_COUNT - 1; f >= 0; f--)
    if (ds->width[f] && col >= ds->first[f]) return (mile_data_field)f;
  return MILE_DATA_FIELD_EPISODE;
}

/* A number for a message: "%g" when that reads back exactly, else "%.17g". */
static const char *show_number(double v, char *buf, size_t size) {
  snprintf(buf, size, "%g", v);
  if (strtod(buf, NULL) != v) snprintf(buf, size, "%.17g", v);
  return buf;
}

/* Whether value v may stand in column col; if not, why (without the column name). */
static bool check_value(const mile_dataset *ds, int32_t col, double v, char *why, size_t size) {
  char nb[32];
  if (!isfinite(v)) {
    snprintf(why, size, "%s is not a finite number", isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf");
    return false;
  }
  switch (field_of(ds, col)) {
    case MILE_DATA_FIELD_EPISODE:
    case MILE_DATA_FIELD_T:
      if (v >= 0 && v == floor(v) && v <= MAX_EXACT_INT) return true;
      snprintf(why, size, "must be a non-negative integer, got %s", show_number(v, nb, sizeof nb));
      return false;
    case MILE_DATA_FIELD_ROBOT_ACTION:
    case MILE_DATA_FIELD_HUMAN_ACTION:
      if (!ds->discrete) return true;
      if (!(v >= 0 && v == floor(v) && v <= 2147483647.0)) {
        snprintf(why, size, "a discrete action must be a non-negative integer, got %s", show_number(v, nb, sizeof nb));
        return false;
      }
      if (ds->n_actions > 0 && v >= ds->n_actions) {
        snprintf(why, size, "action %s out of range 0..%d (n_actions = %d)", show_number(v, nb, sizeof nb),
                 (int)ds->n_actions - 1, (int)ds->n_actions);
        return false;
      }
      return true;
    case MILE_DATA_FIELD_NU:
    case MILE_DATA_FIELD_DONE:
    case MILE_DATA_FIELD_SUCCESS:
      if (v == 0 || v == 1) return true;
      snprintf(why, size, "must be 0 or 1, got %s", show_number(v, nb, sizeof nb));
      return false;
    case MILE_DATA_FIELD_P:
      if (v >= 0 && v <= 1) return true;
      snprintf(why, size, "a probability must be in [0, 1], got %s", show_number(v, nb, sizeof nb));
      return false;
    default:
      return true;
  }
}

/* The checks of a whole row that involve two columns: on a step without intervention
 * the human action columns hold the robot action. Sets *bad_col on failure. */
static bool check_row_relations(const mile_dataset *ds, const double *row, int32_t *bad_col, char *why, size_t size) {
  if (row[ds->first[MILE_DATA_FIELD_NU]] != 0) return true;
  int32_t ar = ds->first[MILE_DATA_FIELD_ROBOT_ACTION], ah = ds->first[MILE_DATA_FIELD_HUMAN_ACTION];
  for (int32_t k = 0; k < ds->action_dim; k++) {
    if (row[ah + k] == row[ar + k]) continue;
    char nb1[32], nb2[32];
    snprintf(why, size, "nu = 0 but %s = %s differs from %s = %s (without an intervention the human action columns "
             "hold the robot action)", ds->names[ah + k], show_number(row[ah + k], nb1, sizeof nb1), ds->names[ar + k],
             show_number(row[ar + k], nb2, sizeof nb2));
    *bad_col = ah + k;
    return false;
  }
  return true;
}

/* Room for `rows` rows in total, growing by doubling but to at most `limit` rows
 * (when limit >= rows; the reader's bound from the file's size). */
static mile_status reserve_at_most(mile_dataset *ds, int64_t rows, int64_t limit, const char *fname) {
  if (rows <= ds->cap) return MILE_OK;
  int64_t cap = ds->cap ? ds->cap : 64;
  while (cap < rows) {
    if (cap > INT64_MAX / 2) return mile_err_nomem(fname);
    cap *= 2;
  }
  if (limit >= rows && cap > limit) cap = limit;
  if ((uint64_t)cap > (uint64_t)PTRDIFF_MAX / sizeof(double) / (uint64_t)ds->cols) return mile_err_nomem(fname);
  double *p = realloc(ds->data, (size_t)cap * (size_t)ds->cols * sizeof *p);
  if (!p) return mile_err_nomem(fname);
  ds->data = p;
  ds->cap = cap;
  return MILE_OK;
}

static mile_status reserve(mile_dataset *ds, int64_t rows, const char *fname) {
  return reserve_at_most(ds, rows, -1, fname);
}

/* Append n rows that have passed every check (capacity reserved or not). */
static mile_status push_rows(mile_dataset *ds, int64_t n, const double *rows, const char *fname) {
  MILE_TRY(reserve(ds, ds->rows + n, fname));
  if (n > 0) memcpy(ds->data + ds->rows * ds->cols, rows, (size_t)n * (size_t)ds->cols * sizeof(double));
  ds->rows += n;
  return MILE_OK;
}

/* Check n rows before any is added; messages name the column, and the row (0-based)
 * when there are several. */
static mile_status check_rows(const mile_dataset *ds, int64_t n, const double *rows, const char *fname) {
  char why[320], where[64] = "";
  for (int64_t i = 0; i < n; i++) {
    const double *row = rows + i * ds->cols;
    int32_t bad = -1;
    for (int32_t c = 0; c < ds->cols && bad < 0; c++)
      if (!check_value(ds, c, row[c], why, sizeof why)) bad = c;
    if (bad < 0 && check_row_relations(ds, row, &bad, why, sizeof why)) continue;
    if (n > 1) snprintf(where, sizeof where, " (row %lld of %lld, 0-based)", (long long)i, (long long)n);
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: column '%s': %s%s", fname, ds->names[bad], why, where);
  }
  return MILE_OK;
}

mile_status mile_dataset_append(mile_dataset *ds, int64_t n, const double *rows) {
  static const char FN[] = "dataset_append";
  if (!ds || n < 0 || (n > 0 && !rows)) return mile_set_error(MILE_ERR_ARGUMENT, "%s: NULL dataset or rows, or n < 0", FN);
  MILE_TRY(check_rows(ds, n, rows, FN));
  return push_rows(ds, n, rows, FN);
}

static bool same_columns(const mile_dataset *a, const mile_dataset *b) {
  return a->obs_dim == b->obs_dim && a->action_dim == b->action_dim && a->discrete == b->discrete &&
         a->has_p == b->has_p;
}

mile_status mile_dataset_extend(mile_dataset *ds, const mile_dataset *src) {
  static const char FN[] = "dataset_extend";
  if (!ds || !src) return mile_set_error(MILE_ERR_ARGUMENT, "%s: NULL dataset", FN);
  if (!same_columns(ds, src))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: the datasets have different columns (%d and %d columns)", FN,
                          (int)ds->cols, (int)src->cols);
  int64_t n = src->rows;
  MILE_TRY(check_rows(ds, n, src->data, FN));
  /* reserve first: when ds == src the source rows move with the reallocation */
  MILE_TRY(reserve(ds, ds->rows + n, FN));
  return push_rows(ds, n, src->data, FN);
}

mile_status mile_dataset_set_n_actions(mile_dataset *ds, int32_t n_actions) {
  static const char FN[] = "dataset_set_n_actions";
  if (!ds) return mile_set_error(MILE_ERR_ARGUMENT, "%s: NULL dataset", FN);
  if (n_actions < 0) return mile_set_error(MILE_ERR_ARGUMENT, "%s: n_actions must be >= 0, got %d", FN, (int)n_actions);
  if (!ds->discrete) {
    if (n_actions == 0) return MILE_OK;
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: the dataset has continuous actions", FN);
  }
  int32_t cols[2] = {ds->first[MILE_DATA_FIELD_ROBOT_ACTION], ds->first[MILE_DATA_FIELD_HUMAN_ACTION]};
  if (n_actions > 0)
    for (int64_t i = 0; i < ds->rows; i++)
      for (int k = 0; k < 2; k++)
        if (ds->data[i * ds->cols + cols[k]] >= n_actions)
          return mile_set_error(MILE_ERR_ARGUMENT, "%s: row %lld, column '%s': action %g out of range 0..%d", FN,
                                (long long)i, ds->names[cols[k]], ds->data[i * ds->cols + cols[k]], (int)n_actions - 1);
  ds->n_actions = n_actions;
  return MILE_OK;
}

mile_status mile_dataset_field(mile_tensor **out, const mile_dataset *ds, mile_data_field field, mile_dtype dtype) {
  static const char FN[] = "dataset_field";
  if (!out) return mile_set_error(MILE_ERR_ARGUMENT, "%s: out is NULL", FN);
  *out = NULL;
  if (!ds) return mile_set_error(MILE_ERR_ARGUMENT, "%s: NULL dataset", FN);
  if (field < 0 || field >= MILE_DATA_FIELD_COUNT || ds->width[field] == 0)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: the dataset has no field %d%s", FN, (int)field,
                          field == MILE_DATA_FIELD_P ? " (no p column)" : "");
  if (dtype != MILE_FLOAT32 && dtype != MILE_FLOAT64) return mile_set_error(MILE_ERR_DTYPE, "%s: bad dtype", FN);
  int32_t w = ds->width[field], c0 = ds->first[field];
  bool matrix = field == MILE_DATA_FIELD_OBS ||
                (!ds->discrete && (field == MILE_DATA_FIELD_ROBOT_ACTION || field == MILE_DATA_FIELD_HUMAN_ACTION));
  int64_t shape[2] = {ds->rows, w};
  mile_tensor *t;
  MILE_TRY(mile_empty(&t, dtype, matrix ? 2 : 1, shape));
  void *dst = mile_data(t);
  for (int64_t i = 0; i < ds->rows; i++) {
    const double *src = ds->data + i * ds->cols + c0;
    if (dtype == MILE_FLOAT64) memcpy((double *)dst + i * w, src, (size_t)w * sizeof(double));
    else
      for (int32_t k = 0; k < w; k++) ((float *)dst)[i * w + k] = (float)src[k];
  }
  *out = t;
  return MILE_OK;
}

mile_status mile_dataset_subset(mile_dataset **out, const mile_dataset *ds, int64_t n, const int64_t *rows) {
  static const char FN[] = "dataset_subset";
  if (!out) return mile_set_error(MILE_ERR_ARGUMENT, "%s: out is NULL", FN);
  *out = NULL;
  if (!ds || n < 0 || (n > 0 && !rows)) return mile_set_error(MILE_ERR_ARGUMENT, "%s: NULL dataset or rows, or n < 0", FN);
  for (int64_t i = 0; i < n; i++)
    if (rows[i] < 0 || rows[i] >= ds->rows)
      return mile_set_error(MILE_ERR_RANGE, "%s: row index %lld out of range 0..%lld (at position %lld)", FN,
                            (long long)rows[i], (long long)ds->rows - 1, (long long)i);
  mile_dataset *s;
  MILE_TRY(mile_dataset_new(&s, ds->obs_dim, ds->action_dim, ds->discrete, ds->has_p));
  s->n_actions = ds->n_actions;
  mile_status st = reserve(s, n, FN);
  if (st != MILE_OK) {
    mile_dataset_free(s);
    return st;
  }
  for (int64_t i = 0; i < n; i++)
    memcpy(s->data + i * s->cols, ds->data + rows[i] * ds->cols, (size_t)ds->cols * sizeof(double));
  s->rows = n;
  *out = s;
  return MILE_OK;
}

/* ---- the "C" locale around number parsing and printing ---------------------------- */

typedef struct c_locale {
  locale_t c, saved;
} c_locale;

static void c_locale_enter(c_locale *l) {
  l->c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  l->saved = l->c ? uselocale(l->c) : (locale_t)0;
}
static void c_locale_leave(c_locale *l) {
  if (!l->c) return;
  uselocale(l->saved);
  freelocale(l->c);
}

/* ---- reading ---------------------------------------------------------------------- */

/* `len` bytes of field text as a short printable quoted string. */
static const char *show_text(const char *s, size_t len, char *buf, size_t size) {
  size_t o = 0;
  buf[o++] = '"';
  for (size_t i = 0; i < len && o + 8 < size; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == 32) {
      o += (size_t)snprintf(buf + o, size - o, "...");
      break;
    }
    if (c == '"' || c == '\\') o += (size_t)snprintf(buf + o, size - o, "\\%c", c);
    else if (c >= 0x20 && c < 0x7f) buf[o++] = (char)c;
    else o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
  }
  buf[o++] = '"';
  buf[o] = '\0';
  return buf;
}

/* Whether s[0..len) spells NaN or an infinity the way strtod would take it. */
static bool spells_nonfinite(const char *s, size_t len) {
  char low[16];
  if (len >= sizeof low) return false;
  size_t i = 0, o = 0;
  if (len > 0 && (s[0] == '+' || s[0] == '-')) i++;
  for (; i < len; i++) low[o++] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
  low[o] = '\0';
  return !strcmp(low, "nan") || !strcmp(low, "inf") || !strcmp(low, "infinity");
}

/* Parse a decimal number: [+-] digits [. digits] [(e|E) [+-] digits], at least one
 * digit before the exponent; no spaces (libcsv already trimmed unquoted ones), no
 * hex, no NaN or Inf. Finite results only. */
static bool parse_number(const char *s, size_t len, double *v, char *why, size_t size) {
  char shown[64];
  if (len == 0) {
    snprintf(why, size, "empty field (every field must hold a number)");
    return false;
  }
  size_t i = 0, digits = 0;
  if (s[i] == '+' || s[i] == '-') i++;
  while (i < len && s[i] >= '0' && s[i] <= '9') i++, digits++;
  if (i < len && s[i] == '.') {
    i++;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++, digits++;
  }
  if (digits > 0 && i < len && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1, edigits = 0;
    if (j < len && (s[j] == '+' || s[j] == '-')) j++;
    while (j < len && s[j] >= '0' && s[j] <= '9') j++, edigits++;
    if (edigits > 0) i = j;
  }
  if (digits == 0 || i != len) {
    if (spells_nonfinite(s, len))
      snprintf(why, size, "%s: NaN and infinities are not allowed (every field must be a finite number)",
               show_text(s, len, shown, sizeof shown));
    else
      snprintf(why, size, "%s is not a number", show_text(s, len, shown, sizeof shown));
    return false;
  }
  char buf[MILE_DATASET_MAX_FIELD + 1];
  if (len > MILE_DATASET_MAX_FIELD) {
    snprintf(why, size, "a number longer than %d characters", MILE_DATASET_MAX_FIELD);
    return false;
  }
  memcpy(buf, s, len);
  buf[len] = '\0';
  double x = strtod(buf, NULL);
  if (!isfinite(x)) {
    snprintf(why, size, "%s is out of the range of a double", show_text(s, len, shown, sizeof shown));
    return false;
  }
  *v = x;
  return true;
}

/* How a number's text (as parse_number accepted it) stands to the integers. */
typedef enum int_text { INT_TEXT_EXACT, INT_TEXT_BEYOND_2_53, INT_TEXT_FRACTION } int_text;

/* Whether s[0..len) denotes an integer (in any spelling: "7", "7.0", "0.7e1") of
 * magnitude <= 2^53, which a double holds exactly; an integer beyond; or a number
 * with a fractional part. Decided on the digits, not on what strtod rounded them to.
 * D is the text's digits without the point, P the place of the point in D after the
 * exponent: the value is 0.D x 10^P. */
static int_text classify_int_text(const char *s, size_t len) {
  size_t i = 0;
  if (i < len && (s[i] == '+' || s[i] == '-')) i++;
  size_t start = i;
  while (i < len && s[i] >= '0' && s[i] <= '9') i++;
  if (i == len && i - start <= 15) return INT_TEXT_EXACT; /* plain integers below 10^15: the common case */
  int64_t ndigits = 0, point = -1, first = -1, last = -1; /* indices into D */
  for (i = start; i < len && s[i] != 'e' && s[i] != 'E'; i++) {
    if (s[i] == '.') {
      point = ndigits;
      continue;
    }
    if (s[i] != '0') {
      if (first < 0) first = ndigits;
      last = ndigits;
    }
    ndigits++;
  }
  if (point < 0) point = ndigits;
  if (i < len) { /* the exponent, saturated: fields are at most MILE_DATASET_MAX_FIELD bytes */
    i++;
    bool neg = s[i] == '-';
    if (s[i] == '+' || s[i] == '-') i++;
    int64_t e = 0;
    for (; i < len; i++) e = e < 1000000 ? e * 10 + (s[i] - '0') : e;
    point += neg ? -e : e;
  }
  if (first < 0) return INT_TEXT_EXACT;      /* zero */
  if (last >= point) return INT_TEXT_FRACTION; /* a nonzero digit after the point */
  if (point - first > 16) return INT_TEXT_BEYOND_2_53; /* >= 10^16 > 2^53 */
  uint64_t u = 0; /* the digits first..point-1 of D, zeros past its end: < 10^16 */
  int64_t k = 0;
  for (i = start; i < len && s[i] != 'e' && s[i] != 'E'; i++) {
    if (s[i] == '.') continue;
    if (k >= first && k < point) u = u * 10 + (uint64_t)(s[i] - '0');
    k++;
  }
  for (; k < point; k++) u *= 10;
  return u <= (uint64_t)1 << 53 ? INT_TEXT_EXACT : INT_TEXT_BEYOND_2_53;
}

/* What a header name denotes. */
typedef enum hkind { H_UNKNOWN, H_SCALAR, H_S, H_AR, H_AH, H_AR_D, H_AH_D } hkind;

static hkind classify(const char *name, mile_data_field *field, int32_t *index) {
  static const struct {
    const char *name;
    mile_data_field field;
  } scalars[] = {{"episode", MILE_DATA_FIELD_EPISODE}, {"t", MILE_DATA_FIELD_T},          {"nu", MILE_DATA_FIELD_NU},
                 {"reward", MILE_DATA_FIELD_REWARD},   {"done", MILE_DATA_FIELD_DONE},    {"success", MILE_DATA_FIELD_SUCCESS},
                 {"p", MILE_DATA_FIELD_P}};
  *index = -1;
  for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
    if (!strcmp(name, scalars[i].name)) {
      *field = scalars[i].field;
      return H_SCALAR;
    }
  if (!strcmp(name, "ar")) return *field = MILE_DATA_FIELD_ROBOT_ACTION, H_AR_D;
  if (!strcmp(name, "ah")) return *field = MILE_DATA_FIELD_HUMAN_ACTION, H_AH_D;
  hkind kind;
  const char *digits;
  if (!strncmp(name, "s_", 2)) kind = H_S, digits = name + 2, *field = MILE_DATA_FIELD_OBS;
  else if (!strncmp(name, "ar_", 3)) kind = H_AR, digits = name + 3, *field = MILE_DATA_FIELD_ROBOT_ACTION;
  else if (!strncmp(name, "ah_", 3)) kind = H_AH, digits = name + 3, *field = MILE_DATA_FIELD_HUMAN_ACTION;
  else return H_UNKNOWN;
  size_t n = strlen(digits);
  if (n == 0 || n > 7 || (digits[0] == '0' && n > 1)) return H_UNKNOWN;
  int32_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (digits[i] < '0' || digits[i] > '9') return H_UNKNOWN;
    v = v * 10 + (digits[i] - '0');
  }
  if (v >= MILE_DATASET_MAX_DIM) return H_UNKNOWN;
  *index = v;
  return kind;
}

typedef struct reader {
  const char *label;
  int32_t n_actions;
  int32_t n_float;
  const char *const *float_columns; /* declared float by the caller */
  int64_t max_bytes;                /* cap on the table; 0: none */
  uint64_t source_size;             /* bytes of the file, 0: unknown */
  int64_t line;   /* the physical line being fed, 1-based */
  int32_t field;  /* fields seen so far in the current record */
  bool header_done;
  bool ended_with_newline;
  mile_status st; /* the first failure; callbacks do nothing once it is set */
  /* the header */
  char **hnames;
  int32_t hn, hcap;
  /* after the header */
  mile_dataset *ds;
  int32_t *map; /* header position -> dataset column */
  int32_t *pos; /* dataset column -> header position */
  bool *exact;  /* dataset column -> its numbers must be exact integers */
  int64_t max_rows;       /* what the file's size and max_bytes allow (the reserve bound) */
  int64_t max_bytes_rows; /* what max_bytes allows */
  double *row;
} reader;

static void reader_fail(reader *r, int64_t line, int32_t col, const char *fmt, ...) {
  if (r->st != MILE_OK) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  r->st = mile_set_error(MILE_ERR_FORMAT, "%s:%lld:%d: %s", r->label, (long long)line, (int)col, msg);
}

static void reader_nomem(reader *r) {
  if (r->st == MILE_OK) r->st = mile_set_error(MILE_ERR_NOMEM, "%s: out of memory reading the dataset", r->label);
}

static const char *hname(const reader *r, int32_t pos, char *buf, size_t size) {
  const char *s = r->hnames[pos];
  return show_text(s, strlen(s), buf, size);
}

/* Check the header names and set up the dataset, the column maps and the row. */
static void setup_header(reader *r) {
  char b1[64], b2[64];
  int64_t line = r->line;
  int32_t hn = r->hn;
  mile_data_field field[1];
  int32_t index;
  /* pass 1: every name known; sizes of the indexed groups */
  int32_t max_s = -1, max_ar = -1, max_ah = -1;
  int32_t count[3] = {0, 0, 0}, at_max[3] = {0, 0, 0}; /* s_, ar_, ah_: how many, where the largest */
  int32_t disc_ar = -1, disc_ah = -1; /* header positions of 'ar' / 'ah' */
  int32_t first_ar_c = -1, first_ah_c = -1;
  for (int32_t j = 0; j < hn; j++) {
    hkind k = classify(r->hnames[j], field, &index);
    if (k == H_UNKNOWN) {
      double v;
      char why[8];
      const char *s = r->hnames[j];
      if (j == 0 && parse_number(s, strlen(s), &v, why, sizeof why))
        return reader_fail(r, line, 1, "missing header row: the first row holds data (%s), expected column names "
                           "(episode,t,s_0,...)", hname(r, 0, b1, sizeof b1));
      return reader_fail(r, line, j + 1, "unknown column %s (expected episode, t, s_<i>, ar and ah or ar_<i> and "
                         "ah_<i>, nu, reward, done, success, p)", hname(r, j, b1, sizeof b1));
    }
    if (k == H_S || k == H_AR || k == H_AH) count[k - H_S]++;
    if (k == H_S && index > max_s) max_s = index, at_max[0] = j;
    if (k == H_AR && index > max_ar) max_ar = index, at_max[1] = j;
    if (k == H_AH && index > max_ah) max_ah = index, at_max[2] = j;
    if (k == H_AR && first_ar_c < 0) first_ar_c = j;
    if (k == H_AH && first_ah_c < 0) first_ah_c = j;
    if (k == H_AR_D && disc_ar < 0) disc_ar = j;
    if (k == H_AH_D && disc_ah < 0) disc_ah = j;
  }
  /* an index beyond the header's own length (s_1048575 among ten names) is a gap:
   * say so before anything is sized by it (below, the gap is named precisely) */
  static const char *const prefixes[3] = {"s", "ar", "ah"};
  const int32_t maxes[3] = {max_s, max_ar, max_ah};
  for (int g = 0; g < 3; g++)
    if (maxes[g] >= hn)
      return reader_fail(r, line, at_max[g] + 1, "column '%s_%d': the header has %d '%s_<i>' column%s, too few for "
                         "%s_0..%s_%d (the %s_<i> columns must be numbered 0, 1, 2, ... without gaps)",
                         prefixes[g], (int)maxes[g], (int)count[g], prefixes[g], count[g] == 1 ? "" : "s",
                         prefixes[g], prefixes[g], (int)maxes[g], prefixes[g]);
  /* pass 2: duplicates (positions of each name, -1 when absent) */
  int32_t n_s = max_s + 1, n_ar = max_ar + 1, n_ah = max_ah + 1;
  int32_t *where = malloc(((size_t)n_s + (size_t)n_ar + (size_t)n_ah + MILE_DATA_FIELD_COUNT + 2) * sizeof *where);
  if (!where) return reader_nomem(r);
  int32_t *w_scalar = where, *w_s = where + MILE_DATA_FIELD_COUNT + 2, *w_ar = w_s + n_s, *w_ah = w_ar + n_ar;
  for (int32_t i = 0; i < MILE_DATA_FIELD_COUNT + 2 + n_s + n_ar + n_ah; i++) where[i] = -1;
  for (int32_t j = 0; j < hn && r->st == MILE_OK; j++) {
    hkind k = classify(r->hnames[j], field, &index);
    int32_t *slot = k == H_S    ? &w_s[index]
                    : k == H_AR ? &w_ar[index]
                    : k == H_AH ? &w_ah[index]
                    : k == H_AR_D ? &w_scalar[MILE_DATA_FIELD_COUNT]
                    : k == H_AH_D ? &w_scalar[MILE_DATA_FIELD_COUNT + 1]
                                  : &w_scalar[*field];
    if (*slot >= 0)
      reader_fail(r, line, j + 1, "duplicate column %s (also column %d)", hname(r, j, b1, sizeof b1), (int)*slot + 1);
    *slot = j;
  }
  /* discrete and continuous actions do not mix */
  if (r->st == MILE_OK && disc_ar >= 0 && first_ar_c >= 0) {
    int32_t j = disc_ar > first_ar_c ? disc_ar : first_ar_c;
    reader_fail(r, line, j + 1, "column %s: 'ar' (discrete) and 'ar_<i>' (continuous) columns cannot be mixed",
                hname(r, j, b1, sizeof b1));
  }
  if (r->st == MILE_OK && disc_ah >= 0 && first_ah_c >= 0) {
    int32_t j = disc_ah > first_ah_c ? disc_ah : first_ah_c;
    reader_fail(r, line, j + 1, "column %s: 'ah' (discrete) and 'ah_<i>' (continuous) columns cannot be mixed",
                hname(r, j, b1, sizeof b1));
  }
  if (r->st == MILE_OK && ((disc_ar >= 0 && first_ah_c >= 0) || (first_ar_c >= 0 && disc_ah >= 0))) {
    int32_t j = disc_ar >= 0 ? first_ah_c : disc_ah;
    reader_fail(r, line, j + 1, "column %s: the robot action is %s but the human action is %s",
                hname(r, j, b1, sizeof b1), disc_ar >= 0 ? "discrete ('ar')" : "continuous ('ar_<i>')",
                disc_ar >= 0 ? "continuous" : "discrete");
  }
  /* required columns */
  static const mile_data_field required[] = {MILE_DATA_FIELD_EPISODE, MILE_DATA_FIELD_T,    MILE_DATA_FIELD_NU,
                                             MILE_DATA_FIELD_REWARD,  MILE_DATA_FIELD_DONE, MILE_DATA_FIELD_SUCCESS};
  static const char *const required_names[] = {"episode", "t", "nu", "reward", "done", "success"};
  for (size_t i = 0; i < sizeof required / sizeof required[0] && r->st == MILE_OK; i++)
    if (w_scalar[required[i]] < 0) reader_fail(r, line, 1, "missing column '%s'", required_names[i]);
  if (r->st == MILE_OK && n_s == 0) reader_fail(r, line, 1, "missing column 's_0' (the observation)");
  bool discrete = disc_ar >= 0;
  if (r->st == MILE_OK && disc_ar < 0 && n_ar == 0)
    reader_fail(r, line, 1, "missing column 'ar' (discrete) or 'ar_0' (continuous): the robot action");
  if (r->st == MILE_OK && disc_ah < 0 && n_ah == 0)
    reader_fail(r, line, 1, "missing column '%s': the human action", discrete ? "ah" : "ah_0");
  /* indices contiguous from 0 */
  struct {
    const char *prefix;
    int32_t n, *w;
  } groups[] = {{"s", n_s, w_s}, {"ar", n_ar, w_ar}, {"ah", n_ah, w_ah}};
  for (int g = 0; g < 3 && r->st == MILE_OK; g++) {
    for (int32_t k = 0; k < groups[g].n && r->st == MILE_OK; k++) {
      if (groups[g].w[k] >= 0) continue;
      int32_t next = k + 1;
      while (groups[g].w[next] < 0) next++; /* the largest index is present */
      reader_fail(r, line, groups[g].w[next] + 1, "column '%s_%d': '%s_%d' is missing (the %s_<i> columns must be "
                  "numbered 0, 1, 2, ... without gaps)", groups[g].prefix, (int)next, groups[g].prefix, (int)k,
                  groups[g].prefix);
    }
  }
  if (r->st == MILE_OK && n_ar != n_ah) {
    bool more_ar = n_ar > n_ah;
    int32_t k = more_ar ? n_ah : n_ar;
    int32_t j = more_ar ? w_ar[k] : w_ah[k];
    snprintf(b2, sizeof b2, "%s_%d", more_ar ? "ah" : "ar", (int)k);
    reader_fail(r, line, j + 1, "column %s has no matching '%s' (ar_<i> and ah_<i> come in pairs)",
                hname(r, j, b1, sizeof b1), b2);
  }
  if (r->st != MILE_OK) {
    free(where);
    return;
  }
  /* the dataset and the maps */
  mile_status st = mile_dataset_new(&r->ds, n_s, discrete ? 1 : n_ar, discrete, w_scalar[MILE_DATA_FIELD_P] >= 0);
  if (st == MILE_OK && discrete && r->n_actions > 0) r->ds->n_actions = r->n_actions;
  if (st == MILE_OK) {
    r->map = malloc((size_t)hn * sizeof *r->map);
    r->pos = malloc((size_t)r->ds->cols * sizeof *r->pos);
    r->row = malloc((size_t)r->ds->cols * sizeof *r->row);
    if (!r->map || !r->pos || !r->row) st = MILE_ERR_NOMEM;
  }
  if (st != MILE_OK) {
    free(where);
    if (st == MILE_ERR_NOMEM) return reader_nomem(r);
    r->st = st;
    return;
  }
  const mile_dataset *ds = r->ds;
  for (int32_t j = 0; j < hn; j++) {
    hkind k = classify(r->hnames[j], field, &index);
    int32_t col = ds->first[*field] + (k == H_S || k == H_AR || k == H_AH ? index : 0);
    r->map[j] = col;
    r->pos[col] = j;
  }
  free(where);
  /* exact columns hold integers; the caller may declare some of them float */
  r->exact = malloc((size_t)ds->cols * sizeof *r->exact);
  if (!r->exact) return reader_nomem(r);
  for (int32_t c = 0; c < ds->cols; c++) {
    mile_data_field f = field_of(ds, c);
    r->exact[c] = f == MILE_DATA_FIELD_EPISODE || f == MILE_DATA_FIELD_T || f == MILE_DATA_FIELD_NU ||
                  f == MILE_DATA_FIELD_DONE || f == MILE_DATA_FIELD_SUCCESS ||
                  (ds->discrete && (f == MILE_DATA_FIELD_ROBOT_ACTION || f == MILE_DATA_FIELD_HUMAN_ACTION));
  }
  for (int32_t i = 0; i < r->n_float; i++) {
    int32_t j = 0;
    while (j < hn && strcmp(r->hnames[j], r->float_columns[i]) != 0) j++;
    if (j == hn) {
      const char *name = r->float_columns[i];
      return reader_fail(r, line, 1, "float column %s is not a column of the file",
                         show_text(name, strlen(name), b1, sizeof b1));
    }
    r->exact[r->map[j]] = false;
  }
  /* rows: a row of hn fields takes at least 2 hn bytes (a digit and a separator
   * each), so the file's size bounds them; max_bytes bounds the table */
  int64_t row_bytes = (int64_t)ds->cols * (int64_t)sizeof(double);
  r->max_bytes_rows = r->max_bytes > 0 ? r->max_bytes / row_bytes : INT64_MAX;
  r->max_rows = r->source_size ? (int64_t)(r->source_size / (2 * (uint64_t)hn)) + 1 : INT64_MAX;
  if (r->max_bytes_rows < r->max_rows) r->max_rows = r->max_bytes_rows;
  r->header_done = true;
}

static void on_field(void *text, size_t len, void *data) {
  reader *r = data;
  if (r->st != MILE_OK) return;
  const char *s = text ? text : "";
  int32_t j = r->field++;
  char shown[64], why[256];
  if (!r->header_done) {
    if (len > MILE_DATASET_MAX_FIELD || memchr(s, 0, len) || len == 0)
      return reader_fail(r, r->line, j + 1, "%s is not a column name%s", show_text(s, len, shown, sizeof shown),
                         len == 0 ? " (empty header field)" : "");
    if (r->hn >= 3 * MILE_DATASET_MAX_DIM + 8)
      return reader_fail(r, r->line, j + 1, "too many columns (at most %d)", 3 * MILE_DATASET_MAX_DIM + 8);
    if (r->hn == r->hcap) {
      int32_t cap = r->hcap ? 2 * r->hcap : 64;
      char **p = realloc(r->hnames, (size_t)cap * sizeof *p);
      if (!p) return reader_nomem(r);
      r->hnames = p, r->hcap = cap;
    }
    char *name = malloc(len + 1);
    if (!name) return reader_nomem(r);
    memcpy(name, s, len);
    name[len] = '\0';
    r->hnames[r->hn++] = name;
    return;
  }
  if (j >= r->hn)
    return reader_fail(r, r->line, j + 1, "too many fields: the header has %d columns", (int)r->hn);
  int32_t col = r->map[j];
  double v;
  if (len > MILE_DATASET_MAX_FIELD)
    return reader_fail(r, r->line, j + 1, "column '%s': a field longer than %d bytes", r->ds->names[col],
                       MILE_DATASET_MAX_FIELD);
  if (!parse_number(s, len, &v, why, sizeof why))
    return reader_fail(r, r->line, j + 1, "column '%s': %s", r->ds->names[col], why);
  /* lossless or refused: an exact column's number must be the integer stored */
  int_text kind = r->exact[col] ? classify_int_text(s, len) : INT_TEXT_EXACT;
  char nb[32];
  if (kind == INT_TEXT_BEYOND_2_53)
    return reader_fail(r, r->line, j + 1, "column '%s': %s is an integer beyond 2^53, which a double cannot hold "
                       "exactly (it would be read as %s); declare the column float to accept the rounding",
                       r->ds->names[col], show_text(s, len, shown, sizeof shown), show_number(v, nb, sizeof nb));
  if (!check_value(r->ds, col, v, why, sizeof why))
    return reader_fail(r, r->line, j + 1, "column '%s': %s", r->ds->names[col], why);
  if (kind == INT_TEXT_FRACTION)
    return reader_fail(r, r->line, j + 1, "column '%s': %s is not an integer, but would be read as %s; declare the "
                       "column float to accept the rounding", r->ds->names[col], show_text(s, len, shown, sizeof shown),
                       show_number(v, nb, sizeof nb));
  r->row[col] = v;
}

static void on_record(int c, void *data) {
  reader *r = data;
  if (r->st != MILE_OK) return;
  int32_t got = r->field;
  r->field = 0;
  if (c == -1)
    return reader_fail(r, r->line, got > 0 ? got : 1, "truncated last line: %d field%s and no newline at the end of "
                       "the file (every row, the last one too, must end with a newline)", (int)got,
                       got == 1 ? "" : "s");
  if (!r->header_done) {
    setup_header(r);
    return;
  }
  if (got < r->hn) {
    char shown[64];
    return reader_fail(r, r->line, got + 1, "too few fields: %d, the header has %d (first missing: %s)", (int)got,
                       (int)r->hn, hname(r, got, shown, sizeof shown));
  }
  char why[256];
  int32_t bad;
  if (!check_row_relations(r->ds, r->row, &bad, why, sizeof why))
    return reader_fail(r, r->line, r->pos[bad] + 1, "column '%s': %s", r->ds->names[bad], why);
  mile_dataset *ds = r->ds;
  if (ds->rows >= r->max_bytes_rows) {
    if (r->st == MILE_OK)
      r->st = mile_set_error(MILE_ERR_NOMEM, "%s:%lld:1: the dataset exceeds max_bytes = %lld: %lld rows of %d "
                             "columns take %lld bytes, row %lld would need more", r->label, (long long)r->line,
                             (long long)r->max_bytes, (long long)ds->rows, (int)ds->cols,
                             (long long)(ds->rows * ds->cols * (int64_t)sizeof(double)), (long long)ds->rows + 1);
    return;
  }
  mile_status st = reserve_at_most(ds, ds->rows + 1, r->max_rows, r->label);
  if (st == MILE_OK) st = push_rows(ds, 1, r->row, r->label);
  if (st != MILE_OK) reader_nomem(r);
}

/* Feed n bytes, one line at a time. */
static void feed(reader *r, struct csv_parser *p, const char *buf, size_t n) {
  while (n > 0 && r->st == MILE_OK) {
    const char *nl = memchr(buf, '\n', n);
    size_t k = nl ? (size_t)(nl - buf) + 1 : n;
    size_t done = csv_parse(p, buf, k, on_field, on_record, r);
    if (r->st == MILE_OK && done < k) {
      if (csv_error(p) == CSV_EPARSE)
        reader_fail(r, r->line, r->field + 1, "malformed quoting: a '\"' inside an unquoted field, or text after a "
                    "closing '\"'");
      else reader_nomem(r);
    }
    /* a field without an end yet (a quote never closed) must not eat the memory */
    if (r->st == MILE_OK && csv_get_buffer_size(p) > 4 * (size_t)MILE_DATASET_MAX_FIELD + 4096)
      reader_fail(r, r->line, r->field + 1, "a field longer than %d bytes (an unclosed quote?)", MILE_DATASET_MAX_FIELD);
    r->ended_with_newline = nl != NULL;
    if (nl) r->line++;
    buf += k, n -= k;
  }
}

static void reader_free(reader *r) {
  for (int32_t i = 0; i < r->hn; i++) free(r->hnames[i]);
  free(r->hnames);
  free(r->map);
  free(r->pos);
  free(r->exact);
  free(r->row);
  mile_dataset_free(r->ds);
}

/* Parse a whole source: `next` yields chunks until it returns 0 (or fails). */
typedef struct source {
  const char *mem;
  size_t size, at; /* memory source */
  FILE *f;         /* or file source */
  char *buf;
  const char *path;
} source;

static mile_status source_next(source *src, const char **chunk, size_t *n) {
  if (!src->f) {
    size_t k = src->size - src->at < CHUNK ? src->size - src->at : CHUNK;
    *chunk = src->mem + src->at;
    src->at += k;
    *n = k;
    return MILE_OK;
  }
  size_t k = fread(src->buf, 1, CHUNK, src->f);
  if (k < CHUNK && ferror(src->f))
    return mile_set_error(MILE_ERR_IO, "%s: read failed: %s", src->path, strerror(errno ? errno : EIO));
  *chunk = src->buf;
  *n = k;
  return MILE_OK;
}

static mile_status parse_source(mile_dataset **out, source *src, const char *label, uint64_t size,
                                const mile_dataset_load_options *o) {
  struct csv_parser p;
  if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) return mile_err_nomem("load_dataset");
  reader r = {.label = label,
              .n_actions = o->n_actions,
              .n_float = o->n_float,
              .float_columns = o->float_columns,
              .max_bytes = o->max_bytes,
              .source_size = size,
              .line = 1};
  c_locale loc;
  c_locale_enter(&loc);
  bool first = true;
  mile_status io = MILE_OK;
  for (;;) {
    const char *chunk = NULL;
    size_t n = 0;
    io = source_next(src, &chunk, &n);
    if (io != MILE_OK || n == 0) break;
    if (first && n >= 3 && !memcmp(chunk, "\xEF\xBB\xBF", 3)) chunk += 3, n -= 3; /* a UTF-8 BOM */
    first = false;
    feed(&r, &p, chunk, n);
    if (r.st != MILE_OK) break;
  }
  if (io == MILE_OK && r.st == MILE_OK) {
    if (r.ended_with_newline && r.line > 1) r.line--; /* the last line of the file */
    if (csv_fini(&p, on_field, on_record, &r) != 0 && r.st == MILE_OK)
      reader_fail(&r, r.line, r.field + 1, "unterminated quoted field at the end of the file");
    if (r.st == MILE_OK && !r.header_done) reader_fail(&r, 1, 1, "empty file: no header row");
  }
  c_locale_leave(&loc);
  csv_free(&p);
  mile_status st = io != MILE_OK ? io : r.st;
  if (st == MILE_OK) {
    *out = r.ds;
    r.ds = NULL;
  }
  reader_free(&r);
  return st;
}

/* Check the options (NULL: defaults, into *copy). */
static mile_status check_options(const mile_dataset_load_options *options, mile_dataset_load_options *copy) {
  static const char FN[] = "load_dataset";
  *copy = options ? *options : (mile_dataset_load_options){0};
  if (copy->n_actions < 0) return mile_set_error(MILE_ERR_ARGUMENT, "%s: n_actions < 0", FN);
  if (copy->n_float < 0 || (copy->n_float > 0 && !copy->float_columns))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: n_float < 0 or float_columns NULL", FN);
  for (int32_t i = 0; i < copy->n_float; i++)
    if (!copy->float_columns[i]) return mile_set_error(MILE_ERR_ARGUMENT, "%s: float_columns[%d] is NULL", FN, (int)i);
  if (copy->max_bytes < 0) return mile_set_error(MILE_ERR_ARGUMENT, "%s: max_bytes < 0", FN);
  return MILE_OK;
}

mile_status mile_dataset_parse_with(mile_dataset **out, const void *data, size_t size, const char *label,
                                    const mile_dataset_load_options *options) {
  if (!out) return mile_set_error(MILE_ERR_ARGUMENT, "load_dataset: out is NULL");
  *out = NULL;
  if (!data && size > 0) return mile_set_error(MILE_ERR_ARGUMENT, "load_dataset: data is NULL");
  mile_dataset_load_options o;
  MILE_TRY(check_options(options, &o));
  source src = {.mem = data ? data : "", .size = size};
  return parse_source(out, &src, label ? label : "<memory>", size, &o);
}

mile_status mile_dataset_parse(mile_dataset **out, const void *data, size_t size, const char *label,
                               int32_t n_actions) {
  mile_dataset_load_options o = {.n_actions = n_actions};
  return mile_dataset_parse_with(out, data, size, label, &o);
}

mile_status mile_dataset_load_with(mile_dataset **out, const char *path, const mile_dataset_load_options *options) {
  if (!out) return mile_set_error(MILE_ERR_ARGUMENT, "load_dataset: out is NULL");
  *out = NULL;
  if (!path) return mile_set_error(MILE_ERR_ARGUMENT, "load_dataset: path is NULL");
  mile_dataset_load_options o;
  MILE_TRY(check_options(options, &o));
  FILE *f = fopen(path, "rb");
  if (!f) return mile_set_error(MILE_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat sb; /* a regular file's size bounds the rows (a pipe's is unknown) */
  uint64_t size = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 ? (uint64_t)sb.st_size : 0;
  char *buf = malloc(CHUNK);
  if (!buf) {
    fclose(f);
    return mile_err_nomem("load_dataset");
  }
  source src = {.f = f, .buf = buf, .path = path};
  mile_status st = parse_source(out, &src, path, size, &o);
  free(buf);
  fclose(f);
  return st;
}

mile_status mile_dataset_load(mile_dataset **out, const char *path, int32_t n_actions) {
  mile_dataset_load_options o = {.n_actions = n_actions};
  return mile_dataset_load_with(out, path, &o);
}

/* ---- writing ---------------------------------------------------------------------- */

/* The header line, with its "\n", as a new string. */
static char *header_line(const mile_dataset *ds) {
  size_t n = 2;
  for (int32_t c = 0; c < ds->cols; c++) n += strlen(ds->names[c]) + 1;
  char *s = malloc(n), *o = s;
  if (!s) return NULL;
  for (int32_t c = 0; c < ds->cols; c++) {
    size_t k = strlen(ds->names[c]);
    memcpy(o, ds->names[c], k);
    o += k;
    *o++ = c + 1 < ds->cols ? ',' : '\n';
  }
  *o = '\0';
  return s;
}

/* v as "%.17g" would print it, into buf (at least 32 bytes); returns the length.
 * Integers below 1e15 (episode, t, flags, discrete actions: most fields of most
 * datasets) take a fast path with the same output as "%.17g"; -0 keeps its sign. */
static size_t format_double(char *buf, double v) {
  if (v == floor(v) && fabs(v) < 1e15 && !(v == 0 && signbit(v))) {
    char digits[24];
    int n = 0;
    uint64_t u = (uint64_t)fabs(v);
    do digits[n++] = (char)('0' + u % 10), u /= 10;
    while (u);
    size_t o = 0;
    if (v < 0) buf[o++] = '-';
    while (n) buf[o++] = digits[--n];
    return o;
  }
  return (size_t)snprintf(buf, 32, "%.17g", v);
}

/* Rows from..to-1 as CSV lines. */
static mile_status write_rows(mile_sink *s, const mile_dataset *ds, int64_t from, int64_t to, const char *fname) {
  if (from >= to) return MILE_OK;
  size_t size = (size_t)ds->cols * 32 + 2;
  char *line = malloc(size);
  if (!line) return mile_err_nomem(fname);
  for (int64_t i = from; i < to && !s->err; i++) {
    const double *row = ds->data + i * ds->cols;
    size_t o = 0;
    for (int32_t c = 0; c < ds->cols; c++) {
      o += format_double(line + o, row[c]);
      line[o++] = c + 1 < ds->cols ? ',' : '\n';
    }
    mile_sink_write(s, line, o);
  }
  free(line);
  return MILE_OK;
}

/* Write header + rows from..rows-1 of ds to a temporary file renamed over path. */
static mile_status write_new(const mile_dataset *ds, const char *path, int64_t from, const char *fname) {
  char *header = header_line(ds);
  if (!header) return mile_err_nomem(fname);
  mile_sink s;
  mile_status st = mile_sink_open(&s, path, NULL);
  if (st != MILE_OK) {
    free(header);
    return st;
  }
  c_locale loc;
  c_locale_enter(&loc);
  mile_sink_write(&s, header, strlen(header));
  free(header);
  st = write_rows(&s, ds, from, ds->rows, fname);
  c_locale_leave(&loc);
  return mile_sink_close(&s, path, NULL, st);
}

mile_status mile_dataset_save(const mile_dataset *ds, const char *path) {
  if (!ds || !path || !*path) return mile_set_error(MILE_ERR_ARGUMENT, "save_dataset: NULL dataset or empty path");
  return write_new(ds, path, 0, "save_dataset");
}

/* Compare the existing header line (without its line end) with ours; on a mismatch
 * say where. */
static mile_status check_header(const char *path, const char *have, size_t n, const char *want) {
  if (n >= 3 && !memcmp(have, "\xEF\xBB\xBF", 3)) have += 3, n -= 3;
  if (n > 0 && have[n - 1] == '\r') n--;
  size_t wn = strlen(want) - 1; /* without its '\n' */
  if (n == wn && !memcmp(have, want, n)) return MILE_OK;
  /* the first column that differs */
  size_t a = 0, b = 0;
  int col = 1;
  for (;;) {
    size_t ae = a, be = b;
    while (ae < n && have[ae] != ',') ae++;
    while (be < wn && want[be] != ',') be++;
    bool a_end = a > n, b_end = b > wn;
    if (a_end || b_end || ae - a != be - b || memcmp(have + a, want + b, ae - a)) {
      char s1[64], s2[64];
      if (a_end)
        return mile_set_error(MILE_ERR_FORMAT, "%s:1:%d: header does not match the dataset: the file has %d columns, "
                              "the dataset more (next: '%.*s')", path, col, col - 1, (int)(be - b), want + b);
      if (b_end)
        return mile_set_error(MILE_ERR_FORMAT, "%s:1:%d: header does not match the dataset: the file has column %s, "
                              "the dataset only %d columns", path, col, show_text(have + a, ae - a, s1, sizeof s1), col - 1);
      snprintf(s2, sizeof s2, "'%.*s'", (int)(be - b), want + b);
      return mile_set_error(MILE_ERR_FORMAT, "%s:1:%d: header does not match the dataset: column %d is %s in the file, "
                            "%s in the dataset", path, col, col, show_text(have + a, ae - a, s1, sizeof s1), s2);
    }
    a = ae + 1, b = be + 1, col++;
  }
}

mile_status mile_dataset_append_file(const mile_dataset *ds, const char *path, int64_t from_row) {
  static const char FN[] = "append_dataset";
  if (!ds || !path || !*path) return mile_set_error(MILE_ERR_ARGUMENT, "%s: NULL dataset or empty path", FN);
  if (from_row < 0 || from_row > ds->rows)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: from_row %lld out of range 0..%lld", FN, (long long)from_row,
                          (long long)ds->rows);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return write_new(ds, path, from_row, FN);
    return mile_set_error(MILE_ERR_IO, "%s: %s", path, strerror(errno));
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    mile_status st = mile_set_error(MILE_ERR_IO, "%s: %s", path, strerror(errno));
    close(fd);
    return st;
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return mile_set_error(MILE_ERR_IO, "%s: not a regular file", path);
  }
  if (sb.st_size == 0) { /* an empty file (os.tmpname, touch): as a new one */
    close(fd);
    return write_new(ds, path, from_row, FN);
  }
  char *header = header_line(ds);
  char *buf = malloc(CHUNK);
  mile_status st = header && buf ? MILE_OK : mile_err_nomem(FN);
  /* the existing header line: read until the first '\n' (bounded by our header's length) */
  size_t want = header ? strlen(header) : 0, have = 0, limit = want + 4;
  char *first = st == MILE_OK ? malloc(limit + 1) : NULL;
  if (st == MILE_OK && !first) st = mile_err_nomem(FN);
  bool found = false;
  while (st == MILE_OK && !found && have < limit) {
    ssize_t k = read(fd, first + have, limit - have);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) st = mile_set_error(MILE_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    if (k <= 0) break;
    char *nl = memchr(first + have, '\n', (size_t)k);
    if (nl) found = true, have = (size_t)(nl - first);
    else have += (size_t)k;
  }
  if (st == MILE_OK) st = check_header(path, first, have, header);
  if (st == MILE_OK && !found) /* cannot happen: a line longer than ours differs from it */
    st = mile_set_error(MILE_ERR_FORMAT, "%s:1:1: header does not match the dataset", path);
  free(first);
  /* the last byte: a file that does not end with a newline ends with a cut row */
  char last = 0;
  if (st == MILE_OK && pread(fd, &last, 1, sb.st_size - 1) != 1)
    st = mile_set_error(MILE_ERR_IO, "%s: read failed: %s", path, strerror(errno ? errno : EIO));
  if (st == MILE_OK && last != '\n')
    st = mile_set_error(MILE_ERR_FORMAT, "%s: does not end with a newline (a truncated last row?); not appending to it",
                        path);
  if (st != MILE_OK || from_row == ds->rows) {
    free(header);
    free(buf);
    close(fd);
    return st;
  }
  /* copy the old file, then the new rows, into a temporary file renamed over it */
  mile_sink s;
  st = mile_sink_open(&s, path, NULL);
  if (st == MILE_OK) {
    fchmod(fileno(s.f), sb.st_mode & 07777);
    if (lseek(fd, 0, SEEK_SET) != 0) s.err = errno, s.step = "seek";
    for (;;) {
      if (s.err) break;
      ssize_t k = read(fd, buf, CHUNK);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) s.err = errno, s.step = "read";
      if (k <= 0) break;
      mile_sink_write(&s, buf, (size_t)k);
    }
    c_locale loc;
    c_locale_enter(&loc);
    st = write_rows(&s, ds, from_row, ds->rows, FN);
    c_locale_leave(&loc);
    st = mile_sink_close(&s, path, NULL, st);
  }
  free(header);
  free(buf);
  close(fd);
  return st;
}

/* ---- weighted sampling -------------------------------------------------------------- */

struct mile_sampler {
  int64_t n;
  int64_t last_positive; /* the last index of positive weight */
  double total;
  double *cum; /* cum[i] = w[0] + ... + w[i] */
};

mile_status mile_sampler_new(mile_sampler **out, const mile_tensor *weights) {
  static const char FN[] = "sampler";
  if (!out) return mile_set_error(MILE_ERR_ARGUMENT, "%s: out is NULL", FN);
  *out = NULL;
  if (!weights) return mile_set_error(MILE_ERR_ARGUMENT, "%s: weights is NULL", FN);
  int64_t n = mile_numel(weights);
  if (n <= 0) return mile_set_error(MILE_ERR_ARGUMENT, "%s: no weights", FN);
  mile_sampler *s = calloc(1, sizeof *s);
  if (!s || (uint64_t)n > SIZE_MAX / sizeof(double) || !(s->cum = malloc((size_t)n * sizeof(double)))) {
    free(s);
    return mile_err_nomem(FN);
  }
  mile_status st = mile_to_doubles(weights, s->cum);
  double total = 0;
  s->n = n, s->last_positive = -1;
  for (int64_t i = 0; i < n && st == MILE_OK; i++) {
    double w = s->cum[i];
    if (!(w >= 0) || !isfinite(w))
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: weight %g at 0-based index %lld (weights must be finite and >= 0)",
                          FN, w, (long long)i);
    if (w > 0) s->last_positive = i;
    total += w;
    s->cum[i] = total;
  }
  if (st == MILE_OK && (!(total > 0) || !isfinite(total)))
    st = mile_set_error(MILE_ERR_ARGUMENT, "%s: the weights sum to %g (need a positive finite sum)", FN, total);
  if (st != MILE_OK) {
    mile_sampler_free(s);
    return st;
  }
  s->total = total;
  *out = s;
  return MILE_OK;
}

void mile_sampler_free(mile_sampler *s) {
  if (!s) return;
  free(s->cum);
  free(s);
}

int64_t mile_sampler_size(const mile_sampler *s) { return s ? s->n : 0; }

mile_status mile_sampler_draw(const mile_sampler *s, mile_rng *rng, int64_t count, int64_t *out) {
  if (!s || !rng || count < 0 || (count > 0 && !out))
    return mile_set_error(MILE_ERR_ARGUMENT, "sampler_draw: NULL sampler, generator or output, or count < 0");
  for (int64_t k = 0; k < count; k++) {
    double u = mile_rng_uniform(rng) * s->total;
    int64_t lo = 0, hi = s->n; /* the first i with cum[i] > u, in [lo, hi] */
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      if (s->cum[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    out[k] = lo < s->n ? lo : s->last_positive; /* u rounded up to the total */
  }
  return MILE_OK;
}
