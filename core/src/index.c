/* index.c - gather, index_select, cat and their backward (scatter-add, narrow). */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Integer value of index element k, checked against size. */
static mile_status index_at(const char *fname, const mile_tensor *idx, int64_t k, int64_t size, int64_t *out) {
  double v = idx->dtype == MILE_FLOAT64 ? ((const double *)mile_data(idx))[k] : ((const float *)mile_data(idx))[k];
  if (!(v >= 0 && v < (double)size) || v != floor(v))
    return mile_set_error(MILE_ERR_RANGE, "%s: index %g out of range for a dim of size %lld (indices are 0-based in C)",
                          fname, v, (long long)size);
  *out = (int64_t)v;
  return MILE_OK;
}

static double load(const mile_tensor *t, int64_t off) {
  return t->dtype == MILE_FLOAT64 ? ((const double *)t->storage->data)[off] : ((const float *)t->storage->data)[off];
}
static void store(mile_tensor *t, int64_t off, double v) {
  if (t->dtype == MILE_FLOAT64) ((double *)t->storage->data)[off] = v;
  else ((float *)t->storage->data)[off] = (float)v;
}

/* Walk every position of idx (contiguous, ndim dims of `shape`), with the storage
 * offsets of the matching element in `src` (index applied along dim) and in `dst`
 * (plain position). add: dst += src-at-index-position instead of copying. */
static mile_status gather_walk(const char *fname, mile_tensor *idx, int32_t dim, mile_tensor *a, mile_tensor *o,
                               bool scatter_add) {
  int64_t pos[MILE_MAX_DIMS] = {0}, n = mile_numel(idx);
  for (int64_t k = 0; k < n; k++) {
    int64_t at = 0;
    MILE_TRY(index_at(fname, idx, k, a->shape[dim], &at));
    int64_t off_a = a->offset, off_o = o->offset;
    for (int32_t d = 0; d < idx->ndim; d++) {
      off_a += (d == dim ? at : pos[d]) * a->stride[d];
      off_o += pos[d] * o->stride[d];
    }
    if (scatter_add) store(a, off_a, load(a, off_a) + load(o, off_o));
    else store(o, off_o, load(a, off_a));
    for (int32_t d = idx->ndim - 1; d >= 0; d--) {
      if (++pos[d] < idx->shape[d]) break;
      pos[d] = 0;
    }
  }
  return MILE_OK;
}

static mile_status gather_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *a = node->inputs[0], *idx;
  MILE_TRY(mile_node_saved(node, 0, &idx));
  mile_tensor *z, *gc;
  MILE_TRY(mile_zeros(&z, (mile_dtype)g->dtype, a->ndim, a->shape));
  mile_status st = mile_contiguous(&gc, g);
  if (st == MILE_OK) st = gather_walk("gather", idx, (int32_t)node->iparam[0], z, gc, true);
  mile_tensor_release(gc);
  if (st != MILE_OK) mile_tensor_release(z);
  else grads[0] = z;
  return st;
}

mile_status mile_gather(mile_tensor **out, mile_tensor *a, int32_t dim, mile_tensor *index) {
  *out = NULL;
  MILE_TRY(mile_check_dim("gather", a, dim));
  if (index->ndim != a->ndim)
    return mile_set_error(MILE_ERR_SHAPE, "gather: index has %d dims, the input %d", index->ndim, a->ndim);
  for (int32_t d = 0; d < a->ndim; d++)
    if (d != dim && index->shape[d] > a->shape[d]) {
      char x[96], y[96];
      return mile_set_error(MILE_ERR_SHAPE, "gather: index of shape %s is larger than the input %s outside dim %d",
                            mile_shape_str(index, x, sizeof x), mile_shape_str(a, y, sizeof y), dim);
    }
  mile_tensor *idx;
  MILE_TRY(mile_contiguous(&idx, index));
  mile_status st = mile_empty(out, (mile_dtype)a->dtype, idx->ndim, idx->shape);
  if (st == MILE_OK) st = gather_walk("gather", idx, dim, a, *out, false);
  mile_node *node = NULL;
  if (st == MILE_OK) st = mile_record(*out, "gather", gather_backward, 1, &a, &node);
  if (node) {
    node->iparam[0] = dim;
    mile_node_save(node, idx);
  }
  mile_tensor_release(idx);
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}

/* ---- index_select -------------------------------------------------------------- */

/* Copy (or add back) slices: o[:, k, :] <-> a[:, idx[k], :] over [outer, n, inner] views. */
static mile_status select_slices(mile_tensor *a, int32_t dim, mile_tensor *idx, mile_tensor *o, bool add_back) {
  int64_t outer = 1, inner = 1, m = mile_numel(idx);
  for (int32_t d = 0; d < dim; d++) outer *= a->shape[d];
  for (int32_t d = dim + 1; d < a->ndim; d++) inner *= a->shape[d];
  size_t es = mile_dtype_size((mile_dtype)a->dtype);
  char *pa = mile_data(a), *po = mile_data(o);
  for (int64_t k = 0; k < m; k++) {
    int64_t at = 0;
    MILE_TRY(index_at("index_select", idx, k, a->shape[dim], &at));
    for (int64_t i = 0; i < outer; i++) {
      char *src = pa + ((i * a->shape[dim] + at) * inner) * (int64_t)es;
      char *dst = po + ((i * m + k) * inner) * (int64_t)es;
      if (!add_back) memcpy(dst, src, (size_t)inner * es);
      else if (a->dtype == MILE_FLOAT64)
        for (int64_t j = 0; j < inner; j++) ((double *)src)[j] += ((double *)dst)[j];
      else
        for (int64_t j = 0; j < inner; j++) ((float *)src)[j] += ((float *)dst)[j];
    }
  }
  return MILE_OK;
}

static mile_status index_select_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *a = node->inputs[0], *idx, *z, *gc;
  MILE_TRY(mile_node_saved(node, 0, &idx));
  MILE_TRY(mile_zeros(&z, (mile_dtype)g->dtype, a->ndim, a->shape));
  mile_status st = mile_contiguous(&gc, g);
  if (st == MILE_OK) st = select_slices(z, (int32_t)node->iparam[0], idx, gc, true);
  mile_tensor_release(gc);
  if (st != MILE_OK) mile_tensor_release(z);
  else grads[0] = z;
  return st;
}

mile_status mile_index_select(mile_tensor **out, mile_tensor *a, int32_t dim, mile_tensor *index) {
  *out = NULL;
  MILE_TRY(mile_check_dim("index_select", a, dim));
  if (index->ndim != 1)
    return mile_set_error(MILE_ERR_SHAPE, "index_select: index must be 1-d, got %d dims", index->ndim);
  int64_t shape[MILE_MAX_DIMS];
  memcpy(shape, a->shape, sizeof shape);
  shape[dim] = index->shape[0];
  mile_tensor *ac = NULL, *idx = NULL;
  mile_status st = mile_contiguous(&ac, a);
  if (st == MILE_OK) st = mile_contiguous(&idx, index);
  if (st == MILE_OK) st = mile_empty(out, (mile_dtype)a->dtype, a->ndim, shape);
  if (st == MILE_OK) st = select_slices(ac, dim, idx, *out, false);
  mile_node *node = NULL;
  if (st == MILE_OK) st = mile_record(*out, "index_select", index_select_backward, 1, &a, &node);
  if (node) {
    node->iparam[0] = dim;
    mile_node_save(node, idx);
  }
  mile_tensor_release(ac), mile_tensor_release(idx);
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}

/* ---- cat ---------------------------------------------------------------------- */

static mile_status cat_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  int32_t dim = (int32_t)node->iparam[0];
  int64_t start = 0;
  for (int32_t i = 0; i < node->n_inputs; i++) {
    int64_t len = node->inputs[i]->shape[dim];
    if (node->needs[i]) MILE_TRY(mile_narrow(&grads[i], g, dim, start, len));
    start += len;
  }
  return MILE_OK;
}

mile_status mile_cat(mile_tensor **out, int32_t n, mile_tensor *const *tensors, int32_t dim) {
  *out = NULL;
  if (n < 1) return mile_set_error(MILE_ERR_ARGUMENT, "cat: needs at least one tensor");
  mile_tensor *first = tensors[0];
  MILE_TRY(mile_check_dim("cat", first, dim));
  int64_t shape[MILE_MAX_DIMS];
  memcpy(shape, first->shape, sizeof shape);
  shape[dim] = 0;
  for (int32_t i = 0; i < n; i++) {
    mile_tensor *t = tensors[i];
    MILE_TRY(mile_check_same_dtype("cat", first, t));
    bool ok = t->ndim == first->ndim;
    for (int32_t d = 0; ok && d < t->ndim; d++) ok = d == dim || t->shape[d] == first->shape[d];
    if (!ok) {
      char x[96], y[96];
      return mile_set_error(MILE_ERR_SHAPE, "cat: tensor %d has shape %s, expected %s outside dim %d", i + 1,
                            mile_shape_str(t, x, sizeof x), mile_shape_str(first, y, sizeof y), dim);
    }
    shape[dim] += t->shape[dim];
  }
  MILE_TRY(mile_empty(out, (mile_dtype)first->dtype, first->ndim, shape));
  int64_t start = 0;
  int32_t previous = mile_set_grad_enabled(0);
  mile_status st = MILE_OK;
  for (int32_t i = 0; i < n && st == MILE_OK; i++) {
    mile_tensor *slot;
    st = mile_narrow(&slot, *out, dim, start, tensors[i]->shape[dim]);
    if (st == MILE_OK) st = mile_copy_(slot, tensors[i]);
    mile_tensor_release(slot);
    start += tensors[i]->shape[dim];
  }
  mile_set_grad_enabled(previous);
  mile_node *node = NULL;
  if (st == MILE_OK) st = mile_record(*out, "cat", cat_backward, n, tensors, &node);
  if (node) node->iparam[0] = dim;
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  else (*out)->storage->version = 0;
  return st;
}
