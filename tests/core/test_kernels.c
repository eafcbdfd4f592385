/* test_kernels.c - forward values of every elementwise op, reduction, softmax, index
 * op, matmul and linear, for float32 and float64, contiguous and strided inputs,
 * with broadcasting. Each result is compared with a naive float64 loop written
 * here from element reads (mile_get), not with another mile kernel. */
#include "test_util.h"

static const int64_t S345[3] = {3, 4, 5};

/* Tolerances: float32 kernels against float64 references ~1e-5 relative, float64 ~1e-12;
 * the absolute part covers results near zero. */
static double atol_of(mile_dtype dt) { return dt == MILE_FLOAT64 ? 1e-13 : 1e-6; }

/* Broadcast shape of two shapes, computed here independently of the core. */
static int32_t broadcast(int32_t na, const int64_t *sa, int32_t nb, const int64_t *sb, int64_t *out) {
  int32_t n = na > nb ? na : nb;
  for (int32_t i = 0; i < n; i++) {
    int64_t da = i - (n - na) >= 0 ? sa[i - (n - na)] : 1, db = i - (n - nb) >= 0 ? sb[i - (n - nb)] : 1;
    assert_true(da == db || da == 1 || db == 1);
    out[i] = da == 1 ? db : da;
  }
  return n;
}

/* ---- unary --------------------------------------------------------------------------- */

static double ref_unary(mile_unary_op op, double x) {
  switch (op) {
  case MILE_NEG: return -x;
  case MILE_EXP: return exp(x);
  case MILE_LOG: return log(x);
  case MILE_LOG1P: return log1p(x);
  case MILE_EXPM1: return expm1(x);
  case MILE_SQRT: return sqrt(x);
  case MILE_ABS: return fabs(x);
  case MILE_TANH: return (exp(2 * x) - 1) / (exp(2 * x) + 1);
  case MILE_SIGMOID: return exp(x) / (1 + exp(x));
  case MILE_RELU: return x > 0 ? x : 0;
  case MILE_NORMAL_CDF: return 0.5 * (1 + erf(x / sqrt(2.0)));
  case MILE_LOG_NORMAL_CDF: return log(0.5 * (1 + erf(x / sqrt(2.0))));
  case MILE_SOFTPLUS: return log(1 + exp(x));
  default: fail_msg("no reference for unary op %d", (int)op);
  }
  return 0;
}

static void unary_domain(mile_unary_op op, double *lo, double *hi) {
  *lo = -3, *hi = 3;
  if (op == MILE_LOG || op == MILE_SQRT) *lo = 0.05;
  if (op == MILE_LOG1P) *lo = -0.9;
}

static void test_unary_values(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 11);
  const int64_t shapes[3][3] = {{3, 4, 5}, {7, 1, 1}, {0, 0, 0}};
  const int32_t ndims[3] = {3, 1, 0};
  for (int dti = 0; dti < 2; dti++) {
    mile_dtype dt = (mile_dtype)dti;
    for (int op = 0; op < MILE_UNARY_COUNT; op++) {
      double lo, hi;
      unary_domain((mile_unary_op)op, &lo, &hi);
      for (int s = 0; s < 3; s++)
        for (int l = 0; l < LAYOUT_COUNT; l++) {
          mile_tensor *a = make_input(&rng, dt, ndims[s], shapes[s], (layout)l, lo, hi), *y = NULL;
          OK(mile_unary(&y, (mile_unary_op)op, a));
          assert_shape(y, a->ndim, a->shape);
          assert_int_equal(y->dtype, dt);
          assert_null(y->grad_fn);
          for (int64_t k = 0; k < mile_numel(a); k++)
            ASSERT_CLOSE(get_flat(y, k), ref_unary((mile_unary_op)op, get_flat(a, k)), tol_of(dt), atol_of(dt),
                         "%s %s %s element %lld", mile_unary_name((mile_unary_op)op), mile_dtype_name(dt),
                         layout_name((layout)l), (long long)k);
          mile_tensor_release(y), mile_tensor_release(a);
        }
    }
  }
}

static void test_unary_special_values(void **state) {
  (void)state;
  const double x[8] = {-50, -20, -1e-3, 0, 1e-3, 20, 50, 700};
  for (int dti = 0; dti < 2; dti++) {
    mile_dtype dt = (mile_dtype)dti;
    mile_tensor *a = tensor_of(dt, 1, (int64_t[]){8}, x), *y = NULL;
    /* softplus and sigmoid stay finite and accurate far out in both directions */
    OK(mile_unary(&y, MILE_SOFTPLUS, a));
    for (int k = 0; k < 7; k++) {
      double xv = get_flat(a, k), want = xv > 0 ? xv + log1p(exp(-xv)) : log1p(exp(xv));
      ASSERT_CLOSE(get_flat(y, k), want, tol_of(dt), 0, "softplus(%g) %s", xv, mile_dtype_name(dt));
    }
    if (dt == MILE_FLOAT64) ASSERT_CLOSE(get_flat(y, 7), 700, 1e-15, 0, "softplus(700)");
    mile_tensor_release(y);
    OK(mile_unary(&y, MILE_SIGMOID, a));
    if (dt == MILE_FLOAT64) ASSERT_CLOSE(get_flat(y, 0), exp(-50) / (1 + exp(-50)), 1e-12, 0, "sigmoid(-50)");
    assert_true(get_flat(y, 7) == 1.0);
    assert_true(get_flat(y, 3) == 0.5);
    mile_tensor_release(y);
    OK(mile_unary(&y, MILE_RELU, a));
    assert_true(get_flat(y, 2) == 0 && get_flat(y, 3) == 0 && get_flat(y, 4) == get_flat(a, 4));
    mile_tensor_release(y);
    OK(mile_unary(&y, MILE_TANH, a));
    ASSERT_CLOSE(get_flat(y, 0), -1, tol_of(dt), 0, "tanh(-50) %s", mile_dtype_name(dt));
    ASSERT_CLOSE(get_flat(y, 7), 1, tol_of(dt), 0, "tanh(700) %s", mile_dtype_name(dt));
    assert_true(fabs(get_flat(y, 7)) <= 1);
    mile_tensor_release(y);
    /* out-of-domain inputs give IEEE results, not failures */
    OK(mile_unary(&y, MILE_LOG, a));
    assert_true(isnan(get_flat(y, 0)));
    assert_true(get_flat(y, 3) == -INFINITY);
    mile_tensor_release(y);
    mile_tensor_release(a);
  }
  /* names */
  for (int op = 0; op < MILE_UNARY_COUNT; op++) assert_string_not_equal(mile_unary_name((mile_unary_op)op), "unknown");
  assert_string_equal(mile_unary_name(MILE_EXP), "exp");
  assert_string_equal(mile_unary_name((mile_unary_op)MILE_UNARY_COUNT), "unknown");
  mile_tensor *a = NULL, *y = (mile_tensor *)1;
  OK(mile_scalar(&a, MILE_FLOAT32, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_unary(&y, (mile_unary_op)MILE_UNARY_COUNT, a));
  assert_null(y);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_unary(&y, (mile_unary_op)-1, a));
  mile_tensor_release(a);
}

/* exp, tanh and sigmoid in float32 (vectorised approximations in the core) over their
 * whole range, against libm in double: relative accuracy where the result is a normal
 * float, overflow to inf past ln(FLT_MAX), at most FLT_MIN of error below the normal range. */
static void test_float32_exp_tanh_range(void **state) {
  (void)state;
  const int64_t n = 200001;
  mile_tensor *x = NULL, *e = NULL, *t = NULL, *s = NULL;
  OK(mile_empty(&x, MILE_FLOAT32, 1, &n));
  for (int64_t k = 0; k < n; k++) set_flat(x, k, -110.0 + 200.0 * (double)k / (double)(n - 1));
  OK(mile_unary(&e, MILE_EXP, x));
  OK(mile_unary(&t, MILE_TANH, x));
  OK(mile_unary(&s, MILE_SIGMOID, x));
  for (int64_t k = 0; k < n; k++) {
    double v = get_flat(x, k), want = exp(v);
    if (want > 3.4028234663852886e38) want = INFINITY;
    ASSERT_CLOSE(get_flat(e, k), want, 2e-6, 1.2e-38, "float32 exp(%.9g)", v);
    ASSERT_CLOSE(get_flat(t, k), tanh(v), 1e-6, 0, "float32 tanh(%.9g)", v);
    ASSERT_CLOSE(get_flat(s, k), 1 / (1 + exp(-v)), 1e-6, 1.2e-38, "float32 sigmoid(%.9g)", v);
  }
  double special[6] = {NAN, INFINITY, -INFINITY, 88.72, -103.0, 0}, got;
  mile_tensor_release(e), mile_tensor_release(x);
  x = tensor_of(MILE_FLOAT32, 1, (int64_t[]){6}, special);
  OK(mile_unary(&e, MILE_EXP, x));
  assert_true(isnan(get_flat(e, 0)));
  assert_true(get_flat(e, 1) == INFINITY);
  assert_true(get_flat(e, 2) == 0);
  got = get_flat(e, 3);
  ASSERT_CLOSE(got, exp((double)88.72f), 2e-6, 0, "float32 exp(88.72)");
  assert_true(get_flat(e, 4) >= 0 && get_flat(e, 4) < 1.2e-38);
  assert_true(get_flat(e, 5) == 1);
  mile_tensor_release(e), mile_tensor_release(t), mile_tensor_release(s), mile_tensor_release(x);
}

/* ---- the normal CDF and its logarithm ----------------------------------------------------- */

/* Reference values computed with mpmath at 50 digits: x, ln Phi(x), Phi(x), phi(x)/Phi(x). */
static const double NORMAL_TABLE[][4] = {
    {-1e5, -5000000012.431864, 0.0, 100000.00001},
    {-1e4, -50000010.12927891, 0.0, 10000.000099999997},
    {-1000, -500007.82669481216, 0.0, 1000.000999998},
    {-40, -804.6084420137538, 0.0, 40.02496884720726},
    {-20, -203.91715537109727, 2.7536241186062337e-89, 20.04975306852785},
    {-19.5, -194.0169657774975, 5.48911547566041e-85, 19.551015802580622},
    {-10, -53.23128515051247, 7.619853024160525e-24, 10.098093233962512},
    {-5, -15.064998393988725, 2.866515718791939e-07, 5.186503967125842},
    {-1, -1.8410216450092636, 0.15865525393145705, 1.525135276160981},
    {0, -0.6931471805599453, 0.5, 0.7978845608028654},
    {1, -0.17275377902344988, 0.8413447460685429, 0.2875999709391784},
    {2, -0.02301290932896349, 0.9772498680518208, 0.055247862678989956},
    {5, -2.866516129637636e-07, 0.9999997133484281, 1.4867199409049056e-06},
    {6, -9.865876455243758e-10, 0.9999999990134123, 6.075882855817676e-09},
    {7, -1.279812543886654e-12, 0.9999999999987201, 9.134720408376284e-12},
    {8, -6.220960574271786e-16, 0.9999999999999993, 5.052271083536895e-15},
    {10, -7.619853024160525e-24, 1.0, 7.694598626706419e-23},
    {20, -2.7536241186062337e-89, 1.0, 5.520948362159764e-88},
};
enum { NORMAL_N = sizeof NORMAL_TABLE / sizeof NORMAL_TABLE[0] };

static void test_log_normal_cdf_tails(void **state) {
  (void)state;
  double xs[NORMAL_N];
  for (int i = 0; i < NORMAL_N; i++) xs[i] = NORMAL_TABLE[i][0];
  for (int dti = 0; dti < 2; dti++) {
    mile_dtype dt = (mile_dtype)dti;
    double rtol = dt == MILE_FLOAT64 ? 1e-12 : 1e-6;
    mile_tensor *x = tensor_of(dt, 1, (int64_t[]){NORMAL_N}, xs), *lp = NULL, *p = NULL;
    OK(mile_unary(&lp, MILE_LOG_NORMAL_CDF, x));
    OK(mile_unary(&p, MILE_NORMAL_CDF, x));
    for (int i = 0; i < NORMAL_N; i++) {
      /* float32 results are the float64 values rounded (tiny ones flush to 0) */
      double atol = dt == MILE_FLOAT32 ? 1e-38 : 0;
      ASSERT_CLOSE(get_flat(lp, i), NORMAL_TABLE[i][1], rtol, atol, "%s ln Phi(%g)", mile_dtype_name(dt), xs[i]);
      ASSERT_CLOSE(get_flat(p, i), NORMAL_TABLE[i][2], rtol, atol, "%s Phi(%g)", mile_dtype_name(dt), xs[i]);
    }
    mile_tensor_release(lp), mile_tensor_release(p), mile_tensor_release(x);
  }
  /* the limits */
  mile_tensor *x = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){-INFINITY, INFINITY, -1e150}), *y = NULL;
  OK(mile_unary(&y, MILE_LOG_NORMAL_CDF, x));
  assert_true(get_flat(y, 0) == -INFINITY);
  assert_true(get_flat(y, 1) == 0);
  ASSERT_CLOSE(get_flat(y, 2), -5e299, 1e-12, 0, "ln Phi(-1e150)");
  mile_tensor_release(y), mile_tensor_release(x);
}

/* d/dx ln Phi = phi/Phi and d/dx Phi = phi, through autograd, finite in the far left tail. */
static void test_normal_cdf_gradients(void **state) {
  (void)state;
  double xs[NORMAL_N];
  for (int i = 0; i < NORMAL_N; i++) xs[i] = NORMAL_TABLE[i][0];
  mile_tensor *x = tensor_of(MILE_FLOAT64, 1, (int64_t[]){NORMAL_N}, xs), *y = NULL, *ones = NULL;
  OK(mile_set_requires_grad(x, 1));
  OK(mile_full(&ones, MILE_FLOAT64, 1, (int64_t[]){NORMAL_N}, 1.0));
  OK(mile_unary(&y, MILE_LOG_NORMAL_CDF, x));
  OK(mile_backward(y, ones, 0));
  for (int i = 0; i < NORMAL_N; i++) {
    double g = get_flat(x->grad, i);
    assert_true(isfinite(g));
    ASSERT_CLOSE(g, NORMAL_TABLE[i][3], 1e-12, 0, "d ln Phi / dx at %g", xs[i]);
  }
  ASSERT_CLOSE(get_flat(x->grad, 1), 1e4, 1e-7, 0, "phi/Phi(-1e4) ~ -x");
  mile_tensor_release(y);
  mile_zero_grad(x);

  OK(mile_unary(&y, MILE_NORMAL_CDF, x));
  OK(mile_backward(y, ones, 0));
  for (int i = 0; i < NORMAL_N; i++) {
    double want = exp(-0.5 * xs[i] * xs[i]) / 2.5066282746310002;
    ASSERT_CLOSE(get_flat(x->grad, i), want, 1e-12, 0, "d Phi / dx at %g", xs[i]);
  }
  mile_tensor_release(y), mile_tensor_release(ones), mile_tensor_release(x);

  /* float32 at x = -1e4 too */
  mile_tensor *xf = NULL;
  OK(mile_full(&xf, MILE_FLOAT32, 0, NULL, -1e4));
  OK(mile_set_requires_grad(xf, 1));
  OK(mile_unary(&y, MILE_LOG_NORMAL_CDF, xf));
  OK(mile_backward(y, NULL, 0));
  double g;
  OK(mile_item(xf->grad, &g));
  ASSERT_CLOSE(g, 1e4, 1e-6, 0, "float32 phi/Phi(-1e4)");
  mile_tensor_release(y), mile_tensor_release(xf);
}

/* ---- binary -------------------------------------------------------------------------- */

static double ref_binary(mile_binary_op op, double x, double y) {
  switch (op) {
  case MILE_ADD: return x + y;
  case MILE_SUB: return x - y;
  case MILE_MUL: return x * y;
  case MILE_DIV: return x / y;
  case MILE_POW: return exp(y * log(x));
  case MILE_MAXIMUM: return x > y ? x : y;
  case MILE_MINIMUM: return x < y ? x : y;
  case MILE_EQ: return x == y;
  case MILE_NE: return x != y;
  case MILE_LT: return x < y;
  case MILE_LE: return x <= y;
  case MILE_GT: return x > y;
  case MILE_GE: return x >= y;
  default: fail_msg("no reference for binary op %d", (int)op);
  }
  return 0;
}

/* Inputs for op: positive bases for pow, divisors away from 0, ties for comparisons. */
static mile_tensor *binary_input(mile_rng *rng, mile_binary_op op, int side, mile_dtype dt, int32_t nd,
                                 const int64_t *shape, layout l) {
  double lo = -2, hi = 2;
  if (op == MILE_POW && side == 0) lo = 0.2;
  if (op == MILE_DIV && side == 1) lo = 0.5;
  mile_tensor *t = make_input(rng, dt, nd, shape, l, lo, hi);
  if (op >= MILE_MAXIMUM) quantize(t, 0.5);
  return t;
}

typedef struct shape_pair {
  int32_t na, nb;
  int64_t a[4], b[4];
} shape_pair;

static const shape_pair BINARY_SHAPES[] = {
    {3, 2, {3, 1, 4}, {2, 1}}, {2, 0, {2, 3}, {0}},       {0, 2, {0}, {2, 3}}, {0, 0, {0}, {0}},
    {1, 2, {4}, {3, 4}},       {2, 2, {3, 4}, {3, 4}},     {3, 3, {2, 1, 3}, {2, 4, 1}},
    {2, 2, {0, 3}, {1, 3}},
};

static void check_binary(mile_binary_op op, const mile_tensor *a, const mile_tensor *b, const mile_tensor *y,
                         const char *what) {
  int64_t shape[MILE_MAX_DIMS], idx[MILE_MAX_DIMS];
  int32_t nd = broadcast(a->ndim, a->shape, b->ndim, b->shape, shape);
  assert_shape(y, nd, shape);
  assert_int_equal(y->dtype, a->dtype);
  mile_dtype dt = (mile_dtype)a->dtype;
  for (int64_t k = 0; k < numel_of(nd, shape); k++) {
    unravel(k, nd, shape, idx);
    double x = get_bcast(a, nd, idx), v = get_bcast(b, nd, idx);
    ASSERT_CLOSE(get_at(y, idx), ref_binary(op, x, v), tol_of(dt), atol_of(dt), "%s %s(%g, %g) %s element %lld",
                 mile_dtype_name(dt), mile_binary_name(op), x, v, what, (long long)k);
  }
}

static void test_binary_values(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 12);
  for (int dti = 0; dti < 2; dti++)
    for (int op = 0; op < MILE_BINARY_COUNT; op++)
      for (size_t s = 0; s < sizeof BINARY_SHAPES / sizeof BINARY_SHAPES[0]; s++)
        for (int l = 0; l < LAYOUT_COUNT; l++) {
          const shape_pair *p = &BINARY_SHAPES[s];
          mile_dtype dt = (mile_dtype)dti;
          mile_tensor *a = binary_input(&rng, (mile_binary_op)op, 0, dt, p->na, p->a, (layout)l);
          mile_tensor *b = binary_input(&rng, (mile_binary_op)op, 1, dt, p->nb, p->b, (layout)((l + 2) % LAYOUT_COUNT));
          mile_tensor *y = NULL;
          OK(mile_binary(&y, (mile_binary_op)op, a, b));
          char what[64];
          snprintf(what, sizeof what, "shapes #%zu layout %s", s, layout_name((layout)l));
          check_binary((mile_binary_op)op, a, b, y, what);
          mile_tensor_release(y), mile_tensor_release(a), mile_tensor_release(b);
        }
}

static void test_binary_aliasing_and_scalar(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 13);
  for (int dti = 0; dti < 2; dti++) {
    mile_dtype dt = (mile_dtype)dti;
    mile_tensor *a = make_input(&rng, dt, 2, (int64_t[]){3, 4}, LAYOUT_TRANSPOSED, 0.5, 2), *y = NULL, *t = NULL;
    /* the same tensor on both sides, and a view of it */
    OK(mile_binary(&y, MILE_MUL, a, a));
    check_binary(MILE_MUL, a, a, y, "x*x");
    mile_tensor_release(y);
    OK(mile_narrow(&t, a, 1, 1, 1));
    OK(mile_binary(&y, MILE_SUB, a, t));
    check_binary(MILE_SUB, a, t, y, "x - x[:,1:2]");
    mile_tensor_release(y), mile_tensor_release(t);

    const mile_binary_op ops[4] = {MILE_SUB, MILE_DIV, MILE_POW, MILE_LT};
    for (int i = 0; i < 4; i++)
      for (int first = 0; first < 2; first++) {
        const double s = 1.25;
        OK(mile_binary_scalar(&y, ops[i], a, s, first));
        assert_shape(y, 2, a->shape);
        for (int64_t k = 0; k < 12; k++) {
          double x = get_flat(a, k), want = first ? ref_binary(ops[i], s, x) : ref_binary(ops[i], x, s);
          ASSERT_CLOSE(get_flat(y, k), want, tol_of(dt), atol_of(dt), "scalar %s first=%d", mile_binary_name(ops[i]),
                       first);
        }
        mile_tensor_release(y);
      }
    mile_tensor_release(a);
  }
}

static void test_binary_errors(void **state) {
  (void)state;
  mile_tensor *a = NULL, *b = NULL, *c = NULL, *y = (mile_tensor *)1;
  OK(mile_zeros(&a, MILE_FLOAT32, 2, (int64_t[]){3, 4}));
  OK(mile_zeros(&b, MILE_FLOAT32, 2, (int64_t[]){2, 4}));
  OK(mile_zeros(&c, MILE_FLOAT64, 2, (int64_t[]){3, 4}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_binary(&y, MILE_ADD, a, b));
  assert_null(y);
  assert_non_null(strstr(mile_last_error(), "{3,4}")); /* the message names the shapes */
  EXPECT_ERR(MILE_ERR_DTYPE, mile_binary(&y, MILE_MUL, a, c));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_binary(&y, (mile_binary_op)MILE_BINARY_COUNT, a, a));
  assert_null(y);
  for (int op = 0; op < MILE_BINARY_COUNT; op++)
    assert_string_not_equal(mile_binary_name((mile_binary_op)op), "unknown");
  assert_string_equal(mile_binary_name(MILE_POW), "pow");
  mile_tensor_release(a), mile_tensor_release(b), mile_tensor_release(c);
}

static void ref_reduce(mile_reduce_op op, const mile_tensor *a, int32_t dim, double *ref, double *scale,
                       int64_t *arg);

/* Random shapes of up to 5 dims with size-1 dims for broadcasting, random permuted and
 * narrowed layouts: stresses the loop driver's dim merging for 2 and 3 operands. */
static mile_tensor *random_strided(mile_rng *rng, mile_dtype dt, int32_t nd, const int64_t *shape) {
  int32_t perm[MILE_MAX_DIMS], inv[MILE_MAX_DIMS];
  for (int32_t i = 0; i < nd; i++) perm[i] = i;
  for (int32_t i = nd - 1; i > 0; i--) {
    int32_t j = (int32_t)mile_rng_below(rng, (uint64_t)i + 1), x = perm[i];
    perm[i] = perm[j], perm[j] = x;
  }
  for (int32_t i = 0; i < nd; i++) inv[perm[i]] = i;
  int64_t base_shape[MILE_MAX_DIMS] = {0};
  int32_t wide = nd ? (int32_t)mile_rng_below(rng, (uint64_t)nd) : 0;
  for (int32_t i = 0; i < nd; i++) base_shape[i] = shape[perm[i]] + (perm[i] == wide ? 2 : 0);
  mile_tensor *base = rand_tensor(rng, dt, nd, base_shape, -2, 2), *p = NULL, *t = NULL;
  OK(mile_permute(&p, base, inv)); /* logical dim i is base dim inv[i] */
  if (nd) OK(mile_narrow(&t, p, wide, 1, shape[wide]));
  else t = mile_tensor_retain(p);
  mile_tensor_release(p), mile_tensor_release(base);
  return t;
}

static void test_broadcast_fuzz(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 505);
  for (int iter = 0; iter < 300; iter++) {
    mile_dtype dt = (mile_dtype)(iter % 2);
    int32_t nd = (int32_t)mile_rng_below(&rng, 6);
    int64_t full[5], sa[5], sb[5];
    for (int32_t d = 0; d < nd; d++) full[d] = 1 + (int64_t)mile_rng_below(&rng, 4);
    int32_t na = nd - (nd ? (int32_t)mile_rng_below(&rng, 2) : 0), nb = nd - (nd ? (int32_t)mile_rng_below(&rng, 3) : 0);
    if (nb < 0) nb = 0;
    for (int32_t d = 0; d < na; d++) sa[d] = mile_rng_below(&rng, 3) ? full[d + nd - na] : 1;
    for (int32_t d = 0; d < nb; d++) sb[d] = mile_rng_below(&rng, 3) ? full[d + nd - nb] : 1;
    mile_tensor *a = random_strided(&rng, dt, na, sa), *b = random_strided(&rng, dt, nb, sb), *y = NULL;
    OK(mile_binary(&y, MILE_SUB, a, b));
    check_binary(MILE_SUB, a, b, y, "fuzz");
    mile_tensor_release(y);
    /* reductions of the strided input over each dim */
    double ref[1024];
    for (int32_t dim = MILE_ALL_DIMS; dim < na; dim++) {
      OK(mile_reduce(&y, MILE_MAX, a, dim, 1));
      ref_reduce(MILE_MAX, a, dim, ref, NULL, NULL);
      for (int64_t k = 0; k < mile_numel(y); k++) assert_true(get_flat(y, k) == ref[k]);
      mile_tensor_release(y);
    }
    mile_tensor_release(a), mile_tensor_release(b);
  }
}

/* ---- clamp and where ------------------------------------------------------------------ */

static void test_clamp(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 14);
  const double bounds[4][2] = {{-0.5, 0.5}, {-INFINITY, 0.3}, {-0.2, INFINITY}, {0.25, 0.25}};
  for (int dti = 0; dti < 2; dti++)
    for (int l = 0; l < LAYOUT_COUNT; l++)
      for (int b = 0; b < 4; b++) {
        mile_dtype dt = (mile_dtype)dti;
        mile_tensor *a = make_input(&rng, dt, 3, S345, (layout)l, -1, 1), *y = NULL;
        double lo = bounds[b][0], hi = bounds[b][1];
        OK(mile_clamp(&y, a, lo, hi));
        assert_shape(y, 3, S345);
        for (int64_t k = 0; k < 60; k++) {
          double x = get_flat(a, k), want = x < lo ? lo : x > hi ? hi : x;
          assert_true(get_flat(y, k) == (double)(dt == MILE_FLOAT32 ? (float)want : want));
        }
        mile_tensor_release(y), mile_tensor_release(a);
      }
  mile_tensor *a = NULL, *y = (mile_tensor *)1;
  OK(mile_zeros(&a, MILE_FLOAT64, 1, (int64_t[]){3}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_clamp(&y, a, 1, -1));
  assert_null(y);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_clamp(&y, a, NAN, 1));
  mile_tensor_release(a);
}

typedef struct where_shapes {
  int32_t nc, na, nb;
  int64_t c[3], a[3], b[3];
} where_shapes;

static void test_where(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 15);
  const where_shapes cases[] = {
      {2, 1, 2, {2, 1}, {3}, {2, 3}},          /* cond has more dims than a and b */
      {3, 2, 0, {3, 1, 4}, {2, 1}, {0}},       /* three-way broadcast, 0-d b */
      {1, 3, 2, {4}, {2, 3, 4}, {3, 1}},
      {2, 2, 2, {3, 4}, {3, 4}, {3, 4}},
      {3, 1, 1, {2, 3, 4}, {4}, {4}},
  };
  for (int dti = 0; dti < 2; dti++)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
      for (int l = 0; l < LAYOUT_COUNT; l++) {
        const where_shapes *w = &cases[i];
        mile_dtype dt = (mile_dtype)dti;
        mile_tensor *c = make_input(&rng, dt, w->nc, w->c, (layout)l, 0, 2);
        quantize(c, 1.0); /* 0 or 1 */
        mile_tensor *a = make_input(&rng, dt, w->na, w->a, (layout)((l + 1) % LAYOUT_COUNT), -1, 1);
        mile_tensor *b = make_input(&rng, dt, w->nb, w->b, (layout)((l + 2) % LAYOUT_COUNT), -1, 1);
        mile_tensor *y = NULL;
        OK(mile_where(&y, c, a, b));
        int64_t ab[MILE_MAX_DIMS], shape[MILE_MAX_DIMS], idx[MILE_MAX_DIMS];
        int32_t nab = broadcast(w->na, w->a, w->nb, w->b, ab);
        int32_t nd = broadcast(w->nc, w->c, nab, ab, shape);
        assert_shape(y, nd, shape);
        for (int64_t k = 0; k < numel_of(nd, shape); k++) {
          unravel(k, nd, shape, idx);
          double want = get_bcast(c, nd, idx) != 0 ? get_bcast(a, nd, idx) : get_bcast(b, nd, idx);
          assert_true(get_at(y, idx) == want);
        }
        mile_tensor_release(y), mile_tensor_release(a), mile_tensor_release(b), mile_tensor_release(c);
      }
  mile_tensor *c = NULL, *a = NULL, *b = NULL, *y = (mile_tensor *)1;
  OK(mile_zeros(&c, MILE_FLOAT32, 1, (int64_t[]){3}));
  OK(mile_zeros(&a, MILE_FLOAT32, 1, (int64_t[]){4}));
  OK(mile_zeros(&b, MILE_FLOAT64, 1, (int64_t[]){3}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_where(&y, c, a, a));
  EXPECT_ERR(MILE_ERR_DTYPE, mile_where(&y, c, c, b));
  EXPECT_ERR(MILE_ERR_DTYPE, mile_where(&y, b, c, c));
  assert_null(y);
  mile_tensor_release(a), mile_tensor_release(b), mile_tensor_release(c);
}

/* ---- reductions ---------------------------------------------------------------------- */

/* The reference of reduction `op` of a over dim (or all), in the row-major order of the
 * keepdim shape; *scale gets sum |x| per output (for tolerances). */
static void ref_reduce(mile_reduce_op op, const mile_tensor *a, int32_t dim, double *ref, double *scale,
                       int64_t *arg) {
  int64_t kept[MILE_MAX_DIMS], idx[MILE_MAX_DIMS];
  for (int32_t d = 0; d < a->ndim; d++) kept[d] = (dim == MILE_ALL_DIMS || d == dim) ? 1 : a->shape[d];
  int64_t nout = numel_of(a->ndim, kept), n = dim == MILE_ALL_DIMS ? mile_numel(a) : a->shape[dim];
  for (int64_t o = 0; o < nout; o++) {
    unravel(o, a->ndim, kept, idx);
    double acc = 0, abs_acc = 0, best = 0, m = -INFINITY;
    int64_t at = 0;
    for (int64_t r = 0; r < n; r++) {
      double x;
      if (dim == MILE_ALL_DIMS) x = get_flat(a, r);
      else idx[dim] = r, x = get_at(a, idx);
      acc += x, abs_acc += fabs(x);
      if (r == 0 || (op == MILE_MAX ? x > best : x < best)) best = x, at = r;
      if (x > m) m = x;
    }
    double lse = 0;
    for (int64_t r = 0; r < n; r++) {
      double x;
      if (dim == MILE_ALL_DIMS) x = get_flat(a, r);
      else idx[dim] = r, x = get_at(a, idx);
      lse += exp(x - m);
    }
    switch (op) {
    case MILE_SUM: ref[o] = acc; break;
    case MILE_MEAN: ref[o] = acc / (double)n, abs_acc /= (double)n; break;
    case MILE_MAX:
    case MILE_MIN: ref[o] = best; break;
    default: ref[o] = m + log(lse), abs_acc = fabs(ref[o]); break;
    }
    if (scale) scale[o] = abs_acc;
    if (arg) arg[o] = at;
  }
}

/* Shape of a reduction result, written out here. */
static int32_t reduced(const mile_tensor *a, int32_t dim, int32_t keepdim, int64_t *shape) {
  int32_t nd = 0;
  for (int32_t d = 0; d < a->ndim; d++) {
    bool gone = dim == MILE_ALL_DIMS || d == dim;
    if (!gone) shape[nd++] = a->shape[d];
    else if (keepdim) shape[nd++] = 1;
  }
  return nd;
}

static void test_reductions(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 16);
  const int64_t shapes[3][3] = {{3, 4, 5}, {7}, {0}};
  const int32_t ndims[3] = {3, 1, 0};
  double ref[64], scale[64];
  for (int dti = 0; dti < 2; dti++)
    for (int s = 0; s < 3; s++)
      for (int l = 0; l < LAYOUT_COUNT; l++) {
        mile_dtype dt = (mile_dtype)dti;
        mile_tensor *a = make_input(&rng, dt, ndims[s], shapes[s], (layout)l, -2, 2);
        for (int op = 0; op < MILE_REDUCE_COUNT; op++)
          for (int32_t dim = MILE_ALL_DIMS; dim < a->ndim; dim++)
            for (int keep = 0; keep < 2; keep++) {
              mile_tensor *y = NULL;
              OK(mile_reduce(&y, (mile_reduce_op)op, a, dim, keep));
              int64_t shape[MILE_MAX_DIMS];
              int32_t nd = reduced(a, dim, keep, shape);
              assert_shape(y, nd, shape);
              assert_int_equal(y->dtype, dt);
              ref_reduce((mile_reduce_op)op, a, dim, ref, scale, NULL);
              for (int64_t k = 0; k < mile_numel(y); k++) {
                bool exact = op == MILE_MAX || op == MILE_MIN;
                ASSERT_CLOSE(get_flat(y, k), ref[k], exact ? 0 : tol_of(dt), exact ? 0 : tol_of(dt) * scale[k] + 1e-300,
                             "%s %s dim %d keepdim %d %s element %lld", mile_dtype_name(dt),
                             mile_reduce_name((mile_reduce_op)op), dim, keep, layout_name((layout)l), (long long)k);
              }
              mile_tensor_release(y);
            }
        mile_tensor_release(a);
      }
}

static void test_reduction_long_and_special(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 17);
  /* a long float32 sum accumulates in double */
  const int64_t n = 100000;
  mile_tensor *a = rand_tensor(&rng, MILE_FLOAT32, 1, &n, 0, 1), *y = NULL;
  double want = 0;
  for (int64_t k = 0; k < n; k++) want += get_flat(a, k);
  OK(mile_reduce(&y, MILE_SUM, a, MILE_ALL_DIMS, 0));
  double got;
  OK(mile_item(y, &got));
  ASSERT_CLOSE(got, want, 1e-6, 0, "float32 sum of 1e5 values");
  mile_tensor_release(y), mile_tensor_release(a);

  /* NaN propagates through max and min; logsumexp of -inf / +inf rows */
  double vals[6] = {1, NAN, 3, -INFINITY, -INFINITY, -INFINITY};
  for (int dti = 0; dti < 2; dti++) {
    a = tensor_of((mile_dtype)dti, 2, (int64_t[]){2, 3}, vals);
    OK(mile_reduce(&y, MILE_MAX, a, 1, 0));
    assert_true(isnan(get_flat(y, 0)));
    assert_true(get_flat(y, 1) == -INFINITY);
    mile_tensor_release(y);
    OK(mile_reduce(&y, MILE_MIN, a, 1, 0));
    assert_true(isnan(get_flat(y, 0)));
    mile_tensor_release(y);
    OK(mile_reduce(&y, MILE_LOGSUMEXP, a, 1, 0));
    assert_true(get_flat(y, 1) == -INFINITY);
    mile_tensor_release(y), mile_tensor_release(a);
    /* large values do not overflow */
    a = tensor_of((mile_dtype)dti, 1, (int64_t[]){3}, (double[]){80, 80, -80});
    OK(mile_reduce(&y, MILE_LOGSUMEXP, a, 0, 0));
    ASSERT_CLOSE(get_flat(y, 0), 80 + log(2 + exp(-160)), tol_of((mile_dtype)dti), 0, "logsumexp large");
    mile_tensor_release(y), mile_tensor_release(a);
  }

  /* errors */
  mile_tensor *e = NULL;
  OK(mile_zeros(&a, MILE_FLOAT64, 2, (int64_t[]){2, 3}));
  OK(mile_zeros(&e, MILE_FLOAT64, 2, (int64_t[]){2, 0}));
  y = (mile_tensor *)1;
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_reduce(&y, MILE_SUM, a, 2, 0));
  assert_null(y);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_reduce(&y, MILE_SUM, a, -2, 0));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_reduce(&y, (mile_reduce_op)MILE_REDUCE_COUNT, a, 0, 0));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_reduce(&y, MILE_MAX, e, 1, 0));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_reduce(&y, MILE_LOGSUMEXP, e, MILE_ALL_DIMS, 0));
  assert_null(y);
  OK(mile_reduce(&y, MILE_SUM, e, 1, 0)); /* an empty sum is 0 */
  assert_true(get_flat(y, 0) == 0 && get_flat(y, 1) == 0);
  mile_tensor_release(y);
  for (int op = 0; op < MILE_REDUCE_COUNT; op++)
    assert_string_not_equal(mile_reduce_name((mile_reduce_op)op), "unknown");
  assert_string_equal(mile_reduce_name(MILE_LOGSUMEXP), "logsumexp");
  mile_tensor_release(e), mile_tensor_release(a);
}

static void test_extremes_with_indices(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 18);
  double ref[64];
  int64_t arg[64];
  for (int dti = 0; dti < 2; dti++)
    for (int l = 0; l < LAYOUT_COUNT; l++) {
      mile_dtype dt = (mile_dtype)dti;
      mile_tensor *a = make_input(&rng, dt, 3, S345, (layout)l, -1, 1);
      quantize(a, 0.5); /* ties: the first position must win */
      for (int which = 0; which < 2; which++) {
        mile_reduce_op op = which ? MILE_MIN : MILE_MAX;
        for (int32_t dim = 0; dim < 3; dim++)
          for (int keep = 0; keep < 2; keep++) {
            mile_tensor *v = NULL, *i = NULL, *am = NULL;
            OK(which ? mile_min_dim(&v, &i, a, dim, keep) : mile_max_dim(&v, &i, a, dim, keep));
            OK(which ? mile_argmin(&am, a, dim, keep) : mile_argmax(&am, a, dim, keep));
            int64_t shape[MILE_MAX_DIMS];
            int32_t nd = reduced(a, dim, keep, shape);
            assert_shape(v, nd, shape);
            assert_shape(i, nd, shape);
            assert_shape(am, nd, shape);
            assert_int_equal(i->dtype, dt);
            ref_reduce(op, a, dim, ref, NULL, arg);
            for (int64_t k = 0; k < mile_numel(v); k++) {
              assert_true(get_flat(v, k) == ref[k]);
              assert_true(get_flat(i, k) == (double)arg[k]);
              assert_true(get_flat(am, k) == (double)arg[k]);
            }
            mile_tensor_release(v), mile_tensor_release(i), mile_tensor_release(am);
            /* indices may be NULL */
            OK(which ? mile_min_dim(&v, NULL, a, dim, keep) : mile_max_dim(&v, NULL, a, dim, keep));
            mile_tensor_release(v);
          }
        /* flat position over all elements, in row-major logical order */
        for (int keep = 0; keep < 2; keep++) {
          mile_tensor *am = NULL;
          OK(which ? mile_argmin(&am, a, MILE_ALL_DIMS, keep) : mile_argmax(&am, a, MILE_ALL_DIMS, keep));
          ref_reduce(op, a, MILE_ALL_DIMS, ref, NULL, arg);
          assert_int_equal(mile_numel(am), 1);
          assert_int_equal(am->ndim, keep ? 3 : 0);
          double got;
          OK(mile_item(am, &got));
          assert_true(got == (double)arg[0]);
          mile_tensor_release(am);
        }
      }
      mile_tensor *v = (mile_tensor *)1, *i = (mile_tensor *)1;
      EXPECT_ERR(MILE_ERR_ARGUMENT, mile_max_dim(&v, &i, a, MILE_ALL_DIMS, 0));
      assert_null(v);
      assert_null(i);
      EXPECT_ERR(MILE_ERR_ARGUMENT, mile_min_dim(&v, &i, a, 3, 0));
      EXPECT_ERR(MILE_ERR_ARGUMENT, mile_argmax(&v, a, 5, 0));
      mile_tensor_release(a);
    }
}

/* ---- softmax ------------------------------------------------------------------------- */

static void test_softmax(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 19);
  int64_t idx[MILE_MAX_DIMS];
  for (int dti = 0; dti < 2; dti++)
    for (int l = 0; l < LAYOUT_COUNT; l++) {
      mile_dtype dt = (mile_dtype)dti;
      mile_tensor *a = make_input(&rng, dt, 3, S345, (layout)l, -3, 3);
      for (int32_t dim = 0; dim < 3; dim++)
        for (int lg = 0; lg < 2; lg++) {
          mile_tensor *y = NULL;
          OK(lg ? mile_log_softmax(&y, a, dim) : mile_softmax(&y, a, dim));
          assert_shape(y, 3, S345);
          for (int64_t k = 0; k < 60; k++) {
            unravel(k, 3, S345, idx);
            int64_t keep = idx[dim];
            double m = -INFINITY, sum = 0;
            for (int64_t r = 0; r < S345[dim]; r++) idx[dim] = r, m = fmax(m, get_at(a, idx));
            for (int64_t r = 0; r < S345[dim]; r++) idx[dim] = r, sum += exp(get_at(a, idx) - m);
            idx[dim] = keep;
            double lv = get_at(a, idx) - m - log(sum), want = lg ? lv : exp(lv);
            ASSERT_CLOSE(get_at(y, idx), want, tol_of(dt), atol_of(dt), "%s %s dim %d %s",
                         lg ? "log_softmax" : "softmax", mile_dtype_name(dt), dim, layout_name((layout)l));
          }
          mile_tensor_release(y);
        }
      mile_tensor_release(a);
    }
  /* empty tensors: nothing to compute, nothing read */
  for (int lg = 0; lg < 2; lg++) {
    mile_tensor *e = NULL, *y = NULL;
    OK(mile_zeros(&e, MILE_FLOAT64, 2, (int64_t[]){2, 0}));
    OK(lg ? mile_log_softmax(&y, e, 1) : mile_softmax(&y, e, 1));
    assert_shape(y, 2, (int64_t[]){2, 0});
    mile_tensor_release(y), mile_tensor_release(e);
    OK(mile_zeros(&e, MILE_FLOAT32, 2, (int64_t[]){0, 3}));
    OK(lg ? mile_log_softmax(&y, e, 0) : mile_softmax(&y, e, 0));
    assert_shape(y, 2, (int64_t[]){0, 3});
    mile_tensor_release(y), mile_tensor_release(e);
  }
  /* stable for large logits */
  for (int dti = 0; dti < 2; dti++) {
    mile_tensor *a = tensor_of((mile_dtype)dti, 1, (int64_t[]){3}, (double[]){1000, 1000, -1000}), *y = NULL;
    OK(mile_softmax(&y, a, 0));
    ASSERT_CLOSE(get_flat(y, 0), 0.5, 1e-7, 0, "softmax large");
    assert_true(get_flat(y, 2) == 0);
    mile_tensor_release(y);
    OK(mile_log_softmax(&y, a, 0));
    ASSERT_CLOSE(get_flat(y, 1), -log(2.0), 1e-7, 0, "log_softmax large");
    ASSERT_CLOSE(get_flat(y, 2), -2000 - log(2.0), 1e-7, 0, "log_softmax large");
    mile_tensor *bad = (mile_tensor *)1;
    EXPECT_ERR(MILE_ERR_ARGUMENT, mile_softmax(&bad, a, MILE_ALL_DIMS));
    EXPECT_ERR(MILE_ERR_ARGUMENT, mile_log_softmax(&bad, a, 1));
    assert_null(bad);
    mile_tensor_release(y), mile_tensor_release(a);
  }
}

/* ---- gather, index_select, cat ------------------------------------------------------- */

/* An index tensor of `shape` with integer entries in [0, size) of dtype dt (possibly transposed). */
static mile_tensor *index_tensor(mile_rng *rng, mile_dtype dt, int32_t nd, const int64_t *shape, int64_t size,
                                 layout l) {
  mile_tensor *t = make_input(rng, dt, nd, shape, l, 0, (double)size);
  quantize(t, 1.0);
  return t;
}

static void test_gather(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 20);
  int64_t idx[MILE_MAX_DIMS];
  struct {
    int32_t nd, dim;
    int64_t a[3], index[3];
  } cases[] = {{2, 0, {3, 4}, {2, 4}}, {2, 1, {3, 4}, {3, 2}}, {3, 1, {2, 3, 4}, {2, 5, 3}}, {3, 2, {2, 3, 4}, {1, 3, 6}}};
  for (int dti = 0; dti < 2; dti++)
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
      for (int l = 0; l < LAYOUT_COUNT; l++) {
        mile_dtype dt = (mile_dtype)dti;
        int32_t nd = cases[c].nd, dim = cases[c].dim;
        mile_tensor *a = make_input(&rng, dt, nd, cases[c].a, (layout)l, -1, 1);
        /* the index in the other dtype and another layout */
        mile_tensor *ix = index_tensor(&rng, (mile_dtype)(1 - dti), nd, cases[c].index, cases[c].a[dim],
                                       l == LAYOUT_TRANSPOSED ? LAYOUT_TRANSPOSED : LAYOUT_CONTIGUOUS);
        mile_tensor *y = NULL;
        OK(mile_gather(&y, a, dim, ix));
        assert_shape(y, nd, cases[c].index);
        for (int64_t k = 0; k < mile_numel(ix); k++) {
          unravel(k, nd, cases[c].index, idx);
          double want;
          int64_t ai[MILE_MAX_DIMS];
          memcpy(ai, idx, sizeof ai);
          ai[dim] = (int64_t)get_at(ix, idx);
          want = get_at(a, ai);
          assert_true(get_at(y, idx) == want);
        }
        mile_tensor_release(y), mile_tensor_release(ix), mile_tensor_release(a);
      }
  /* errors */
  mile_tensor *a = NULL, *ix = NULL, *y = (mile_tensor *)1;
  OK(mile_zeros(&a, MILE_FLOAT64, 2, (int64_t[]){3, 4}));
  ix = tensor_of(MILE_FLOAT64, 2, (int64_t[]){1, 2}, (double[]){0, 4});
  EXPECT_ERR(MILE_ERR_RANGE, mile_gather(&y, a, 1, ix));
  assert_null(y);
  OK(mile_set(ix, (int64_t[]){0, 1}, -1));
  EXPECT_ERR(MILE_ERR_RANGE, mile_gather(&y, a, 1, ix));
  OK(mile_set(ix, (int64_t[]){0, 1}, 1.5));
  EXPECT_ERR(MILE_ERR_RANGE, mile_gather(&y, a, 1, ix));
  OK(mile_set(ix, (int64_t[]){0, 1}, NAN));
  EXPECT_ERR(MILE_ERR_RANGE, mile_gather(&y, a, 1, ix));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_gather(&y, a, 2, ix));
  mile_tensor_release(ix);
  ix = tensor_of(MILE_FLOAT64, 1, (int64_t[]){2}, (double[]){0, 1});
  EXPECT_ERR(MILE_ERR_SHAPE, mile_gather(&y, a, 1, ix));
  mile_tensor_release(ix);
  OK(mile_zeros(&ix, MILE_FLOAT64, 2, (int64_t[]){4, 1}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_gather(&y, a, 1, ix)); /* larger than a outside dim */
  assert_null(y);
  mile_tensor_release(ix), mile_tensor_release(a);
}

static void test_index_select(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 21);
  int64_t idx[MILE_MAX_DIMS];
  for (int dti = 0; dti < 2; dti++)
    for (int l = 0; l < LAYOUT_COUNT; l++)
      for (int32_t dim = 0; dim < 3; dim++) {
        mile_dtype dt = (mile_dtype)dti;
        mile_tensor *a = make_input(&rng, dt, 3, S345, (layout)l, -1, 1), *ix = NULL, *base = NULL, *y = NULL;
        /* repeated positions, read through a strided 1-d view of another dtype */
        double pos[10] = {2, 9, 0, 9, 2, 9, 1, 9, 2, 9};
        base = tensor_of((mile_dtype)(1 - dti), 1, (int64_t[]){10}, pos);
        int64_t five = 5;
        mile_tensor *two = NULL;
        OK(mile_view(&two, base, 2, (int64_t[]){5, 2}));
        OK(mile_select(&ix, two, 1, 0)); /* {2, 0, 2, 1, 2} with stride 2 */
        assert_shape(ix, 1, &five);
        OK(mile_index_select(&y, a, dim, ix));
        int64_t shape[3] = {S345[0], S345[1], S345[2]};
        shape[dim] = 5;
        assert_shape(y, 3, shape);
        for (int64_t k = 0; k < numel_of(3, shape); k++) {
          unravel(k, 3, shape, idx);
          int64_t ai[3] = {idx[0], idx[1], idx[2]};
          ai[dim] = (int64_t)get_flat(ix, idx[dim]);
          assert_true(get_at(y, idx) == get_at(a, ai));
        }
        mile_tensor_release(y), mile_tensor_release(ix), mile_tensor_release(two), mile_tensor_release(base);
        mile_tensor_release(a);
      }
  mile_tensor *a = NULL, *ix = NULL, *y = (mile_tensor *)1;
  OK(mile_zeros(&a, MILE_FLOAT32, 2, (int64_t[]){3, 4}));
  ix = tensor_of(MILE_FLOAT32, 1, (int64_t[]){2}, (double[]){0, 3});
  EXPECT_ERR(MILE_ERR_RANGE, mile_index_select(&y, a, 0, ix));
  assert_null(y);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_index_select(&y, a, 2, ix));
  mile_tensor_release(ix);
  OK(mile_zeros(&ix, MILE_FLOAT32, 2, (int64_t[]){1, 1}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_index_select(&y, a, 0, ix));
  assert_null(y);
  mile_tensor_release(ix);
  /* an empty index gives an empty result */
  OK(mile_zeros(&ix, MILE_FLOAT32, 1, (int64_t[]){0}));
  OK(mile_index_select(&y, a, 1, ix));
  assert_shape(y, 2, (int64_t[]){3, 0});
  mile_tensor_release(y), mile_tensor_release(ix), mile_tensor_release(a);
}

static void test_cat(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 22);
  int64_t idx[MILE_MAX_DIMS];
  for (int dti = 0; dti < 2; dti++)
    for (int32_t dim = 0; dim < 3; dim++)
      for (int l = 0; l < LAYOUT_COUNT; l++) {
        mile_dtype dt = (mile_dtype)dti;
        const int64_t lens[3] = {2, 1, 3};
        mile_tensor *parts[3];
        int64_t total = 0;
        for (int i = 0; i < 3; i++) {
          int64_t s[3] = {2, 3, 4};
          s[dim] = lens[i];
          parts[i] = make_input(&rng, dt, 3, s, (layout)((l + i) % LAYOUT_COUNT), -1, 1);
          total += lens[i];
        }
        mile_tensor *y = NULL;
        OK(mile_cat(&y, 3, parts, dim));
        int64_t shape[3] = {2, 3, 4};
        shape[dim] = total;
        assert_shape(y, 3, shape);
        for (int64_t k = 0; k < numel_of(3, shape); k++) {
          unravel(k, 3, shape, idx);
          int64_t p = 0, at = idx[dim];
          while (at >= lens[p]) at -= lens[p++];
          int64_t pi[3] = {idx[0], idx[1], idx[2]};
          pi[dim] = at;
          assert_true(get_at(y, idx) == get_at(parts[p], pi));
        }
        mile_tensor_release(y);
        for (int i = 0; i < 3; i++) mile_tensor_release(parts[i]);
      }
  mile_tensor *a = NULL, *b = NULL, *c = NULL, *y = (mile_tensor *)1;
  OK(mile_zeros(&a, MILE_FLOAT32, 2, (int64_t[]){2, 3}));
  OK(mile_zeros(&b, MILE_FLOAT32, 2, (int64_t[]){3, 3}));
  OK(mile_zeros(&c, MILE_FLOAT64, 2, (int64_t[]){2, 3}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_cat(&y, 2, (mile_tensor *[]){a, b}, 1));
  EXPECT_ERR(MILE_ERR_DTYPE, mile_cat(&y, 2, (mile_tensor *[]){a, c}, 0));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_cat(&y, 0, (mile_tensor *[]){a}, 0));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_cat(&y, 1, (mile_tensor *[]){a}, 2));
  assert_null(y);
  OK(mile_cat(&y, 2, (mile_tensor *[]){a, b}, 0));
  assert_shape(y, 2, (int64_t[]){5, 3});
  mile_tensor_release(y), mile_tensor_release(a), mile_tensor_release(b), mile_tensor_release(c);
}

/* ---- matmul and linear ----------------------------------------------------------------- */

/* out[b,i,j] = sum_k a[b,i,k] b[b,k,j], with 2-d operands shared by every batch. */
static void check_matmul(const mile_tensor *a, const mile_tensor *b, const mile_tensor *y, const char *what) {
  bool batched = a->ndim == 3 || b->ndim == 3;
  int64_t batch = a->ndim == 3 ? a->shape[0] : b->ndim == 3 ? b->shape[0] : 1;
  int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
  mile_dtype dt = (mile_dtype)a->dtype;
  if (batched) assert_shape(y, 3, (int64_t[]){batch, m, n});
  else assert_shape(y, 2, (int64_t[]){m, n});
  for (int64_t p = 0; p < batch; p++)
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double acc = 0, scale = 0;
        for (int64_t r = 0; r < k; r++) {
          double x = a->ndim == 3 ? get_at(a, (int64_t[]){p, i, r}) : get_at(a, (int64_t[]){i, r});
          double v = b->ndim == 3 ? get_at(b, (int64_t[]){p, r, j}) : get_at(b, (int64_t[]){r, j});
          acc += x * v, scale += fabs(x * v);
        }
        double got = batched ? get_at(y, (int64_t[]){p, i, j}) : get_at(y, (int64_t[]){i, j});
        ASSERT_CLOSE(got, acc, 0, tol_of(dt) * scale + 1e-300, "matmul %s %s [%lld,%lld,%lld]", what,
                     mile_dtype_name(dt), (long long)p, (long long)i, (long long)j);
      }
}

static void test_matmul(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 23);
  struct {
    int32_t na, nb;
    int64_t a[3], b[3];
  } cases[] = {
      {2, 2, {5, 7}, {7, 3}},      {2, 2, {1, 7}, {7, 1}},      {2, 2, {6, 1}, {1, 4}},
      {2, 2, {64, 33}, {33, 17}},  {3, 3, {4, 5, 7}, {4, 7, 3}}, {3, 2, {4, 5, 7}, {7, 3}},
      {2, 3, {5, 7}, {4, 7, 3}},   {3, 3, {2, 1, 3}, {2, 3, 1}}, {2, 2, {3, 0}, {0, 2}},
      {3, 3, {0, 2, 3}, {0, 3, 2}},
  };
  for (int dti = 0; dti < 2; dti++)
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
      for (int la = 0; la < LAYOUT_COUNT; la++)
        for (int lb = 0; lb < LAYOUT_COUNT; lb++) {
          mile_dtype dt = (mile_dtype)dti;
          mile_tensor *a = make_input(&rng, dt, cases[c].na, cases[c].a, (layout)la, -1, 1);
          mile_tensor *b = make_input(&rng, dt, cases[c].nb, cases[c].b, (layout)lb, -1, 1), *y = NULL;
          OK(mile_matmul(&y, a, b));
          char what[96];
          snprintf(what, sizeof what, "case %zu a %s b %s", c, layout_name((layout)la), layout_name((layout)lb));
          check_matmul(a, b, y, what);
          mile_tensor_release(y), mile_tensor_release(a), mile_tensor_release(b);
        }

  /* a row and a column selected out of bigger strided tensors */
  mile_tensor *big = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){6, 8}, LAYOUT_TRANSPOSED, -1, 1);
  mile_tensor *row = NULL, *col = NULL, *y = NULL;
  OK(mile_narrow(&row, big, 0, 3, 1)); /* {1,8} with strides {1,6} */
  OK(mile_narrow(&col, big, 1, 5, 1)); /* {6,1} */
  mile_tensor *bt = NULL;
  OK(mile_transpose(&bt, big, 0, 1)); /* {8,6} */
  OK(mile_matmul(&y, row, bt));
  check_matmul(row, bt, y, "row x strided");
  mile_tensor_release(y);
  OK(mile_matmul(&y, bt, col));
  check_matmul(bt, col, y, "strided x column");
  mile_tensor_release(y), mile_tensor_release(bt), mile_tensor_release(row), mile_tensor_release(col);
  mile_tensor_release(big);

  /* errors */
  mile_tensor *a = NULL, *b = NULL, *v = NULL, *d = NULL, *b3 = NULL, *a3 = NULL, *four = NULL;
  y = (mile_tensor *)1;
  OK(mile_zeros(&a, MILE_FLOAT32, 2, (int64_t[]){2, 3}));
  OK(mile_zeros(&b, MILE_FLOAT32, 2, (int64_t[]){2, 3}));
  OK(mile_zeros(&v, MILE_FLOAT32, 1, (int64_t[]){3}));
  OK(mile_zeros(&d, MILE_FLOAT64, 2, (int64_t[]){3, 2}));
  OK(mile_zeros(&a3, MILE_FLOAT32, 3, (int64_t[]){2, 2, 3}));
  OK(mile_zeros(&b3, MILE_FLOAT32, 3, (int64_t[]){3, 3, 2}));
  OK(mile_zeros(&four, MILE_FLOAT32, 4, (int64_t[]){1, 1, 3, 2}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_matmul(&y, a, b));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_matmul(&y, a, v));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_matmul(&y, a, four));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_matmul(&y, a3, b3)); /* batch 2 vs 3 */
  EXPECT_ERR(MILE_ERR_DTYPE, mile_matmul(&y, a, d));
  assert_null(y);
  mile_tensor_release(a), mile_tensor_release(b), mile_tensor_release(v), mile_tensor_release(d);
  mile_tensor_release(a3), mile_tensor_release(b3), mile_tensor_release(four);
}

static void check_linear(const mile_tensor *x, const mile_tensor *w, const mile_tensor *bias, const mile_tensor *y,
                         const char *what) {
  int64_t in = w->shape[1], outf = w->shape[0], rows = 1, shape[MILE_MAX_DIMS], xi[MILE_MAX_DIMS];
  for (int32_t d = 0; d < x->ndim - 1; d++) rows *= x->shape[d], shape[d] = x->shape[d];
  shape[x->ndim - 1] = outf;
  assert_shape(y, x->ndim, shape);
  mile_dtype dt = (mile_dtype)x->dtype;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < outf; o++) {
      double acc = bias ? get_at(bias, &o) : 0, scale = fabs(acc);
      unravel(r * in, x->ndim, x->shape, xi);
      for (int64_t i = 0; i < in; i++) {
        xi[x->ndim - 1] = i;
        double p = get_at(x, xi) * get_at(w, (int64_t[]){o, i});
        acc += p, scale += fabs(p);
      }
      ASSERT_CLOSE(get_flat(y, r * outf + o), acc, 0, tol_of(dt) * scale + 1e-300, "linear %s %s row %lld out %lld",
                   what, mile_dtype_name(dt), (long long)r, (long long)o);
    }
}

static void test_linear(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 24);
  struct {
    int32_t nx;
    int64_t x[3];
  } xs[] = {{2, {5, 4}}, {3, {2, 5, 4}}, {1, {4}}, {2, {1, 4}}};
  for (int dti = 0; dti < 2; dti++)
    for (size_t c = 0; c < sizeof xs / sizeof xs[0]; c++)
      for (int l = 0; l < LAYOUT_COUNT; l++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
          mile_dtype dt = (mile_dtype)dti;
          mile_tensor *x = make_input(&rng, dt, xs[c].nx, xs[c].x, (layout)l, -1, 1);
          mile_tensor *w = make_input(&rng, dt, 2, (int64_t[]){3, 4}, (layout)((l + 1) % LAYOUT_COUNT), -1, 1);
          mile_tensor *b = with_bias ? make_input(&rng, dt, 1, (int64_t[]){3}, (layout)((l + 2) % LAYOUT_COUNT), -1, 1)
                                     : NULL;
          mile_tensor *y = NULL;
          OK(mile_linear(&y, x, w, b));
          char what[64];
          snprintf(what, sizeof what, "case %zu %s bias %d", c, layout_name((layout)l), with_bias);
          check_linear(x, w, b, y, what);
          mile_tensor_release(y), mile_tensor_release(x), mile_tensor_release(w), mile_tensor_release(b);
        }

  /* no input features: the output is the bias (or zeros) on every row */
  for (int with_bias = 0; with_bias < 2; with_bias++) {
    mile_tensor *x = NULL, *w = NULL, *b = NULL, *y = NULL;
    OK(mile_zeros(&x, MILE_FLOAT64, 2, (int64_t[]){3, 0}));
    OK(mile_zeros(&w, MILE_FLOAT64, 2, (int64_t[]){2, 0}));
    if (with_bias) b = tensor_of(MILE_FLOAT64, 1, (int64_t[]){2}, (double[]){1.5, -2});
    OK(mile_linear(&y, x, w, b));
    assert_shape(y, 2, (int64_t[]){3, 2});
    for (int64_t k = 0; k < 6; k++) assert_true(get_flat(y, k) == (with_bias ? (k % 2 ? -2 : 1.5) : 0));
    mile_tensor_release(y), mile_tensor_release(x), mile_tensor_release(w), mile_tensor_release(b);
  }

  mile_tensor *x = NULL, *w = NULL, *b = NULL, *w1 = NULL, *xd = NULL, *y = (mile_tensor *)1;
  OK(mile_zeros(&x, MILE_FLOAT32, 2, (int64_t[]){5, 4}));
  OK(mile_zeros(&w, MILE_FLOAT32, 2, (int64_t[]){3, 5}));
  OK(mile_zeros(&w1, MILE_FLOAT32, 1, (int64_t[]){4}));
  OK(mile_zeros(&b, MILE_FLOAT32, 1, (int64_t[]){4}));
  OK(mile_zeros(&xd, MILE_FLOAT64, 2, (int64_t[]){5, 5}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_linear(&y, x, w, NULL));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_linear(&y, x, w1, NULL));
  EXPECT_ERR(MILE_ERR_DTYPE, mile_linear(&y, xd, w, NULL));
  mile_tensor_release(w);
  OK(mile_zeros(&w, MILE_FLOAT32, 2, (int64_t[]){3, 4}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_linear(&y, x, w, b)); /* bias of 4 for 3 outputs */
  assert_null(y);
  mile_tensor_release(x), mile_tensor_release(w), mile_tensor_release(w1), mile_tensor_release(b);
  mile_tensor_release(xd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unary_values),
      cmocka_unit_test(test_unary_special_values),
      cmocka_unit_test(test_float32_exp_tanh_range),
      cmocka_unit_test(test_log_normal_cdf_tails),
      cmocka_unit_test(test_normal_cdf_gradients),
      cmocka_unit_test(test_binary_values),
      cmocka_unit_test(test_binary_aliasing_and_scalar),
      cmocka_unit_test(test_binary_errors),
      cmocka_unit_test(test_broadcast_fuzz),
      cmocka_unit_test(test_clamp),
      cmocka_unit_test(test_where),
      cmocka_unit_test(test_reductions),
      cmocka_unit_test(test_reduction_long_and_special),
      cmocka_unit_test(test_extremes_with_indices),
      cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_gather),
      cmocka_unit_test(test_index_select),
      cmocka_unit_test(test_cat),
      cmocka_unit_test(test_matmul),
      cmocka_unit_test(test_linear),
  };
  return cmocka_run_group_tests_name("core_kernels", tests, NULL, NULL);
}
