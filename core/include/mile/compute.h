/* mile/compute.h - how the core multiplies matrices: the GEMM library and its threads.
 *
 * float32 products go to oneDNN (its AVX-512/AVX2 JIT kernels measured 1.7-2x
 * OpenBLAS's at every shape of mile's networks, docs/performance.md); float64 products
 * and the OpenBLAS backend go to OpenBLAS. Matrix-vector products of up to 2^20
 * elements run in the core's own loops whatever the backend. */
#ifndef MILE_COMPUTE_H
#define MILE_COMPUTE_H

#include "mile/status.h"

/* Select the float32 GEMM library: "onednn" (the default) or "openblas". The
 * environment variable MILE_GEMM gives the default at start-up. */
MILE_API mile_status mile_set_gemm_backend(const char *name);
MILE_API const char *mile_gemm_backend(void);

/* Threads of the matrix products. n >= 1: that many for every product. 0: automatic:
 * one thread below a size measured on this machine at the first product (where more
 * threads stop paying for their start-up), every available core above it. The default
 * is automatic unless MILE_NUM_THREADS (or else OMP_NUM_THREADS, OPENBLAS_NUM_THREADS)
 * gives a count. */
MILE_API mile_status mile_set_num_threads(int32_t n);
/* The fixed count, or 0 when automatic. */
MILE_API int32_t mile_num_threads(void);
/* The cores this process may use (its CPU affinity). */
MILE_API int32_t mile_max_threads(void);
/* The automatic policy's threshold in floating-point operations (2 m n k) of one
 * product: products at or above it use every core. Measures it on first call. */
MILE_API double mile_parallel_flops(void);

#endif
