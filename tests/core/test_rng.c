/* test_rng.c - the seeded generator: reproducibility, and the distributions of
 * uniform, normal, categorical and randperm draws checked with statistical bounds
 * (fixed seeds, so the checks are deterministic; bounds are 5 sigma or p = 1e-4). */
#include "test_util.h"

/* The xoshiro256** reference algorithm with splitmix64 seeding (Blackman & Vigna), written
 * here from the published description to check the generator's raw stream. */
static uint64_t ref_splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t ref_next(uint64_t s[4]) {
  uint64_t result = ref_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = ref_rotl(s[3], 45);
  return result;
}

static void test_reproducible(void **state) {
  (void)state;
  mile_rng a, b;
  mile_rng_seed(&a, 42);
  mile_rng_seed(&b, 42);
  uint64_t ref[4], x = 42;
  for (int i = 0; i < 4; i++) ref[i] = ref_splitmix(&x);
  for (int i = 0; i < 1000; i++) {
    uint64_t va = mile_rng_next(&a);
    assert_true(va == mile_rng_next(&b));
    assert_true(va == ref_next(ref));
  }
  /* a different seed gives a different stream */
  mile_rng c;
  mile_rng_seed(&c, 43);
  int same = 0;
  for (int i = 0; i < 100; i++) same += mile_rng_next(&a) == mile_rng_next(&c);
  assert_int_equal(same, 0);
  /* heap generators and reseeding */
  mile_rng *h = mile_rng_new(42);
  assert_non_null(h);
  mile_rng_seed(&a, 42);
  for (int i = 0; i < 10; i++) assert_true(mile_rng_uniform(h) == mile_rng_uniform(&a));
  mile_rng_free(h);
  mile_rng_free(NULL);

  /* tensors: bit-identical for the same seed, in both dtypes, whatever the strides */
  for (int dti = 0; dti < 2; dti++) {
    mile_tensor *t1 = NULL, *t2 = NULL, *base = NULL, *tr = NULL;
    const int64_t shape[2] = {3, 5};
    OK(mile_empty(&t1, (mile_dtype)dti, 2, shape));
    OK(mile_empty(&base, (mile_dtype)dti, 2, (int64_t[]){5, 3}));
    OK(mile_transpose(&tr, base, 0, 1));
    mile_rng_seed(&a, 7);
    OK(mile_normal_(t1, &a, 1, 2));
    mile_rng_seed(&a, 7);
    OK(mile_normal_(tr, &a, 1, 2));
    for (int64_t k = 0; k < 15; k++) assert_true(get_flat(t1, k) == get_flat(tr, k)); /* logical order */
    mile_rng_seed(&a, 7);
    OK(mile_empty(&t2, (mile_dtype)dti, 2, shape));
    OK(mile_normal_(t2, &a, 1, 2));
    assert_memory_equal(mile_data(t1), mile_data(t2), 15 * mile_dtype_size((mile_dtype)dti));
    mile_tensor_release(t1), mile_tensor_release(t2), mile_tensor_release(tr), mile_tensor_release(base);
  }
}

static void test_uniform(void **state) {
  (void)state;
  enum { N = 400000 };
  mile_rng rng;
  mile_rng_seed(&rng, 2024);
  double sum = 0, sum2 = 0, lo = 1, hi = 0;
  int64_t bins[10] = {0};
  for (int i = 0; i < N; i++) {
    double u = mile_rng_uniform(&rng);
    assert_true(u >= 0 && u < 1);
    sum += u, sum2 += u * u;
    lo = fmin(lo, u), hi = fmax(hi, u);
    bins[(int)(u * 10)]++;
  }
  double mean = sum / N, var = sum2 / N - mean * mean;
  /* mean 1/2 with sd sqrt(1/12/N); variance 1/12 with sd sqrt((1/80 - 1/144)/N) */
  assert_true(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / N));
  assert_true(fabs(var - 1.0 / 12) < 5 * sqrt((1.0 / 80 - 1.0 / 144) / N));
  assert_true(lo < 1e-4 && hi > 1 - 1e-4);
  double chi2 = 0;
  for (int b = 0; b < 10; b++) chi2 += (bins[b] - N / 10.0) * (bins[b] - N / 10.0) / (N / 10.0);
  assert_true(chi2 < 33.7); /* 9 degrees of freedom, p = 1e-4 */

  /* uniform_ on a tensor: range and mean in both dtypes */
  for (int dti = 0; dti < 2; dti++) {
    mile_tensor *t = NULL;
    const int64_t n = 100000;
    OK(mile_empty(&t, (mile_dtype)dti, 1, &n));
    OK(mile_uniform_(t, &rng, -2, 6));
    double s = 0;
    for (int64_t k = 0; k < n; k++) {
      double v = get_flat(t, k);
      assert_true(v >= -2 && v <= 6);
      s += v;
    }
    assert_true(fabs(s / (double)n - 2) < 5 * 8 * sqrt(1.0 / 12 / (double)n));
    EXPECT_ERR(MILE_ERR_ARGUMENT, mile_uniform_(t, &rng, 1, 0));
    EXPECT_ERR(MILE_ERR_ARGUMENT, mile_uniform_(t, &rng, 0, INFINITY));
    EXPECT_ERR(MILE_ERR_ARGUMENT, mile_uniform_(t, &rng, NAN, 1));
    EXPECT_ERR(MILE_ERR_ARGUMENT, mile_uniform_(t, NULL, 0, 1));
    mile_tensor_release(t);
  }
}

static void test_below(void **state) {
  (void)state;
  enum { N = 70000, K = 7 };
  mile_rng rng;
  mile_rng_seed(&rng, 5);
  int64_t counts[K] = {0};
  for (int i = 0; i < N; i++) {
    uint64_t v = mile_rng_below(&rng, K);
    assert_true(v < K);
    counts[v]++;
  }
  double chi2 = 0;
  for (int k = 0; k < K; k++) chi2 += (counts[k] - N / (double)K) * (counts[k] - N / (double)K) / (N / (double)K);
  assert_true(chi2 < 27.9); /* 6 degrees of freedom, p = 1e-4 */
  for (int i = 0; i < 100; i++) assert_true(mile_rng_below(&rng, 1) == 0);
  /* a bound that is not a power of two near 2^63 stays in range */
  for (int i = 0; i < 100; i++) assert_true(mile_rng_below(&rng, (1ULL << 63) + 12345) < (1ULL << 63) + 12345);
}

static void test_normal(void **state) {
  (void)state;
  enum { N = 400000 };
  mile_rng rng;
  mile_rng_seed(&rng, 99);
  double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  int64_t within1 = 0;
  for (int i = 0; i < N; i++) {
    double z = mile_rng_normal(&rng);
    assert_true(isfinite(z));
    s1 += z, s2 += z * z, s3 += z * z * z, s4 += z * z * z * z;
    within1 += fabs(z) < 1;
  }
  double mean = s1 / N, var = s2 / N - mean * mean;
  assert_true(fabs(mean) < 5 / sqrt(N));
  assert_true(fabs(var - 1) < 5 * sqrt(2.0 / N));
  assert_true(fabs(s3 / N) < 5 * sqrt(15.0 / N));     /* skewness 0: sd of the mean of z^3 */
  assert_true(fabs(s4 / N - 3) < 5 * sqrt(96.0 / N)); /* kurtosis 3: var of z^4 is 105 - 9 */
  /* P(|z| < 1) = 0.682689492137 */
  double p = 0.682689492137086;
  assert_true(fabs((double)within1 / N - p) < 5 * sqrt(p * (1 - p) / N));

  /* normal_ with mean and std, float32 */
  mile_tensor *t = NULL;
  const int64_t n = 200000;
  OK(mile_empty(&t, MILE_FLOAT32, 1, &n));
  OK(mile_normal_(t, &rng, -3, 0.5));
  double m = 0, q = 0;
  for (int64_t k = 0; k < n; k++) m += get_flat(t, k);
  m /= (double)n;
  for (int64_t k = 0; k < n; k++) q += (get_flat(t, k) - m) * (get_flat(t, k) - m);
  q /= (double)n;
  assert_true(fabs(m + 3) < 5 * 0.5 / sqrt((double)n));
  assert_true(fabs(q - 0.25) < 5 * 0.25 * sqrt(2.0 / (double)n));
  OK(mile_normal_(t, &rng, 1, 0)); /* std 0: constant */
  assert_true(get_flat(t, 17) == 1);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_normal_(t, &rng, 0, -1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_normal_(t, &rng, NAN, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_normal_(t, NULL, 0, 1));
  mile_tensor_release(t);
}

static void test_categorical(void **state) {
  (void)state;
  enum { ROWS = 40000, A = 5 };
  /* unnormalised probabilities with a zero class, rows expanded from one (stride 0) */
  const double w[A] = {1, 2, 0, 3, 4};
  const double total = 10;
  mile_rng rng;
  mile_rng_seed(&rng, 77);
  for (int dti = 0; dti < 2; dti++) {
    mile_tensor *row = tensor_of((mile_dtype)dti, 2, (int64_t[]){1, A}, w), *probs = NULL, *out = NULL;
    OK(mile_expand(&probs, row, 2, (int64_t[]){ROWS, A}));
    OK(mile_categorical(&out, &rng, probs));
    assert_shape(out, 1, (int64_t[]){ROWS});
    assert_int_equal(out->dtype, dti);
    int64_t counts[A] = {0};
    for (int64_t r = 0; r < ROWS; r++) {
      double v = get_flat(out, r);
      assert_true(v >= 0 && v < A && v == floor(v));
      counts[(int)v]++;
    }
    assert_int_equal(counts[2], 0); /* zero probability is never drawn */
    double chi2 = 0;
    for (int a = 0; a < A; a++) {
      if (w[a] == 0) continue;
      double e = ROWS * w[a] / total;
      chi2 += (counts[a] - e) * (counts[a] - e) / e;
    }
    assert_true(chi2 < 21.1); /* 3 degrees of freedom, p = 1e-4 */
    mile_tensor_release(out), mile_tensor_release(probs), mile_tensor_release(row);
  }

  /* one draw per row of a batch with different rows; a one-hot row always gives its class */
  mile_tensor *p = tensor_of(MILE_FLOAT64, 3, (int64_t[]){2, 2, 3}, (double[]){0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 5});
  mile_tensor *out = NULL;
  for (int rep = 0; rep < 20; rep++) {
    OK(mile_categorical(&out, &rng, p));
    assert_shape(out, 2, (int64_t[]){2, 2});
    assert_true(get_flat(out, 0) == 2 && get_flat(out, 1) == 1 && get_flat(out, 2) == 0 && get_flat(out, 3) == 2);
    mile_tensor_release(out);
  }
  mile_tensor_release(p);
  /* a 1-d probs tensor gives a 0-d result */
  p = tensor_of(MILE_FLOAT32, 1, (int64_t[]){2}, (double[]){0, 1});
  OK(mile_categorical(&out, &rng, p));
  assert_int_equal(out->ndim, 0);
  mile_tensor_release(out), mile_tensor_release(p);

  /* errors */
  out = (mile_tensor *)1;
  p = tensor_of(MILE_FLOAT64, 2, (int64_t[]){2, 2}, (double[]){0.5, 0.5, -0.1, 1});
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_categorical(&out, &rng, p));
  assert_null(out);
  OK(mile_set(p, (int64_t[]){1, 0}, 0));
  OK(mile_set(p, (int64_t[]){1, 1}, 0));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_categorical(&out, &rng, p)); /* a row of zeros */
  OK(mile_set(p, (int64_t[]){1, 1}, NAN));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_categorical(&out, &rng, p));
  OK(mile_set(p, (int64_t[]){1, 1}, INFINITY));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_categorical(&out, &rng, p));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_categorical(&out, NULL, p));
  mile_tensor_release(p);
  OK(mile_scalar(&p, MILE_FLOAT64, 1));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_categorical(&out, &rng, p));
  mile_tensor_release(p);
  OK(mile_zeros(&p, MILE_FLOAT64, 2, (int64_t[]){3, 0}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_categorical(&out, &rng, p));
  assert_null(out);
  mile_tensor_release(p);
}

static void test_randperm(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 3);
  enum { N = 1000 };
  int64_t perm[N], perm2[N];
  char seen[N];
  OK(mile_randperm(&rng, N, perm));
  memset(seen, 0, sizeof seen);
  int fixed = 0;
  for (int i = 0; i < N; i++) {
    assert_true(perm[i] >= 0 && perm[i] < N);
    assert_false(seen[perm[i]]);
    seen[perm[i]] = 1;
    fixed += perm[i] == i;
  }
  assert_true(fixed < 10); /* a shuffled identity has ~1 fixed point */
  /* the same seed gives the same permutation; the next draw another one */
  mile_rng_seed(&rng, 3);
  OK(mile_randperm(&rng, N, perm2));
  assert_memory_equal(perm, perm2, sizeof perm);
  OK(mile_randperm(&rng, N, perm2));
  assert_memory_not_equal(perm, perm2, sizeof perm);
  /* n = 0 and 1 */
  OK(mile_randperm(&rng, 0, perm));
  OK(mile_randperm(&rng, 1, perm));
  assert_true(perm[0] == 0);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_randperm(&rng, -1, perm));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_randperm(NULL, 3, perm));

  /* all 6 permutations of 3 are equally likely */
  enum { DRAWS = 60000 };
  int64_t counts[6] = {0};
  for (int i = 0; i < DRAWS; i++) {
    int64_t p[3];
    OK(mile_randperm(&rng, 3, p));
    int code = (int)(p[0] * 2 + (p[1] > p[2])); /* p[0] and the order of the other two */
    counts[code]++;
  }
  double chi2 = 0;
  for (int c = 0; c < 6; c++) chi2 += (counts[c] - DRAWS / 6.0) * (counts[c] - DRAWS / 6.0) / (DRAWS / 6.0);
  assert_true(chi2 < 25.7); /* 5 degrees of freedom, p = 1e-4 */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reproducible), cmocka_unit_test(test_uniform),     cmocka_unit_test(test_below),
      cmocka_unit_test(test_normal),       cmocka_unit_test(test_categorical), cmocka_unit_test(test_randperm),
  };
  return cmocka_run_group_tests_name("core_rng", tests, NULL, NULL);
}
