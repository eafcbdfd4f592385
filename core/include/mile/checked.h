/* mile/checked.h - size arithmetic that reports overflow instead of wrapping.
 *
 * Every shape product, byte size and offset the core and the Lua bindings compute
 * from numbers they were given (a shape, a start index, a count from a file) goes
 * through these helpers: they return false where the exact result does not fit (or
 * exceeds the limit on elements per tensor), and the caller turns that into a
 * status or a Lua error with a message. Static inline functions only: this header
 * is not part of mile/mile.h (nor of the LuaJIT cdef made from it). */
#ifndef MILE_CHECKED_H
#define MILE_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most elements one tensor (a view included) may have: 2^40, so that every
 * element count, stride and element offset fits an int64_t with room to spare,
 * and a byte count (at most 8 bytes an element) fits a size_t on 64-bit hosts.
 * Documented in mile/tensor.h; the core's tensor functions enforce it. */
#define MILE_MAX_NUMEL ((int64_t)1 << 40)

/* *out = a + b; false on overflow. */
static inline bool mile_add_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }
/* *out = a * b; false on overflow. */
static inline bool mile_mul_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
/* *out = a * b for byte sizes; false on overflow. */
static inline bool mile_mul_size(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }

/* Bytes of n elements of `size` bytes each, for n >= 0; false when n is negative or
 * the product does not fit a size_t. */
static inline bool mile_array_bytes(int64_t n, size_t size, size_t *out) {
  if (n < 0 || (uint64_t)n > SIZE_MAX) return false;
  return mile_mul_size((size_t)n, size, out);
}

/* Element count of a shape, checked: false when a size is negative or when the
 * product of the sizes (zero sizes counted as one, so that the strides of an empty
 * tensor fit as well) exceeds MILE_MAX_NUMEL. *numel gets the true count. */
static inline bool mile_numel_checked(int32_t ndim, const int64_t *shape, int64_t *numel) {
  int64_t n = 1, extent = 1;
  for (int32_t i = 0; i < ndim; i++) {
    if (shape[i] < 0) return false;
    if (shape[i] > 0 && (!mile_mul_i64(extent, shape[i], &extent) || extent > MILE_MAX_NUMEL)) return false;
    n = shape[i] == 0 ? 0 : n * shape[i]; /* <= extent: cannot overflow */
  }
  *numel = n;
  return true;
}

#endif
