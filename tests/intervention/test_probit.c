/* test_probit.c - the probit intervention model of the core, without Lua:
 * agreement with the shared reference vectors (discrete: values, losses and their
 * gradients; Gaussian: K, p and dp/d inputs), the tails against independent adaptive
 * quadrature, finite differences for the cost and scale gradients, a 10,000-case
 * property test (finite outputs and gradients, p in [0, 1]) and argument errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mile/mile.h"

/* ---- a small CSV reader: numeric columns by name ---------------------------------- */

enum { MAX_COLS = 64, MAX_ROWS = 2048 };

typedef struct table {
  int ncols, nrows;
  char names[MAX_COLS][32];
  double *v; /* nrows x ncols */
} table;

static table *read_table(const char *name) {
  char path[512], line[8192];
  snprintf(path, sizeof path, "%s/%s", MILE_TEST_VECTORS, name);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  table *t = calloc(1, sizeof *t);
  t->v = malloc(sizeof(double) * MAX_COLS * MAX_ROWS);
  assert_non_null(fgets(line, sizeof line, f));
  for (char *tok = strtok(line, ",\r\n"); tok; tok = strtok(NULL, ",\r\n"))
    snprintf(t->names[t->ncols++], 32, "%s", tok);
  while (fgets(line, sizeof line, f) && t->nrows < MAX_ROWS) {
    int c = 0;
    for (char *tok = strtok(line, ",\r\n"); tok && c < t->ncols; tok = strtok(NULL, ",\r\n"))
      t->v[t->nrows * MAX_COLS + c++] = strtod(tok, NULL);
    if (c == t->ncols) t->nrows++;
  }
  fclose(f);
  return t;
}

static void free_table(table *t) {
  free(t->v);
  free(t);
}

static double col(const table *t, int row, const char *name) {
  for (int c = 0; c < t->ncols; c++)
    if (strcmp(t->names[c], name) == 0) return t->v[row * MAX_COLS + c];
  fail_msg("no column %s", name);
  return NAN;
}

static double coli(const table *t, int row, const char *prefix, int i) {
  char name[40];
  snprintf(name, sizeof name, "%s%d", prefix, i);
  return col(t, row, name);
}

static void expect_close(double got, double want, double atol, double rtol, const char *what, int row) {
  double tol = fmax(atol, rtol * fabs(want));
  if (!(fabs(got - want) <= tol)) fail_msg("%s (row %d): got %.17g, expected %.17g", what, row, got, want);
}

#define CHECK(call) assert_int_equal((call), MILE_OK)

static mile_tensor *tensor(mile_dtype dtype, int32_t ndim, const int64_t *shape, const double *v, int grad) {
  mile_tensor *t;
  CHECK(mile_from_data(&t, dtype, ndim, shape, v, MILE_FLOAT64));
  if (grad) CHECK(mile_set_requires_grad(t, 1));
  return t;
}

static double item_at(mile_tensor *t, int64_t i) {
  double *v = malloc(sizeof(double) * (size_t)mile_numel(t));
  CHECK(mile_to_doubles(t, v));
  double x = v[i];
  free(v);
  return x;
}

/* sum of column `c` of a [B, W] tensor, as a differentiable scalar */
static mile_tensor *column_sum(mile_tensor *packed, int64_t c) {
  mile_tensor *sel, *sum;
  CHECK(mile_select(&sel, packed, 1, c));
  CHECK(mile_reduce(&sum, MILE_SUM, sel, MILE_ALL_DIMS, 0));
  mile_tensor_release(sel);
  return sum;
}

/* ---- discrete -------------------------------------------------------------------------- */

static void test_discrete_vectors(void **state) {
  (void)state;
  table *t = read_table("probit_discrete.csv");
  assert_int_equal(t->nrows, 60);
  static const char *const variants[3] = {"paper", "joint", "reference"};
  int64_t shape[2] = {1, 4}, one = 1;
  for (int r = 0; r < t->nrows; r++) {
    double lh[4], lm[4];
    for (int a = 0; a < 4; a++) lh[a] = coli(t, r, "lh_", a), lm[a] = coli(t, r, "lm_", a);
    for (int v = 0; v < 3; v++) {
      mile_tensor *h = tensor(MILE_FLOAT64, 2, shape, lh, 1), *m = tensor(MILE_FLOAT64, 2, shape, lm, 1), *c, *s, *out;
      CHECK(mile_scalar(&c, MILE_FLOAT64, col(t, r, "c")));
      CHECK(mile_scalar(&s, MILE_FLOAT64, col(t, r, "sigma")));
      CHECK(mile_probit_discrete(&out, h, m, c, s));
      if (v == 0) {
        for (int a = 0; a < 4; a++) {
          expect_close(item_at(out, 4 + a), coli(t, r, "delta_", a), 1e-12, 1e-12, "delta", r);
          expect_close(item_at(out, 12 + a), coli(t, r, "q_", a), 1e-12, 1e-10, "q", r);
        }
        expect_close(item_at(out, 16), col(t, r, "logp"), 1e-12, 1e-12, "logp", r);
        expect_close(item_at(out, 17), col(t, r, "log1mp"), 1e-12, 1e-12, "log1mp", r);
        expect_close(exp(item_at(out, 16)), col(t, r, "p"), 1e-12, 0, "p", r);
      }
      /* per-sample loss: B = 1 */
      double nuv = col(t, r, "nu"), ah = col(t, r, "ah"), idx_v[2] = {ah, 8 + ah};
      int64_t ishape[2] = {1, 1};
      mile_tensor *nu = tensor(MILE_FLOAT64, 1, &one, &nuv, 0), *i_pi = tensor(MILE_FLOAT64, 2, ishape, &idx_v[0], 0),
                  *i_q = tensor(MILE_FLOAT64, 2, ishape, &idx_v[1], 0);
      mile_tensor *g_pi, *g_q, *v_pi, *v_q, *lp, *l1, *loss, *l0;
      CHECK(mile_gather(&g_pi, out, 1, i_pi));
      CHECK(mile_gather(&g_q, out, 1, i_q));
      CHECK(mile_view(&v_pi, g_pi, 1, &one));
      CHECK(mile_view(&v_q, g_q, 1, &one));
      CHECK(mile_select(&lp, out, 1, 16));
      CHECK(mile_select(&l1, out, 1, 17));
      CHECK(mile_intervention_loss(&loss, (mile_iv_loss)v, 0.5, lp, l1, v_pi, v_q, nu));
      CHECK(mile_select(&l0, loss, 0, 0));
      expect_close(item_at(l0, 0), col(t, r, variants[v]), 1e-12, 1e-12, variants[v], r);
      CHECK(mile_backward(l0, NULL, 0));
      char name[32];
      for (int a = 0; a < 4; a++) {
        snprintf(name, sizeof name, "d%s_h_", variants[v]);
        expect_close(item_at(h->grad, a), coli(t, r, name, a), 1e-12, 1e-9, name, r);
        snprintf(name, sizeof name, "d%s_m_", variants[v]);
        expect_close(item_at(m->grad, a), coli(t, r, name, a), 1e-12, 1e-9, name, r);
      }
      mile_tensor *all[] = {h, m, c, s, out, nu, i_pi, i_q, g_pi, g_q, v_pi, v_q, lp, l1, loss, l0};
      for (size_t i = 0; i < sizeof all / sizeof *all; i++) mile_tensor_release(all[i]);
    }
  }
  free_table(t);
}

/* sum of ln p + ln(1-p) over a fixed 2-sample batch; with grads, d/d cost and d/d scale */
static double discrete_objective(const double *cv, const double *sv, double *gc, double *gs) {
  double lh[6] = {0.3, -1.2, 2.0, 0.1, 0.4, -0.7}, lm[6] = {1.0, 0.2, -0.5, -0.3, 0.9, 0.0};
  int64_t shape[2] = {2, 3}, two = 2;
  mile_tensor *h = tensor(MILE_FLOAT64, 2, shape, lh, 0), *m = tensor(MILE_FLOAT64, 2, shape, lm, 0);
  mile_tensor *c = tensor(MILE_FLOAT64, 1, &two, cv, gc != NULL), *s = tensor(MILE_FLOAT64, 1, &two, sv, gc != NULL);
  mile_tensor *out, *a, *b, *sum;
  CHECK(mile_probit_discrete(&out, h, m, c, s));
  a = column_sum(out, 12), b = column_sum(out, 13);
  CHECK(mile_binary(&sum, MILE_ADD, a, b));
  double value = item_at(sum, 0);
  if (gc) {
    CHECK(mile_backward(sum, NULL, 0));
    for (int i = 0; i < 2; i++) gc[i] = item_at(c->grad, i), gs[i] = item_at(s->grad, i);
  }
  mile_tensor *all[] = {h, m, c, s, out, a, b, sum};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) mile_tensor_release(all[i]);
  return value;
}

/* d/d cost and d/d scale (per-sample tensors) against central differences */
static void test_discrete_cost_scale_gradients(void **state) {
  (void)state;
  double cv[2] = {0.7, 1.5}, sv[2] = {0.8, 2.5}, gc[2], gs[2], eps = 1e-6;
  discrete_objective(cv, sv, gc, gs);
  for (int i = 0; i < 2; i++) {
    double up[2] = {cv[0], cv[1]}, dn[2] = {cv[0], cv[1]};
    up[i] += eps, dn[i] -= eps;
    expect_close(gc[i], (discrete_objective(up, sv, NULL, NULL) - discrete_objective(dn, sv, NULL, NULL)) / (2 * eps),
                 1e-6, 1e-5, "d/d cost", i);
    double su[2] = {sv[0], sv[1]}, sd[2] = {sv[0], sv[1]};
    su[i] += eps, sd[i] -= eps;
    expect_close(gs[i], (discrete_objective(cv, su, NULL, NULL) - discrete_objective(cv, sd, NULL, NULL)) / (2 * eps),
                 1e-6, 1e-5, "d/d scale", i);
  }
}

/* ---- Gaussian --------------------------------------------------------------------------- */

static void test_gaussian_vectors(void **state) {
  (void)state;
  table *t = read_table("probit_gaussian.csv");
  assert_int_equal(t->nrows, 40);
  static const char *const prefix[4] = {"mu_", "lsd_", "m_", "ls_"};
  static const char *const dname[4] = {"dp_mu_", "dp_lsd_", "dp_m_", "dp_ls_"};
  for (int r = 0; r < t->nrows; r++) {
    int D = (int)col(t, r, "D");
    int64_t shape[2] = {1, D};
    mile_tensor *in[4], *c, *s, *out, *lp, *p, *sum;
    for (int i = 0; i < 4; i++) {
      double v[4];
      for (int d = 0; d < D; d++) v[d] = coli(t, r, prefix[i], d);
      in[i] = tensor(MILE_FLOAT64, 2, shape, v, 1);
    }
    CHECK(mile_scalar(&c, MILE_FLOAT64, col(t, r, "c")));
    CHECK(mile_scalar(&s, MILE_FLOAT64, col(t, r, "sigma")));
    CHECK(mile_probit_gaussian(&out, in[0], in[1], in[2], in[3], c, s));
    expect_close(item_at(out, 0), col(t, r, "K"), 1e-12, 1e-12, "K", r);
    CHECK(mile_select(&lp, out, 1, MILE_PROBIT_G_LOGP));
    CHECK(mile_unary(&p, MILE_EXP, lp));
    CHECK(mile_reduce(&sum, MILE_SUM, p, MILE_ALL_DIMS, 0));
    expect_close(item_at(p, 0), col(t, r, "p"), 1e-6, 0, "p", r);
    CHECK(mile_backward(sum, NULL, 0));
    for (int i = 0; i < 4; i++)
      for (int d = 0; d < D; d++) expect_close(item_at(in[i]->grad, d), coli(t, r, dname[i], d), 1e-6, 1e-4, dname[i], r);
    mile_tensor *all[] = {in[0], in[1], in[2], in[3], c, s, out, lp, p, sum};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) mile_tensor_release(all[i]);
  }
  free_table(t);
}

static void test_gaussian_tails(void **state) {
  (void)state;
  table *t = read_table("probit_gaussian_tails.csv");
  assert_true(t->nrows > 1000);
  double worst_p = 0;
  for (int r = 0; r < t->nrows; r++) {
    double lp, l1, dt, ds, d1t, d1s, want_p = col(t, r, "logp"), want_q = col(t, r, "log1mp");
    CHECK(mile_probit_gaussian_logp((int32_t)col(t, r, "D"), col(t, r, "t0"), col(t, r, "sigma"), &lp, &l1, &dt,
                                    &ds, &d1t, &d1s));
    worst_p = fmax(worst_p, fabs(exp(lp) - exp(want_p)));
    expect_close(exp(lp), exp(want_p), 1e-7, 0, "p", r);
    expect_close(exp(l1), exp(want_q), 1e-7, 0, "1-p", r);
    expect_close(lp, want_p, 1e-6, 1e-5, "ln p", r);
    expect_close(l1, want_q, 1e-6, 1e-5, "ln(1-p)", r);
    assert_true(isfinite(dt) && isfinite(ds) && isfinite(d1t) && isfinite(d1s));
    assert_true(dt >= 0 && d1t <= 0); /* p grows with t0 */
  }
  print_message("max |p error| over %d tail cases: %.3g\n", t->nrows, worst_p);
  free_table(t);
}

/* the extremes of the double range (t0 to -1.8e154 sigma and 1e300, sigma from 1e-300 to
 * 1e300) against mpmath at 40 digits (make_probit_gaussian_extremes.py): ln p and
 * ln(1 - p) to relative 1e-7 (measured: 6e-9) wherever they are representable, finite derivatives of the
 * right sign. Before the rescaled tail these were NaN once |t0/sigma| > 1.4e154 and lost
 * every digit of ln p from |t0/sigma| ~ 1e8 on. */
static void test_gaussian_extremes(void **state) {
  (void)state;
  table *t = read_table("probit_gaussian_extremes.csv");
  assert_true(t->nrows >= 200);
  double worst = 0;
  for (int r = 0; r < t->nrows; r++) {
    double lp, l1, d[4], want_p = col(t, r, "logp"), want_q = col(t, r, "log1mp");
    CHECK(mile_probit_gaussian_logp((int32_t)col(t, r, "D"), col(t, r, "t0"), col(t, r, "sigma"), &lp, &l1, &d[0],
                                    &d[1], &d[2], &d[3]));
    expect_close(lp, want_p, 1e-12, 1e-7, "ln p", r);
    expect_close(l1, want_q, 1e-12, 1e-7, "ln(1-p)", r);
    worst = fmax(worst,
                 fmax(fabs(lp - want_p) / fmax(1e-300, fabs(want_p)), fabs(l1 - want_q) / fmax(1e-300, fabs(want_q))));
    for (int i = 0; i < 4; i++)
      if (!isfinite(d[i])) fail_msg("derivative %d (row %d) is %g", i, r, d[i]);
    assert_true(d[0] >= 0 && d[2] <= 0); /* p grows with t0 */
  }
  print_message("max relative error of ln p, ln(1-p) over %d extreme cases: %.3g\n", t->nrows, worst);
  free_table(t);
}

/* beyond the double range: ln p is -inf (its exact value is below -DBL_MAX), never NaN;
 * p = 0 and 1 - p = 1; derivatives saturate at DBL_MAX */
static void test_gaussian_beyond_range(void **state) {
  (void)state;
  const double cases[][3] = {{1, -1e300, 1},
                             {2, -1e300, 1e-300},
                             {4, -1e308, 1e-10},
                             {3, -2e154, 1},
                             {16, -1.7976931348623157e308, 5e-324},
                             {1, -1e200, 1e-200}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    double lp, l1, d[4];
    CHECK(mile_probit_gaussian_logp((int32_t)cases[i][0], cases[i][1], cases[i][2], &lp, &l1, &d[0], &d[1], &d[2],
                                    &d[3]));
    if (!(lp == -INFINITY && l1 == 0)) fail_msg("case %d: ln p = %g, ln(1-p) = %g", (int)i, lp, l1);
    for (int j = 0; j < 4; j++)
      if (!isfinite(d[j])) fail_msg("case %d: derivative %d is %g", (int)i, j, d[j]);
    assert_true(d[0] > 0 && d[1] > 0);
  }
  /* p -> 1: ln(1 - p) ~ -t0 through the gamma tail, for any scale */
  const double right[][3] = {{1, 1.7976931348623157e308, 1}, {5, 1e308, 1e-300}, {2, 1e300, 1e100}};
  for (size_t i = 0; i < sizeof right / sizeof *right; i++) {
    double lp, l1, d[4];
    CHECK(mile_probit_gaussian_logp((int32_t)right[i][0], right[i][1], right[i][2], &lp, &l1, &d[0], &d[1], &d[2],
                                    &d[3]));
    if (!(lp == 0 && l1 < -1e299 && !isnan(l1))) fail_msg("right case %d: ln p = %g, ln(1-p) = %g", (int)i, lp, l1);
    for (int j = 0; j < 4; j++)
      if (isnan(d[j])) fail_msg("right case %d: derivative %d is NaN", (int)i, j);
  }
}

/* the derivative outputs of the scalar kernel against central differences of itself */
static void test_gaussian_scalar_derivatives(void **state) {
  (void)state;
  const double cases[][3] = {{1, 0.3, 0.5}, {3, 2.0, 1.0}, {4, 12.0, 0.7}, {2, -1.0, 2.0}, {8, 30.0, 3.0}, {5, 4.0, 0.2}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int D = (int)cases[i][0];
    double t0 = cases[i][1], s = cases[i][2], h = 1e-5, lp, l1, d[4], up[2], dn[2];
    CHECK(mile_probit_gaussian_logp(D, t0, s, &lp, &l1, &d[0], &d[1], &d[2], &d[3]));
    CHECK(mile_probit_gaussian_logp(D, t0 + h, s, &up[0], &up[1], NULL, NULL, NULL, NULL));
    CHECK(mile_probit_gaussian_logp(D, t0 - h, s, &dn[0], &dn[1], NULL, NULL, NULL, NULL));
    expect_close(d[0], (up[0] - dn[0]) / (2 * h), 1e-6, 1e-4, "d ln p/dt0", (int)i);
    expect_close(d[2], (up[1] - dn[1]) / (2 * h), 1e-6, 1e-4, "d ln(1-p)/dt0", (int)i);
    CHECK(mile_probit_gaussian_logp(D, t0, s + h, &up[0], &up[1], NULL, NULL, NULL, NULL));
    CHECK(mile_probit_gaussian_logp(D, t0, s - h, &dn[0], &dn[1], NULL, NULL, NULL, NULL));
    expect_close(d[1], (up[0] - dn[0]) / (2 * h), 1e-6, 1e-4, "d ln p/dscale", (int)i);
    expect_close(d[3], (up[1] - dn[1]) / (2 * h), 1e-6, 1e-4, "d ln(1-p)/dscale", (int)i);
  }
}

/* ---- property test ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double uniform(double lo, double hi) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return lo + (hi - lo) * ((double)(rng_state >> 11) * 0x1.0p-53);
}

static void expect_finite(mile_tensor *t, const char *what) {
  int64_t n = mile_numel(t);
  double *v = malloc(sizeof(double) * (size_t)n);
  CHECK(mile_to_doubles(t, v));
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(v[i])) fail_msg("%s: element %lld is %g", what, (long long)i, v[i]);
  free(v);
}

/* backward of sum(ln p) + sum(ln(1-p)) + sum(all other outputs) */
static void backward_all(mile_tensor *out) {
  mile_tensor *sum;
  CHECK(mile_reduce(&sum, MILE_SUM, out, MILE_ALL_DIMS, 0));
  CHECK(mile_backward(sum, NULL, 0));
  mile_tensor_release(sum);
}

static void test_property(void **state) {
  (void)state;
  int cases = 0;
  for (int dt = 0; dt < 2; dt++) {
    mile_dtype dtype = dt ? MILE_FLOAT32 : MILE_FLOAT64;
    for (int round = 0; round < 5000 / 50; round++) { /* discrete: 50 rows per batch */
      int64_t B = 50, A = 2 + round % 9, shape[2] = {B, A};
      double *lh = malloc(sizeof(double) * (size_t)(B * A)), *lm = malloc(sizeof(double) * (size_t)(B * A)), cv[50],
             sv[50];
      for (int64_t i = 0; i < B * A; i++) lh[i] = uniform(-1e3, 1e3), lm[i] = uniform(-1e3, 1e3);
      for (int i = 0; i < B; i++) cv[i] = uniform(0, 1e4), sv[i] = exp(uniform(log(1e-3), log(1e3)));
      mile_tensor *h = tensor(dtype, 2, shape, lh, 1), *m = tensor(dtype, 2, shape, lm, 1);
      mile_tensor *c = tensor(dtype, 1, &B, cv, 1), *s = tensor(dtype, 1, &B, sv, 1), *out;
      CHECK(mile_probit_discrete(&out, h, m, c, s));
      expect_finite(out, "discrete outputs");
      for (int64_t b = 0; b < B; b++) {
        double lp = item_at(out, b * (4 * A + 2) + 4 * A);
        assert_true(lp <= 0 && exp(lp) >= 0 && exp(lp) <= 1);
      }
      backward_all(out);
      expect_finite(h->grad, "d/d policy_logits"), expect_finite(m->grad, "d/d mental_logits");
      expect_finite(c->grad, "d/d cost"), expect_finite(s->grad, "d/d scale");
      mile_tensor *all[] = {h, m, c, s, out};
      for (size_t i = 0; i < sizeof all / sizeof *all; i++) mile_tensor_release(all[i]);
      free(lh), free(lm);
      cases += (int)B;
    }
    for (int round = 0; round < 5000 / 50; round++) { /* Gaussian: D = 1..16 */
      int64_t B = 50, D = 1 + round % 16, shape[2] = {B, D};
      double *v[4], cv[50], sv[50];
      mile_tensor *in[4], *c, *s, *out;
      for (int i = 0; i < 4; i++) {
        v[i] = malloc(sizeof(double) * (size_t)(B * D));
        for (int64_t j = 0; j < B * D; j++) v[i][j] = i % 2 ? uniform(-7, 7) : uniform(-1e3, 1e3);
        in[i] = tensor(dtype, 2, shape, v[i], 1);
      }
      for (int i = 0; i < B; i++) cv[i] = uniform(0, 1e4), sv[i] = exp(uniform(log(1e-3), log(1e3)));
      c = tensor(dtype, 1, &B, cv, 1), s = tensor(dtype, 1, &B, sv, 1);
      CHECK(mile_probit_gaussian(&out, in[0], in[1], in[2], in[3], c, s));
      expect_finite(out, "gaussian outputs");
      for (int64_t b = 0; b < B; b++) {
        double lp = item_at(out, 3 * b + 1), l1 = item_at(out, 3 * b + 2);
        assert_true(lp <= 0 && l1 <= 0);
      }
      backward_all(out);
      for (int i = 0; i < 4; i++) expect_finite(in[i]->grad, "gaussian input gradient");
      expect_finite(c->grad, "d/d cost"), expect_finite(s->grad, "d/d scale");
      for (int i = 0; i < 4; i++) mile_tensor_release(in[i]), free(v[i]);
      mile_tensor_release(c), mile_tensor_release(s), mile_tensor_release(out);
      cases += (int)B;
    }
  }
  assert_int_equal(cases, 20000); /* 10,000 per dtype */
}

static void expect_no_nan(mile_tensor *t, const char *what) {
  int64_t n = mile_numel(t);
  double *v = malloc(sizeof(double) * (size_t)n);
  CHECK(mile_to_doubles(t, v));
  for (int64_t i = 0; i < n; i++)
    if (isnan(v[i])) fail_msg("%s: element %lld is NaN", what, (long long)i);
  free(v);
}

/* magnitude m drawn log-uniformly from [1e-3, hi], with a random sign when `sign` */
static double wide(double hi, int sign) {
  double v = exp(uniform(log(1e-3), log(hi)));
  return sign && uniform(0, 1) < 0.5 ? -v : v;
}

/* The whole range of the dtype: logits, means and log-sds up to +-1e300 (float32:
 * +-1e38), cost up to 1e300, scale from 1e-300 to 1e300. Outputs may be infinite where
 * the exact value is (K beyond DBL_MAX, ln p below -DBL_MAX), never NaN; p in [0, 1];
 * gradients finite (saturated). Before the fix: NaN from cost = 1e300 on. */
static void test_property_extremes(void **state) {
  (void)state;
  for (int dt = 0; dt < 2; dt++) {
    mile_dtype dtype = dt ? MILE_FLOAT32 : MILE_FLOAT64;
    double hi = dt ? 1e38 : 1e300, lo = dt ? 1e-38 : 1e-300;
    for (int round = 0; round < 20; round++) {
      int64_t B = 50, A = 2 + round % 5, shape[2] = {B, A};
      double lh[50 * 6], lm[50 * 6], cv[50], sv[50];
      for (int64_t i = 0; i < B * A; i++)
        lh[i] = wide(hi, 1), lm[i] = wide(hi, 1);
      for (int i = 0; i < B; i++)
        cv[i] = wide(hi, 0), sv[i] = exp(uniform(log(lo), log(hi)));
      mile_tensor *h = tensor(dtype, 2, shape, lh, 1), *m = tensor(dtype, 2, shape, lm, 1);
      mile_tensor *c = tensor(dtype, 1, &B, cv, 1), *s = tensor(dtype, 1, &B, sv, 1), *out;
      CHECK(mile_probit_discrete(&out, h, m, c, s));
      expect_no_nan(out, "discrete outputs");
      for (int64_t b = 0; b < B; b++) {
        double lp = item_at(out, b * (4 * A + 2) + 4 * A), l1 = item_at(out, b * (4 * A + 2) + 4 * A + 1);
        assert_true(lp <= 0 && l1 <= 0 && exp(lp) >= 0 && exp(lp) <= 1);
      }
      backward_all(out);
      expect_finite(h->grad, "d/d policy_logits"), expect_finite(m->grad, "d/d mental_logits");
      expect_finite(c->grad, "d/d cost"), expect_finite(s->grad, "d/d scale");
      mile_tensor *all[] = {h, m, c, s, out};
      for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        mile_tensor_release(all[i]);
    }
    for (int round = 0; round < 20; round++) {
      int64_t B = 50, D = 1 + round % 8, shape[2] = {B, D};
      double v[4][50 * 8], cv[50], sv[50];
      mile_tensor *in[4], *c, *s, *out;
      for (int i = 0; i < 4; i++) {
        /* log-sds: mostly within exp's range, one in four anywhere in the dtype's */
        for (int64_t j = 0; j < B * D; j++)
          v[i][j] = i % 2 && uniform(0, 1) < 0.75 ? uniform(-800, 800) : wide(hi, 1);
        in[i] = tensor(dtype, 2, shape, v[i], 1);
      }
      for (int i = 0; i < B; i++)
        cv[i] = wide(hi, 0), sv[i] = exp(uniform(log(lo), log(hi)));
      c = tensor(dtype, 1, &B, cv, 1), s = tensor(dtype, 1, &B, sv, 1);
      CHECK(mile_probit_gaussian(&out, in[0], in[1], in[2], in[3], c, s));
      expect_no_nan(out, "gaussian outputs");
      for (int64_t b = 0; b < B; b++) {
        double lp = item_at(out, 3 * b + 1), l1 = item_at(out, 3 * b + 2);
        assert_true(lp <= 0 && l1 <= 0 && exp(lp) >= 0 && exp(lp) <= 1);
      }
      backward_all(out);
      for (int i = 0; i < 4; i++)
        expect_finite(in[i]->grad, "gaussian input gradient");
      expect_finite(c->grad, "d/d cost"), expect_finite(s->grad, "d/d scale");
      for (int i = 0; i < 4; i++)
        mile_tensor_release(in[i]);
      mile_tensor_release(c), mile_tensor_release(s), mile_tensor_release(out);
    }
  }
}

/* ---- errors --------------------------------------------------------------------------------- */

static void test_errors(void **state) {
  (void)state;
  int64_t s34[2] = {3, 4}, s35[2] = {3, 5}, two = 2;
  mile_tensor *a, *b, *f32, *c, *zero, *c2, *out = NULL;
  CHECK(mile_zeros(&a, MILE_FLOAT64, 2, s34));
  CHECK(mile_zeros(&b, MILE_FLOAT64, 2, s35));
  CHECK(mile_zeros(&f32, MILE_FLOAT32, 2, s34));
  CHECK(mile_scalar(&c, MILE_FLOAT64, 1.0));
  CHECK(mile_scalar(&zero, MILE_FLOAT64, 0.0));
  CHECK(mile_zeros(&c2, MILE_FLOAT64, 1, &two));
  assert_int_equal(mile_probit_discrete(&out, a, b, c, c), MILE_ERR_SHAPE);
  assert_non_null(strstr(mile_last_error(), "mental_logits has shape {3,5}"));
  assert_int_equal(mile_probit_discrete(&out, a, f32, c, c), MILE_ERR_DTYPE);
  assert_int_equal(mile_probit_discrete(&out, a, a, c, zero), MILE_ERR_ARGUMENT);
  assert_non_null(strstr(mile_last_error(), "scale must be positive"));
  assert_int_equal(mile_probit_discrete(&out, a, a, c2, c), MILE_ERR_SHAPE);
  assert_non_null(strstr(mile_last_error(), "cost has shape {2}"));
  assert_int_equal(mile_probit_gaussian(&out, a, a, a, b, c, c), MILE_ERR_SHAPE);
  assert_non_null(strstr(mile_last_error(), "mental_log_sd"));
  assert_null(out);
  double lp;
  assert_int_equal(mile_probit_gaussian_logp(2, 1.0, -1.0, &lp, NULL, NULL, NULL, NULL, NULL), MILE_ERR_ARGUMENT);
  assert_string_equal(mile_iv_loss_name(MILE_IV_JOINT), "joint");
  /* inputs checked where they enter: non-finite logits, means, log-sds (named, with the
   * first bad sample and column); nu other than 0/1; lambda outside [0, 1] */
  double bad[12] = {0}, nu3[3] = {0, 1, 0}, lp3[3] = {-1, -1, -1};
  bad[6] = NAN;
  int64_t three = 3;
  mile_tensor *nanm = tensor(MILE_FLOAT64, 2, s34, bad, 0);
  assert_int_equal(mile_probit_discrete(&out, a, nanm, c, c), MILE_ERR_ARGUMENT);
  assert_non_null(strstr(mile_last_error(), "mental_logits must be finite, got nan at sample 1, column 2"));
  assert_null(out);
  bad[6] = -INFINITY;
  mile_tensor *infm = tensor(MILE_FLOAT64, 2, s34, bad, 0);
  assert_int_equal(mile_probit_gaussian(&out, a, infm, a, a, c, c), MILE_ERR_ARGUMENT);
  assert_non_null(strstr(mile_last_error(), "log_sd must be finite, got -inf at sample 1, column 2"));
  assert_null(out);
  mile_tensor *lpt = tensor(MILE_FLOAT64, 1, &three, lp3, 0), *nu = tensor(MILE_FLOAT64, 1, &three, nu3, 0), *loss;
  CHECK(mile_intervention_loss(&loss, MILE_IV_PAPER, 0.5, lpt, lpt, lpt, NULL, nu));
  mile_tensor_release(loss);
  assert_int_equal(mile_intervention_loss(&loss, MILE_IV_PAPER, 1.5, lpt, lpt, lpt, NULL, nu), MILE_ERR_ARGUMENT);
  assert_non_null(strstr(mile_last_error(), "lambda must be in [0, 1]"));
  assert_int_equal(mile_intervention_loss(&loss, MILE_IV_PAPER, NAN, lpt, lpt, lpt, NULL, nu), MILE_ERR_ARGUMENT);
  for (int k = 0; k < 2; k++) {
    nu3[1] = k ? NAN : 2;
    mile_tensor *nu_bad = tensor(MILE_FLOAT64, 1, &three, nu3, 0);
    assert_int_equal(mile_intervention_loss(&loss, MILE_IV_REFERENCE, 0.5, lpt, lpt, lpt, NULL, nu_bad),
                     MILE_ERR_ARGUMENT);
    assert_non_null(strstr(mile_last_error(),
                           k ? "nu must be 0 or 1, got nan at sample 1" : "nu must be 0 or 1, got 2 at sample 1"));
    mile_tensor_release(nu_bad);
  }
  mile_tensor_release(nanm), mile_tensor_release(infm), mile_tensor_release(lpt), mile_tensor_release(nu);
  mile_tensor *all[] = {a, b, f32, c, zero, c2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    mile_tensor_release(all[i]);
}

/* The kernels split their rows over threads from 256 rows on: one thread and three
 * give the same bits (outputs and every input's gradient), and the error of a batch
 * with several bad rows names the first one whatever thread met it. */
enum { TB = 1200 };

static void run_model(int gaussian, int threads, double *out, double *grads) {
  CHECK(mile_set_num_threads(threads));
  int64_t D = 3, shape[2] = {TB, D}, n = TB * D;
  double *v = malloc(sizeof(double) * (size_t)n);
  mile_tensor *in[4];
  for (int i = 0; i < 4; i++) {
    for (int64_t k = 0; k < n; k++)
      v[k] = sin(0.37 * (double)(k + 101 * i)) * (i % 2 ? 0.8 : 2.5);
    in[i] = tensor(MILE_FLOAT64, 2, shape, v, 1);
  }
  mile_tensor *c, *s, *o, *loss;
  CHECK(mile_scalar(&c, MILE_FLOAT64, 0.4));
  CHECK(mile_scalar(&s, MILE_FLOAT64, 1.3));
  if (gaussian)
    CHECK(mile_probit_gaussian(&o, in[0], in[1], in[2], in[3], c, s));
  else
    CHECK(mile_probit_discrete(&o, in[0], in[1], c, s));
  int64_t m = mile_numel(o);
  CHECK(mile_to_doubles(o, out));
  mile_tensor *w = NULL, *prod;
  double *wv = malloc(sizeof(double) * (size_t)m);
  for (int64_t k = 0; k < m; k++)
    wv[k] = cos(0.11 * (double)k);
  w = tensor(MILE_FLOAT64, 2, o->shape, wv, 0);
  CHECK(mile_binary(&prod, MILE_MUL, o, w));
  CHECK(mile_reduce(&loss, MILE_SUM, prod, MILE_ALL_DIMS, 0));
  CHECK(mile_backward(loss, NULL, 0));
  for (int i = 0; i < (gaussian ? 4 : 2); i++)
    CHECK(mile_to_doubles(in[i]->grad, grads + i * n));
  for (int i = 0; i < 4; i++)
    mile_tensor_release(in[i]);
  mile_tensor_release(c), mile_tensor_release(s), mile_tensor_release(o), mile_tensor_release(loss);
  mile_tensor_release(w), mile_tensor_release(prod);
  free(v), free(wv);
  CHECK(mile_set_num_threads(0));
}

static void test_threads_same_bits(void **state) {
  (void)state;
  size_t n_out = (size_t)TB * 14, n_grad = (size_t)TB * 3 * 4;
  for (int gaussian = 0; gaussian < 2; gaussian++) {
    double *o1 = calloc(n_out, sizeof(double)), *o3 = calloc(n_out, sizeof(double));
    double *g1 = calloc(n_grad, sizeof(double)), *g3 = calloc(n_grad, sizeof(double));
    run_model(gaussian, 1, o1, g1);
    run_model(gaussian, 3, o3, g3);
    assert_memory_equal(o1, o3, n_out * sizeof(double));
    assert_memory_equal(g1, g3, n_grad * sizeof(double));
    free(o1), free(o3), free(g1), free(g3);
  }
  /* bad rows 700 and 1100 (0-based): the error names 700 */
  CHECK(mile_set_num_threads(3));
  int64_t shape[2] = {TB, 3}, n = TB * 3;
  double *v = calloc((size_t)n, sizeof(double));
  v[1100 * 3 + 2] = NAN, v[700 * 3 + 1] = INFINITY;
  mile_tensor *bad = tensor(MILE_FLOAT64, 2, shape, v, 0), *c, *o = NULL;
  CHECK(mile_scalar(&c, MILE_FLOAT64, 1.0));
  mile_tensor *zero;
  double *z = calloc((size_t)n, sizeof(double));
  zero = tensor(MILE_FLOAT64, 2, shape, z, 0);
  assert_int_equal(mile_probit_discrete(&o, zero, bad, c, c), MILE_ERR_ARGUMENT);
  assert_non_null(strstr(mile_last_error(), "mental_logits must be finite, got inf at sample 700, column 1"));
  assert_int_equal(mile_probit_gaussian(&o, zero, zero, bad, zero, c, c), MILE_ERR_ARGUMENT);
  assert_non_null(strstr(mile_last_error(), "mental_mu must be finite, got inf at sample 700, column 1"));
  assert_null(o);
  CHECK(mile_set_num_threads(0));
  mile_tensor_release(bad), mile_tensor_release(c), mile_tensor_release(zero);
  free(v), free(z);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_discrete_vectors),
      cmocka_unit_test(test_discrete_cost_scale_gradients),
      cmocka_unit_test(test_gaussian_vectors),
      cmocka_unit_test(test_gaussian_tails),
      cmocka_unit_test(test_gaussian_extremes),
      cmocka_unit_test(test_gaussian_beyond_range),
      cmocka_unit_test(test_gaussian_scalar_derivatives),
      cmocka_unit_test(test_property),
      cmocka_unit_test(test_property_extremes),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_threads_same_bits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
