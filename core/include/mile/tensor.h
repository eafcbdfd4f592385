/* mile/tensor.h - N-d tensors: refcounted storage, strided views, constructors.
 *
 * A mile_tensor is a refcounted view (shape, strides, offset) of a refcounted
 * storage. Functions that create a tensor write a new reference into *out and
 * return MILE_OK; the caller owns it and drops it with mile_tensor_release().
 * On failure *out is left NULL and mile_last_error() says why.
 *
 * Dims and element indices are 0-based in C (the Lua binding converts once).
 * Shapes are int64_t; a 0-d tensor (ndim 0) holds one element. A tensor, a view
 * included, holds at most 2^40 elements (the product of its non-zero sizes is
 * bounded the same way): constructors and views asked for more return
 * MILE_ERR_ARGUMENT, so element counts, strides and offsets never overflow. */
#ifndef MILE_TENSOR_H
#define MILE_TENSOR_H

#include "mile/status.h"

enum { MILE_MAX_DIMS = 8 };

typedef enum mile_dtype { MILE_FLOAT32 = 0, MILE_FLOAT64 = 1 } mile_dtype;

typedef struct mile_storage mile_storage; /* opaque: bytes, refcount, version */
typedef struct mile_node mile_node;       /* opaque: an autograd graph node */

typedef struct mile_tensor {
  mile_storage *storage;
  int64_t offset;                  /* first element, in elements */
  int64_t shape[MILE_MAX_DIMS];
  int64_t stride[MILE_MAX_DIMS];   /* in elements; 0 for expanded dims */
  int32_t ndim;
  int32_t dtype;                   /* a mile_dtype */
  int32_t refcount;
  int32_t requires_grad;           /* leaf flag set by the user */
  struct mile_tensor *grad;        /* accumulated gradient of a leaf, or NULL */
  mile_node *grad_fn;              /* node that produced this tensor, or NULL */
} mile_tensor;

/* Size in bytes of one element of `dtype` (4 or 8). */
MILE_API size_t mile_dtype_size(mile_dtype dtype);
/* "float32" or "float64". */
MILE_API const char *mile_dtype_name(mile_dtype dtype);

/* --- lifetime -------------------------------------------------------------- */

/* A new contiguous tensor, contents uninitialised. shape may be NULL when ndim is 0. */
MILE_API mile_status mile_empty(mile_tensor **out, mile_dtype dtype, int32_t ndim, const int64_t *shape);
/* A new contiguous tensor filled with zeros. */
MILE_API mile_status mile_zeros(mile_tensor **out, mile_dtype dtype, int32_t ndim, const int64_t *shape);
/* A new contiguous tensor filled with `value`. */
MILE_API mile_status mile_full(mile_tensor **out, mile_dtype dtype, int32_t ndim, const int64_t *shape, double value);
/* A 0-d tensor holding `value`. */
MILE_API mile_status mile_scalar(mile_tensor **out, mile_dtype dtype, double value);
/* 1-d tensor start, start+step, ... while < stop (> stop for negative step). */
MILE_API mile_status mile_arange(mile_tensor **out, mile_dtype dtype, double start, double stop, double step);
/* A new contiguous tensor whose elements are copied (and converted) from `data`,
 * a row-major buffer of numel values of type `data_dtype`. */
MILE_API mile_status mile_from_data(mile_tensor **out, mile_dtype dtype, int32_t ndim, const int64_t *shape,
                                    const void *data, mile_dtype data_dtype);

/* Take one more reference. NULL-safe. Returns t. */
MILE_API mile_tensor *mile_tensor_retain(mile_tensor *t);
/* Drop one reference; the tensor (and its storage, once unused) is freed at zero. NULL-safe. */
MILE_API void mile_tensor_release(mile_tensor *t);

/* Bytes held in the cache of freed storage blocks (reused by later allocations;
 * at most 256 MiB). mile_cache_empty returns them to the system. */
MILE_API size_t mile_cache_bytes(void);
MILE_API void mile_cache_empty(void);

/* Bound the storage that new tensors may take on this thread: from now on, each
 * allocation is charged to a budget of `bytes`, and one that would exceed what is
 * left fails with MILE_ERR_NOMEM and a message that says so. A negative `bytes`
 * removes the bound. Returns the budget left before the call (-1 when unbounded),
 * so a caller can restore it. For code that builds objects from untrusted sizes (a
 * module rebuilt from a checkpoint's spec) before it can check them. */
MILE_API int64_t mile_alloc_budget(int64_t bytes);

/* --- inspection ------------------------------------------------------------ */

MILE_API int64_t mile_numel(const mile_tensor *t);
/* 1 when the elements are laid out row-major without gaps. */
MILE_API int32_t mile_is_contiguous(const mile_tensor *t);
/* Address of element 0 (storage base + offset). */
MILE_API void *mile_data(const mile_tensor *t);
/* Bytes owned by the storage behind t (what the Lua GC is told about). */
MILE_API size_t mile_storage_nbytes(const mile_tensor *t);
/* Number of tensors sharing the storage of t (for tests and diagnostics). */
MILE_API int32_t mile_storage_refcount(const mile_tensor *t);
/* Read / write one element by 0-based multi-index (ndim entries). */
MILE_API mile_status mile_get(const mile_tensor *t, const int64_t *index, double *value);
MILE_API mile_status mile_set(mile_tensor *t, const int64_t *index, double value);
/* The value of a one-element tensor of any ndim. */
MILE_API mile_status mile_item(const mile_tensor *t, double *value);
/* Copy all elements, row-major, into `dst` (numel doubles). */
MILE_API mile_status mile_to_doubles(const mile_tensor *t, double *dst);

/* --- views (share storage; differentiable) --------------------------------- */

MILE_API mile_status mile_transpose(mile_tensor **out, mile_tensor *t, int32_t dim0, int32_t dim1);
MILE_API mile_status mile_permute(mile_tensor **out, mile_tensor *t, const int32_t *dims);
/* Elements start .. start+length-1 along dim. */
MILE_API mile_status mile_narrow(mile_tensor **out, mile_tensor *t, int32_t dim, int64_t start, int64_t length);
/* Removes dim, keeping element `index` of it. */
MILE_API mile_status mile_select(mile_tensor **out, mile_tensor *t, int32_t dim, int64_t index);
/* Same elements, new shape; one entry may be -1 (inferred). Fails unless the
 * strides allow it without a copy (use mile_reshape for that). */
MILE_API mile_status mile_view(mile_tensor **out, mile_tensor *t, int32_t ndim, const int64_t *shape);
/* Like mile_view, copying to a contiguous tensor first when needed. */
MILE_API mile_status mile_reshape(mile_tensor **out, mile_tensor *t, int32_t ndim, const int64_t *shape);
/* Broadcast size-1 dims to `shape` (stride 0); new leading dims are added. -1 keeps a size. */
MILE_API mile_status mile_expand(mile_tensor **out, mile_tensor *t, int32_t ndim, const int64_t *shape);
MILE_API mile_status mile_unsqueeze(mile_tensor **out, mile_tensor *t, int32_t dim);
/* Removes dim (size 1), or every size-1 dim when dim < 0. */
MILE_API mile_status mile_squeeze(mile_tensor **out, mile_tensor *t, int32_t dim);
/* t itself (one more reference) when contiguous, else a contiguous copy. */
MILE_API mile_status mile_contiguous(mile_tensor **out, mile_tensor *t);
/* A contiguous copy (always new storage). */
MILE_API mile_status mile_clone(mile_tensor **out, mile_tensor *t);
/* A copy converted to dtype (t itself, retained, when it already has it). */
MILE_API mile_status mile_to_dtype(mile_tensor **out, mile_tensor *t, mile_dtype dtype);

/* --- in place (not differentiable; bump the storage version) ---------------- */

MILE_API mile_status mile_fill_(mile_tensor *t, double value);
/* dst = src, src broadcast to dst's shape, converting dtype. */
MILE_API mile_status mile_copy_(mile_tensor *dst, const mile_tensor *src);

#endif
