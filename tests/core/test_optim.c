/* test_optim.c - the fused optimiser updates and gradient clipping of optim.h, against
 * reference loops in double precision written here from the algorithms' definitions
 * (Kingma & Ba's Adam with bias-corrected moments; SGD with momentum as torch.optim). */
#include "test_util.h"

enum { N = 37, STEPS = 4 };

typedef struct adam_ref {
  double p[N], m[N], v[N];
} adam_ref;

static void adam_ref_step(adam_ref *r, const double *g, double lr, double b1, double b2, double eps, double wd,
                          bool decoupled, int t) {
  for (int i = 0; i < N; i++) {
    double gi = g[i];
    if (decoupled) r->p[i] -= lr * wd * r->p[i];
    else gi += wd * r->p[i];
    r->m[i] = b1 * r->m[i] + (1 - b1) * gi;
    r->v[i] = b2 * r->v[i] + (1 - b2) * gi * gi;
    double mhat = r->m[i] / (1 - pow(b1, t)), vhat = r->v[i] / (1 - pow(b2, t));
    r->p[i] -= lr * mhat / (sqrt(vhat) + eps);
  }
}

static void check_adam(mile_dtype dt, bool decoupled, double wd) {
  mile_rng rng;
  mile_rng_seed(&rng, 5);
  int64_t shape[1] = {N};
  mile_tensor *p = rand_tensor(&rng, dt, 1, shape, -2, 2), *m, *v;
  OK(mile_zeros(&m, dt, 1, shape));
  OK(mile_zeros(&v, dt, 1, shape));
  adam_ref r = {0};
  for (int i = 0; i < N; i++) r.p[i] = get_flat(p, i);
  for (int t = 1; t <= STEPS; t++) {
    mile_tensor *g = rand_tensor(&rng, dt, 1, shape, -1, 1);
    double gv[N];
    for (int i = 0; i < N; i++) gv[i] = get_flat(g, i) * (i % 5 == 0 ? 1e-3 : 1); /* mixed magnitudes */
    for (int i = 0; i < N; i++) set_flat(g, i, gv[i]);
    for (int i = 0; i < N; i++) gv[i] = get_flat(g, i); /* what the kernel reads (float32 rounding) */
    OK(mile_adam_step(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, wd, decoupled, t));
    adam_ref_step(&r, gv, 0.01, 0.9, 0.999, 1e-8, wd, decoupled, t);
    for (int i = 0; i < N; i++) {
      ASSERT_CLOSE(get_flat(p, i), r.p[i], 0, dt == MILE_FLOAT64 ? 1e-12 : 2e-6, "param %d step %d", i, t);
      /* float32: g + wd * p rounds at the scale of its terms (~0.1), not of the sum */
      ASSERT_CLOSE(get_flat(m, i), r.m[i], dt == MILE_FLOAT64 ? 1e-12 : 1e-5, dt == MILE_FLOAT64 ? 1e-15 : 1e-7,
                   "exp_avg %d step %d", i, t);
      ASSERT_CLOSE(get_flat(v, i), r.v[i], dt == MILE_FLOAT64 ? 1e-12 : 1e-5, dt == MILE_FLOAT64 ? 1e-15 : 1e-8,
                   "exp_avg_sq %d step %d", i, t);
    }
    mile_tensor_release(g);
  }
  mile_tensor_release(p), mile_tensor_release(m), mile_tensor_release(v);
}

static void test_adam(void **state) {
  (void)state;
  for (int dt = 0; dt < 2; dt++) {
    check_adam((mile_dtype)dt, false, 0);
    check_adam((mile_dtype)dt, false, 0.1);
    check_adam((mile_dtype)dt, true, 0.1);
  }
}

static void check_sgd(mile_dtype dt, double lr, double mom, double damp, double wd, bool nesterov) {
  mile_rng rng;
  mile_rng_seed(&rng, 9);
  int64_t shape[2] = {N, 1};
  mile_tensor *p = rand_tensor(&rng, dt, 2, shape, -2, 2), *buf;
  OK(mile_full(&buf, dt, 2, shape, NAN)); /* the first step must ignore its contents */
  double rp[N], rb[N];
  for (int i = 0; i < N; i++) rp[i] = get_flat(p, i);
  for (int t = 1; t <= STEPS; t++) {
    mile_tensor *g = rand_tensor(&rng, dt, 2, shape, -1, 1);
    OK(mile_sgd_step(p, g, mom != 0 ? buf : NULL, lr, mom, damp, wd, nesterov, t == 1));
    for (int i = 0; i < N; i++) {
      double d = get_flat(g, i) + wd * rp[i];
      if (mom != 0) {
        rb[i] = t == 1 ? d : mom * rb[i] + (1 - damp) * d;
        d = nesterov ? d + mom * rb[i] : rb[i];
      }
      rp[i] -= lr * d;
      ASSERT_CLOSE(get_flat(p, i), rp[i], 0, dt == MILE_FLOAT64 ? 1e-13 : 2e-6, "param %d step %d", i, t);
    }
    mile_tensor_release(g);
  }
  mile_tensor_release(p), mile_tensor_release(buf);
}

static void test_sgd(void **state) {
  (void)state;
  for (int dt = 0; dt < 2; dt++) {
    check_sgd((mile_dtype)dt, 0.1, 0, 0, 0, false);
    check_sgd((mile_dtype)dt, 0.1, 0, 0, 0.01, false);
    check_sgd((mile_dtype)dt, 0.05, 0.9, 0, 0, false);
    check_sgd((mile_dtype)dt, 0.05, 0.9, 0.25, 0.01, false);
    check_sgd((mile_dtype)dt, 0.05, 0.9, 0, 0.01, true);
  }
}

static void test_errors(void **state) {
  (void)state;
  int64_t s3[1] = {3}, s4[1] = {4}, s32[2] = {3, 2};
  mile_tensor *p, *g, *m, *v, *g4, *g32, *wide, *col;
  OK(mile_zeros(&p, MILE_FLOAT32, 1, s3));
  OK(mile_zeros(&g, MILE_FLOAT32, 1, s3));
  OK(mile_zeros(&m, MILE_FLOAT32, 1, s3));
  OK(mile_zeros(&v, MILE_FLOAT32, 1, s3));
  OK(mile_zeros(&g4, MILE_FLOAT32, 1, s4));
  OK(mile_zeros(&g32, MILE_FLOAT64, 1, s3));
  OK(mile_zeros(&wide, MILE_FLOAT32, 2, s32));
  OK(mile_select(&col, wide, 1, 0));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_adam_step(p, g4, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1));
  EXPECT_ERR(MILE_ERR_DTYPE, mile_adam_step(p, g32, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_adam_step(p, g, m, m, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_adam_step(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 0));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_adam_step(p, g, m, v, 0.1, 1.0, 0.999, 1e-8, 0, 0, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_adam_step(p, g, m, v, -0.1, 0.9, 0.999, 1e-8, 0, 0, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_adam_step(p, NULL, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_adam_step(col, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_sgd_step(p, g, NULL, 0.1, 0.9, 0, 0, 0, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_sgd_step(p, g, m, 0.1, 0.9, 0.1, 0, 1, 1)); /* nesterov + dampening */
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_sgd_step(p, p, NULL, 0.1, 0, 0, 0, 0, 1));   /* aliasing */
  double norm;
  mile_tensor *gs[1] = {g};
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_grad_norm(&norm, 1, gs, 0.5));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_clip_grad_norm(&norm, 1, gs, -1, 2));
  /* nothing was written by the failed calls */
  for (int i = 0; i < 3; i++) assert_true(get_flat(p, i) == 0 && get_flat(m, i) == 0);
  mile_tensor *all[] = {p, g, m, v, g4, g32, wide, col};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) mile_tensor_release(all[i]);
}

/* A step writes the parameter in place: a graph that saved it must refuse backward. */
static void test_version_bump(void **state) {
  (void)state;
  int64_t s[1] = {4};
  mile_tensor *p, *g, *m, *v, *y, *loss;
  OK(mile_full(&p, MILE_FLOAT64, 1, s, 1.5));
  OK(mile_set_requires_grad(p, 1));
  OK(mile_full(&g, MILE_FLOAT64, 1, s, 1));
  OK(mile_zeros(&m, MILE_FLOAT64, 1, s));
  OK(mile_zeros(&v, MILE_FLOAT64, 1, s));
  OK(mile_binary(&y, MILE_MUL, p, p)); /* saves p */
  OK(mile_reduce(&loss, MILE_SUM, y, MILE_ALL_DIMS, 0));
  OK(mile_adam_step(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1));
  EXPECT_ERR(MILE_ERR_STATE, mile_backward(loss, NULL, 0));
  mile_tensor *all[] = {loss, y, p, g, m, v};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) mile_tensor_release(all[i]);
}

static void test_grad_norm_and_clip(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 13);
  int64_t s1[2] = {5, 7}, s2[1] = {11};
  for (int dt = 0; dt < 2; dt++) {
    /* a strided gradient (a transpose), a contiguous one, and a NULL entry */
    mile_tensor *a = make_input(&rng, (mile_dtype)dt, 2, s1, LAYOUT_TRANSPOSED, -3, 3);
    mile_tensor *b = rand_tensor(&rng, (mile_dtype)dt, 1, s2, -3, 3);
    mile_tensor *gs[3] = {a, NULL, b};
    double ss = 0, mx = 0, l1 = 0, l3 = 0;
    for (int64_t k = 0; k < 35; k++) {
      double x = get_flat(a, k);
      ss += x * x, mx = fmax(mx, fabs(x)), l1 += fabs(x), l3 += pow(fabs(x), 3);
    }
    for (int64_t k = 0; k < 11; k++) {
      double x = get_flat(b, k);
      ss += x * x, mx = fmax(mx, fabs(x)), l1 += fabs(x), l3 += pow(fabs(x), 3);
    }
    double norm, want = sqrt(ss);
    OK(mile_grad_norm(&norm, 3, gs, 2));
    ASSERT_CLOSE(norm, want, 1e-12, 0, "l2 norm");
    OK(mile_grad_norm(&norm, 3, gs, INFINITY));
    ASSERT_CLOSE(norm, mx, 0, 0, "max norm");
    OK(mile_grad_norm(&norm, 3, gs, 1));
    ASSERT_CLOSE(norm, l1, 1e-12, 0, "l1 norm");
    OK(mile_grad_norm(&norm, 3, gs, 3));
    ASSERT_CLOSE(norm, cbrt(l3), 1e-12, 0, "l3 norm");
    /* no clipping above the norm */
    double before = get_flat(a, 3);
    OK(mile_clip_grad_norm(&norm, 3, gs, want * 2, 2));
    assert_true(get_flat(a, 3) == before);
    /* clipping to 1: every element scaled by 1 / (norm + 1e-6) */
    OK(mile_clip_grad_norm(&norm, 3, gs, 1.0, 2));
    ASSERT_CLOSE(norm, want, 1e-12, 0, "reported norm");
    ASSERT_CLOSE(get_flat(a, 3), before / (want + 1e-6), dt ? 1e-12 : 1e-6, 0, "scaled element");
    OK(mile_grad_norm(&norm, 3, gs, 2));
    ASSERT_CLOSE(norm, want / (want + 1e-6), dt ? 1e-12 : 1e-6, 0, "norm after clipping");
    mile_tensor_release(a), mile_tensor_release(b);
  }
  /* an expanded gradient cannot be scaled in place */
  int64_t s3[2] = {4, 3};
  mile_tensor *e = make_input(&rng, MILE_FLOAT32, 2, s3, LAYOUT_EXPANDED, 5, 6);
  mile_tensor *es[1] = {e};
  double norm;
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_clip_grad_norm(&norm, 1, es, 1.0, 2));
  /* a non-finite norm is reported and nothing is scaled */
  int64_t s4[1] = {2};
  double vals[2] = {INFINITY, 1};
  mile_tensor *inf = tensor_of(MILE_FLOAT64, 1, s4, vals);
  mile_tensor *is[1] = {inf};
  OK(mile_clip_grad_norm(&norm, 1, is, 1.0, 2));
  assert_true(isinf(norm));
  assert_true(get_flat(inf, 1) == 1);
  mile_tensor_release(e), mile_tensor_release(inf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_adam),         cmocka_unit_test(test_sgd),
      cmocka_unit_test(test_errors),       cmocka_unit_test(test_version_bump),
      cmocka_unit_test(test_grad_norm_and_clip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
