/* intervention_discrete.c - the discrete probit intervention model as one fused
 * autograd node: forward in log space, analytic backward into both logit tensors
 * (and into cost and scale when they are tensors that require grad).
 *
 * Forward, per row (A actions, everything in double):
 *   lp_a    = lh_a - logsumexp(lh)                 ln pi_h(a)          (log-softmax)
 *   pm_a    = softmax(lm)_a                        pihat(a)
 *   Delta_a = lh_a - sum_b pm_b lh_b               (= lp_a - sum_b pm_b lp_b: the
 *                                                   normaliser cancels, so Delta
 *                                                   never goes through ln 0)
 *   x_a     = (Delta_a - c) / sigma
 *   lq_a    = ln Phi(x_a),  lqc_a = ln Phi(-x_a)   (one erfc, asymptotic tails)
 *   ln p    = logsumexp_a(lp_a + lq_a)
 *   ln(1-p) = logsumexp_a(lp_a + lqc_a)            (never 1 - p from a rounded p)
 *   q_a     = exp(lq_a)
 *
 * Backward. Write h(x) = phi(x)/Phi(x) (d ln Phi/dx) and let the incoming gradient
 * of the packed output be gLP_a, gD_a, gLQ_a, gQ_a, gP, gN (for ln pi_h, Delta,
 * ln q, q, ln p, ln(1-p)). With the posterior weights
 *   w_a = exp(lp_a + lq_a - ln p)       = pi_h(a) q(a) / p          (d ln p / d lp_a)
 *   v_a = exp(lp_a + lqc_a - ln(1-p))   = pi_h(a)(1-q(a)) / (1-p)   (d ln(1-p) / d lp_a)
 * the gradient reaching lp_a directly and through x_a is
 *   G_lp_a = gLP_a + gP w_a + gN v_a
 *   G_x_a  = (gP w_a + gLQ_a) h(x_a) - gN v_a h(-x_a) + gQ_a phi(x_a)
 *   G_D_a  = gD_a + G_x_a / sigma                   (dx/dDelta = 1/sigma)
 *   G_c   += -sum_a G_x_a / sigma,   G_sigma += -sum_a G_x_a x_a / sigma
 * Delta_b = lh_b - sum_a pm_a lh_a gives dDelta_b/dlh_a = [a=b] - pm_a and
 * dDelta_b/dlm_a = -pm_a (lh_a - sum pm lh) = -pm_a Delta_a, so with S = sum_b G_D_b
 *   G_lm_a = -S pm_a Delta_a
 *   G_lh_a = G_D_a - pm_a S + G_lp_a - pi_h(a) sum_b G_lp_b   (log-softmax backward)
 * Every factor is finite for finite input: w, v, pm, pi_h lie in [0, 1], h(x) grows
 * like |x| and phi(x) is at most 0.4. */
#include <string.h>

#include "iv_internal.h"

static const char *const FNAME = "probit_discrete";

/* ---- shared helpers of the intervention kernels ------------------------------ */

mile_status iv_param_read(const char *fname, const char *what, mile_tensor *t, int64_t batch, mile_dtype dtype,
                          bool positive, iv_param *p) {
  p->buf = NULL, p->stride = 0;
  char s[96];
  if (!t) return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s is missing", fname, what);
  if (t->dtype != (int32_t)dtype)
    return mile_set_error(MILE_ERR_DTYPE, "%s: %s is %s, expected %s like the other inputs", fname, what,
                          mile_dtype_name((mile_dtype)t->dtype), mile_dtype_name(dtype));
  int64_t n = mile_numel(t);
  if (!(n == 1 || (t->ndim == 1 && t->shape[0] == batch)))
    return mile_set_error(MILE_ERR_SHAPE, "%s: %s has shape %s, expected one value or {%lld} (one per sample)", fname,
                          what, mile_shape_str(t, s, sizeof s), (long long)batch);
  p->buf = malloc((size_t)n * sizeof *p->buf);
  if (!p->buf) return mile_err_nomem(fname);
  mile_status st = mile_to_doubles(t, p->buf);
  for (int64_t i = 0; st == MILE_OK && i < n; i++) {
    double v = p->buf[i];
    if (!isfinite(v) || (positive && !(v > 0)))
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: %s must be %s, got %g%s", fname, what,
                          positive ? "positive and finite" : "finite", v, n > 1 ? " in a sample" : "");
  }
  if (st != MILE_OK) iv_param_free(p);
  p->stride = n == 1 ? 0 : 1;
  return st;
}

mile_status iv_nonfinite_error(const char *fname, const char *what, int64_t b, int64_t i, double v) {
  return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s must be finite, got %s at sample %lld, column %lld (0-based)", fname,
                        what,
                        isnan(v) ? "nan"
                        : v > 0  ? "inf"
                                 : "-inf",
                        (long long)b, (long long)i);
}

void iv_param_free(iv_param *p) {
  free(p->buf);
  p->buf = NULL;
}

mile_status iv_param_grad(mile_tensor **out, const mile_tensor *t, const double *g, int64_t batch) {
  double lim = t->dtype == MILE_FLOAT32 ? FLT_MAX : DBL_MAX; /* saturate, as iv_store_grad_row */
  if (mile_numel(t) == 1) {
    double sum = 0;
    for (int64_t b = 0; b < batch; b++)
      sum = iv_sat(sum + g[b]);
    return mile_full(out, (mile_dtype)t->dtype, t->ndim, t->shape, fmin(fmax(sum, -lim), lim));
  }
  MILE_TRY(mile_from_data(out, (mile_dtype)t->dtype, 1, &batch, g, MILE_FLOAT64));
  if (lim == FLT_MAX) {
    float *v = mile_data(*out);
    for (int64_t b = 0; b < batch; b++)
      v[b] = (float)fmin(fmax(g[b], -lim), lim);
  }
  return MILE_OK;
}

mile_status iv_check_matrix(const char *fname, const char *what, const mile_tensor *t) {
  char s[96];
  if (!t) return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s is missing", fname, what);
  if (t->ndim != 2 || t->shape[1] < 1)
    return mile_set_error(MILE_ERR_SHAPE, "%s: %s has shape %s, expected {B, n} with n >= 1", fname, what,
                          mile_shape_str(t, s, sizeof s));
  return MILE_OK;
}

mile_status iv_check_like(const char *fname, const char *what, const mile_tensor *t, const char *like_what,
                          const mile_tensor *like) {
  char s1[96], s2[96];
  if (!t) return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s is missing", fname, what);
  if (t->dtype != like->dtype)
    return mile_set_error(MILE_ERR_DTYPE, "%s: %s is %s but %s is %s", fname, what,
                          mile_dtype_name((mile_dtype)t->dtype), like_what, mile_dtype_name((mile_dtype)like->dtype));
  if (!mile_same_shape(t, like))
    return mile_set_error(MILE_ERR_SHAPE, "%s: %s has shape %s, expected %s like %s", fname, what,
                          mile_shape_str(t, s1, sizeof s1), mile_shape_str(like, s2, sizeof s2), like_what);
  return MILE_OK;
}

/* ---- one row ------------------------------------------------------------------ */

/* Per-row scratch: 8 arrays of A doubles. */
typedef struct row_work {
  double *lh, *lm, *lp, *pm, *delta, *x, *lq, *lqc;
  double logp, log1mp;
} row_work;

static void row_init(row_work *w, double *buf, int64_t A) {
  double **fields[8] = {&w->lh, &w->lm, &w->lp, &w->pm, &w->delta, &w->x, &w->lq, &w->lqc};
  for (int i = 0; i < 8; i++) *fields[i] = buf + i * A;
}

/* The forward quantities of one row from w->lh, w->lm (already loaded). */
static void row_forward(row_work *w, int64_t A, double c, double sigma) {
  double mh = w->lh[0], mm = w->lm[0];
  for (int64_t a = 1; a < A; a++) {
    if (w->lh[a] > mh) mh = w->lh[a];
    if (w->lm[a] > mm) mm = w->lm[a];
  }
  double sh = 0, sm = 0;
  for (int64_t a = 0; a < A; a++) {
    sh += exp(w->lh[a] - mh);
    w->pm[a] = exp(w->lm[a] - mm);
    sm += w->pm[a];
  }
  double lse_h = mh + log(sh), expect = 0;
  for (int64_t a = 0; a < A; a++) {
    w->pm[a] /= sm;
    w->lp[a] = w->lh[a] - lse_h;
    if (w->pm[a] != 0) expect += w->pm[a] * (w->lh[a] - mh); /* shifted by mh: no cancellation of large logits */
  }
  double mp = -INFINITY, mn = -INFINITY;
  for (int64_t a = 0; a < A; a++) {
    w->delta[a] = (w->lh[a] - mh) - expect;
    w->x[a] = (w->delta[a] - c) / sigma;
    iv_log_ndtr_pair(w->x[a], &w->lq[a], &w->lqc[a]);
    double tp = w->lp[a] + w->lq[a], tn = w->lp[a] + w->lqc[a];
    if (tp > mp) mp = tp;
    if (tn > mn) mn = tn;
  }
  double sp = 0, sn = 0;
  for (int64_t a = 0; a < A; a++) { /* (NaN only when mp or mn is -inf; not used then) */
    sp += exp(w->lp[a] + w->lq[a] - mp);
    sn += exp(w->lp[a] + w->lqc[a] - mn);
  }
  /* every term -inf: x so far out (|x| > 1.9e154, or x = -+inf when (Delta - c) / sigma
   * overflows) that ln p or ln(1 - p) is below -DBL_MAX; -inf is its rounding */
  w->logp = mp == -INFINITY ? -INFINITY : mp + log(sp);
  w->log1mp = mn == -INFINITY ? -INFINITY : mn + log(sn);
  if (w->logp > 0) w->logp = 0; /* rounding: p <= 1 */
  if (w->log1mp > 0) w->log1mp = 0;
}

/* ---- backward ------------------------------------------------------------------ */

/* The posterior weights in the limit where every term of ln p (side +1) or ln(1 - p)
 * (side -1) is -inf: pi_h(a) on the actions with the extreme x (the largest for p,
 * the smallest for 1 - p; the others are smaller by a factor exp(-|x|^2 / 2) that
 * does not fit a double), 0 elsewhere. Written into out[a] unnormalised; returns
 * their sum (> 0). */
static double limit_weights(row_work *w, int64_t A, int side, double *out) {
  double best = w->x[0];
  for (int64_t a = 1; a < A; a++)
    best = side > 0 ? fmax(best, w->x[a]) : fmin(best, w->x[a]);
  double sum = 0;
  for (int64_t a = 0; a < A; a++) {
    out[a] = w->x[a] == best ? exp(w->lp[a]) : 0;
    sum += out[a];
  }
  return sum;
}

/* The rows [b0, b1) of the backward pass: each row alone, with its own scratch. */
typedef struct backward_rows {
  mile_tensor *lh, *lm, *gc, **grads;
  const iv_param *cost, *scale;
  int64_t A, W;
  double *gcs, *gss;
  iv_rows *rows;
} backward_rows;

static void backward_range(int64_t b0, int64_t b1, int part, void *ctx) {
  const backward_rows *k = ctx;
  int64_t A = k->A, W = k->W;
  double *mine = iv_rows_scratch(k->rows, part);
  row_work w;
  row_init(&w, mine, A);
  double *glp = mine + 8 * A, *gD = mine + 9 * A, *out = mine + 10 * A, *wlim = mine + 11 * A, *vlim = mine + 12 * A;
  double *gr = mine + 13 * A; /* W values */
  for (int64_t b = b0; b < b1; b++) {
    double c = iv_param_at(k->cost, b), sigma = iv_param_at(k->scale, b);
    iv_load_row(k->lh, b, A, w.lh);
    iv_load_row(k->lm, b, A, w.lm);
    iv_load_row(k->gc, b, W, gr);
    row_forward(&w, A, c, sigma);
    double gP = gr[4 * A], gN = gr[4 * A + 1], S = 0, Slp = 0, Gc = 0, Gs = 0;
    /* ln p or ln(1 - p) at -inf: the posterior weights w_a, v_a are their limits,
     * all of the mass on the largest x (for p) or the smallest (for 1 - p) */
    double wnorm = gP != 0 && w.logp == -INFINITY ? limit_weights(&w, A, +1, wlim) : 0;
    double vnorm = gN != 0 && w.log1mp == -INFINITY ? limit_weights(&w, A, -1, vlim) : 0;
    for (int64_t a = 0; a < A; a++) {
      double x = w.x[a];
      double wa = gP == 0 ? 0 : wnorm > 0 ? wlim[a] / wnorm : exp(w.lp[a] + w.lq[a] - w.logp);
      double va = gN == 0 ? 0 : vnorm > 0 ? vlim[a] / vnorm : exp(w.lp[a] + w.lqc[a] - w.log1mp);
      double gx = 0;
      /* the products saturate: far out h(x) ~ |x| may be ~1e308, and x itself inf */
      if (gP * wa + gr[2 * A + a] != 0) gx += iv_mul(gP * wa + gr[2 * A + a], iv_hazard(x, w.lq[a]));
      if (gN * va != 0) gx -= iv_mul(gN * va, iv_hazard(-x, w.lqc[a]));
      if (gr[3 * A + a] != 0) gx += gr[3 * A + a] * exp(-0.5 * x * x) * IV_INV_SQRT_2PI;
      gx = iv_sat(gx);
      double gxs = iv_sat(gx / sigma);
      glp[a] = gr[a] + gP * wa + gN * va;
      gD[a] = iv_sat(gr[A + a] + gxs);
      S = iv_sat(S + gD[a]);
      Slp += glp[a];
      Gc = iv_sat(Gc - gxs);
      Gs = iv_sat(Gs - iv_mul(gxs, x));
    }
    k->gcs[b] = Gc, k->gss[b] = Gs;
    if (k->grads[0]) {
      for (int64_t a = 0; a < A; a++)
        out[a] = gD[a] - w.pm[a] * S + glp[a] - exp(w.lp[a]) * Slp;
      iv_store_grad_row(k->grads[0], b, A, out);
    }
    if (k->grads[1]) {
      for (int64_t a = 0; a < A; a++)
        out[a] = iv_mul(-S * w.pm[a], w.delta[a]);
      iv_store_grad_row(k->grads[1], b, A, out);
    }
  }
}

static mile_status discrete_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *lh_t, *lm_t, *cost_t, *scale_t;
  MILE_TRY(mile_node_saved(node, 0, &lh_t));
  MILE_TRY(mile_node_saved(node, 1, &lm_t));
  MILE_TRY(mile_node_saved(node, 2, &cost_t));
  MILE_TRY(mile_node_saved(node, 3, &scale_t));
  int64_t B = lh_t->shape[0], A = lh_t->shape[1], W = 4 * A + 2;
  mile_dtype dtype = (mile_dtype)lh_t->dtype;
  mile_tensor *lh = NULL, *lm = NULL, *gc = NULL;
  iv_param cost = {0}, scale = {0};
  double *gcs = NULL, *gss = NULL;
  iv_rows rows = {0};
  mile_status st = mile_contiguous(&lh, lh_t);
  if (st == MILE_OK) st = mile_contiguous(&lm, lm_t);
  if (st == MILE_OK) st = mile_contiguous(&gc, g);
  if (st == MILE_OK) st = iv_param_read(FNAME, "cost", cost_t, B, dtype, false, &cost);
  if (st == MILE_OK) st = iv_param_read(FNAME, "scale", scale_t, B, dtype, true, &scale);
  if (st == MILE_OK && node->needs[0]) st = mile_empty(&grads[0], dtype, 2, lh->shape);
  if (st == MILE_OK && node->needs[1]) st = mile_empty(&grads[1], dtype, 2, lm->shape);
  if (st == MILE_OK) st = iv_rows_init(&rows, FNAME, B, (size_t)(14 * A + W));
  if (st == MILE_OK) {
    gcs = calloc((size_t)B, sizeof *gcs);
    gss = calloc((size_t)B, sizeof *gss);
    if (!gcs || !gss) st = mile_err_nomem(FNAME);
  }
  if (st == MILE_OK) {
    backward_rows k = {lh, lm, gc, grads, &cost, &scale, A, W, gcs, gss, &rows};
    mile_parallel_for(B, rows.parts, backward_range, &k);
  }
  if (st == MILE_OK && node->needs[2]) st = iv_param_grad(&grads[2], cost_t, gcs, B);
  if (st == MILE_OK && node->needs[3]) st = iv_param_grad(&grads[3], scale_t, gss, B);
  free(gcs), free(gss);
  iv_rows_free(&rows);
  iv_param_free(&cost), iv_param_free(&scale);
  mile_tensor_release(lh), mile_tensor_release(lm), mile_tensor_release(gc);
  return st;
}

/* ---- forward ------------------------------------------------------------------- */

/* The rows [b0, b1) of the forward pass; a row with a non-finite logit is skipped and
 * the piece's first such row noted (the error is raised by the caller). */
typedef struct forward_rows {
  mile_tensor *lh, *lm, *out;
  const iv_param *cost, *scale;
  int64_t A, W;
  iv_rows *rows;
} forward_rows;

static void forward_range(int64_t b0, int64_t b1, int part, void *ctx) {
  const forward_rows *k = ctx;
  int64_t A = k->A;
  double *mine = iv_rows_scratch(k->rows, part);
  row_work w;
  row_init(&w, mine, A);
  double *row = mine + 8 * A;
  for (int64_t b = b0; b < b1; b++) {
    iv_load_row(k->lh, b, A, w.lh);
    iv_load_row(k->lm, b, A, w.lm);
    if (iv_first_nonfinite(w.lh, A) >= 0 || iv_first_nonfinite(w.lm, A) >= 0) {
      iv_rows_bad(k->rows, part, b);
      continue;
    }
    row_forward(&w, A, iv_param_at(k->cost, b), iv_param_at(k->scale, b));
    for (int64_t a = 0; a < A; a++) {
      row[a] = w.lp[a];
      row[A + a] = w.delta[a];
      row[2 * A + a] = w.lq[a];
      row[3 * A + a] = exp(w.lq[a]);
    }
    row[4 * A] = w.logp, row[4 * A + 1] = w.log1mp;
    iv_store_row(k->out, b, k->W, row);
  }
}

mile_status mile_probit_discrete(mile_tensor **out, mile_tensor *policy_logits, mile_tensor *mental_logits,
                                 mile_tensor *cost_t, mile_tensor *scale_t) {
  *out = NULL;
  MILE_TRY(iv_check_matrix(FNAME, "policy_logits", policy_logits));
  MILE_TRY(iv_check_like(FNAME, "mental_logits", mental_logits, "policy_logits", policy_logits));
  int64_t B = policy_logits->shape[0], A = policy_logits->shape[1], W = 4 * A + 2;
  mile_dtype dtype = (mile_dtype)policy_logits->dtype;
  iv_param cost = {0}, scale = {0};
  MILE_TRY(iv_param_read(FNAME, "cost", cost_t, B, dtype, false, &cost));
  mile_status st = iv_param_read(FNAME, "scale", scale_t, B, dtype, true, &scale);
  mile_tensor *lh = NULL, *lm = NULL;
  if (st == MILE_OK) st = mile_contiguous(&lh, policy_logits);
  if (st == MILE_OK) st = mile_contiguous(&lm, mental_logits);
  int64_t shape[2] = {B, W};
  if (st == MILE_OK) st = mile_empty(out, dtype, 2, shape);
  iv_rows rows = {0};
  if (st == MILE_OK) st = iv_rows_init(&rows, FNAME, B, (size_t)(8 * A + W));
  if (st == MILE_OK) {
    forward_rows k = {lh, lm, *out, &cost, &scale, A, W, &rows};
    mile_parallel_for(B, rows.parts, forward_range, &k);
    int64_t bad_row = iv_rows_first_bad(&rows); /* reported here, on the calling thread */
    if (bad_row < B) {
      double *lrow = rows.scratch, *mrow = rows.scratch + A;
      iv_load_row(lh, bad_row, A, lrow);
      iv_load_row(lm, bad_row, A, mrow);
      int64_t in_lh = iv_first_nonfinite(lrow, A), in_lm = iv_first_nonfinite(mrow, A);
      st = in_lh >= 0 ? iv_nonfinite_error(FNAME, "policy_logits", bad_row, in_lh, lrow[in_lh])
                      : iv_nonfinite_error(FNAME, "mental_logits", bad_row, in_lm, mrow[in_lm]);
    }
  }
  iv_rows_free(&rows);
  iv_param_free(&cost), iv_param_free(&scale);
  mile_tensor_release(lh), mile_tensor_release(lm);
  mile_node *node = NULL;
  mile_tensor *inputs[4] = {policy_logits, mental_logits, cost_t, scale_t};
  if (st == MILE_OK) st = mile_record(*out, FNAME, discrete_backward, 4, inputs, &node);
  if (node)
    for (int i = 0; i < 4; i++) mile_node_save(node, inputs[i]);
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}
