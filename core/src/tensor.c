/* tensor.c - storage, tensor lifetime, constructors, inspection and in-place writes. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mile/checked.h"
#include "internal.h"

size_t mile_dtype_size(mile_dtype dtype) { return dtype == MILE_FLOAT64 ? 8 : 4; }
const char *mile_dtype_name(mile_dtype dtype) { return dtype == MILE_FLOAT64 ? "float64" : "float32"; }

mile_status mile_err_nomem(const char *fname) {
  return mile_set_error(MILE_ERR_NOMEM, "%s: out of memory", fname);
}

const char *mile_dims_str(int32_t ndim, const int64_t *shape, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "{");
  for (int32_t i = 0; i < ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (used < size) snprintf(buf + used, size - used, "}");
  return buf;
}

const char *mile_shape_str(const mile_tensor *t, char *buf, size_t size) {
  return mile_dims_str(t->ndim, t->shape, buf, size);
}

int64_t mile_shape_numel(int32_t ndim, const int64_t *shape) {
  int64_t n = 0;
  return mile_numel_checked(ndim, shape, &n) ? n : -1;
}

mile_status mile_check_numel(const char *fname, int32_t ndim, const int64_t *shape, int64_t *numel) {
  if (ndim < 0 || ndim > MILE_MAX_DIMS)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: %d dims (at most %d)", fname, ndim, MILE_MAX_DIMS);
  if (ndim > 0 && !shape) return mile_set_error(MILE_ERR_ARGUMENT, "%s: shape is NULL", fname);
  for (int32_t i = 0; i < ndim; i++)
    if (shape[i] < 0) return mile_set_error(MILE_ERR_ARGUMENT, "%s: negative size %lld", fname, (long long)shape[i]);
  int64_t n = 0;
  if (!mile_numel_checked(ndim, shape, &n)) {
    char b[200];
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: shape %s has more than 2^40 elements (the limit per tensor)", fname,
                          mile_dims_str(ndim, shape, b, sizeof b));
  }
  if (numel) *numel = n;
  return MILE_OK;
}

void mile_contiguous_strides(int32_t ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int32_t i = ndim - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i];
  }
}

bool mile_same_shape(const mile_tensor *a, const mile_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int32_t i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

mile_status mile_check_dim(const char *fname, const mile_tensor *t, int32_t dim) {
  if (dim < 0 || dim >= t->ndim)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: dim %d out of range for a %d-d tensor", fname, dim, t->ndim);
  return MILE_OK;
}

mile_status mile_check_same_dtype(const char *fname, const mile_tensor *a, const mile_tensor *b) {
  if (a->dtype != b->dtype)
    return mile_set_error(MILE_ERR_DTYPE, "%s: dtypes %s and %s differ", fname, mile_dtype_name(a->dtype),
                          mile_dtype_name(b->dtype));
  return MILE_OK;
}

/* ---- lifetime ----------------------------------------------------------------- */

static _Thread_local int64_t alloc_budget = -1; /* bytes left; -1: unbounded */

int64_t mile_alloc_budget(int64_t bytes) {
  int64_t previous = alloc_budget;
  alloc_budget = bytes < 0 ? -1 : bytes;
  return previous;
}

static mile_tensor *tensor_header(void) {
  mile_tensor *t = calloc(1, sizeof *t);
  if (t) t->refcount = 1;
  return t;
}

mile_status mile_empty(mile_tensor **out, mile_dtype dtype, int32_t ndim, const int64_t *shape) {
  *out = NULL;
  if (dtype != MILE_FLOAT32 && dtype != MILE_FLOAT64)
    return mile_set_error(MILE_ERR_DTYPE, "empty: unknown dtype %d", (int)dtype);
  int64_t n = 0;
  size_t nbytes = 0;
  MILE_TRY(mile_check_numel("empty", ndim, shape, &n));
  if (!mile_array_bytes(n, mile_dtype_size(dtype), &nbytes)) return mile_err_nomem("empty");
  if (alloc_budget >= 0) {
    if (nbytes > (uint64_t)alloc_budget) {
      char b[200];
      return mile_set_error(MILE_ERR_NOMEM,
                            "empty: a tensor of shape %s (%zu bytes) exceeds the allocation budget "
                            "(%lld bytes left)",
                            mile_dims_str(ndim, shape, b, sizeof b), nbytes, (long long)alloc_budget);
    }
    alloc_budget -= (int64_t)nbytes;
  }
  mile_tensor *t = tensor_header();
  mile_storage *s = calloc(1, sizeof *s);
  void *data = t && s ? mile_storage_alloc(nbytes) : NULL;
  if (!t || !s || !data) {
    free(t), free(s), mile_storage_free(data, nbytes);
    return mile_err_nomem("empty");
  }
  s->data = data, s->nbytes = nbytes, s->refcount = 1;
  t->storage = s, t->ndim = ndim, t->dtype = dtype;
  for (int32_t i = 0; i < ndim; i++) t->shape[i] = shape[i];
  mile_contiguous_strides(ndim, t->shape, t->stride);
  *out = t;
  return MILE_OK;
}

mile_status mile_zeros(mile_tensor **out, mile_dtype dtype, int32_t ndim, const int64_t *shape) {
  MILE_TRY(mile_empty(out, dtype, ndim, shape));
  memset((*out)->storage->data, 0, (*out)->storage->nbytes);
  return MILE_OK;
}

mile_status mile_full(mile_tensor **out, mile_dtype dtype, int32_t ndim, const int64_t *shape, double value) {
  MILE_TRY(mile_empty(out, dtype, ndim, shape));
  mile_fill_(*out, value);
  return MILE_OK;
}

mile_status mile_scalar(mile_tensor **out, mile_dtype dtype, double value) {
  return mile_full(out, dtype, 0, NULL, value);
}

mile_status mile_arange(mile_tensor **out, mile_dtype dtype, double start, double stop, double step) {
  *out = NULL;
  if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step))
    return mile_set_error(MILE_ERR_ARGUMENT, "arange: start, stop and step must be finite, step non-zero");
  double count = ceil((stop - start) / step);
  if (count > (double)MILE_MAX_NUMEL) /* also keeps the conversion below defined */
    return mile_set_error(MILE_ERR_ARGUMENT, "arange: %g elements are too many (at most 2^40 per tensor)", count);
  int64_t n = count > 0 ? (int64_t)count : 0;
  MILE_TRY(mile_empty(out, dtype, 1, &n));
  for (int64_t i = 0; i < n; i++) {
    double v = start + (double)i * step;
    if (dtype == MILE_FLOAT64) ((double *)(*out)->storage->data)[i] = v;
    else ((float *)(*out)->storage->data)[i] = (float)v;
  }
  return MILE_OK;
}

mile_status mile_from_data(mile_tensor **out, mile_dtype dtype, int32_t ndim, const int64_t *shape,
                           const void *data, mile_dtype data_dtype) {
  MILE_TRY(mile_empty(out, dtype, ndim, shape));
  int64_t n = mile_numel(*out);
  void *dst = (*out)->storage->data;
  if (dtype == data_dtype) memcpy(dst, data, (size_t)n * mile_dtype_size(dtype));
  else if (dtype == MILE_FLOAT32)
    for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = (float)((const double *)data)[i];
  else
    for (int64_t i = 0; i < n; i++) ((double *)dst)[i] = ((const float *)data)[i];
  return MILE_OK;
}

mile_tensor *mile_tensor_retain(mile_tensor *t) {
  if (t) t->refcount++;
  return t;
}

void mile_tensor_release(mile_tensor *t) {
  if (!t || --t->refcount > 0) return;
  mile_storage *s = t->storage;
  if (s && --s->refcount == 0) {
    mile_storage_free(s->data, s->nbytes);
    free(s);
  }
  mile_tensor_release(t->grad);
  mile_node_release(t->grad_fn);
  free(t);
}

mile_status mile_tensor_view_of(mile_tensor **out, const mile_tensor *base, int32_t ndim, const int64_t *shape,
                                const int64_t *stride, int64_t offset) {
  *out = NULL;
  MILE_TRY(mile_check_numel("view", ndim, shape, NULL)); /* the last line of defence of every view */
  mile_tensor *t = tensor_header();
  if (!t) return mile_err_nomem("view");
  t->storage = base->storage;
  t->storage->refcount++;
  t->dtype = base->dtype, t->ndim = ndim, t->offset = offset;
  for (int32_t i = 0; i < ndim; i++) t->shape[i] = shape[i], t->stride[i] = stride[i];
  *out = t;
  return MILE_OK;
}

/* ---- inspection -------------------------------------------------------------- */

int64_t mile_numel(const mile_tensor *t) { return mile_shape_numel(t->ndim, t->shape); }

int32_t mile_is_contiguous(const mile_tensor *t) {
  int64_t s = 1;
  for (int32_t i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s) return 0;
    s *= t->shape[i];
  }
  return 1;
}

void *mile_data(const mile_tensor *t) {
  return (char *)t->storage->data + t->offset * (int64_t)mile_dtype_size(t->dtype);
}

size_t mile_storage_nbytes(const mile_tensor *t) { return t->storage->nbytes; }
int32_t mile_storage_refcount(const mile_tensor *t) { return t->storage->refcount; }

static mile_status element_offset(const char *fname, const mile_tensor *t, const int64_t *index, int64_t *off) {
  int64_t o = t->offset;
  for (int32_t i = 0; i < t->ndim; i++) {
    if (index[i] < 0 || index[i] >= t->shape[i])
      return mile_set_error(MILE_ERR_RANGE, "%s: index %lld out of range for dim %d of size %lld", fname,
                            (long long)index[i], i, (long long)t->shape[i]);
    o += index[i] * t->stride[i];
  }
  *off = o;
  return MILE_OK;
}

static double load(const mile_tensor *t, int64_t off) {
  return t->dtype == MILE_FLOAT64 ? ((double *)t->storage->data)[off] : ((float *)t->storage->data)[off];
}

mile_status mile_get(const mile_tensor *t, const int64_t *index, double *value) {
  int64_t off = 0;
  MILE_TRY(element_offset("get", t, index, &off));
  *value = load(t, off);
  return MILE_OK;
}

mile_status mile_set(mile_tensor *t, const int64_t *index, double value) {
  int64_t off = 0;
  MILE_TRY(element_offset("set", t, index, &off));
  if (t->dtype == MILE_FLOAT64) ((double *)t->storage->data)[off] = value;
  else ((float *)t->storage->data)[off] = (float)value;
  mile_bump_version(t);
  return MILE_OK;
}

mile_status mile_item(const mile_tensor *t, double *value) {
  if (mile_numel(t) != 1) {
    char b[96];
    return mile_set_error(MILE_ERR_SHAPE, "item: tensor of shape %s has %lld elements, not 1",
                          mile_shape_str(t, b, sizeof b), (long long)mile_numel(t));
  }
  *value = load(t, t->offset);
  return MILE_OK;
}

mile_status mile_to_doubles(const mile_tensor *t, double *dst) {
  mile_tensor out = {0};
  mile_storage s = {.data = dst, .nbytes = (size_t)mile_numel(t) * sizeof(double), .refcount = 1};
  out.storage = &s, out.ndim = t->ndim, out.dtype = MILE_FLOAT64;
  memcpy(out.shape, t->shape, sizeof out.shape);
  mile_contiguous_strides(t->ndim, out.shape, out.stride);
  return mile_copy_(&out, t);
}

/* ---- in place --------------------------------------------------------------- */

static void fill_loop_f32(int64_t n, char **p, const int64_t *s, const void *ctx) {
  float *o = (float *)p[0], v = (float)*(const double *)ctx;
  for (int64_t i = 0; i < n; i++) o[i * s[0]] = v;
}
static void fill_loop_f64(int64_t n, char **p, const int64_t *s, const void *ctx) {
  double *o = (double *)p[0], v = *(const double *)ctx;
  for (int64_t i = 0; i < n; i++) o[i * s[0]] = v;
}

mile_status mile_fill_(mile_tensor *t, double value) {
  const mile_tensor *ops[1] = {t};
  mile_loop_run(1, ops, t->ndim, t->shape, t->dtype == MILE_FLOAT64 ? fill_loop_f64 : fill_loop_f32, &value);
  mile_bump_version(t);
  return MILE_OK;
}

#define COPY_LOOP(NAME, TO, FROM)                                                        \
  static void NAME(int64_t n, char **p, const int64_t *s, const void *ctx) {            \
    TO *o = (TO *)p[0];                                                                  \
    const FROM *a = (const FROM *)p[1];                                                  \
    if (s[0] == 1 && s[1] == 1)                                                          \
      for (int64_t i = 0; i < n; i++) o[i] = (TO)a[i];                                   \
    else                                                                                 \
      for (int64_t i = 0; i < n; i++) o[i * s[0]] = (TO)a[i * s[1]];                     \
  }
COPY_LOOP(copy_f32_f32, float, float)
COPY_LOOP(copy_f32_f64, float, double)
COPY_LOOP(copy_f64_f32, double, float)
COPY_LOOP(copy_f64_f64, double, double)

mile_status mile_copy_(mile_tensor *dst, const mile_tensor *src) {
  int32_t nd;
  int64_t shape[MILE_MAX_DIMS];
  MILE_TRY(mile_broadcast_shape("copy", dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape));
  if (!(nd == dst->ndim && memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd) == 0)) {
    char a[96], b[96];
    return mile_set_error(MILE_ERR_SHAPE, "copy: source of shape %s does not broadcast to %s",
                          mile_shape_str(src, a, sizeof a), mile_shape_str(dst, b, sizeof b));
  }
  static const mile_loop_fn loops[2][2] = {{copy_f32_f32, copy_f32_f64}, {copy_f64_f32, copy_f64_f64}};
  const mile_tensor *ops[2] = {dst, src};
  mile_loop_run(2, ops, dst->ndim, dst->shape, loops[dst->dtype][src->dtype], NULL);
  mile_bump_version(dst);
  return MILE_OK;
}
