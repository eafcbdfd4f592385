/* loop.c - broadcasting and the strided N-d loop driver behind elementwise kernels. */
#include <string.h>

#include "internal.h"

mile_status mile_broadcast_shape(const char *fname, int32_t na, const int64_t *sa, int32_t nb, const int64_t *sb,
                                 int32_t *ndim, int64_t *shape) {
  int32_t n = na > nb ? na : nb;
  for (int32_t i = 0; i < n; i++) {
    int32_t ia = i - (n - na), ib = i - (n - nb);
    int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      char a[96], b[96];
      return mile_set_error(MILE_ERR_SHAPE, "%s: shapes %s and %s do not broadcast", fname,
                            mile_dims_str(na, sa, a, sizeof a), mile_dims_str(nb, sb, b, sizeof b));
    }
    shape[i] = da == 1 ? db : da;
  }
  *ndim = n;
  return MILE_OK;
}

enum { MAX_OPS = 4 };

void mile_loop_run(int32_t nops, const mile_tensor *const *ops, int32_t ndim, const int64_t *shape,
                   mile_loop_fn fn, const void *ctx) {
  int64_t n_total = mile_shape_numel(ndim, shape);
  if (n_total == 0) return;

  /* per-operand strides aligned to shape; broadcast dims get stride 0 */
  int64_t dims[MILE_MAX_DIMS], strides[MAX_OPS][MILE_MAX_DIMS];
  char *base[MAX_OPS];
  int64_t esize[MAX_OPS];
  int32_t nd = 0;
  for (int32_t d = 0; d < ndim; d++) {
    if (shape[d] == 1) continue; /* size-1 dims never move a pointer */
    dims[nd] = shape[d];
    for (int32_t k = 0; k < nops; k++) {
      const mile_tensor *t = ops[k];
      int32_t td = d - (ndim - t->ndim);
      strides[k][nd] = (td >= 0 && t->shape[td] != 1) ? t->stride[td] : 0;
    }
    nd++;
  }
  for (int32_t k = 0; k < nops; k++) {
    base[k] = (char *)mile_data(ops[k]);
    esize[k] = (int64_t)mile_dtype_size(ops[k]->dtype);
  }
  if (nd == 0) { /* a single element */
    int64_t s[MAX_OPS] = {0};
    fn(1, base, s, ctx);
    return;
  }

  /* merge dim d into d+1 when every operand steps through them as one */
  int32_t m = 0;
  for (int32_t d = 1; d < nd; d++) {
    bool mergeable = true;
    for (int32_t k = 0; k < nops && mergeable; k++)
      mergeable = strides[k][m] == strides[k][d] * dims[d];
    if (mergeable) {
      dims[m] *= dims[d];
      for (int32_t k = 0; k < nops; k++) strides[k][m] = strides[k][d];
    } else {
      m++;
      dims[m] = dims[d];
      for (int32_t k = 0; k < nops; k++) strides[k][m] = strides[k][d];
    }
  }
  nd = m + 1;

  /* inner loop over the last dim, a counter over the others */
  int64_t inner = dims[nd - 1], s[MAX_OPS], idx[MILE_MAX_DIMS] = {0};
  for (int32_t k = 0; k < nops; k++) s[k] = strides[k][nd - 1];
  int64_t outer = n_total / inner;
  char *p[MAX_OPS];
  for (int64_t it = 0; it < outer; it++) {
    for (int32_t k = 0; k < nops; k++) {
      int64_t off = 0;
      for (int32_t d = 0; d < nd - 1; d++) off += idx[d] * strides[k][d];
      p[k] = base[k] + off * esize[k];
    }
    fn(inner, p, s, ctx);
    for (int32_t d = nd - 2; d >= 0; d--) {
      if (++idx[d] < dims[d]) break;
      idx[d] = 0;
    }
  }
}
