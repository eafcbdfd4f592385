/* plan.c - compiled inference passes through chains of linear layers (mile/plan.h).
 *
 * Each layer is the same mile_gemm call and the same epilogue as mile_linear_act
 * makes, so a plan gives the same bits; what it saves is the per-layer tensor, node
 * bookkeeping and (from Lua) the per-layer call. */
#include <string.h>

#include "internal.h"

struct mile_mlp_plan {
  int32_t n;
  mile_dtype dtype;
  mile_tensor **weights, **biases; /* retained; biases[i] may be NULL */
  mile_activation *acts;
  int64_t widest;    /* the widest hidden layer */
  void *buf[2];      /* ping-pong activations of the hidden layers */
  int64_t buf_elems; /* capacity of each, in elements */
};

void mile_mlp_plan_free(mile_mlp_plan *plan) {
  if (!plan) return;
  for (int32_t i = 0; i < plan->n; i++) {
    if (plan->weights) mile_tensor_release(plan->weights[i]);
    if (plan->biases) mile_tensor_release(plan->biases[i]);
  }
  free(plan->weights), free(plan->biases), free(plan->acts);
  free(plan->buf[0]), free(plan->buf[1]);
  free(plan);
}

/* The chain's shapes, dtypes and strides, checked once: the plan holds these very
 * tensors, and a tensor's shape and strides never change. */
static mile_status check_chain(const char *fname, int32_t n, mile_tensor *const *w, mile_tensor *const *b) {
  char s1[96], s2[96];
  for (int32_t i = 0; i < n; i++) {
    if (!w[i] || w[i]->ndim != 2) return mile_set_error(MILE_ERR_SHAPE, "%s: weight %d must be 2-d", fname, (int)i + 1);
    if (w[i]->dtype != w[0]->dtype || (b[i] && b[i]->dtype != w[0]->dtype))
      return mile_set_error(MILE_ERR_DTYPE, "%s: layer %d is not %s like layer 1", fname, (int)i + 1,
                            mile_dtype_name((mile_dtype)w[0]->dtype));
    if (i > 0 && w[i]->shape[1] != w[i - 1]->shape[0])
      return mile_set_error(MILE_ERR_SHAPE, "%s: weight %d %s does not follow weight %d %s", fname, (int)i + 1,
                            mile_shape_str(w[i], s1, sizeof s1), (int)i, mile_shape_str(w[i - 1], s2, sizeof s2));
    if (b[i] && (b[i]->ndim != 1 || b[i]->shape[0] != w[i]->shape[0] || !mile_is_contiguous(b[i])))
      return mile_set_error(MILE_ERR_SHAPE, "%s: bias %d %s does not match %lld outputs (contiguous)", fname,
                            (int)i + 1, mile_shape_str(b[i], s1, sizeof s1), (long long)w[i]->shape[0]);
    mile_operand wt; /* W^T [in, out], as the right operand of each run's product */
    if (!mile_as_operand(mile_data(w[i]), w[i]->shape[1], w[i]->shape[0], w[i]->stride[1], w[i]->stride[0], &wt))
      return mile_set_error(MILE_ERR_ARGUMENT, "%s: weight %d has strides BLAS cannot read; make it contiguous", fname,
                            (int)i + 1);
  }
  return MILE_OK;
}

mile_status mile_mlp_plan_new(mile_mlp_plan **out, int32_t n, mile_tensor *const *weights, mile_tensor *const *biases,
                              const mile_activation *acts) {
  *out = NULL;
  if (n < 1 || n > 1024) return mile_set_error(MILE_ERR_ARGUMENT, "mlp_plan: %d layers (1..1024)", (int)n);
  MILE_TRY(check_chain("mlp_plan", n, weights, biases));
  if (weights[0]->dtype != MILE_FLOAT32 && weights[0]->dtype != MILE_FLOAT64)
    return mile_set_error(MILE_ERR_DTYPE, "mlp_plan: needs float32 or float64 layers");
  for (int32_t i = 0; i < n; i++)
    if ((unsigned)acts[i] >= MILE_ACT_COUNT)
      return mile_set_error(MILE_ERR_ARGUMENT, "mlp_plan: unknown activation %d of layer %d", (int)acts[i], (int)i + 1);
  mile_mlp_plan *p = calloc(1, sizeof *p);
  if (!p) return mile_err_nomem("mlp_plan");
  p->weights = calloc((size_t)n, sizeof *p->weights);
  p->biases = calloc((size_t)n, sizeof *p->biases);
  p->acts = calloc((size_t)n, sizeof *p->acts);
  if (!p->weights || !p->biases || !p->acts) {
    mile_mlp_plan_free(p);
    return mile_err_nomem("mlp_plan");
  }
  p->n = n;
  p->dtype = (mile_dtype)weights[0]->dtype;
  for (int32_t i = 0; i < n; i++) {
    p->weights[i] = mile_tensor_retain(weights[i]);
    p->biases[i] = biases[i] ? mile_tensor_retain(biases[i]) : NULL;
    p->acts[i] = acts[i];
    if (i + 1 < n && weights[i]->shape[0] > p->widest) p->widest = weights[i]->shape[0];
  }
  *out = p;
  return MILE_OK;
}

/* Room for rows x the widest hidden layer in both buffers. */
static mile_status reserve(mile_mlp_plan *p, int64_t rows) {
  int64_t need;
  if (__builtin_mul_overflow(rows, p->widest, &need)) return mile_err_nomem("mlp_plan");
  if (need <= p->buf_elems) return MILE_OK;
  size_t bytes = (size_t)need * mile_dtype_size(p->dtype);
  for (int k = 0; k < 2; k++) {
    free(p->buf[k]);
    p->buf[k] = malloc(bytes);
    if (!p->buf[k]) {
      free(p->buf[0]), free(p->buf[1]);
      p->buf[0] = p->buf[1] = NULL, p->buf_elems = 0;
      return mile_err_nomem("mlp_plan");
    }
  }
  p->buf_elems = need;
  return MILE_OK;
}

mile_status mile_mlp_plan_run(mile_mlp_plan *p, mile_tensor *x, mile_tensor **out) {
  *out = NULL;
  char s1[96], s2[96];
  if (!p || !x) return mile_set_error(MILE_ERR_ARGUMENT, "mlp_plan: NULL plan or input");
  mile_tensor *w0 = p->weights[0], *wn = p->weights[p->n - 1];
  if ((mile_dtype)x->dtype != p->dtype)
    return mile_set_error(MILE_ERR_DTYPE, "mlp_plan: input is %s, the layers %s", mile_dtype_name((mile_dtype)x->dtype),
                          mile_dtype_name(p->dtype));
  if (x->ndim < 1 || x->shape[x->ndim - 1] != w0->shape[1])
    return mile_set_error(MILE_ERR_SHAPE, "mlp_plan: input %s does not match weight 1 %s (expected [..., %lld])",
                          mile_shape_str(x, s1, sizeof s1), mile_shape_str(w0, s2, sizeof s2), (long long)w0->shape[1]);
  int64_t rows = mile_shape_numel(x->ndim - 1, x->shape), shape[MILE_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = wn->shape[0];
  mile_tensor *xc = NULL;
  mile_operand h;
  if (!mile_as_operand(mile_data(x), rows, w0->shape[1], x->ndim >= 2 ? x->stride[x->ndim - 2] : 0,
                       x->stride[x->ndim - 1], &h) ||
      (x->ndim > 2 && !mile_is_contiguous(x))) {
    MILE_TRY(mile_contiguous(&xc, x));
    mile_as_operand(mile_data(xc), rows, w0->shape[1], w0->shape[1], 1, &h);
  }
  mile_status st = reserve(p, rows);
  if (st == MILE_OK) st = mile_empty(out, p->dtype, x->ndim, shape);
  for (int32_t i = 0; st == MILE_OK && i < p->n; i++) {
    mile_tensor *w = p->weights[i];
    int64_t outf = w->shape[0], in = w->shape[1];
    void *dst = i + 1 == p->n ? mile_data(*out) : p->buf[i % 2];
    mile_operand wt; /* W^T [in, out] as the right operand, as mile_linear passes it (checked at creation) */
    mile_as_operand(mile_data(w), in, outf, w->stride[1], w->stride[0], &wt);
    if (in == 0)
      memset(dst, 0, (size_t)(rows * outf) * mile_dtype_size(p->dtype));
    else
      mile_gemm(p->dtype, &h, &wt, rows, outf, in, 0.0, dst, outf);
    mile_bias_act(p->dtype, dst, p->biases[i] ? mile_data(p->biases[i]) : NULL, rows, outf, p->acts[i]);
    h.data = dst, h.trans = false, h.ld = outf > 0 ? outf : 1;
  }
  mile_tensor_release(xc);
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}
