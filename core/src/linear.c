/* linear.c - the affine layer act(x W^T + b), forward and backward, one node each.
 *
 * Forward is one gemm into the output and one pass that adds the bias and applies
 * the activation; backward is one pass for the activation's derivative (from the
 * saved output) and the two gemms. Unfused (linear, then the activation op) computes
 * the same expressions in the same order, so both give the same bits. */
#include <string.h>
#include <tgmath.h>

#include "fastmath.h"
#include "internal.h"

#define TANH(x) _Generic((x), float : mile_tanhf, default : tanh)(x)
#define EXP(x) _Generic((x), float : mile_expf, default : exp)(x)

const char *mile_activation_name(mile_activation act) {
  static const char *names[MILE_ACT_COUNT] = {"none", "relu", "tanh", "sigmoid"};
  return (unsigned)act < MILE_ACT_COUNT ? names[act] : "unknown";
}

/* The elementwise passes split over threads (mile_parallel_for) from
 * MILE_PASS_PARALLEL elements on: each element's expression is the same on any thread. */
typedef struct pass_args {
  void *out;
  const void *a, *b; /* bias_act: the bias; act_grad: g and y */
  int64_t cols;
  mile_activation act;
} pass_args;

/* y[r][j] = act(y[r][j] + b[j]) over rows x cols (b may be NULL); the expressions are
 * elementwise.c's, so that fused and unfused layers agree to the bit. */
#define DEF_BIAS_ACT(T, SFX)                                                                                           \
  static void bias_act_range_##SFX(int64_t r0, int64_t r1, int part, void *ctx) {                                      \
    const pass_args *k = ctx;                                                                                          \
    const T *b = k->a;                                                                                                 \
    int64_t cols = k->cols;                                                                                            \
    for (int64_t r = r0; r < r1; r++) {                                                                                \
      T *row = (T *)k->out + r * cols;                                                                                 \
      if (b)                                                                                                           \
        for (int64_t j = 0; j < cols; j++)                                                                             \
          row[j] = row[j] + b[j];                                                                                      \
      switch (k->act) {                                                                                                \
      case MILE_ACT_RELU:                                                                                              \
        for (int64_t j = 0; j < cols; j++)                                                                             \
          row[j] = row[j] > 0 ? row[j] : 0;                                                                            \
        break;                                                                                                         \
      case MILE_ACT_TANH:                                                                                              \
        for (int64_t j = 0; j < cols; j++)                                                                             \
          row[j] = (T)TANH(row[j]);                                                                                    \
        break;                                                                                                         \
      case MILE_ACT_SIGMOID:                                                                                           \
        for (int64_t j = 0; j < cols; j++)                                                                             \
          row[j] = (T)(1 / (1 + EXP(-row[j])));                                                                        \
        break;                                                                                                         \
      default:                                                                                                         \
        break;                                                                                                         \
      }                                                                                                                \
    }                                                                                                                  \
  }                                                                                                                    \
  static void bias_act_##SFX(T *y, const T *b, int64_t rows, int64_t cols, mile_activation act) {                      \
    pass_args k = {y, b, NULL, cols, act};                                                                             \
    mile_parallel_for(rows, mile_pass_threads(rows *cols), bias_act_range_##SFX, &k);                                  \
  }                                                                                                                    \
  /* gz = g * act'(y), from the output y */                                                                            \
  static void act_grad_range_##SFX(int64_t i0, int64_t i1, int part, void *ctx) {                                      \
    const pass_args *k = ctx;                                                                                          \
    T *gz = k->out;                                                                                                    \
    const T *g = k->a, *y = k->b;                                                                                      \
    switch (k->act) {                                                                                                  \
    case MILE_ACT_RELU:                                                                                                \
      for (int64_t i = i0; i < i1; i++)                                                                                \
        gz[i] = y[i] > 0 ? g[i] : 0;                                                                                   \
      break;                                                                                                           \
    case MILE_ACT_TANH:                                                                                                \
      for (int64_t i = i0; i < i1; i++)                                                                                \
        gz[i] = (T)(g[i] * (1 - y[i] * y[i]));                                                                         \
      break;                                                                                                           \
    default:                                                                                                           \
      for (int64_t i = i0; i < i1; i++)                                                                                \
        gz[i] = (T)(g[i] * y[i] * (1 - y[i]));                                                                         \
      break;                                                                                                           \
    }                                                                                                                  \
  }                                                                                                                    \
  static void act_grad_##SFX(T *gz, const T *g, const T *y, int64_t n, mile_activation act) {                          \
    pass_args k = {gz, g, y, 0, act};                                                                                  \
    mile_parallel_for(n, mile_pass_threads(n), act_grad_range_##SFX, &k);                                              \
  }
DEF_BIAS_ACT(float, f32)
DEF_BIAS_ACT(double, f64)

void mile_bias_act(mile_dtype dtype, void *y, const void *bias, int64_t rows, int64_t cols, mile_activation act) {
  if (!bias && act == MILE_ACT_NONE) return;
  if (dtype == MILE_FLOAT64)
    bias_act_f64(y, bias, rows, cols, act);
  else
    bias_act_f32(y, bias, rows, cols, act);
}

/* saved: 0 = x as 2-d [rows, in], 1 = W, 2 = the output (when act is not none);
 * iparam[0] = act, iparam[1] = x's ndim, iparam[2..] = x's shape */
static mile_status linear_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *x2, *w, *y = NULL, *gc = NULL, *gz = NULL, *t = NULL;
  mile_activation act = (mile_activation)node->iparam[0];
  MILE_TRY(mile_node_saved(node, 0, &x2));
  MILE_TRY(mile_node_saved(node, 1, &w));
  if (act != MILE_ACT_NONE) MILE_TRY(mile_node_saved(node, 2, &y));
  int64_t rows = x2->shape[0], in = x2->shape[1], outf = w->shape[0];
  int64_t gshape[2] = {rows, outf};
  mile_status st = MILE_OK;
  if (act == MILE_ACT_NONE) {
    st = mile_reshape(&gz, g, 2, gshape);
  } else { /* the activation's derivative, on contiguous copies of g and y */
    mile_tensor *yc = NULL;
    st = mile_contiguous(&gc, g);
    if (st == MILE_OK) st = mile_contiguous(&yc, y);
    if (st == MILE_OK) st = mile_empty(&gz, (mile_dtype)g->dtype, 2, gshape);
    if (st == MILE_OK) {
      if (g->dtype == MILE_FLOAT64)
        act_grad_f64(mile_data(gz), mile_data(gc), mile_data(yc), rows * outf, act);
      else
        act_grad_f32(mile_data(gz), mile_data(gc), mile_data(yc), rows * outf, act);
    }
    mile_tensor_release(yc);
  }
  if (st == MILE_OK && node->needs[0]) { /* gx = gz . W, in x's shape */
    int64_t shape[2] = {rows, in};
    st = mile_empty(&t, (mile_dtype)g->dtype, 2, shape);
    if (st == MILE_OK) st = mile_gemm_tensors(gz, w, 0.0, mile_data(t), in);
    if (st == MILE_OK) st = mile_reshape(&grads[0], t, (int32_t)node->iparam[1], node->iparam + 2);
    mile_tensor_release(t), t = NULL;
  }
  if (st == MILE_OK && node->needs[1]) { /* gW = gz^T . x */
    int64_t shape[2] = {outf, in};
    st = mile_empty(&grads[1], (mile_dtype)g->dtype, 2, shape);
    if (st == MILE_OK) st = mile_transpose(&t, gz, 0, 1);
    if (st == MILE_OK) st = mile_gemm_tensors(t, x2, 0.0, mile_data(grads[1]), in);
    mile_tensor_release(t);
  }
  if (st == MILE_OK && node->n_inputs == 3 && node->needs[2]) /* gb = column sums of gz */
    st = mile_reduce(&grads[2], MILE_SUM, gz, 0, 0);
  mile_tensor_release(gz), mile_tensor_release(gc);
  return st;
}

mile_status mile_linear_act(mile_tensor **out, mile_tensor *x, mile_tensor *weight, mile_tensor *bias,
                            mile_activation act) {
  *out = NULL;
  char s1[96], s2[96];
  if ((unsigned)act >= MILE_ACT_COUNT)
    return mile_set_error(MILE_ERR_ARGUMENT, "linear: unknown activation %d", (int)act);
  MILE_TRY(mile_check_same_dtype("linear", x, weight));
  if (bias) MILE_TRY(mile_check_same_dtype("linear", x, bias));
  if (weight->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != weight->shape[1])
    return mile_set_error(MILE_ERR_SHAPE, "linear: input %s does not match weight %s (expected [..., %lld])",
                          mile_shape_str(x, s1, sizeof s1), mile_shape_str(weight, s2, sizeof s2),
                          weight->ndim == 2 ? (long long)weight->shape[1] : -1LL);
  int64_t in = weight->shape[1], outf = weight->shape[0];
  if (bias && (bias->ndim != 1 || bias->shape[0] != outf))
    return mile_set_error(MILE_ERR_SHAPE, "linear: bias %s does not match %lld outputs",
                          mile_shape_str(bias, s1, sizeof s1), (long long)outf);
  int64_t rows = mile_shape_numel(x->ndim - 1, x->shape), shape[MILE_MAX_DIMS]; /* also when in = 0 */
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = outf;

  int32_t previous = mile_set_grad_enabled(0);
  mile_tensor *x2 = NULL, *wt = NULL, *bc = NULL;
  int64_t x2shape[2] = {rows, in};
  mile_status st = mile_reshape(&x2, x, 2, x2shape);
  if (st == MILE_OK) st = mile_empty(out, (mile_dtype)x->dtype, x->ndim, shape);
  if (st == MILE_OK) st = mile_transpose(&wt, weight, 0, 1);
  if (st == MILE_OK) st = mile_gemm_tensors(x2, wt, 0.0, mile_data(*out), outf);
  if (st == MILE_OK && bias) st = mile_contiguous(&bc, bias);
  if (st == MILE_OK) mile_bias_act((mile_dtype)x->dtype, mile_data(*out), bc ? mile_data(bc) : NULL, rows, outf, act);
  mile_tensor_release(wt), mile_tensor_release(bc);
  mile_set_grad_enabled(previous);

  mile_node *node = NULL;
  mile_tensor *inputs[3] = {x, weight, bias};
  if (st == MILE_OK)
    st =
        mile_record(*out, act == MILE_ACT_NONE ? "linear" : "linear_act", linear_backward, bias ? 3 : 2, inputs, &node);
  if (node) {
    node->iparam[0] = act;
    node->iparam[1] = x->ndim;
    for (int32_t i = 0; i < x->ndim; i++)
      node->iparam[2 + i] = x->shape[i];
    mile_node_save(node, x2);
    mile_node_save(node, weight);
    if (act != MILE_ACT_NONE && st == MILE_OK) st = mile_node_save(node, *out);
  }
  mile_tensor_release(x2);
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}

mile_status mile_linear(mile_tensor **out, mile_tensor *x, mile_tensor *weight, mile_tensor *bias) {
  return mile_linear_act(out, x, weight, bias, MILE_ACT_NONE);
}
