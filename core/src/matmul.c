/* matmul.c - matrix products of tensors.
 *
 * Every product goes through mile_gemm (gemm.c): row-major, out = a . b, with
 * transposed views passed as transposes rather than copied. */
#include <string.h>

#include "internal.h"

mile_status mile_gemm_tensors(mile_tensor *a, mile_tensor *b, double beta, void *c, int64_t ldc) {
  mile_tensor *ac = NULL, *bc = NULL;
  mile_operand oa = {0}, ob = {0};
  int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
  if (!mile_as_operand(mile_data(a), m, k, a->stride[0], a->stride[1], &oa)) {
    MILE_TRY(mile_contiguous(&ac, a));
    mile_as_operand(mile_data(ac), m, k, ac->stride[0], ac->stride[1], &oa);
  }
  if (!mile_as_operand(mile_data(b), k, n, b->stride[0], b->stride[1], &ob)) {
    mile_status st = mile_contiguous(&bc, b);
    if (st != MILE_OK) {
      mile_tensor_release(ac);
      return st;
    }
    mile_as_operand(mile_data(bc), k, n, bc->stride[0], bc->stride[1], &ob);
  }
  if (k == 0) { /* BLAS leaves c alone for k = 0 only when beta = 1 */
    size_t es = mile_dtype_size((mile_dtype)a->dtype);
    if (beta == 0)
      for (int64_t i = 0; i < m; i++) memset((char *)c + (size_t)(i * ldc) * es, 0, (size_t)n * es);
  } else {
    mile_gemm((mile_dtype)a->dtype, &oa, &ob, m, n, k, beta, c, ldc);
  }
  mile_tensor_release(ac), mile_tensor_release(bc);
  return MILE_OK;
}

/* ---- matmul ------------------------------------------------------------------ */

static mile_status matmul_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *a, *b, *t = NULL;
  MILE_TRY(mile_node_saved(node, 0, &a));
  MILE_TRY(mile_node_saved(node, 1, &b));
  mile_status st = MILE_OK;
  if (node->needs[0]) { /* g . b^T */
    st = mile_transpose(&t, b, b->ndim - 2, b->ndim - 1);
    if (st == MILE_OK) st = mile_matmul(&grads[0], g, t);
    mile_tensor_release(t), t = NULL;
  }
  if (st == MILE_OK && node->needs[1]) { /* a^T . g */
    st = mile_transpose(&t, a, a->ndim - 2, a->ndim - 1);
    if (st == MILE_OK) st = mile_matmul(&grads[1], t, g);
    mile_tensor_release(t);
  }
  return st;
}

mile_status mile_matmul(mile_tensor **out, mile_tensor *a, mile_tensor *b) {
  *out = NULL;
  char x[96], y[96];
  MILE_TRY(mile_check_same_dtype("matmul", a, b));
  if (a->ndim < 2 || a->ndim > 3 || b->ndim < 2 || b->ndim > 3)
    return mile_set_error(MILE_ERR_SHAPE, "matmul: needs 2-d or 3-d tensors, got shapes %s and %s",
                          mile_shape_str(a, x, sizeof x), mile_shape_str(b, y, sizeof y));
  int64_t batch_a = a->ndim == 3 ? a->shape[0] : 1, batch_b = b->ndim == 3 ? b->shape[0] : 1;
  int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], k2 = b->shape[b->ndim - 2], n = b->shape[b->ndim - 1];
  if (k != k2 || (a->ndim == 3 && b->ndim == 3 && batch_a != batch_b))
    return mile_set_error(MILE_ERR_SHAPE, "matmul: shapes %s and %s do not match", mile_shape_str(a, x, sizeof x),
                          mile_shape_str(b, y, sizeof y));
  int64_t batch = batch_a > batch_b ? batch_a : batch_b;
  bool batched = a->ndim == 3 || b->ndim == 3;
  int64_t shape[3] = {batch, m, n};
  MILE_TRY(mile_empty(out, (mile_dtype)a->dtype, batched ? 3 : 2, batched ? shape : shape + 1));

  mile_status st = MILE_OK;
  int32_t previous = mile_set_grad_enabled(0);
  size_t es = mile_dtype_size((mile_dtype)a->dtype);
  for (int64_t i = 0; i < batch && st == MILE_OK; i++) {
    mile_tensor *ai = a, *bi = b;
    if (a->ndim == 3) st = mile_select(&ai, a, 0, i);
    if (st == MILE_OK && b->ndim == 3) st = mile_select(&bi, b, 0, i);
    if (st == MILE_OK) st = mile_gemm_tensors(ai, bi, 0.0, (char *)mile_data(*out) + (size_t)(i * m * n) * es, n);
    if (ai != a) mile_tensor_release(ai);
    if (bi != b) mile_tensor_release(bi);
  }
  mile_set_grad_enabled(previous);
  mile_node *node = NULL;
  mile_tensor *inputs[2] = {a, b};
  if (st == MILE_OK) st = mile_record(*out, "matmul", matmul_backward, 2, inputs, &node);
  if (node) mile_node_save(node, a), mile_node_save(node, b);
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}
