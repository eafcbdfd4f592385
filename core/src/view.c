/* view.c - views that share storage (transpose, narrow, select, view, expand, ...),
 * copies (contiguous, clone, dtype conversion) and their backward passes. */
#include <string.h>

#include "mile/checked.h"
#include "internal.h"

/* Input shape kept in a node's iparam: [ndim, shape...]. */
static void keep_input_shape(mile_node *node, const mile_tensor *t) {
  node->iparam[0] = t->ndim;
  for (int32_t i = 0; i < t->ndim; i++) node->iparam[1 + i] = t->shape[i];
}

static mile_status finish(mile_tensor **out, mile_tensor *t, mile_tensor *input, const char *name,
                          mile_backward_fn backward, mile_node **node) {
  mile_node *n = NULL;
  mile_status st = mile_record(t, name, backward, 1, &input, &n);
  if (st != MILE_OK) {
    mile_tensor_release(t);
    return st;
  }
  if (n) keep_input_shape(n, input);
  if (node) *node = n;
  *out = t;
  return MILE_OK;
}

/* gradient of any reshaping view: the same elements in the input's shape */
static mile_status reshape_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  return mile_reshape(&grads[0], g, (int32_t)node->iparam[0], node->iparam + 1);
}

/* ---- transpose / permute ---------------------------------------------------- */

mile_status mile_permute(mile_tensor **out, mile_tensor *t, const int32_t *dims);

static mile_status permute_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  int32_t inverse[MILE_MAX_DIMS];
  int32_t nd = (int32_t)node->iparam[0];
  for (int32_t i = 0; i < nd; i++) inverse[node->iparam[1 + MILE_MAX_DIMS + i]] = i;
  return mile_permute(&grads[0], g, inverse);
}

mile_status mile_permute(mile_tensor **out, mile_tensor *t, const int32_t *dims) {
  *out = NULL;
  int64_t shape[MILE_MAX_DIMS], stride[MILE_MAX_DIMS];
  bool seen[MILE_MAX_DIMS] = {false};
  for (int32_t i = 0; i < t->ndim; i++) {
    int32_t d = dims[i];
    if (d < 0 || d >= t->ndim || seen[d])
      return mile_set_error(MILE_ERR_ARGUMENT, "permute: dims are not a permutation of 0..%d", t->ndim - 1);
    seen[d] = true;
    shape[i] = t->shape[d], stride[i] = t->stride[d];
  }
  mile_tensor *v;
  MILE_TRY(mile_tensor_view_of(&v, t, t->ndim, shape, stride, t->offset));
  mile_node *node = NULL;
  MILE_TRY(finish(out, v, t, "permute", permute_backward, &node));
  if (node)
    for (int32_t i = 0; i < t->ndim; i++) node->iparam[1 + MILE_MAX_DIMS + i] = dims[i];
  return MILE_OK;
}

mile_status mile_transpose(mile_tensor **out, mile_tensor *t, int32_t dim0, int32_t dim1) {
  *out = NULL;
  MILE_TRY(mile_check_dim("transpose", t, dim0));
  MILE_TRY(mile_check_dim("transpose", t, dim1));
  int32_t dims[MILE_MAX_DIMS];
  for (int32_t i = 0; i < t->ndim; i++) dims[i] = i;
  dims[dim0] = dim1, dims[dim1] = dim0;
  return mile_permute(out, t, dims);
}

/* ---- narrow / select --------------------------------------------------------- */

/* gradient of narrow and select: g written into a zero tensor of the input's shape */
static mile_status scatter_view_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *z, *region;
  MILE_TRY(mile_zeros(&z, (mile_dtype)g->dtype, (int32_t)node->iparam[0], node->iparam + 1));
  int32_t dim = (int32_t)node->iparam[1 + MILE_MAX_DIMS];
  int64_t start = node->iparam[2 + MILE_MAX_DIMS];
  mile_status st = node->dparam[0] ? mile_select(&region, z, dim, start)
                                   : mile_narrow(&region, z, dim, start, node->iparam[3 + MILE_MAX_DIMS]);
  if (st == MILE_OK) st = mile_copy_(region, g);
  mile_tensor_release(region);
  if (st != MILE_OK) {
    mile_tensor_release(z);
    return st;
  }
  grads[0] = z;
  return MILE_OK;
}

static mile_status region(mile_tensor **out, mile_tensor *t, int32_t dim, int64_t start, int64_t length, bool select) {
  const char *fname = select ? "select" : "narrow";
  *out = NULL;
  MILE_TRY(mile_check_dim(fname, t, dim));
  if (start < 0 || length < 0 || start > t->shape[dim] - length) /* start + length may overflow */
    return mile_set_error(MILE_ERR_RANGE, select ? "%s: index %lld out of range for dim %d of size %lld"
                                                 : "%s: start %lld + length out of range for dim %d of size %lld",
                          fname, (long long)start, dim, (long long)t->shape[dim]);
  int64_t shape[MILE_MAX_DIMS], stride[MILE_MAX_DIMS];
  int32_t nd = 0;
  for (int32_t i = 0; i < t->ndim; i++) {
    if (select && i == dim) continue;
    shape[nd] = i == dim ? length : t->shape[i];
    stride[nd++] = t->stride[i];
  }
  mile_tensor *v;
  MILE_TRY(mile_tensor_view_of(&v, t, nd, shape, stride, t->offset + start * t->stride[dim]));
  mile_node *node = NULL;
  MILE_TRY(finish(out, v, t, fname, scatter_view_backward, &node));
  if (node) {
    node->iparam[1 + MILE_MAX_DIMS] = dim;
    node->iparam[2 + MILE_MAX_DIMS] = start;
    node->iparam[3 + MILE_MAX_DIMS] = length;
    node->dparam[0] = select;
  }
  return MILE_OK;
}

mile_status mile_narrow(mile_tensor **out, mile_tensor *t, int32_t dim, int64_t start, int64_t length) {
  return region(out, t, dim, start, length, false);
}

mile_status mile_select(mile_tensor **out, mile_tensor *t, int32_t dim, int64_t index) {
  return region(out, t, dim, index, 1, true);
}

/* ---- view / reshape / squeeze / unsqueeze ---------------------------------- */

/* Resolve a -1 entry and check the element count. */
static mile_status infer_shape(const char *fname, const mile_tensor *t, int32_t ndim, const int64_t *in, int64_t *shape) {
  if (ndim < 0 || ndim > MILE_MAX_DIMS)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: %d dims (at most %d)", fname, ndim, MILE_MAX_DIMS);
  int32_t infer = -1;
  int64_t known = 1;
  for (int32_t i = 0; i < ndim; i++) {
    shape[i] = in[i];
    if (in[i] == -1) {
      if (infer >= 0) return mile_set_error(MILE_ERR_ARGUMENT, "%s: more than one -1 in the shape", fname);
      infer = i;
    } else if (in[i] < 0) {
      return mile_set_error(MILE_ERR_ARGUMENT, "%s: negative size %lld", fname, (long long)in[i]);
    } else if (known >= 0 && (!mile_mul_i64(known, in[i], &known) || known > MILE_MAX_NUMEL)) {
      known = -1; /* more elements than a tensor may have (zeros too: their strides would overflow) */
    }
  }
  int64_t n = mile_numel(t);
  if (infer >= 0 && known > 0 && n % known == 0) shape[infer] = n / known;
  if (known < 0 || mile_shape_numel(ndim, shape) != n || (infer >= 0 && known == 0)) {
    char a[96], b[96];
    return mile_set_error(MILE_ERR_SHAPE, "%s: shape %s has %lld elements, %s does not fit", fname,
                          mile_shape_str(t, a, sizeof a), (long long)n, mile_dims_str(ndim, in, b, sizeof b));
  }
  return MILE_OK;
}

/* Strides for viewing t in `shape` without a copy (NumPy's attempt_nocopy_reshape):
 * false when some group of merged dims is not contiguous. */
static bool view_strides(const mile_tensor *t, int32_t ndim, const int64_t *shape, int64_t *stride) {
  int32_t oi = 0, oj = 1, ni = 0, nj = 1;
  int64_t od[MILE_MAX_DIMS], os[MILE_MAX_DIMS];
  int32_t on = 0;
  for (int32_t i = 0; i < t->ndim; i++)
    if (t->shape[i] != 1) od[on] = t->shape[i], os[on++] = t->stride[i];
  for (int32_t i = 0; i < ndim; i++) stride[i] = 0;
  if (mile_numel(t) == 0 || on == 0) {
    mile_contiguous_strides(ndim, shape, stride);
    return true;
  }
  while (ni < ndim && oi < on) {
    int64_t np = shape[ni], op = od[oi];
    while (np != op) {
      if (np < op) np *= shape[nj++];
      else op *= od[oj++];
    }
    for (int32_t k = oi; k < oj - 1; k++)
      if (os[k] != od[k + 1] * os[k + 1]) return false;
    stride[nj - 1] = os[oj - 1];
    for (int32_t k = nj - 1; k > ni; k--) stride[k - 1] = stride[k] * shape[k];
    ni = nj++, oi = oj++;
  }
  /* trailing size-1 dims */
  int64_t last = ni > 0 ? stride[ni - 1] : 1;
  for (int32_t k = ni; k < ndim; k++) stride[k] = last;
  return true;
}

mile_status mile_view(mile_tensor **out, mile_tensor *t, int32_t ndim, const int64_t *shape_in) {
  *out = NULL;
  int64_t shape[MILE_MAX_DIMS], stride[MILE_MAX_DIMS];
  MILE_TRY(infer_shape("view", t, ndim, shape_in, shape));
  if (!view_strides(t, ndim, shape, stride)) {
    char a[96];
    return mile_set_error(MILE_ERR_SHAPE, "view: the strides of a %s tensor do not allow this view; use reshape",
                          mile_shape_str(t, a, sizeof a));
  }
  mile_tensor *v;
  MILE_TRY(mile_tensor_view_of(&v, t, ndim, shape, stride, t->offset));
  return finish(out, v, t, "view", reshape_backward, NULL);
}

mile_status mile_reshape(mile_tensor **out, mile_tensor *t, int32_t ndim, const int64_t *shape_in) {
  *out = NULL;
  int64_t shape[MILE_MAX_DIMS], stride[MILE_MAX_DIMS];
  MILE_TRY(infer_shape("reshape", t, ndim, shape_in, shape));
  if (view_strides(t, ndim, shape, stride)) return mile_view(out, t, ndim, shape);
  mile_tensor *c;
  MILE_TRY(mile_contiguous(&c, t));
  mile_status st = mile_view(out, c, ndim, shape);
  mile_tensor_release(c);
  return st;
}

mile_status mile_unsqueeze(mile_tensor **out, mile_tensor *t, int32_t dim) {
  *out = NULL;
  if (dim < 0 || dim > t->ndim || t->ndim >= MILE_MAX_DIMS)
    return mile_set_error(MILE_ERR_ARGUMENT, "unsqueeze: dim %d out of range for a %d-d tensor", dim, t->ndim);
  int64_t shape[MILE_MAX_DIMS], stride[MILE_MAX_DIMS];
  for (int32_t i = 0, j = 0; i <= t->ndim; i++) {
    if (i == dim) {
      shape[i] = 1;
      stride[i] = dim < t->ndim ? t->stride[dim] * t->shape[dim] : 1;
    } else {
      shape[i] = t->shape[j], stride[i] = t->stride[j], j++;
    }
  }
  mile_tensor *v;
  MILE_TRY(mile_tensor_view_of(&v, t, t->ndim + 1, shape, stride, t->offset));
  return finish(out, v, t, "unsqueeze", reshape_backward, NULL);
}

mile_status mile_squeeze(mile_tensor **out, mile_tensor *t, int32_t dim) {
  *out = NULL;
  if (dim >= 0) {
    MILE_TRY(mile_check_dim("squeeze", t, dim));
    if (t->shape[dim] != 1)
      return mile_set_error(MILE_ERR_SHAPE, "squeeze: dim %d has size %lld, not 1", dim, (long long)t->shape[dim]);
  }
  int64_t shape[MILE_MAX_DIMS], stride[MILE_MAX_DIMS];
  int32_t nd = 0;
  for (int32_t i = 0; i < t->ndim; i++) {
    if ((dim < 0 && t->shape[i] == 1) || i == dim) continue;
    shape[nd] = t->shape[i], stride[nd++] = t->stride[i];
  }
  mile_tensor *v;
  MILE_TRY(mile_tensor_view_of(&v, t, nd, shape, stride, t->offset));
  return finish(out, v, t, "squeeze", reshape_backward, NULL);
}

/* ---- expand ----------------------------------------------------------------- */

static mile_status expand_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  return mile_sum_to_shape(&grads[0], g, (int32_t)node->iparam[0], node->iparam + 1);
}

mile_status mile_expand(mile_tensor **out, mile_tensor *t, int32_t ndim, const int64_t *shape_in) {
  *out = NULL;
  if (ndim < t->ndim || ndim > MILE_MAX_DIMS)
    return mile_set_error(MILE_ERR_ARGUMENT, "expand: %d dims for a %d-d tensor", ndim, t->ndim);
  int64_t shape[MILE_MAX_DIMS], stride[MILE_MAX_DIMS];
  for (int32_t i = 0; i < ndim; i++) {
    int32_t ti = i - (ndim - t->ndim);
    int64_t have = ti >= 0 ? t->shape[ti] : 1, want = shape_in[i] == -1 && ti >= 0 ? have : shape_in[i];
    if (want < 0 || (have != want && have != 1)) {
      char a[96], b[96];
      return mile_set_error(MILE_ERR_SHAPE, "expand: shape %s cannot expand to %s", mile_shape_str(t, a, sizeof a),
                            mile_dims_str(ndim, shape_in, b, sizeof b));
    }
    shape[i] = want;
    stride[i] = (ti >= 0 && have == want) ? t->stride[ti] : 0;
  }
  MILE_TRY(mile_check_numel("expand", ndim, shape, NULL));
  mile_tensor *v;
  MILE_TRY(mile_tensor_view_of(&v, t, ndim, shape, stride, t->offset));
  return finish(out, v, t, "expand", expand_backward, NULL);
}

/* ---- copies ----------------------------------------------------------------- */

static mile_status identity_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  grads[0] = mile_tensor_retain(g);
  return MILE_OK;
}

static mile_status copy_as(mile_tensor **out, mile_tensor *t, mile_dtype dtype, const char *name) {
  *out = NULL;
  mile_tensor *c;
  MILE_TRY(mile_empty(&c, dtype, t->ndim, t->shape));
  mile_status st = mile_copy_(c, t);
  if (st != MILE_OK) {
    mile_tensor_release(c);
    return st;
  }
  c->storage->version = 0;
  return finish(out, c, t, name, identity_backward, NULL);
}

mile_status mile_contiguous(mile_tensor **out, mile_tensor *t) {
  if (mile_is_contiguous(t)) {
    *out = mile_tensor_retain(t);
    return MILE_OK;
  }
  return copy_as(out, t, (mile_dtype)t->dtype, "contiguous");
}

mile_status mile_clone(mile_tensor **out, mile_tensor *t) { return copy_as(out, t, (mile_dtype)t->dtype, "clone"); }

/* backward of to_dtype is the identity too: the engine converts every gradient to
 * its input's dtype */
mile_status mile_to_dtype(mile_tensor **out, mile_tensor *t, mile_dtype dtype) {
  if (dtype != MILE_FLOAT32 && dtype != MILE_FLOAT64) {
    *out = NULL;
    return mile_set_error(MILE_ERR_DTYPE, "to_dtype: unknown dtype %d", (int)dtype);
  }
  if (t->dtype == (int32_t)dtype) {
    *out = mile_tensor_retain(t);
    return MILE_OK;
  }
  return copy_as(out, t, dtype, "to_dtype");
}

mile_status mile_detach(mile_tensor **out, mile_tensor *t) {
  return mile_tensor_view_of(out, t, t->ndim, t->shape, t->stride, t->offset);
}
