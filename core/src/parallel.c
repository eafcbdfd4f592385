/* parallel.c - independent ranges of a loop on several threads.
 *
 * Callers split work whose pieces do not interact (rows of a kernel, elements of an
 * elementwise pass), so results do not depend on the thread count. The threads are
 * libgomp's, the OpenMP runtime oneDNN already uses, entered through its parallel-region
 * call (the ABI GCC compiles `#pragma omp parallel` to, stable since GCC 4.9) rather than
 * the pragma: the core then needs no -fopenmp, and builds with any compiler (clang's
 * pragma would want its own runtime, libomp). With one thread fn is called directly:
 * libgomp is never entered, and so never allocates (it ends the process when it cannot
 * allocate its thread pool; that can then only happen on the first parallel call). */
#include "internal.h"

void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
int omp_get_thread_num(void);
int omp_get_num_threads(void);

int mile_work_threads(void) {
  int32_t fixed = mile_num_threads();
  return fixed > 0 ? fixed : mile_max_threads();
}

int mile_pass_threads(int64_t n) { return n < MILE_PASS_PARALLEL ? 1 : mile_work_threads(); }

typedef struct region {
  int64_t n;
  mile_range_fn fn;
  void *ctx;
} region;

static void run_piece(void *data) {
  const region *r = data;
  int t = omp_get_thread_num(), T = omp_get_num_threads();
  int64_t begin = r->n * t / T, end = r->n * (t + 1) / T;
  if (begin < end) r->fn(begin, end, t, r->ctx);
}

void mile_parallel_for(int64_t n, int threads, mile_range_fn fn, void *ctx) {
  if (threads <= 1 || n <= 1) {
    fn(0, n, 0, ctx);
    return;
  }
  if (threads > n) threads = (int)n;
  region r = {n, fn, ctx};
  GOMP_parallel(run_piece, &r, (unsigned)threads, 0);
}
