/* test_util.h - helpers shared by the C core's cmocka tests (header only).
 *
 * Reference values in the tests are computed here from element reads
 * (mile_get) with plain loops in double precision, never by calling the op
 * under test. Everything is static so each test executable stays self-contained. */
#ifndef MILE_TEST_UTIL_H
#define MILE_TEST_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mile/mile.h"

#include "../common/checks.h"



/* Relative tolerance per dtype: float32 kernels against float64 references. */
static inline double tol_of(mile_dtype dt) { return dt == MILE_FLOAT64 ? 1e-12 : 1e-5; }

/* |got - want| <= rtol * |want| + atol, with NaN == NaN and equal infinities. */
static inline int close_enough(double got, double want, double rtol, double atol) {
  if (isnan(want)) return isnan(got);
  if (isinf(want)) return got == want;
  return fabs(got - want) <= rtol * fabs(want) + atol;
}

#define ASSERT_CLOSE(got, want, rtol, atol, ...)                                                 \
  do {                                                                                           \
    double got_ = (got), want_ = (want);                                                         \
    if (!close_enough(got_, want_, (rtol), (atol))) {                                            \
      char what_[256];                                                                           \
      snprintf(what_, sizeof what_, __VA_ARGS__);                                                \
      fail_msg("%s: got %.17g, want %.17g (diff %.3g, rtol %g, atol %g)", what_, got_, want_,    \
               fabs(got_ - want_), (double)(rtol), (double)(atol));                              \
    }                                                                                            \
  } while (0)

static inline int64_t numel_of(int32_t ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int32_t i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

/* Row-major multi-index of flat position k. */
static inline void unravel(int64_t k, int32_t ndim, const int64_t *shape, int64_t *idx) {
  for (int32_t d = ndim - 1; d >= 0; d--) {
    idx[d] = shape[d] ? k % shape[d] : 0;
    k = shape[d] ? k / shape[d] : 0;
  }
}

static inline double get_at(const mile_tensor *t, const int64_t *idx) {
  double v = 0;
  OK(mile_get(t, idx, &v));
  return v;
}

/* Element k of t in row-major logical order. */
static inline double get_flat(const mile_tensor *t, int64_t k) {
  int64_t idx[MILE_MAX_DIMS];
  unravel(k, t->ndim, t->shape, idx);
  return get_at(t, idx);
}

static inline void set_flat(mile_tensor *t, int64_t k, double v) {
  int64_t idx[MILE_MAX_DIMS];
  unravel(k, t->ndim, t->shape, idx);
  OK(mile_set(t, idx, v));
}

/* Element of t seen broadcast (right-aligned) at index `idx` of an ndim-d shape. */
static inline double get_bcast(const mile_tensor *t, int32_t ndim, const int64_t *idx) {
  int64_t own[MILE_MAX_DIMS];
  for (int32_t d = 0; d < t->ndim; d++) {
    int32_t od = d + (ndim - t->ndim);
    own[d] = t->shape[d] == 1 ? 0 : idx[od];
  }
  return get_at(t, own);
}

static inline void assert_shape(const mile_tensor *t, int32_t ndim, const int64_t *shape) {
  if (t->ndim != ndim) fail_msg("ndim %d, expected %d", t->ndim, ndim);
  for (int32_t i = 0; i < ndim; i++)
    if (t->shape[i] != shape[i])
      fail_msg("dim %d has size %lld, expected %lld", i, (long long)t->shape[i], (long long)shape[i]);
}

/* A contiguous tensor with U[lo, hi) values. */
static inline mile_tensor *rand_tensor(mile_rng *rng, mile_dtype dt, int32_t ndim, const int64_t *shape, double lo,
                                       double hi) {
  mile_tensor *t = NULL;
  OK(mile_empty(&t, dt, ndim, shape));
  OK(mile_uniform_(t, rng, lo, hi));
  return t;
}

/* A tensor from a row-major list of doubles. */
static inline mile_tensor *tensor_of(mile_dtype dt, int32_t ndim, const int64_t *shape, const double *values) {
  mile_tensor *t = NULL;
  OK(mile_from_data(&t, dt, ndim, shape, values, MILE_FLOAT64));
  return t;
}

/* Memory layouts of test inputs with one logical shape. */
typedef enum layout {
  LAYOUT_CONTIGUOUS = 0,
  LAYOUT_TRANSPOSED, /* a transpose of the last two dims of a contiguous tensor */
  LAYOUT_NARROWED,   /* a narrow of the last dim of a wider tensor (gaps between rows, an offset) */
  LAYOUT_PERMUTED,   /* every dim reversed from a contiguous tensor */
  LAYOUT_EXPANDED,   /* the first dim of size > 1 expanded from size 1 (stride 0; repeated values) */
  LAYOUT_COUNT
} layout;

static inline const char *layout_name(layout l) {
  static const char *const names[] = {"contiguous", "transposed", "narrowed", "permuted", "expanded"};
  return names[l];
}

/* A tensor of logical shape `shape` laid out as `l` with U[lo, hi) values (built with grad
 * mode off so it is a leaf). Layouts that do not apply to the shape fall back to contiguous. */
static inline mile_tensor *make_input(mile_rng *rng, mile_dtype dt, int32_t ndim, const int64_t *shape, layout l,
                                      double lo, double hi) {
  int32_t previous = mile_set_grad_enabled(0);
  int64_t s[MILE_MAX_DIMS];
  memcpy(s, shape, sizeof(int64_t) * (size_t)ndim);
  mile_tensor *base = NULL, *t = NULL;
  if (l == LAYOUT_TRANSPOSED && ndim >= 2) {
    s[ndim - 2] = shape[ndim - 1], s[ndim - 1] = shape[ndim - 2];
    base = rand_tensor(rng, dt, ndim, s, lo, hi);
    OK(mile_transpose(&t, base, ndim - 2, ndim - 1));
  } else if (l == LAYOUT_NARROWED && ndim >= 1) {
    s[ndim - 1] += 3;
    base = rand_tensor(rng, dt, ndim, s, lo, hi);
    OK(mile_narrow(&t, base, ndim - 1, 2, shape[ndim - 1]));
  } else if (l == LAYOUT_PERMUTED && ndim >= 2) {
    int32_t dims[MILE_MAX_DIMS];
    for (int32_t i = 0; i < ndim; i++) s[i] = shape[ndim - 1 - i], dims[i] = ndim - 1 - i;
    base = rand_tensor(rng, dt, ndim, s, lo, hi);
    OK(mile_permute(&t, base, dims));
  } else if (l == LAYOUT_EXPANDED) {
    int32_t d = 0;
    while (d < ndim && shape[d] <= 1) d++;
    if (d < ndim) {
      s[d] = 1;
      base = rand_tensor(rng, dt, ndim, s, lo, hi);
      OK(mile_expand(&t, base, ndim, shape));
    }
  }
  if (!t) t = rand_tensor(rng, dt, ndim, shape, lo, hi);
  mile_tensor_release(base); /* the view keeps the storage alive */
  mile_set_grad_enabled(previous);
  return t;
}

/* Round every element to a multiple of `step` (in place), to create ties on purpose. */
static inline void quantize(mile_tensor *t, double step) {
  int64_t n = mile_numel(t);
  for (int64_t k = 0; k < n; k++) set_flat(t, k, step * floor(get_flat(t, k) / step));
}

#endif
