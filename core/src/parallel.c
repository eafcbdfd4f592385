/* parallel.c - independent ranges of a loop on several threads (OpenMP, libgomp: the
 * runtime oneDNN uses already).
 *
 * Callers split work whose pieces do not interact (rows of a kernel, elements of an
 * elementwise pass), so results do not depend on the thread count. With one thread
 * the function is called directly: OpenMP is never entered, and so never allocates
 * (libgomp ends the process when it cannot allocate its thread pool; that can then
 * only happen on the first parallel call). */
#include <omp.h>

#include "internal.h"

int mile_pass_threads(int64_t n) {
  if (n < MILE_PASS_PARALLEL) return 1;
  int32_t fixed = mile_num_threads();
  return fixed > 0 ? fixed : mile_max_threads();
}

void mile_parallel_for(int64_t n, int threads, mile_range_fn fn, void *ctx) {
  if (threads <= 1 || n <= 1) {
    fn(0, n, 0, ctx);
    return;
  }
  if (threads > n) threads = (int)n;
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t begin = n * t / T, end = n * (t + 1) / T;
    if (begin < end) fn(begin, end, t, ctx);
  }
}
