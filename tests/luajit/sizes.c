/* sizes.c - prints sizeof and field offsets of the core's public structs, so the
 * LuaJIT test can compare them with what ffi.cdef made of the generated header. */
#include <stddef.h>
#include <stdio.h>

#include "mile/mile.h"

int main(void) {
  printf("mile_tensor %zu\n", sizeof(mile_tensor));
  printf("mile_tensor.shape %zu\n", offsetof(mile_tensor, shape));
  printf("mile_tensor.stride %zu\n", offsetof(mile_tensor, stride));
  printf("mile_tensor.ndim %zu\n", offsetof(mile_tensor, ndim));
  printf("mile_tensor.grad %zu\n", offsetof(mile_tensor, grad));
  printf("mile_tensor.grad_fn %zu\n", offsetof(mile_tensor, grad_fn));
  printf("mile_rng %zu\n", sizeof(mile_rng));
  printf("mile_dataset_load_options %zu\n", sizeof(mile_dataset_load_options));
  printf("mile_dataset_load_options.float_columns %zu\n", offsetof(mile_dataset_load_options, float_columns));
  printf("mile_dataset_load_options.max_bytes %zu\n", offsetof(mile_dataset_load_options, max_bytes));
  return 0;
}
