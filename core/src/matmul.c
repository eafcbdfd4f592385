/* matmul.c - matrix products on OpenBLAS, and the fused affine layer.
 *
 * All BLAS calls of the core go through gemm() below: row-major, out = a . b, with
 * transposed views passed to BLAS as transposes rather than copied. */
#include <cblas.h>
#include <string.h>

#include "internal.h"

typedef struct operand {
  const void *data;
  CBLAS_TRANSPOSE trans;
  int64_t ld;
} operand;

/* How BLAS can read the 2-d matrix at `base` with rows x cols and strides s0, s1
 * (in elements); false when it needs a contiguous copy first. */
static bool as_operand(const void *base, int64_t rows, int64_t cols, int64_t s0, int64_t s1, operand *op) {
  op->data = base;
  if ((s1 == 1 || cols == 1) && s0 >= (cols > 1 ? cols : 1)) {
    op->trans = CblasNoTrans, op->ld = s0 > 0 ? s0 : 1;
    if (rows == 1) op->ld = cols > 1 ? cols : 1;
    return true;
  }
  if ((s0 == 1 || rows == 1) && s1 >= (rows > 1 ? rows : 1)) {
    op->trans = CblasTrans, op->ld = s1 > 0 ? s1 : 1;
    if (cols == 1) op->ld = rows > 1 ? rows : 1;
    return true;
  }
  return false;
}

/* Matrix-vector products up to this many matrix elements run in the loops below:
 * OpenBLAS's threads cost more than the product there (measured: 48 us for a
 * 256x256 sgemv with 2 threads on a busy machine, 4 us in one thread). */
enum { SMALL_GEMV = 1 << 20 };

#define DEF_GEMV(T, SFX)                                                                        \
  static void gemv_##SFX(bool trans, int64_t rows, int64_t cols, const T *mat, int64_t ld, const T *x, \
                         int64_t incx, T beta, T *y, int64_t incy) {                              \
    if (!trans) { /* y[i] = beta y[i] + sum_j mat[i][j] x[j]: one dot product per row, in 16 \
                     partial sums so that the compiler can vectorise it */                    \
      for (int64_t i = 0; i < rows; i++) {                                                      \
        const T *row = mat + i * ld;                                                            \
        T part[16] = {0}, acc = 0;                                                              \
        int64_t j = 0;                                                                          \
        if (incx == 1)                                                                          \
          for (; j + 16 <= cols; j += 16)                                                       \
            for (int l = 0; l < 16; l++) part[l] += row[j + l] * x[j + l];                      \
        for (int l = 0; l < 16; l++) acc += part[l];                                            \
        for (; j < cols; j++) acc += row[j] * x[j * incx];                                      \
        y[i * incy] = (beta == 0 ? 0 : beta * y[i * incy]) + acc;                               \
      }                                                                                         \
    } else { /* y[j] = beta y[j] + sum_i mat[i][j] x[i]: rows added in turn, vectorised over j */ \
      for (int64_t j = 0; j < cols; j++) y[j * incy] = beta == 0 ? 0 : beta * y[j * incy];     \
      for (int64_t i = 0; i < rows; i++) {                                                      \
        const T *row = mat + i * ld;                                                            \
        T xi = x[i * incx];                                                                     \
        if (incy == 1)                                                                          \
          for (int64_t j = 0; j < cols; j++) y[j] += row[j] * xi;                               \
        else                                                                                    \
          for (int64_t j = 0; j < cols; j++) y[j * incy] += row[j] * xi;                        \
      }                                                                                         \
    }                                                                                           \
  }
DEF_GEMV(float, f32)
DEF_GEMV(double, f64)

/* y = op(M) x: a matrix-vector product reads the matrix once, where gemm would
 * first pack it (at batch 1 the packing cost ten times the product). */
static void gemv(mile_dtype dtype, CBLAS_TRANSPOSE trans, int64_t rows, int64_t cols, const void *mat, int64_t ld,
                 const void *x, int64_t incx, double beta, void *y, int64_t incy) {
  bool small = rows * cols <= SMALL_GEMV, t = trans == CblasTrans;
  if (dtype == MILE_FLOAT64) {
    if (small) gemv_f64(t, rows, cols, mat, ld, x, incx, beta, y, incy);
    else cblas_dgemv(CblasRowMajor, trans, (int)rows, (int)cols, 1.0, mat, (int)ld, x, (int)incx, beta, y, (int)incy);
  } else {
    if (small) gemv_f32(t, rows, cols, mat, ld, x, incx, (float)beta, y, incy);
    else
      cblas_sgemv(CblasRowMajor, trans, (int)rows, (int)cols, 1.0f, mat, (int)ld, x, (int)incx, (float)beta, y,
                  (int)incy);
  }
}

static void gemm(mile_dtype dtype, const operand *a, const operand *b, int64_t m, int64_t n, int64_t k, double beta,
                 void *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (m == 1 && n > 1) { /* c = a b as c^T = b^T a^T; a's k elements are 1 (NoTrans) or ld apart */
    int64_t inca = a->trans == CblasNoTrans ? 1 : a->ld;
    if (b->trans == CblasNoTrans) gemv(dtype, CblasTrans, k, n, b->data, b->ld, a->data, inca, beta, c, 1);
    else gemv(dtype, CblasNoTrans, n, k, b->data, b->ld, a->data, inca, beta, c, 1);
    return;
  }
  if (n == 1 && m > 1) { /* c = a b with b a column: its k elements are ld (NoTrans) or 1 apart */
    int64_t incb = b->trans == CblasNoTrans ? b->ld : 1;
    if (a->trans == CblasNoTrans) gemv(dtype, CblasNoTrans, m, k, a->data, a->ld, b->data, incb, beta, c, ldc);
    else gemv(dtype, CblasTrans, k, m, a->data, a->ld, b->data, incb, beta, c, ldc);
    return;
  }
  if (dtype == MILE_FLOAT64)
    cblas_dgemm(CblasRowMajor, a->trans, b->trans, (int)m, (int)n, (int)k, 1.0, a->data, (int)a->ld, b->data,
                (int)b->ld, beta, c, (int)ldc);
  else
    cblas_sgemm(CblasRowMajor, a->trans, b->trans, (int)m, (int)n, (int)k, 1.0f, a->data, (int)a->ld, b->data,
                (int)b->ld, (float)beta, c, (int)ldc);
}

/* c[m,n] (+)= a[m,k] . b[k,n] for 2-d tensors a and b (any strides). */
static mile_status gemm_tensors(mile_tensor *a, mile_tensor *b, double beta, void *c, int64_t ldc) {
  mile_tensor *ac = NULL, *bc = NULL;
  operand oa = {0}, ob = {0};
  int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
  if (!as_operand(mile_data(a), m, k, a->stride[0], a->stride[1], &oa)) {
    MILE_TRY(mile_contiguous(&ac, a));
    as_operand(mile_data(ac), m, k, ac->stride[0], ac->stride[1], &oa);
  }
  if (!as_operand(mile_data(b), k, n, b->stride[0], b->stride[1], &ob)) {
    mile_status st = mile_contiguous(&bc, b);
    if (st != MILE_OK) {
      mile_tensor_release(ac);
      return st;
    }
    as_operand(mile_data(bc), k, n, bc->stride[0], bc->stride[1], &ob);
  }
  if (k == 0) { /* BLAS leaves c alone for k = 0 only when beta = 1 */
    size_t es = mile_dtype_size((mile_dtype)a->dtype);
    if (beta == 0)
      for (int64_t i = 0; i < m; i++) memset((char *)c + (size_t)(i * ldc) * es, 0, (size_t)n * es);
  } else {
    gemm((mile_dtype)a->dtype, &oa, &ob, m, n, k, beta, c, ldc);
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
    if (st == MILE_OK) st = gemm_tensors(ai, bi, 0.0, (char *)mile_data(*out) + (size_t)(i * m * n) * es, n);
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

/* ---- linear ------------------------------------------------------------------ */

static mile_status linear_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *x2, *w, *g2 = NULL, *t = NULL;
  MILE_TRY(mile_node_saved(node, 0, &x2));
  MILE_TRY(mile_node_saved(node, 1, &w));
  int64_t rows = x2->shape[0], in = x2->shape[1], outf = w->shape[0];
  int64_t g2shape[2] = {rows, outf};
  mile_status st = mile_reshape(&g2, g, 2, g2shape);
  if (st == MILE_OK && node->needs[0]) { /* gx = g . W, in x's shape */
    int64_t shape[2] = {rows, in};
    st = mile_empty(&t, (mile_dtype)g->dtype, 2, shape);
    if (st == MILE_OK) st = gemm_tensors(g2, w, 0.0, mile_data(t), in);
    if (st == MILE_OK) st = mile_reshape(&grads[0], t, (int32_t)node->iparam[0], node->iparam + 1);
    mile_tensor_release(t), t = NULL;
  }
  if (st == MILE_OK && node->needs[1]) { /* gW = g^T . x */
    int64_t shape[2] = {outf, in};
    st = mile_empty(&grads[1], (mile_dtype)g->dtype, 2, shape);
    if (st == MILE_OK) st = mile_transpose(&t, g2, 0, 1);
    if (st == MILE_OK) st = gemm_tensors(t, x2, 0.0, mile_data(grads[1]), in);
    mile_tensor_release(t);
  }
  if (st == MILE_OK && node->n_inputs == 3 && node->needs[2]) /* gb = column sums of g */
    st = mile_reduce(&grads[2], MILE_SUM, g2, 0, 0);
  mile_tensor_release(g2);
  return st;
}

mile_status mile_linear(mile_tensor **out, mile_tensor *x, mile_tensor *weight, mile_tensor *bias) {
  *out = NULL;
  char s1[96], s2[96];
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
  mile_tensor *x2 = NULL;
  int64_t x2shape[2] = {rows, in};
  mile_status st = mile_reshape(&x2, x, 2, x2shape);
  if (st == MILE_OK) st = mile_empty(out, (mile_dtype)x->dtype, x->ndim, shape);
  if (st == MILE_OK && bias) { /* rows start as the bias; gemm adds x W^T with beta = 1 */
    mile_tensor *o2;
    int64_t o2shape[2] = {rows, outf};
    st = mile_view(&o2, *out, 2, o2shape);
    if (st == MILE_OK) st = mile_copy_(o2, bias);
    mile_tensor_release(o2);
  }
  mile_tensor *wt = NULL;
  if (st == MILE_OK) st = mile_transpose(&wt, weight, 0, 1);
  if (st == MILE_OK) st = gemm_tensors(x2, wt, bias ? 1.0 : 0.0, mile_data(*out), outf);
  mile_tensor_release(wt);
  mile_set_grad_enabled(previous);

  mile_node *node = NULL;
  mile_tensor *inputs[3] = {x, weight, bias};
  if (st == MILE_OK) st = mile_record(*out, "linear", linear_backward, bias ? 3 : 2, inputs, &node);
  if (node) {
    node->iparam[0] = x->ndim;
    for (int32_t i = 0; i < x->ndim; i++) node->iparam[1 + i] = x->shape[i];
    mile_node_save(node, x2);
    mile_node_save(node, weight);
  }
  mile_tensor_release(x2);
  if (st == MILE_OK) (*out)->storage->version = 0;
  else mile_tensor_release(*out), *out = NULL;
  return st;
}
