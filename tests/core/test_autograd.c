/* test_autograd.c - reverse-mode gradients of every differentiable op against
 * central finite differences in float64, and the engine's rules: retain_graph,
 * freed graphs, grad mode, detach, in-place checks on saved tensors, custom
 * nodes with C callbacks (and failing ones), long chains, graph lifetime. */
#include "test_util.h"

/* ---- gradcheck ------------------------------------------------------------------------- */

/* A function of n float64 tensors; ctx carries the op's parameters. */
typedef mile_status (*fn_t)(mile_tensor **out, mile_tensor *const *in, const void *ctx);

/* sum(f(in) * w) in double, with grad mode off. */
static double weighted(fn_t f, mile_tensor *const *in, const void *ctx, const mile_tensor *w) {
  mile_tensor *out = NULL;
  OK(f(&out, in, ctx));
  double s = 0;
  for (int64_t k = 0; k < mile_numel(out); k++) s += get_flat(out, k) * get_flat(w, k);
  mile_tensor_release(out);
  return s;
}

/* Check the gradient of sum(f(in) * w) for a random w against central differences, for
 * every input with wrt[i] (all when wrt is NULL). Also: a second backward of the same
 * graph (retain_graph on the first) doubles every gradient, and a third one, after a
 * backward without retain_graph, fails with MILE_ERR_STATE. */
static void gradcheck(const char *name, fn_t f, const void *ctx, int n, mile_tensor *const *in, const int *wrt) {
  enum { MAX_IN = 8 };
  assert_true(n <= MAX_IN);
  mile_rng rng;
  mile_rng_seed(&rng, 1234);
  for (int i = 0; i < n; i++) {
    assert_int_equal(in[i]->dtype, MILE_FLOAT64);
    mile_zero_grad(in[i]);
    OK(mile_set_requires_grad(in[i], !wrt || wrt[i]));
  }
  mile_tensor *out = NULL;
  OK(f(&out, in, ctx));
  if (!out->grad_fn) fail_msg("%s: no grad_fn on the output", name);
  assert_true(mile_requires_grad(out));
  mile_tensor *w = rand_tensor(&rng, MILE_FLOAT64, out->ndim, out->shape, -1, 1);

  OK(mile_backward(out, w, 1));
  double *analytic[MAX_IN] = {0};
  for (int i = 0; i < n; i++) {
    if (wrt && !wrt[i]) {
      if (in[i]->grad) fail_msg("%s: input %d got a gradient without requiring one", name, i);
      continue;
    }
    mile_tensor *g = in[i]->grad;
    if (!g) fail_msg("%s: input %d has no gradient", name, i);
    assert_shape(g, in[i]->ndim, in[i]->shape);
    assert_int_equal(g->dtype, MILE_FLOAT64);
    assert_null(g->grad_fn);
    analytic[i] = malloc(sizeof(double) * (size_t)(mile_numel(g) + 1));
    for (int64_t k = 0; k < mile_numel(g); k++) analytic[i][k] = get_flat(g, k);
  }
  OK(mile_backward(out, w, 0)); /* the retained graph runs again: gradients double */
  for (int i = 0; i < n; i++)
    for (int64_t k = 0; analytic[i] && k < mile_numel(in[i]); k++)
      ASSERT_CLOSE(get_flat(in[i]->grad, k), 2 * analytic[i][k], 1e-12, 1e-300, "%s: second backward, input %d", name,
                   i);
  EXPECT_ERR(MILE_ERR_STATE, mile_backward(out, w, 0)); /* the graph was freed */
  mile_tensor_release(out);

  const double h = 1e-6;
  int32_t previous = mile_set_grad_enabled(0);
  for (int i = 0; i < n; i++) {
    if (!analytic[i]) continue;
    for (int64_t k = 0; k < mile_numel(in[i]); k++) {
      double x0 = get_flat(in[i], k);
      set_flat(in[i], k, x0 + h);
      double fp = weighted(f, in, ctx, w);
      set_flat(in[i], k, x0 - h);
      double fm = weighted(f, in, ctx, w);
      set_flat(in[i], k, x0);
      double numeric = (fp - fm) / (2 * h);
      ASSERT_CLOSE(analytic[i][k], numeric, 1e-5, 1e-6, "%s: d/d input %d element %lld", name, i, (long long)k);
    }
    free(analytic[i]);
  }
  mile_set_grad_enabled(previous);
  for (int i = 0; i < n; i++) {
    mile_zero_grad(in[i]);
    OK(mile_set_requires_grad(in[i], 0));
  }
  mile_tensor_release(w);
}

static void release_all(int n, mile_tensor **t) {
  for (int i = 0; i < n; i++) mile_tensor_release(t[i]);
}

/* Push every element at least `gap` away from 0 (for ops with a kink there). */
static void away_from_zero(mile_tensor *t, double gap) {
  for (int64_t k = 0; k < mile_numel(t); k++) {
    double v = get_flat(t, k);
    set_flat(t, k, v >= 0 ? v + gap : v - gap);
  }
}

typedef struct op_ctx {
  int op;
  int32_t dim, keepdim;
  double s, lo, hi;
  int first;
  mile_tensor *aux;
  int64_t shape[MILE_MAX_DIMS];
  int32_t ndim;
} op_ctx;

#define C(ctx) ((const op_ctx *)(ctx))

static mile_status f_unary(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_unary(o, (mile_unary_op)C(c)->op, in[0]);
}
static mile_status f_binary(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_binary(o, (mile_binary_op)C(c)->op, in[0], in[1]);
}
static mile_status f_binary_scalar(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_binary_scalar(o, (mile_binary_op)C(c)->op, in[0], C(c)->s, C(c)->first);
}
static mile_status f_clamp(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_clamp(o, in[0], C(c)->lo, C(c)->hi);
}
static mile_status f_where(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_where(o, C(c)->aux, in[0], in[1]);
}
static mile_status f_reduce(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_reduce(o, (mile_reduce_op)C(c)->op, in[0], C(c)->dim, C(c)->keepdim);
}
static mile_status f_extreme_dim(mile_tensor **o, mile_tensor *const *in, const void *c) {
  mile_tensor *idx = NULL;
  mile_status st = C(c)->op == MILE_MAX ? mile_max_dim(o, &idx, in[0], C(c)->dim, C(c)->keepdim)
                                        : mile_min_dim(o, &idx, in[0], C(c)->dim, C(c)->keepdim);
  if (idx && idx->grad_fn) fail_msg("indices of max_dim/min_dim must not have a grad_fn");
  mile_tensor_release(idx);
  return st;
}
static mile_status f_softmax(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return C(c)->op ? mile_log_softmax(o, in[0], C(c)->dim) : mile_softmax(o, in[0], C(c)->dim);
}
static mile_status f_gather(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_gather(o, in[0], C(c)->dim, C(c)->aux);
}
static mile_status f_index_select(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_index_select(o, in[0], C(c)->dim, C(c)->aux);
}
static mile_status f_cat(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_cat(o, C(c)->op, in, C(c)->dim);
}
static mile_status f_matmul(mile_tensor **o, mile_tensor *const *in, const void *c) {
  (void)c;
  return mile_matmul(o, in[0], in[1]);
}
static mile_status f_linear(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_linear_act(o, in[0], in[1], C(c)->op ? in[2] : NULL, (mile_activation)C(c)->dim);
}

/* ---- gradchecks of the elementwise ops ------------------------------------------------- */

static void test_grad_unary(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 31);
  const int64_t shape[2] = {3, 4};
  for (int op = 0; op < MILE_UNARY_COUNT; op++)
    for (int l = 0; l < LAYOUT_EXPANDED; l++) { /* leaves: every layout but stride 0 */
      double lo = -2, hi = 2;
      if (op == MILE_LOG || op == MILE_SQRT) lo = 0.2;
      if (op == MILE_LOG1P) lo = -0.5;
      mile_tensor *x = make_input(&rng, MILE_FLOAT64, 2, shape, (layout)l, lo, hi);
      if (op == MILE_ABS || op == MILE_RELU) away_from_zero(x, 0.05);
      op_ctx c = {.op = op};
      char name[64];
      snprintf(name, sizeof name, "%s (%s)", mile_unary_name((mile_unary_op)op), layout_name((layout)l));
      gradcheck(name, f_unary, &c, 1, &x, NULL);
      mile_tensor_release(x);
    }
  /* the normal CDF and its log in both tails and across the branch points at -20 and 0 */
  mile_tensor *x = tensor_of(MILE_FLOAT64, 1, (int64_t[]){10},
                             (double[]){-30, -20.01, -19.99, -8, -2, -1e-3, 1e-3, 1, 4, 7});
  for (int op = MILE_NORMAL_CDF; op <= MILE_LOG_NORMAL_CDF; op++) {
    op_ctx c = {.op = op};
    gradcheck(mile_unary_name((mile_unary_op)op), f_unary, &c, 1, &x, NULL);
  }
  mile_tensor_release(x);
  /* a 0-d input */
  mile_tensor *s = NULL;
  OK(mile_scalar(&s, MILE_FLOAT64, 0.7));
  op_ctx c = {.op = MILE_TANH};
  gradcheck("tanh 0-d", f_unary, &c, 1, &s, NULL);
  mile_tensor_release(s);
}

typedef struct shape_pair {
  int32_t na, nb;
  int64_t a[3], b[3];
} shape_pair;

static void test_grad_binary(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 32);
  const shape_pair shapes[] = {
      {3, 2, {3, 1, 4}, {2, 1}}, {2, 0, {2, 3}, {0}}, {0, 2, {0}, {2, 3}}, {2, 2, {3, 4}, {3, 4}}, {1, 2, {4}, {3, 4}},
  };
  for (int op = 0; op <= MILE_MINIMUM; op++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (int l = 0; l < LAYOUT_EXPANDED; l++) {
        double alo = -2, ahi = 2, blo = -2, bhi = 2;
        if (op == MILE_POW) alo = 0.3;
        mile_tensor *in[2];
        in[0] = make_input(&rng, MILE_FLOAT64, shapes[s].na, shapes[s].a, (layout)l, alo, ahi);
        in[1] = make_input(&rng, MILE_FLOAT64, shapes[s].nb, shapes[s].b, (layout)((l + 1) % LAYOUT_EXPANDED), blo,
                           bhi);
        if (op == MILE_DIV) away_from_zero(in[1], 0.5);
        op_ctx c = {.op = op};
        char name[64];
        snprintf(name, sizeof name, "%s shapes #%zu %s", mile_binary_name((mile_binary_op)op), s,
                 layout_name((layout)l));
        gradcheck(name, f_binary, &c, 2, in, NULL);
        /* one side only */
        gradcheck(name, f_binary, &c, 2, in, (int[]){0, 1});
        release_all(2, in);
      }
  /* the same tensor on both sides: x*x, x/x, pow(x, x) */
  mile_tensor *x = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){2, 3}, LAYOUT_TRANSPOSED, 0.5, 2);
  const mile_binary_op same[3] = {MILE_MUL, MILE_DIV, MILE_POW};
  for (int i = 0; i < 3; i++) {
    op_ctx c = {.op = same[i]};
    gradcheck("x op x", f_binary, &c, 2, (mile_tensor *[]){x, x}, NULL);
  }
  /* scalar operand on either side */
  const mile_binary_op sops[4] = {MILE_SUB, MILE_DIV, MILE_POW, MILE_MAXIMUM};
  for (int i = 0; i < 4; i++)
    for (int first = 0; first < 2; first++) {
      op_ctx c = {.op = sops[i], .s = 1.3, .first = first};
      gradcheck("binary_scalar", f_binary_scalar, &c, 1, &x, NULL);
    }
  mile_tensor_release(x);

  /* comparisons are not differentiable: no graph */
  mile_tensor *a = make_input(&rng, MILE_FLOAT64, 1, (int64_t[]){3}, LAYOUT_CONTIGUOUS, -1, 1), *y = NULL;
  OK(mile_set_requires_grad(a, 1));
  for (int op = MILE_EQ; op < MILE_BINARY_COUNT; op++) {
    OK(mile_binary(&y, (mile_binary_op)op, a, a));
    assert_null(y->grad_fn);
    assert_false(mile_requires_grad(y));
    mile_tensor_release(y);
  }
  mile_tensor_release(a);
}

/* Random broadcasting shape pairs (up to 4 dims, size-1 dims on either side) and layouts. */
static void test_grad_broadcast_fuzz(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 606);
  const mile_binary_op ops[5] = {MILE_ADD, MILE_SUB, MILE_MUL, MILE_DIV, MILE_MAXIMUM};
  for (int iter = 0; iter < 60; iter++) {
    int32_t nd = 1 + (int32_t)mile_rng_below(&rng, 4);
    int64_t full[4], sa[4], sb[4];
    for (int32_t d = 0; d < nd; d++) full[d] = 1 + (int64_t)mile_rng_below(&rng, 3);
    int32_t na = nd - (int32_t)mile_rng_below(&rng, 2), nb = nd - (int32_t)mile_rng_below(&rng, (uint64_t)nd + 1);
    for (int32_t d = 0; d < na; d++) sa[d] = mile_rng_below(&rng, 3) ? full[d + nd - na] : 1;
    for (int32_t d = 0; d < nb; d++) sb[d] = mile_rng_below(&rng, 3) ? full[d + nd - nb] : 1;
    mile_tensor *in[2];
    in[0] = make_input(&rng, MILE_FLOAT64, na, sa, (layout)mile_rng_below(&rng, LAYOUT_EXPANDED), -2, 2);
    in[1] = make_input(&rng, MILE_FLOAT64, nb, sb, (layout)mile_rng_below(&rng, LAYOUT_EXPANDED), -2, 2);
    away_from_zero(in[1], 0.5);
    op_ctx c = {.op = ops[iter % 5]};
    char name[64];
    snprintf(name, sizeof name, "fuzz %s #%d", mile_binary_name(ops[iter % 5]), iter);
    gradcheck(name, f_binary, &c, 2, in, NULL);
    release_all(2, in);
  }
}

static void test_grad_clamp_where(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 33);
  for (int l = 0; l < LAYOUT_EXPANDED; l++) {
    mile_tensor *x = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){3, 4}, (layout)l, -1, 1);
    /* keep values away from the bounds */
    for (int64_t k = 0; k < 12; k++) {
      double v = get_flat(x, k);
      if (fabs(v - 0.4) < 0.02 || fabs(v + 0.3) < 0.02) set_flat(x, k, v + 0.05);
    }
    op_ctx c = {.lo = -0.3, .hi = 0.4};
    gradcheck("clamp", f_clamp, &c, 1, &x, NULL);
    op_ctx open = {.lo = -INFINITY, .hi = 0.4};
    gradcheck("clamp open below", f_clamp, &open, 1, &x, NULL);
    mile_tensor_release(x);
  }
  /* where: cond broadcast against a and b of different shapes */
  mile_tensor *cond = tensor_of(MILE_FLOAT64, 3, (int64_t[]){2, 1, 3}, (double[]){1, 0, 1, 0, 0, 1});
  for (int l = 0; l < LAYOUT_EXPANDED; l++) {
    mile_tensor *in[2];
    in[0] = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){4, 3}, (layout)l, -1, 1);
    in[1] = make_input(&rng, MILE_FLOAT64, 1, (int64_t[]){3}, LAYOUT_NARROWED, -1, 1);
    op_ctx c = {.aux = cond};
    gradcheck("where", f_where, &c, 2, in, NULL);
    release_all(2, in);
  }
  mile_tensor_release(cond);
}

/* ---- reductions, softmax, index ops ------------------------------------------------------ */

static void test_grad_reductions(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 34);
  const int64_t shape[3] = {2, 3, 4};
  for (int l = 0; l < LAYOUT_EXPANDED; l++) {
    mile_tensor *x = make_input(&rng, MILE_FLOAT64, 3, shape, (layout)l, -2, 2);
    for (int op = 0; op < MILE_REDUCE_COUNT; op++)
      for (int32_t dim = MILE_ALL_DIMS; dim < 3; dim++)
        for (int keep = 0; keep < 2; keep++) {
          op_ctx c = {.op = op, .dim = dim, .keepdim = keep};
          char name[64];
          snprintf(name, sizeof name, "%s dim %d keepdim %d %s", mile_reduce_name((mile_reduce_op)op), dim, keep,
                   layout_name((layout)l));
          gradcheck(name, f_reduce, &c, 1, &x, NULL);
          if (dim >= 0 && (op == MILE_MAX || op == MILE_MIN))
            gradcheck(op == MILE_MAX ? "max_dim" : "min_dim", f_extreme_dim, &c, 1, &x, NULL);
        }
    for (int32_t dim = 0; dim < 3; dim++)
      for (int lg = 0; lg < 2; lg++) {
        op_ctx c = {.op = lg, .dim = dim};
        gradcheck(lg ? "log_softmax" : "softmax", f_softmax, &c, 1, &x, NULL);
      }
    mile_tensor_release(x);
  }
  /* ties in max: the gradient is shared equally (a subgradient; checked directly) */
  mile_tensor *t = tensor_of(MILE_FLOAT64, 1, (int64_t[]){4}, (double[]){1, 3, 3, 2}), *y = NULL;
  OK(mile_set_requires_grad(t, 1));
  OK(mile_reduce(&y, MILE_MAX, t, MILE_ALL_DIMS, 0));
  OK(mile_backward(y, NULL, 0));
  assert_true(get_flat(t->grad, 0) == 0 && get_flat(t->grad, 1) == 0.5 && get_flat(t->grad, 2) == 0.5 &&
              get_flat(t->grad, 3) == 0);
  mile_tensor_release(y), mile_tensor_release(t);
}

static void test_grad_index_ops(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 35);
  for (int l = 0; l < LAYOUT_EXPANDED; l++) {
    mile_tensor *x = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){3, 4}, (layout)l, -1, 1);
    /* gather along dim 1 with repeated positions (the backward must add them up) */
    mile_tensor *ix = tensor_of(MILE_FLOAT32, 2, (int64_t[]){3, 5}, (double[]){0, 3, 3, 1, 0, 2, 2, 2, 2, 2, 1, 0, 3, 1, 0});
    op_ctx g1 = {.dim = 1, .aux = ix};
    gradcheck("gather dim 1", f_gather, &g1, 1, &x, NULL);
    mile_tensor_release(ix);
    ix = tensor_of(MILE_FLOAT64, 2, (int64_t[]){2, 4}, (double[]){2, 0, 1, 2, 2, 2, 0, 1});
    op_ctx g0 = {.dim = 0, .aux = ix};
    gradcheck("gather dim 0", f_gather, &g0, 1, &x, NULL);
    mile_tensor_release(ix);
    /* index_select with repeats */
    ix = tensor_of(MILE_FLOAT64, 1, (int64_t[]){5}, (double[]){3, 1, 3, 0, 3});
    op_ctx s1 = {.dim = 1, .aux = ix};
    gradcheck("index_select dim 1", f_index_select, &s1, 1, &x, NULL);
    mile_tensor_release(ix);
    ix = tensor_of(MILE_FLOAT64, 1, (int64_t[]){2}, (double[]){2, 2});
    op_ctx s0 = {.dim = 0, .aux = ix};
    gradcheck("index_select dim 0", f_index_select, &s0, 1, &x, NULL);
    mile_tensor_release(ix);
    mile_tensor_release(x);
  }
  /* cat of three inputs along each dim; the middle one does not require grad */
  for (int32_t dim = 0; dim < 3; dim++) {
    mile_tensor *in[3];
    for (int i = 0; i < 3; i++) {
      int64_t s[3] = {2, 3, 2};
      s[dim] = i + 1;
      in[i] = make_input(&rng, MILE_FLOAT64, 3, s, (layout)(i % LAYOUT_EXPANDED), -1, 1);
    }
    op_ctx c = {.op = 3, .dim = dim};
    gradcheck("cat", f_cat, &c, 3, in, NULL);
    gradcheck("cat partial", f_cat, &c, 3, in, (int[]){1, 0, 1});
    release_all(3, in);
  }
}

/* ---- matmul and linear ----------------------------------------------------------------- */

static void test_grad_matmul_linear(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 36);
  const shape_pair mm[] = {
      {2, 2, {3, 4}, {4, 2}}, {3, 3, {2, 3, 4}, {2, 4, 2}}, {3, 2, {2, 3, 4}, {4, 2}},
      {2, 3, {3, 4}, {2, 4, 2}}, {2, 2, {1, 3}, {3, 1}}, {2, 2, {3, 1}, {1, 2}},
  };
  for (size_t s = 0; s < sizeof mm / sizeof mm[0]; s++)
    for (int la = 0; la < LAYOUT_EXPANDED; la++) {
      mile_tensor *in[2];
      in[0] = make_input(&rng, MILE_FLOAT64, mm[s].na, mm[s].a, (layout)la, -1, 1);
      in[1] = make_input(&rng, MILE_FLOAT64, mm[s].nb, mm[s].b, (layout)((la + 2) % LAYOUT_EXPANDED), -1, 1);
      char name[64];
      snprintf(name, sizeof name, "matmul #%zu %s", s, layout_name((layout)la));
      gradcheck(name, f_matmul, NULL, 2, in, NULL);
      gradcheck(name, f_matmul, NULL, 2, in, (int[]){0, 1});
      gradcheck(name, f_matmul, NULL, 2, in, (int[]){1, 0});
      release_all(2, in);
    }
  struct {
    int32_t nx;
    int64_t x[3];
  } xs[] = {{2, {5, 4}}, {3, {2, 3, 4}}, {1, {4}}};
  for (size_t c = 0; c < sizeof xs / sizeof xs[0]; c++)
    for (int l = 0; l < LAYOUT_EXPANDED; l++)
      for (int bias = 0; bias < 2; bias++)
        for (int act = 0; act < MILE_ACT_COUNT; act++) {
          mile_tensor *in[3];
          in[0] = make_input(&rng, MILE_FLOAT64, xs[c].nx, xs[c].x, (layout)l, -1, 1);
          in[1] = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){3, 4}, (layout)((l + 1) % LAYOUT_EXPANDED), -1, 1);
          in[2] = make_input(&rng, MILE_FLOAT64, 1, (int64_t[]){3}, (layout)((l + 2) % LAYOUT_EXPANDED), -1, 1);
          op_ctx ctx = {.op = bias, .dim = act};
          char name[64];
          snprintf(name, sizeof name, "linear x #%zu %s bias %d %s", c, layout_name((layout)l), bias,
                   mile_activation_name((mile_activation)act));
          gradcheck(name, f_linear, &ctx, bias ? 3 : 2, in, NULL);
          gradcheck(name, f_linear, &ctx, bias ? 3 : 2, in, (int[]){0, 1, 1});
          gradcheck(name, f_linear, &ctx, bias ? 3 : 2, in, (int[]){1, 0, 0});
          release_all(3, in);
        }
}

/* ---- views and copies ------------------------------------------------------------------ */

static mile_status f_transpose(mile_tensor **o, mile_tensor *const *in, const void *c) {
  (void)c;
  return mile_transpose(o, in[0], 0, 2);
}
static mile_status f_permute(mile_tensor **o, mile_tensor *const *in, const void *c) {
  (void)c;
  return mile_permute(o, in[0], (int32_t[]){1, 2, 0});
}
static mile_status f_narrow(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_narrow(o, in[0], C(c)->dim, 1, in[0]->shape[C(c)->dim] - 1);
}
static mile_status f_select(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_select(o, in[0], C(c)->dim, 1);
}
static mile_status f_view(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_view(o, in[0], C(c)->ndim, C(c)->shape);
}
static mile_status f_reshape(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_reshape(o, in[0], C(c)->ndim, C(c)->shape);
}
static mile_status f_expand(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_expand(o, in[0], C(c)->ndim, C(c)->shape);
}
static mile_status f_unsqueeze(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_unsqueeze(o, in[0], C(c)->dim);
}
static mile_status f_squeeze(mile_tensor **o, mile_tensor *const *in, const void *c) {
  return mile_squeeze(o, in[0], C(c)->dim);
}
static mile_status f_contiguous(mile_tensor **o, mile_tensor *const *in, const void *c) {
  (void)c;
  return mile_contiguous(o, in[0]);
}
static mile_status f_clone(mile_tensor **o, mile_tensor *const *in, const void *c) {
  (void)c;
  return mile_clone(o, in[0]);
}

/* A small network: log_softmax(tanh(x W1^T + b1) W2^T) picked by gather, plus x reused. */
static mile_status f_network(mile_tensor **o, mile_tensor *const *in, const void *c) {
  mile_tensor *h = NULL, *t = NULL, *z = NULL, *lp = NULL, *pick = NULL, *xs = NULL, *sq = NULL;
  mile_status st = mile_linear(&h, in[0], in[1], in[2]);
  if (st == MILE_OK) st = mile_unary(&t, MILE_TANH, h);
  if (st == MILE_OK) st = mile_linear(&z, t, in[3], NULL);
  if (st == MILE_OK) st = mile_log_softmax(&lp, z, 1);
  if (st == MILE_OK) st = mile_gather(&pick, lp, 1, C(c)->aux);
  if (st == MILE_OK) st = mile_reduce(&xs, MILE_SUM, in[0], 1, 1); /* x used a second time */
  if (st == MILE_OK) st = mile_binary(&sq, MILE_MUL, xs, xs);
  if (st == MILE_OK) st = mile_binary(o, MILE_ADD, pick, sq);
  mile_tensor_release(h), mile_tensor_release(t), mile_tensor_release(z), mile_tensor_release(lp);
  mile_tensor_release(pick), mile_tensor_release(xs), mile_tensor_release(sq);
  return st;
}

static void test_grad_views(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 37);
  const int64_t shape[3] = {2, 3, 4};
  for (int l = 0; l < LAYOUT_EXPANDED; l++) {
    mile_tensor *x = make_input(&rng, MILE_FLOAT64, 3, shape, (layout)l, -1, 1);
    op_ctx c = {0};
    gradcheck("transpose", f_transpose, &c, 1, &x, NULL);
    gradcheck("permute", f_permute, &c, 1, &x, NULL);
    if (!mile_is_contiguous(x)) gradcheck("contiguous", f_contiguous, &c, 1, &x, NULL); /* else x itself */
    gradcheck("clone", f_clone, &c, 1, &x, NULL);
    for (int32_t d = 0; d < 3; d++) {
      c.dim = d;
      gradcheck("narrow", f_narrow, &c, 1, &x, NULL);
      gradcheck("select", f_select, &c, 1, &x, NULL);
      gradcheck("unsqueeze", f_unsqueeze, &c, 1, &x, NULL);
    }
    c.dim = 3;
    gradcheck("unsqueeze last", f_unsqueeze, &c, 1, &x, NULL);
    op_ctx r = {.ndim = 2, .shape = {4, -1}};
    gradcheck("reshape", f_reshape, &r, 1, &x, NULL); /* copies for non-contiguous layouts */
    if (mile_is_contiguous(x)) gradcheck("view", f_view, &r, 1, &x, NULL);
    mile_tensor_release(x);
  }
  /* expand (stride 0) and squeeze */
  mile_tensor *x = make_input(&rng, MILE_FLOAT64, 3, (int64_t[]){3, 1, 2}, LAYOUT_CONTIGUOUS, -1, 1);
  op_ctx e = {.ndim = 4, .shape = {2, 3, 4, -1}};
  gradcheck("expand", f_expand, &e, 1, &x, NULL);
  op_ctx s = {.dim = 1};
  gradcheck("squeeze", f_squeeze, &s, 1, &x, NULL);
  s.dim = -1;
  gradcheck("squeeze all", f_squeeze, &s, 1, &x, NULL);
  mile_tensor_release(x);

  /* a small network with a shared input */
  mile_tensor *in[4];
  in[0] = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){4, 3}, LAYOUT_TRANSPOSED, -1, 1);
  in[1] = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){5, 3}, LAYOUT_CONTIGUOUS, -1, 1);
  in[2] = make_input(&rng, MILE_FLOAT64, 1, (int64_t[]){5}, LAYOUT_CONTIGUOUS, -1, 1);
  in[3] = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){2, 5}, LAYOUT_NARROWED, -1, 1);
  mile_tensor *ix = tensor_of(MILE_FLOAT64, 2, (int64_t[]){4, 1}, (double[]){0, 1, 1, 0});
  op_ctx nc = {.aux = ix};
  gradcheck("network", f_network, &nc, 4, in, NULL);
  release_all(4, in);
  mile_tensor_release(ix);
}

static void test_grad_to_dtype(void **state) {
  (void)state;
  /* float64 -> float32: the gradient comes back as float64 */
  mile_tensor *x = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3}), *y = NULL, *z = NULL;
  mile_tensor *seed = tensor_of(MILE_FLOAT32, 1, (int64_t[]){3}, (double[]){0.5, -1, 2});
  OK(mile_set_requires_grad(x, 1));
  OK(mile_to_dtype(&y, x, MILE_FLOAT32));
  assert_string_equal(mile_grad_fn_name(y), "to_dtype");
  OK(mile_binary_scalar(&z, MILE_MUL, y, 3, 0));
  OK(mile_backward(z, seed, 0));
  assert_int_equal(x->grad->dtype, MILE_FLOAT64);
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(x->grad, k) == 3 * get_flat(seed, k));
  mile_tensor_release(z), mile_tensor_release(y), mile_tensor_release(seed), mile_tensor_release(x);
}

/* ---- the engine's rules ------------------------------------------------------------------ */

static void test_retain_graph_and_freed_graph(void **state) {
  (void)state;
  mile_tensor *x = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3}), *w = NULL, *y = NULL, *s = NULL;
  w = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){4, 5, 6});
  OK(mile_set_requires_grad(x, 1));
  OK(mile_binary(&y, MILE_MUL, x, w));
  OK(mile_reduce(&s, MILE_SUM, y, MILE_ALL_DIMS, 0));
  assert_int_equal(w->refcount, 3); /* the user, the node's input, the saved tensor */
  OK(mile_backward(s, NULL, 1));
  OK(mile_backward(s, NULL, 1));
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(x->grad, k) == 2 * get_flat(w, k));
  assert_null(w->grad); /* w does not require grad */
  OK(mile_backward(s, NULL, 0));
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(x->grad, k) == 3 * get_flat(w, k));
  assert_int_equal(w->refcount, 2); /* saved tensors were dropped */
  EXPECT_ERR(MILE_ERR_STATE, mile_backward(s, NULL, 0));
  EXPECT_ERR(MILE_ERR_STATE, mile_backward(s, NULL, 1));
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(x->grad, k) == 3 * get_flat(w, k)); /* untouched */
  mile_tensor_release(s), mile_tensor_release(y);
  assert_int_equal(w->refcount, 1);
  assert_int_equal(x->refcount, 1);

  /* a fresh graph accumulates into the same .grad; zero_grad drops it */
  OK(mile_binary(&y, MILE_MUL, x, w));
  OK(mile_reduce(&s, MILE_SUM, y, MILE_ALL_DIMS, 0));
  OK(mile_backward(s, NULL, 0));
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(x->grad, k) == 4 * get_flat(w, k));
  mile_zero_grad(x);
  assert_null(x->grad);
  mile_tensor_release(s), mile_tensor_release(y), mile_tensor_release(w), mile_tensor_release(x);
}

static void test_backward_errors_and_leaves(void **state) {
  (void)state;
  mile_tensor *x = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3}), *y = NULL, *seed = NULL;
  EXPECT_ERR(MILE_ERR_STATE, mile_backward(x, NULL, 0)); /* does not require grad */
  OK(mile_set_requires_grad(x, 1));
  assert_true(mile_requires_grad(x));
  assert_null(mile_grad_fn_name(x));
  OK(mile_unary(&y, MILE_EXP, x));
  assert_string_equal(mile_grad_fn_name(y), "exp");
  assert_true(mile_requires_grad(y));
  assert_int_equal(y->requires_grad, 0);
  EXPECT_ERR(MILE_ERR_STATE, mile_set_requires_grad(y, 0)); /* not a leaf */
  EXPECT_ERR(MILE_ERR_SHAPE, mile_backward(y, NULL, 0));    /* 3 elements need a seed */
  OK(mile_zeros(&seed, MILE_FLOAT64, 1, (int64_t[]){4}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_backward(y, seed, 0));
  mile_tensor_release(seed);
  /* a float32 seed for a float64 root is converted */
  seed = tensor_of(MILE_FLOAT32, 1, (int64_t[]){3}, (double[]){1, 0.5, 0.25});
  OK(mile_backward(y, seed, 0));
  for (int64_t k = 0; k < 3; k++) ASSERT_CLOSE(get_flat(x->grad, k), exp(get_flat(x, k)) * get_flat(seed, k), 1e-15, 0, "exp'");
  mile_tensor_release(seed), mile_tensor_release(y);

  /* backward from a leaf: its own gradient is the seed */
  mile_tensor *s = NULL;
  OK(mile_scalar(&s, MILE_FLOAT32, 2));
  OK(mile_set_requires_grad(s, 1));
  OK(mile_backward(s, NULL, 0));
  OK(mile_backward(s, NULL, 0));
  double g;
  OK(mile_item(s->grad, &g));
  assert_true(g == 2.0);
  mile_tensor_release(s), mile_tensor_release(x);
}

static void test_no_grad_and_detach(void **state) {
  (void)state;
  mile_tensor *x = tensor_of(MILE_FLOAT64, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4}), *y = NULL, *d = NULL;
  OK(mile_set_requires_grad(x, 1));
  assert_true(mile_grad_enabled());
  assert_int_equal(mile_set_grad_enabled(0), 1);
  assert_false(mile_grad_enabled());
  OK(mile_unary(&y, MILE_TANH, x));
  assert_null(y->grad_fn);
  assert_false(mile_requires_grad(y));
  mile_tensor_release(y);
  OK(mile_matmul(&y, x, x));
  assert_null(y->grad_fn);
  mile_tensor_release(y);
  OK(mile_transpose(&y, x, 0, 1));
  assert_null(y->grad_fn);
  mile_tensor_release(y);
  assert_int_equal(x->refcount, 1); /* nothing kept x alive */
  assert_int_equal(mile_set_grad_enabled(1), 0);
  assert_true(mile_grad_enabled());

  OK(mile_detach(&d, x));
  assert_ptr_equal(mile_data(d), mile_data(x));
  assert_null(d->grad_fn);
  assert_false(mile_requires_grad(d));
  OK(mile_unary(&y, MILE_EXP, d));
  assert_null(y->grad_fn);
  mile_tensor_release(y);
  /* detach of a non-leaf cuts the graph */
  mile_tensor *e = NULL, *de = NULL, *z = NULL;
  OK(mile_unary(&e, MILE_EXP, x));
  OK(mile_detach(&de, e));
  assert_null(de->grad_fn);
  OK(mile_binary(&z, MILE_MUL, de, x));
  OK(mile_backward(z, de, 0)); /* dz/dx = de (only the explicit factor) */
  for (int64_t k = 0; k < 4; k++) ASSERT_CLOSE(get_flat(x->grad, k), exp(2 * get_flat(x, k)), 1e-15, 0, "detach");
  mile_tensor_release(z), mile_tensor_release(de), mile_tensor_release(e), mile_tensor_release(d);
  mile_tensor_release(x);
}

static void test_inplace_on_saved_tensor(void **state) {
  (void)state;
  mile_tensor *a = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3}), *b = NULL, *y = NULL, *s = NULL;
  b = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){4, 5, 6});
  OK(mile_set_requires_grad(a, 1));
  OK(mile_set_requires_grad(b, 1));
  OK(mile_binary(&y, MILE_MUL, a, b));
  OK(mile_reduce(&s, MILE_SUM, y, MILE_ALL_DIMS, 0));
  OK(mile_fill_(a, 2)); /* a is saved by mul */
  EXPECT_ERR(MILE_ERR_STATE, mile_backward(s, NULL, 0));
  assert_non_null(strstr(mile_last_error(), "mul"));
  mile_tensor_release(s), mile_tensor_release(y);
  mile_zero_grad(a), mile_zero_grad(b);

  /* through a view, and through copy_ and set */
  mile_tensor *v = NULL, *src = NULL;
  OK(mile_binary(&y, MILE_MUL, a, b));
  OK(mile_reduce(&s, MILE_SUM, y, MILE_ALL_DIMS, 0));
  OK(mile_narrow(&v, b, 0, 1, 1));
  OK(mile_scalar(&src, MILE_FLOAT64, 9));
  mile_set_grad_enabled(0);
  mile_tensor *v2 = NULL;
  OK(mile_narrow(&v2, b, 0, 1, 1));
  mile_set_grad_enabled(1);
  OK(mile_copy_(v2, src));
  EXPECT_ERR(MILE_ERR_STATE, mile_backward(s, NULL, 0));
  mile_tensor_release(s), mile_tensor_release(y), mile_tensor_release(v), mile_tensor_release(v2);
  mile_tensor_release(src);

  /* the saved output of exp changed in place */
  mile_tensor *e = NULL;
  OK(mile_unary(&e, MILE_EXP, a));
  OK(mile_reduce(&s, MILE_SUM, e, MILE_ALL_DIMS, 0));
  OK(mile_set(e, (int64_t[]){0}, 0));
  EXPECT_ERR(MILE_ERR_STATE, mile_backward(s, NULL, 0));
  mile_tensor_release(s), mile_tensor_release(e);

  /* where reads its condition in backward: changing it is an error too */
  mile_tensor *cond = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 0, 1});
  OK(mile_where(&y, cond, a, b));
  OK(mile_reduce(&s, MILE_SUM, y, MILE_ALL_DIMS, 0));
  OK(mile_fill_(cond, 0));
  EXPECT_ERR(MILE_ERR_STATE, mile_backward(s, NULL, 0));
  mile_tensor_release(s), mile_tensor_release(y), mile_tensor_release(cond);
  mile_zero_grad(a), mile_zero_grad(b);

  /* an in-place change before the op is used is fine */
  OK(mile_binary(&y, MILE_MUL, a, b));
  OK(mile_reduce(&s, MILE_SUM, y, MILE_ALL_DIMS, 0));
  mile_zero_grad(a);
  OK(mile_backward(s, NULL, 0));
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(a->grad, k) == get_flat(b, k));
  mile_tensor_release(s), mile_tensor_release(y), mile_tensor_release(a), mile_tensor_release(b);
}

/* ---- custom nodes ------------------------------------------------------------------------ */

static int freed_users;

typedef struct user_data {
  double k;        /* gradient of input i is k (i + 1) g */
  int fail;        /* allocate a gradient, then fail */
  int small;       /* return a 0-d gradient k * sum(g) (broadcast by the engine) */
  int as_float32;  /* return float32 gradients */
} user_data;

static void free_user(void *u) {
  freed_users++;
  free(u);
}

static user_data *new_user(double k) {
  user_data *u = calloc(1, sizeof *u);
  u->k = k;
  return u;
}

/* A backward that hands out a tensor its user data keeps (user is a mile_tensor). */
static mile_status shared_backward(void *user, mile_tensor *g, int32_t n, mile_tensor **grads) {
  (void)g, (void)n;
  grads[0] = mile_tensor_retain(user);
  return MILE_OK;
}
static void release_user_tensor(void *user) { mile_tensor_release(user); }

static mile_status scale_backward(void *user, mile_tensor *g, int32_t n, mile_tensor **grads) {
  user_data *u = user;
  if (u->fail) {
    if (mile_binary_scalar(&grads[0], MILE_MUL, g, 1.0, 0) != MILE_OK) return MILE_ERR_NOMEM;
    return mile_set_error(MILE_ERR_CALLBACK, "custom op failed on purpose (%d)", 42);
  }
  for (int32_t i = 0; i < n; i++) {
    mile_tensor *t = NULL;
    mile_status st;
    if (u->small) {
      mile_tensor *s = NULL;
      st = mile_reduce(&s, MILE_SUM, g, MILE_ALL_DIMS, 0);
      if (st == MILE_OK) st = mile_binary_scalar(&t, MILE_MUL, s, u->k * (i + 1), 0);
      mile_tensor_release(s);
    } else {
      st = mile_binary_scalar(&t, MILE_MUL, g, u->k * (i + 1), 0);
    }
    if (st == MILE_OK && u->as_float32) {
      mile_tensor *f = NULL;
      st = mile_to_dtype(&f, t, MILE_FLOAT32);
      mile_tensor_release(t);
      t = f;
    }
    if (st != MILE_OK) return st;
    grads[i] = t;
  }
  return MILE_OK;
}

/* y = sum_i k (i + 1) x_i computed with grad mode off, then given a custom node. */
static mile_tensor *custom_forward(int n, mile_tensor *const *x, user_data *u, const char *name) {
  int32_t previous = mile_set_grad_enabled(0);
  mile_tensor *y = NULL;
  OK(mile_zeros(&y, MILE_FLOAT64, x[0]->ndim, x[0]->shape));
  for (int i = 0; i < n; i++) {
    if (!x[i]) continue;
    mile_tensor *t = NULL, *s = NULL;
    OK(mile_binary_scalar(&t, MILE_MUL, x[i], u->k * (i + 1), 0));
    OK(mile_binary(&s, MILE_ADD, y, t));
    mile_tensor_release(t), mile_tensor_release(y);
    y = s;
  }
  mile_set_grad_enabled(previous);
  OK(mile_attach_custom(y, n, x, scale_backward, free_user, u, name));
  return y;
}

static void test_custom_node(void **state) {
  (void)state;
  freed_users = 0;
  mile_tensor *x = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3}), *s = NULL;
  OK(mile_set_requires_grad(x, 1));
  mile_tensor *y = custom_forward(1, &x, new_user(2.5), "scale");
  assert_string_equal(mile_grad_fn_name(y), "scale");
  OK(mile_reduce(&s, MILE_SUM, y, MILE_ALL_DIMS, 0));
  OK(mile_backward(s, NULL, 1));
  OK(mile_backward(s, NULL, 0));
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(x->grad, k) == 5.0);
  assert_int_equal(freed_users, 0);
  mile_tensor_release(s);
  mile_tensor_release(y);
  assert_int_equal(freed_users, 1); /* the node died with its output */
  assert_int_equal(x->refcount, 1);
  mile_zero_grad(x);

  /* gradcheck through a custom node with five inputs (one NULL, one without grad) */
  mile_tensor *in[5];
  for (int i = 0; i < 5; i++) in[i] = i == 1 ? NULL : tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
  OK(mile_set_requires_grad(in[0], 1));
  OK(mile_set_requires_grad(in[3], 1));
  OK(mile_set_requires_grad(in[4], 1));
  y = custom_forward(5, in, new_user(0.5), NULL);
  assert_string_equal(mile_grad_fn_name(y), "custom");
  mile_tensor *seed = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, -1, 2});
  OK(mile_backward(y, seed, 0));
  const double want[5] = {0.5, 0, 0, 2.0, 2.5};
  for (int i = 0; i < 5; i++) {
    if (i == 1) continue;
    if (i == 2) {
      assert_null(in[i]->grad);
      continue;
    }
    for (int64_t k = 0; k < 3; k++) assert_true(get_flat(in[i]->grad, k) == want[i] * get_flat(seed, k));
  }
  mile_tensor_release(y), mile_tensor_release(seed);
  assert_int_equal(freed_users, 2);
  for (int i = 0; i < 5; i++) mile_tensor_release(in[i]);

  /* float32 gradients for a float64 input are converted; a 0-d gradient is broadcast */
  user_data *u = new_user(3);
  u->as_float32 = 1, u->small = 1;
  y = custom_forward(1, &x, u, "small");
  seed = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 4});
  OK(mile_backward(y, seed, 0));
  assert_shape(x->grad, 1, (int64_t[]){3});
  assert_int_equal(x->grad->dtype, MILE_FLOAT64);
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(x->grad, k) == 21.0);
  mile_zero_grad(x);
  mile_tensor_release(y), mile_tensor_release(seed);
  assert_int_equal(freed_users, 3);
  mile_tensor_release(x);

  /* a gradient the callback still shares (here {3} for a {1,3} input) is copied into
   * .grad, never aliased: changing the callback's tensor later leaves .grad alone */
  mile_tensor *x13 = tensor_of(MILE_FLOAT64, 2, (int64_t[]){1, 3}, (double[]){1, 2, 3}), *out = NULL;
  mile_tensor *kept = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){7, 8, 9});
  OK(mile_set_requires_grad(x13, 1));
  OK(mile_zeros(&out, MILE_FLOAT64, 0, NULL));
  OK(mile_attach_custom(out, 1, &x13, shared_backward, release_user_tensor, mile_tensor_retain(kept), "shared"));
  OK(mile_backward(out, NULL, 0));
  assert_shape(x13->grad, 2, (int64_t[]){1, 3});
  OK(mile_fill_(kept, 0));
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(x13->grad, k) == 7.0 + (double)k);
  mile_tensor_release(out), mile_tensor_release(x13);
  assert_int_equal(kept->refcount, 1);
  mile_tensor_release(kept);
}

static void test_custom_node_errors(void **state) {
  (void)state;
  freed_users = 0;
  mile_tensor *x = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3}), *s = NULL;
  OK(mile_set_requires_grad(x, 1));

  /* a failing callback: its status and message come back from mile_backward */
  user_data *u = new_user(1);
  u->fail = 1;
  mile_tensor *y = custom_forward(1, &x, u, "failing");
  OK(mile_reduce(&s, MILE_SUM, y, MILE_ALL_DIMS, 0));
  EXPECT_ERR(MILE_ERR_CALLBACK, mile_backward(s, NULL, 1));
  assert_string_equal(mile_last_error(), "custom op failed on purpose (42)");
  assert_null(x->grad);
  EXPECT_ERR(MILE_ERR_CALLBACK, mile_backward(s, NULL, 0)); /* the same again, nothing freed */
  mile_tensor_release(s), mile_tensor_release(y);
  assert_int_equal(freed_users, 1);

  /* no input requires grad: user data is freed at once, nothing attached */
  mile_tensor *c = tensor_of(MILE_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3}), *out = NULL;
  OK(mile_zeros(&out, MILE_FLOAT64, 1, (int64_t[]){3}));
  OK(mile_attach_custom(out, 1, &c, scale_backward, free_user, new_user(1), "noop"));
  assert_int_equal(freed_users, 2);
  assert_null(out->grad_fn);
  /* grad mode off: the same */
  mile_set_grad_enabled(0);
  OK(mile_attach_custom(out, 1, &x, scale_backward, free_user, new_user(1), "off"));
  mile_set_grad_enabled(1);
  assert_int_equal(freed_users, 3);
  assert_null(out->grad_fn);
  /* misuse: NULL backward, an output that already has a grad_fn; user data freed */
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_attach_custom(out, 1, &x, NULL, free_user, new_user(1), "null"));
  assert_int_equal(freed_users, 4);
  mile_tensor *e = NULL;
  OK(mile_unary(&e, MILE_EXP, x));
  EXPECT_ERR(MILE_ERR_STATE, mile_attach_custom(e, 1, &x, scale_backward, free_user, new_user(1), "twice"));
  assert_int_equal(freed_users, 5);
  assert_string_equal(mile_grad_fn_name(e), "exp");
  EXPECT_ERR(MILE_ERR_STATE, mile_attach_custom(x, 1, &c, scale_backward, free_user, new_user(1), "leaf"));
  assert_int_equal(freed_users, 6);
  mile_tensor_release(e), mile_tensor_release(out), mile_tensor_release(c), mile_tensor_release(x);
}

/* ---- lifetime ---------------------------------------------------------------------------- */

/* 100k ops in a chain: backward and freeing are loops, not recursion. */
static void test_long_chain(void **state) {
  (void)state;
  enum { N = 100000 };
  mile_tensor *x = NULL;
  OK(mile_scalar(&x, MILE_FLOAT64, 0.5));
  OK(mile_set_requires_grad(x, 1));
  for (int pass = 0; pass < 2; pass++) {
    mile_tensor *y = mile_tensor_retain(x);
    double dydx = 1;
    for (int i = 0; i < N; i++) {
      mile_tensor *next = NULL;
      if (i % 3 == 0) {
        OK(mile_binary_scalar(&next, MILE_MUL, y, 1.000001, 0));
        dydx *= 1.000001;
      } else if (i % 3 == 1) {
        OK(mile_unary(&next, MILE_NEG, y));
        dydx = -dydx;
      } else {
        OK(mile_binary_scalar(&next, MILE_ADD, y, 0.25, 0));
      }
      mile_tensor_release(y);
      y = next;
    }
    if (pass == 0) { /* backward, then free; pass 1 frees a graph that still holds its saved tensors */
      OK(mile_backward(y, NULL, 0));
      double g;
      OK(mile_item(x->grad, &g));
      ASSERT_CLOSE(g, dydx, 1e-12, 0, "gradient through the chain");
    }
    mile_tensor_release(y);
    assert_int_equal(x->refcount, 1);
    mile_zero_grad(x);
  }
  mile_tensor_release(x);
}

/* Everything a graph holds is released with its output: the inputs' refcounts and
 * storages come back, custom user data is freed. (ASan/valgrind runs catch the rest.) */
static void test_graph_freed_with_output(void **state) {
  (void)state;
  freed_users = 0;
  mile_rng rng;
  mile_rng_seed(&rng, 38);
  mile_tensor *x = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){4, 3}, LAYOUT_CONTIGUOUS, -1, 1);
  mile_tensor *w = make_input(&rng, MILE_FLOAT64, 2, (int64_t[]){5, 3}, LAYOUT_CONTIGUOUS, -1, 1);
  OK(mile_set_requires_grad(x, 1));
  OK(mile_set_requires_grad(w, 1));
  for (int with_backward = 0; with_backward < 2; with_backward++) {
    mile_tensor *h = NULL, *t = NULL, *c = NULL, *l = NULL;
    OK(mile_linear(&h, x, w, NULL));
    OK(mile_unary(&t, MILE_SIGMOID, h));
    mile_tensor *custom = custom_forward(1, &t, new_user(2), "c");
    OK(mile_log_softmax(&c, custom, 1));
    OK(mile_reduce(&l, MILE_MEAN, c, MILE_ALL_DIMS, 0));
    mile_tensor_release(h), mile_tensor_release(t), mile_tensor_release(custom), mile_tensor_release(c);
    assert_true(x->refcount > 1);
    if (with_backward) OK(mile_backward(l, NULL, 1));
    mile_tensor_release(l);
    assert_int_equal(x->refcount, 1);
    assert_int_equal(w->refcount, 1);
    assert_int_equal(mile_storage_refcount(x), 1);
    assert_int_equal(mile_storage_refcount(w), 1);
    assert_int_equal(freed_users, with_backward + 1);
  }
  mile_tensor_release(x), mile_tensor_release(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grad_unary),
      cmocka_unit_test(test_grad_binary),
      cmocka_unit_test(test_grad_broadcast_fuzz),
      cmocka_unit_test(test_grad_clamp_where),
      cmocka_unit_test(test_grad_reductions),
      cmocka_unit_test(test_grad_index_ops),
      cmocka_unit_test(test_grad_matmul_linear),
      cmocka_unit_test(test_grad_views),
      cmocka_unit_test(test_grad_to_dtype),
      cmocka_unit_test(test_retain_graph_and_freed_graph),
      cmocka_unit_test(test_backward_errors_and_leaves),
      cmocka_unit_test(test_no_grad_and_detach),
      cmocka_unit_test(test_inplace_on_saved_tensor),
      cmocka_unit_test(test_custom_node),
      cmocka_unit_test(test_custom_node_errors),
      cmocka_unit_test(test_long_chain),
      cmocka_unit_test(test_graph_freed_with_output),
  };
  return cmocka_run_group_tests_name("core_autograd", tests, NULL, NULL);
}
