/* iv_internal.h - what the intervention-model kernels (intervention_*.c) share:
 * reading cost and scale, a log Phi pair from one erfc, typed row access. */
#ifndef MILE_IV_INTERNAL_H
#define MILE_IV_INTERNAL_H

#include <float.h>
#include <math.h>

#include "internal.h"
#include "mile/intervention.h"

/* Threads for a kernel's independent rows: the products' count (mile/compute.h: fixed,
 * or every core when automatic), at most one per IV_ROWS_PER_THREAD rows, so a small
 * batch stays on the calling thread. Each row is computed alone and the same way on any
 * thread: the results do not depend on the count. */
enum { IV_ROWS_PER_THREAD = 256 };

/* A kernel's B rows split into pieces (mile_parallel_for): per piece, `per_part` doubles
 * of scratch and the first row it found bad (non-finite input; B when none), so that
 * the error names the batch's first bad row, raised on the calling thread. */
typedef struct iv_rows {
  int64_t B;
  int parts;
  size_t per_part;
  double *scratch;
  int64_t *first_bad;
} iv_rows;

static inline mile_status iv_rows_init(iv_rows *r, const char *fname, int64_t B, size_t per_part) {
  int n = mile_work_threads();
  int64_t cap = B / IV_ROWS_PER_THREAD;
  r->B = B, r->parts = (int)(cap < 1 ? 1 : cap < n ? cap : n), r->per_part = per_part;
  r->scratch = malloc((size_t)r->parts * per_part * sizeof *r->scratch);
  r->first_bad = malloc((size_t)r->parts * sizeof *r->first_bad);
  if (!r->scratch || !r->first_bad) return mile_err_nomem(fname);
  for (int p = 0; p < r->parts; p++) r->first_bad[p] = B;
  return MILE_OK;
}
static inline double *iv_rows_scratch(const iv_rows *r, int part) { return r->scratch + (size_t)part * r->per_part; }
static inline void iv_rows_bad(const iv_rows *r, int part, int64_t b) {
  if (b < r->first_bad[part]) r->first_bad[part] = b;
}
/* The first bad row over all pieces, B when there is none. */
static inline int64_t iv_rows_first_bad(const iv_rows *r) {
  int64_t b = r->B;
  for (int p = 0; p < r->parts; p++) b = r->first_bad[p] < b ? r->first_bad[p] : b;
  return b;
}
static inline void iv_rows_free(iv_rows *r) {
  free(r->scratch), free(r->first_bad);
  r->scratch = NULL, r->first_bad = NULL;
}

#define IV_LN_SQRT_2PI 0.91893853320467274178
#define IV_INV_SQRT_2PI 0.39894228040143267794
#define IV_SQRT1_2 0.70710678118654752440

/* A per-sample parameter (cost or scale): one value shared by the batch (stride 0)
 * or one per sample, as doubles owned by `buf`. */
typedef struct iv_param {
  double *buf;
  int64_t stride;
} iv_param;

/* Read `t` (one element, or shape [B]) into p; `what` names it in messages.
 * positive: the values must be > 0. Every value must be finite. */
mile_status iv_param_read(const char *fname, const char *what, mile_tensor *t, int64_t batch, mile_dtype dtype,
                          bool positive, iv_param *p);
void iv_param_free(iv_param *p);
static inline double iv_param_at(const iv_param *p, int64_t b) { return p->buf[b * p->stride]; }

/* The gradient tensor of a parameter from per-sample values g[B]: shape [B] for a
 * per-sample parameter, or t's own shape holding the sum for a shared one. */
mile_status iv_param_grad(mile_tensor **out, const mile_tensor *t, const double *g, int64_t batch);

/* Check that t is 2-d [rows, cols] (cols >= 1) of dtype; `what` names it. */
mile_status iv_check_matrix(const char *fname, const char *what, const mile_tensor *t);
/* Check that t has the same shape and dtype as `like` (named like_what). */
mile_status iv_check_like(const char *fname, const char *what, const mile_tensor *t, const char *like_what,
                          const mile_tensor *like);

/* ln Phi(x) and ln Phi(-x) together, from one erfc; accurate in both tails
 * (the far left tail by the asymptotic series of normal.c). */
static inline void iv_log_ndtr_pair(double x, double *lpos, double *lneg) {
  double ax = fabs(x), lsmall, lbig;
  if (ax < 20.0) {
    double e = 0.5 * erfc(ax * IV_SQRT1_2); /* Phi(-|x|) */
    lsmall = log(e);
    lbig = log1p(-e);
  } else {
    lsmall = mile_log_normal_cdf_d(-ax);
    lbig = -exp(lsmall); /* ln(1 - e) = -e to double precision */
  }
  if (x >= 0) *lpos = lbig, *lneg = lsmall;
  else *lpos = lsmall, *lneg = lbig;
}

/* phi(x) / Phi(x), given ln Phi(x) (stable for very negative x). */
static inline double iv_hazard(double x, double log_cdf) {
  if (x > -20.0) return exp(-0.5 * x * x - IV_LN_SQRT_2PI - log_cdf);
  return mile_normal_hazard_d(x);
}

/* The index of the first non-finite value of row[0..n), or -1: the input check of the
 * kernels, run on each row as it is loaded (no second pass over the data). */
static inline int64_t iv_first_nonfinite(const double *row, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; i++)
    acc += row[i] * 0; /* NaN iff some value is NaN or inf */
  if (acc == 0) return -1;
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(row[i])) return i;
  return -1;
}

/* MILE_ERR_ARGUMENT naming the input, the sample and the column (0-based) of a
 * non-finite value. */
mile_status iv_nonfinite_error(const char *fname, const char *what, int64_t b, int64_t i, double v);

/* Row b of a contiguous [rows, n] tensor, converted to double. */
static inline void iv_load_row(const mile_tensor *t, int64_t b, int64_t n, double *dst) {
  if (t->dtype == MILE_FLOAT64) {
    const double *src = (const double *)mile_data(t) + b * n;
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
  } else {
    const float *src = (const float *)mile_data(t) + b * n;
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
  }
}
static inline void iv_store_row(mile_tensor *t, int64_t b, int64_t n, const double *src) {
  if (t->dtype == MILE_FLOAT64) {
    double *dst = (double *)mile_data(t) + b * n;
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
  } else {
    float *dst = (float *)mile_data(t) + b * n;
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
  }
}

/* Derivatives whose exact value lies beyond the float64 range saturate at +-DBL_MAX
 * instead of becoming inf (an inf times a zero factor further down the chain
 * would be NaN). iv_mul is a product that treats 0 * anything as 0. */
static inline double iv_sat(double x) { return x > DBL_MAX ? DBL_MAX : x < -DBL_MAX ? -DBL_MAX : x; }
static inline double iv_mul(double a, double b) { return a == 0 || b == 0 ? 0 : iv_sat(a * b); }

/* A gradient row into t: like iv_store_row, saturated at the dtype's largest
 * finite value (float32 gradients of float64-sized derivatives stay finite). */
static inline void iv_store_grad_row(mile_tensor *t, int64_t b, int64_t n, const double *src) {
  if (t->dtype == MILE_FLOAT64) {
    double *dst = (double *)mile_data(t) + b * n;
    for (int64_t i = 0; i < n; i++)
      dst[i] = iv_sat(src[i]);
  } else {
    float *dst = (float *)mile_data(t) + b * n;
    for (int64_t i = 0; i < n; i++)
      dst[i] = (float)(src[i] > FLT_MAX ? FLT_MAX : src[i] < -FLT_MAX ? -FLT_MAX : src[i]);
  }
}

/* ln(e^a + e^b) for a, b possibly -inf. */
static inline double iv_logaddexp(double a, double b) {
  if (a < b) {
    double t = a;
    a = b, b = t;
  }
  if (b == -INFINITY) return a;
  return a + log1p(exp(b - a));
}

#endif
