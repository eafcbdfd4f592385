/* test_gemm.c - the matrix-product backends (oneDNN, OpenBLAS), their thread settings,
 * and the fused linear + activation layer: values against plain float64 loops, the
 * fused layer against the unfused ops bit for bit, and bad arguments. */
#include "test_util.h"

static double act_of(int act, double z) {
  switch (act) {
  case MILE_ACT_RELU:
    return z > 0 ? z : 0;
  case MILE_ACT_TANH:
    return tanh(z);
  case MILE_ACT_SIGMOID:
    return 1 / (1 + exp(-z));
  default:
    return z;
  }
}

/* The first row-major element of `a`'s data where two tensors of one shape differ
 * in their bits, or -1. */
static int64_t first_bit_difference(const mile_tensor *a, const mile_tensor *b) {
  int64_t n = mile_numel(a);
  for (int64_t k = 0; k < n; k++) {
    double x = get_flat(a, k), y = get_flat(b, k);
    if (memcmp(&x, &y, sizeof x) != 0) return k;
  }
  return -1;
}

/* a [m,k] . b [k,n] with every transpose combination, in float32 and float64, on both
 * backends and with one thread or automatic threads, against float64 loops. */
static void test_matmul_backends(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 5);
  const int64_t dims[][3] = {{64, 256, 8}, {96, 4, 256}, {256, 256, 64}, {1, 256, 256}, {256, 1, 7}, {5, 3, 2}};
  const char *backends[] = {"onednn", "openblas"};
  for (int be = 0; be < 2; be++)
    for (int threads = 0; threads < 2; threads++) {
      OK(mile_set_gemm_backend(backends[be]));
      OK(mile_set_num_threads(threads));
      for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
        for (int dt = 0; dt < 2; dt++)
          for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
              int64_t m = dims[d][0], n = dims[d][1], k = dims[d][2];
              mile_dtype dtype = dt ? MILE_FLOAT64 : MILE_FLOAT32;
              mile_tensor *a =
                  make_input(&rng, dtype, 2, (int64_t[]){m, k}, ta ? LAYOUT_TRANSPOSED : LAYOUT_CONTIGUOUS, -1, 1);
              mile_tensor *b =
                  make_input(&rng, dtype, 2, (int64_t[]){k, n}, tb ? LAYOUT_TRANSPOSED : LAYOUT_CONTIGUOUS, -1, 1);
              mile_tensor *c = NULL;
              OK(mile_matmul(&c, a, b));
              for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                  double want = 0;
                  for (int64_t l = 0; l < k; l++)
                    want += get_at(a, (int64_t[]){i, l}) * get_at(b, (int64_t[]){l, j});
                  ASSERT_CLOSE(get_at(c, (int64_t[]){i, j}), want, dt ? 1e-12 : 1e-5, dt ? 1e-12 : 1e-5,
                               "%s threads %d [%lld x %lld x %lld] %s ta %d tb %d at (%lld, %lld)", backends[be],
                               threads, (long long)m, (long long)n, (long long)k, dt ? "f64" : "f32", ta, tb,
                               (long long)i, (long long)j);
                }
              mile_tensor_release(a), mile_tensor_release(b), mile_tensor_release(c);
            }
    }
  OK(mile_set_gemm_backend("onednn"));
  OK(mile_set_num_threads(0));
}

/* act(x W^T + b) against float64 loops, every activation, with and without bias. */
static void test_linear_act_values(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 6);
  for (int dt = 0; dt < 2; dt++)
    for (int act = 0; act < MILE_ACT_COUNT; act++)
      for (int bias = 0; bias < 2; bias++) {
        mile_dtype dtype = dt ? MILE_FLOAT64 : MILE_FLOAT32;
        int64_t rows = 70, in = 33, outf = 40;
        mile_tensor *x = rand_tensor(&rng, dtype, 2, (int64_t[]){rows, in}, -1, 1);
        mile_tensor *w = rand_tensor(&rng, dtype, 2, (int64_t[]){outf, in}, -1, 1);
        mile_tensor *b = bias ? rand_tensor(&rng, dtype, 1, (int64_t[]){outf}, -1, 1) : NULL, *y = NULL;
        OK(mile_linear_act(&y, x, w, b, (mile_activation)act));
        for (int64_t i = 0; i < rows; i++)
          for (int64_t j = 0; j < outf; j++) {
            double z = b ? get_at(b, (int64_t[]){j}) : 0;
            for (int64_t l = 0; l < in; l++)
              z += get_at(x, (int64_t[]){i, l}) * get_at(w, (int64_t[]){j, l});
            ASSERT_CLOSE(get_at(y, (int64_t[]){i, j}), act_of(act, z), dt ? 1e-12 : 1e-5, dt ? 1e-12 : 1e-5,
                         "%s %s bias %d at (%lld, %lld)", dt ? "f64" : "f32",
                         mile_activation_name((mile_activation)act), bias, (long long)i, (long long)j);
          }
        mile_tensor_release(x), mile_tensor_release(w), mile_tensor_release(b), mile_tensor_release(y);
      }
}

/* Fused and unfused layers give the same bits: outputs and the gradients of x, W, b. */
static void test_linear_act_fused_equals_unfused(void **state) {
  (void)state;
  static const mile_unary_op unfused[] = {MILE_UNARY_COUNT, MILE_RELU, MILE_TANH, MILE_SIGMOID};
  mile_rng rng;
  mile_rng_seed(&rng, 7);
  const int64_t shapes[][3] = {{1024, 256, 8}, {64, 256, 256}, {1, 256, 8}, {64, 4, 256}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int dt = 0; dt < 2; dt++)
      for (int act = 0; act < MILE_ACT_COUNT; act++) {
        mile_dtype dtype = dt ? MILE_FLOAT64 : MILE_FLOAT32;
        int64_t rows = shapes[s][0], outf = shapes[s][1], in = shapes[s][2];
        mile_tensor *leaf[2][3];
        mile_tensor *x0 = rand_tensor(&rng, dtype, 2, (int64_t[]){rows, in}, -1, 1);
        mile_tensor *w0 = rand_tensor(&rng, dtype, 2, (int64_t[]){outf, in}, -1, 1);
        mile_tensor *b0 = rand_tensor(&rng, dtype, 1, (int64_t[]){outf}, -1, 1);
        mile_tensor *seed = rand_tensor(&rng, dtype, 2, (int64_t[]){rows, outf}, -1, 1), *y[2];
        for (int fused = 0; fused < 2; fused++) {
          mile_tensor *src[3] = {x0, w0, b0};
          for (int i = 0; i < 3; i++) {
            OK(mile_clone(&leaf[fused][i], src[i]));
            OK(mile_set_requires_grad(leaf[fused][i], 1));
          }
          if (fused || act == MILE_ACT_NONE) {
            OK(mile_linear_act(&y[fused], leaf[fused][0], leaf[fused][1], leaf[fused][2], (mile_activation)act));
          } else {
            mile_tensor *z = NULL;
            OK(mile_linear(&z, leaf[fused][0], leaf[fused][1], leaf[fused][2]));
            OK(mile_unary(&y[fused], unfused[act], z));
            mile_tensor_release(z);
          }
          OK(mile_backward(y[fused], seed, 0));
        }
        const char *what = mile_activation_name((mile_activation)act);
        int64_t k = first_bit_difference(y[0], y[1]);
        if (k >= 0)
          fail_msg("[%lld x %lld x %lld] %s %s: outputs differ at %lld", (long long)rows, (long long)outf,
                   (long long)in, dt ? "f64" : "f32", what, (long long)k);
        for (int i = 0; i < 3; i++) {
          k = first_bit_difference(leaf[0][i]->grad, leaf[1][i]->grad);
          if (k >= 0)
            fail_msg("[%lld x %lld x %lld] %s %s: gradient of input %d differs at %lld", (long long)rows,
                     (long long)outf, (long long)in, dt ? "f64" : "f32", what, i, (long long)k);
        }
        for (int f = 0; f < 2; f++) {
          mile_tensor_release(y[f]);
          for (int i = 0; i < 3; i++)
            mile_tensor_release(leaf[f][i]);
        }
        mile_tensor_release(x0), mile_tensor_release(w0), mile_tensor_release(b0), mile_tensor_release(seed);
      }
}

static void test_bad_arguments(void **state) {
  (void)state;
  assert_int_equal(mile_set_gemm_backend("blis"), MILE_ERR_ARGUMENT);
  assert_non_null(strstr(mile_last_error(), "\"blis\""));
  assert_int_equal(mile_set_gemm_backend(NULL), MILE_ERR_ARGUMENT);
  assert_string_equal(mile_gemm_backend(), "onednn");
  assert_int_equal(mile_set_num_threads(-1), MILE_ERR_ARGUMENT);
  assert_int_equal(mile_set_num_threads(2000), MILE_ERR_ARGUMENT);
  OK(mile_set_num_threads(1));
  assert_int_equal(mile_num_threads(), 1);
  OK(mile_set_num_threads(0));
  assert_true(mile_max_threads() >= 1);
  assert_true(mile_parallel_flops() > 0);
  mile_tensor *x = NULL, *w = NULL, *y = NULL;
  OK(mile_zeros(&x, MILE_FLOAT32, 2, (int64_t[]){2, 3}));
  OK(mile_zeros(&w, MILE_FLOAT32, 2, (int64_t[]){4, 3}));
  assert_int_equal(mile_linear_act(&y, x, w, NULL, (mile_activation)99), MILE_ERR_ARGUMENT);
  assert_null(y);
  mile_tensor_release(x), mile_tensor_release(w);
}

/* A compiled chain: the same bits as mile_linear_act layer by layer (batch 1, 5 and a
 * strided input), float64 values against plain loops, and bad input. */
static void test_mlp_plan(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 8);
  const int64_t widths[] = {8, 64, 48, 4};
  const mile_activation acts[] = {MILE_ACT_RELU, MILE_ACT_TANH, MILE_ACT_NONE};
  for (int dt = 0; dt < 2; dt++) {
    mile_dtype dtype = dt ? MILE_FLOAT64 : MILE_FLOAT32;
    mile_tensor *w[3], *b[3];
    for (int i = 0; i < 3; i++) {
      w[i] = rand_tensor(&rng, dtype, 2, (int64_t[]){widths[i + 1], widths[i]}, -0.5, 0.5);
      b[i] = i == 1 ? NULL : rand_tensor(&rng, dtype, 1, (int64_t[]){widths[i + 1]}, -0.5, 0.5);
    }
    mile_mlp_plan *plan = NULL;
    OK(mile_mlp_plan_new(&plan, 3, w, b, acts));
    const int64_t batches[] = {1, 5, 300};
    for (int bi = 0; bi < 3; bi++)
      for (int strided = 0; strided < 2; strided++) {
        int64_t rows = batches[bi];
        mile_tensor *x =
            make_input(&rng, dtype, 2, (int64_t[]){rows, 8}, strided ? LAYOUT_TRANSPOSED : LAYOUT_CONTIGUOUS, -1, 1);
        mile_tensor *y = NULL, *h = mile_tensor_retain(x);
        OK(mile_mlp_plan_run(plan, x, &y));
        assert_shape(y, 2, (int64_t[]){rows, 4});
        for (int i = 0; i < 3; i++) { /* the ordinary layers */
          mile_tensor *next = NULL;
          OK(mile_linear_act(&next, h, w[i], b[i], acts[i]));
          mile_tensor_release(h);
          h = next;
        }
        int64_t k = first_bit_difference(y, h);
        if (k >= 0)
          fail_msg("plan %s batch %lld strided %d differs from the layers at %lld", dt ? "f64" : "f32", (long long)rows,
                   strided, (long long)k);
        if (dt) /* float64 against loops */
          for (int64_t r = 0; r < rows; r++) {
            double cur[64], nxt[64];
            for (int64_t j = 0; j < 8; j++)
              cur[j] = get_at(x, (int64_t[]){r, j});
            for (int i = 0; i < 3; i++) {
              for (int64_t o = 0; o < widths[i + 1]; o++) {
                double z = b[i] ? get_at(b[i], (int64_t[]){o}) : 0;
                for (int64_t j = 0; j < widths[i]; j++)
                  z += get_at(w[i], (int64_t[]){o, j}) * cur[j];
                nxt[o] = act_of(acts[i], z);
              }
              memcpy(cur, nxt, sizeof cur);
            }
            for (int64_t o = 0; o < 4; o++)
              ASSERT_CLOSE(get_at(y, (int64_t[]){r, o}), cur[o], 1e-12, 1e-12, "plan row %lld out %lld", (long long)r,
                           (long long)o);
          }
        mile_tensor_release(x), mile_tensor_release(y), mile_tensor_release(h);
      }
    /* bad input: the other dtype, a wrong width; nothing is written to *out */
    mile_tensor *bad = rand_tensor(&rng, dt ? MILE_FLOAT32 : MILE_FLOAT64, 2, (int64_t[]){2, 8}, -1, 1), *y = NULL;
    assert_int_equal(mile_mlp_plan_run(plan, bad, &y), MILE_ERR_DTYPE);
    assert_null(y);
    mile_tensor_release(bad);
    bad = rand_tensor(&rng, dtype, 2, (int64_t[]){2, 7}, -1, 1);
    assert_int_equal(mile_mlp_plan_run(plan, bad, &y), MILE_ERR_SHAPE);
    assert_non_null(strstr(mile_last_error(), "expected [..., 8]"));
    mile_tensor_release(bad);
    mile_mlp_plan_free(plan);
    /* chains that do not chain */
    mile_tensor *swapped[3] = {w[1], w[0], w[2]};
    assert_int_equal(mile_mlp_plan_new(&plan, 3, swapped, b, acts), MILE_ERR_SHAPE);
    assert_null(plan);
    assert_int_equal(mile_mlp_plan_new(&plan, 0, w, b, acts), MILE_ERR_ARGUMENT);
    for (int i = 0; i < 3; i++)
      mile_tensor_release(w[i]), mile_tensor_release(b[i]);
  }
}

/* The automatic thread choice must not change results: one thread and two give the
 * same bits on the shapes of mile's networks (oneDNN splits rows and columns, not the
 * sum, at these sizes), so a run does not depend on the threshold measured at start-up. */
static void test_threads_do_not_change_bits(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 9);
  const int64_t dims[][3] = {{1024, 256, 8},   {1024, 256, 256}, {1024, 4, 256}, {4, 256, 1024},
                             {256, 256, 1024}, {256, 8, 1024},   {64, 256, 256}, {256, 156, 1024}};
  for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
    for (int tb = 0; tb < 2; tb++) {
      int64_t m = dims[d][0], n = dims[d][1], k = dims[d][2];
      mile_tensor *a =
          make_input(&rng, MILE_FLOAT32, 2, (int64_t[]){m, k}, tb ? LAYOUT_TRANSPOSED : LAYOUT_CONTIGUOUS, -1, 1);
      mile_tensor *b = rand_tensor(&rng, MILE_FLOAT32, 2, (int64_t[]){k, n}, -1, 1), *c[2];
      for (int t = 0; t < 2; t++) {
        OK(mile_set_num_threads(t + 1));
        OK(mile_matmul(&c[t], a, b));
      }
      int64_t at = first_bit_difference(c[0], c[1]);
      if (at >= 0)
        fail_msg("[%lld x %lld x %lld] ta %d: 1 and 2 threads differ at %lld", (long long)m, (long long)n, (long long)k,
                 tb, (long long)at);
      mile_tensor_release(a), mile_tensor_release(b), mile_tensor_release(c[0]), mile_tensor_release(c[1]);
    }
  OK(mile_set_num_threads(0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matmul_backends),
      cmocka_unit_test(test_linear_act_values),
      cmocka_unit_test(test_linear_act_fused_equals_unfused),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_mlp_plan),
      cmocka_unit_test(test_threads_do_not_change_bits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
