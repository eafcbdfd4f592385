/* gemm.c - every matrix product of the core: the choice of library, of threads, and
 * the matrix-vector loops.
 *
 * float32 goes to oneDNN's sgemm (JIT kernels for the machine's widest vectors; on
 * the AVX-512 machines mile is developed on they run 1.7-2x OpenBLAS 0.3.21, whose
 * Debian build picks its AVX2 kernels there), float64 to OpenBLAS. Both take
 * row-major operands with transposes, so strided views are never copied. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <cblas.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "internal.h"

/* OpenMP's control of oneDNN's threads (libgomp; omp.h is not needed for one call). */
void omp_set_num_threads(int n);

static bool use_onednn = true;
static int32_t fixed_threads;      /* >= 1: every product; 0: automatic */
static int32_t cores = 1;          /* the process's CPU affinity */
static double parallel_flops = -1; /* automatic threshold; < 0 until measured */
static int32_t openblas_now = -1;  /* OpenBLAS's current count, to skip repeated sets */
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;
static pthread_once_t measure_once = PTHREAD_ONCE_INIT;

static int32_t env_count(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  char *end;
  long n = strtol(v, &end, 10);
  return *end == '\0' && n >= 1 && n <= 1024 ? (int32_t)n : 0;
}

static void read_settings(void) {
  cpu_set_t set;
  cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  if (cores < 1) cores = 1;
  const char *names[] = {"MILE_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"};
  for (int i = 0; i < 3 && fixed_threads == 0; i++)
    fixed_threads = env_count(names[i]);
  const char *backend = getenv("MILE_GEMM");
  if (backend && strcmp(backend, "openblas") == 0) use_onednn = false;
  /* oneDNN's sgemm takes a packing buffer of up to a few hundred KiB from malloc on
   * every call and frees it. glibc raises its mmap threshold the first time a large
   * block is freed, after which those buffers come from the heap, where the small
   * objects a step leaves between them (Lua's garbage until its next cycle) split
   * each hole: the heap then grew by one buffer per step (0.7 MB a step at batch
   * 1024, measured with a replayed step). A fixed threshold (glibc's default value)
   * keeps them in mmap. */
  if (use_onednn) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

static void set_threads(int32_t n, bool onednn) {
  if (onednn)
    omp_set_num_threads(n); /* sets a per-thread ICV: cheap */
  else if (n != openblas_now)
    openblas_set_num_threads(n), openblas_now = n;
}

static void sgemm_raw(bool onednn, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (onednn && dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc) == dnnl_success)
    return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best of 8 timed products of s x s x s in `threads` threads. */
static double time_square(int s, int32_t threads, float *buf) {
  double best = INFINITY;
  set_threads(threads, use_onednn);
  for (int r = 0; r < 8; r++) {
    double t0 = seconds();
    sgemm_raw(use_onednn, false, true, s, s, s, buf, s, buf + s * s, s, 0.0f, buf + 2 * s * s, s);
    double t = seconds() - t0;
    if (t < best) best = t;
  }
  return best;
}

/* The automatic threshold: going down from the largest size, every core while they
 * beat one thread by 10%; one thread from the first size where they do not. A cold
 * start (kernels not yet generated, worker threads not yet started or scheduled)
 * would make every core look slow, so both settings run untimed for ~20 ms first. */
static void measure_threshold(void) {
  static const int sizes[] = {256, 192, 128, 96, 64, 48, 32, 16};
  parallel_flops = INFINITY;
  if (cores < 2) return;
  float *buf = malloc(sizeof(float) * 3 * 256 * 256);
  if (!buf) return; /* keep one thread: never fail a product over its tuning */
  for (int i = 0; i < 3 * 256 * 256; i++) buf[i] = (float)(i % 13) * 0.0625f;
  for (double t0 = seconds(); seconds() - t0 < 0.02;) time_square(256, cores, buf), time_square(256, 1, buf);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    int s = sizes[i];
    if (time_square(s, cores, buf) > 0.9 * time_square(s, 1, buf)) break;
    parallel_flops = 2.0 * s * s * s;
  }
  free(buf);
}

static int32_t threads_for(double flops) {
  pthread_once(&settings_once, read_settings);
  if (fixed_threads > 0) return fixed_threads;
  pthread_once(&measure_once, measure_threshold);
  return flops >= parallel_flops ? cores : 1;
}

mile_status mile_set_gemm_backend(const char *name) {
  pthread_once(&settings_once, read_settings);
  if (name && strcmp(name, "onednn") == 0)
    use_onednn = true;
  else if (name && strcmp(name, "openblas") == 0)
    use_onednn = false;
  else
    return mile_set_error(MILE_ERR_ARGUMENT, "gemm backend: expected \"onednn\" or \"openblas\", got \"%s\"",
                          name ? name : "(null)");
  return MILE_OK;
}

const char *mile_gemm_backend(void) {
  pthread_once(&settings_once, read_settings);
  return use_onednn ? "onednn" : "openblas";
}

mile_status mile_set_num_threads(int32_t n) {
  pthread_once(&settings_once, read_settings);
  if (n < 0 || n > 1024) return mile_set_error(MILE_ERR_ARGUMENT, "set_num_threads: %d is not in 0..1024", (int)n);
  fixed_threads = n;
  return MILE_OK;
}

int32_t mile_num_threads(void) {
  pthread_once(&settings_once, read_settings);
  return fixed_threads;
}

int32_t mile_max_threads(void) {
  pthread_once(&settings_once, read_settings);
  return cores;
}

double mile_parallel_flops(void) {
  pthread_once(&settings_once, read_settings);
  pthread_once(&measure_once, measure_threshold);
  return parallel_flops;
}

/* ---- operands ------------------------------------------------------------------ */

bool mile_as_operand(const void *base, int64_t rows, int64_t cols, int64_t s0, int64_t s1, mile_operand *op) {
  op->data = base;
  if ((s1 == 1 || cols == 1) && s0 >= (cols > 1 ? cols : 1)) {
    op->trans = false, op->ld = s0 > 0 ? s0 : 1;
    if (rows == 1) op->ld = cols > 1 ? cols : 1;
    return true;
  }
  if ((s0 == 1 || rows == 1) && s1 >= (rows > 1 ? rows : 1)) {
    op->trans = true, op->ld = s1 > 0 ? s1 : 1;
    if (cols == 1) op->ld = rows > 1 ? rows : 1;
    return true;
  }
  return false;
}

/* ---- matrix-vector products ---------------------------------------------------- */

/* Matrix-vector products up to this many matrix elements run in the loops below:
 * library threads cost more than the product there (measured: 48 us for a 256x256
 * sgemv with 2 OpenBLAS threads on a busy machine, 4 us in one thread). */
enum { SMALL_GEMV = 1 << 20 };

/* One row's dot product with x in 16 partial sums (vectorisable), added up in a fixed
 * order; ROWS rows at a time so that the FMA chains are independent (one chain waits
 * for its previous FMA: 4 cycles each on current x86). Every row is summed in the
 * same order whatever the blocking, so blocked and unblocked rows agree to the bit. */
#define DEF_GEMV(T, SFX)                                                                                          \
  static void gemv_##SFX(bool trans, int64_t rows, int64_t cols, const T *mat, int64_t ld, const T *x,           \
                         int64_t incx, T beta, T *y, int64_t incy) {                                             \
    if (!trans) { /* y[i] = beta y[i] + sum_j mat[i][j] x[j] */                                                   \
      /* 16 partial sums per row as one vector (GCC/Clang vector extension), 4 rows at \
         a time in registers; loads through memcpy (any alignment) */                   \
      typedef T vec_##SFX __attribute__((vector_size(16 * sizeof(T))));                                           \
      int64_t i = 0;                                                                                              \
      for (; i + 4 <= rows && incx == 1 && cols >= 16; i += 4) {                                                  \
        const T *r0 = mat + i * ld, *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;                                  \
        vec_##SFX p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0}, xv, v;                                                  \
        int64_t j = 0;                                                                                            \
        for (; j + 16 <= cols; j += 16) {                                                                         \
          memcpy(&xv, x + j, sizeof xv);                                                                          \
          memcpy(&v, r0 + j, sizeof v), p0 += v * xv;                                                             \
          memcpy(&v, r1 + j, sizeof v), p1 += v * xv;                                                             \
          memcpy(&v, r2 + j, sizeof v), p2 += v * xv;                                                             \
          memcpy(&v, r3 + j, sizeof v), p3 += v * xv;                                                             \
        }                                                                                                         \
        const vec_##SFX *parts[4] = {&p0, &p1, &p2, &p3};                                                         \
        for (int r = 0; r < 4; r++) {                                                                             \
          const T *row = mat + (i + r) * ld;                                                                      \
          T acc = 0;                                                                                              \
          for (int l = 0; l < 16; l++) acc += (*parts[r])[l];                                                     \
          for (int64_t k = j; k < cols; k++) acc += row[k] * x[k];                                                \
          y[(i + r) * incy] = (beta == 0 ? 0 : beta * y[(i + r) * incy]) + acc;                                   \
        }                                                                                                         \
      }                                                                                                           \
      /* fewer than 16 columns (a first layer on a small observation): 16 rows at a \
         time, one per lane, each summed in the order of the loop below */             \
      for (; i + 16 <= rows && incx == 1 && cols < 16; i += 16) {                                                 \
        T acc[16] = {0};                                                                                          \
        for (int64_t j = 0; j < cols; j++)                                                                        \
          for (int r = 0; r < 16; r++) acc[r] += mat[(i + r) * ld + j] * x[j];                                    \
        for (int r = 0; r < 16; r++) y[(i + r) * incy] = (beta == 0 ? 0 : beta * y[(i + r) * incy]) + acc[r];    \
      }                                                                                                           \
      for (; i < rows; i++) {                                                                                     \
        const T *row = mat + i * ld;                                                                              \
        T part[16] = {0}, acc = 0;                                                                                \
        int64_t j = 0;                                                                                            \
        if (incx == 1)                                                                                            \
          for (; j + 16 <= cols; j += 16)                                                                         \
            for (int l = 0; l < 16; l++) part[l] += row[j + l] * x[j + l];                                       \
        for (int l = 0; l < 16; l++) acc += part[l];                                                              \
        for (; j < cols; j++) acc += row[j] * x[j * incx];                                                        \
        y[i * incy] = (beta == 0 ? 0 : beta * y[i * incy]) + acc;                                                 \
      }                                                                                                           \
    } else { /* y[j] = beta y[j] + sum_i mat[i][j] x[i]: rows added in turn, vectorised over j */                \
      for (int64_t j = 0; j < cols; j++) y[j * incy] = beta == 0 ? 0 : beta * y[j * incy];                       \
      for (int64_t i = 0; i < rows; i++) {                                                                        \
        const T *row = mat + i * ld;                                                                              \
        T xi = x[i * incx];                                                                                       \
        if (incy == 1)                                                                                            \
          for (int64_t j = 0; j < cols; j++) y[j] += row[j] * xi;                                                 \
        else                                                                                                      \
          for (int64_t j = 0; j < cols; j++) y[j * incy] += row[j] * xi;                                          \
      }                                                                                                           \
    }                                                                                                             \
  }
DEF_GEMV(float, f32)
DEF_GEMV(double, f64)

/* y = op(M) x: a matrix-vector product reads the matrix once, where gemm would
 * first pack it (at batch 1 the packing cost ten times the product). */
static void gemv(mile_dtype dtype, bool trans, int64_t rows, int64_t cols, const void *mat, int64_t ld, const void *x,
                 int64_t incx, double beta, void *y, int64_t incy) {
  if (rows * cols <= SMALL_GEMV) {
    if (dtype == MILE_FLOAT64)
      gemv_f64(trans, rows, cols, mat, ld, x, incx, beta, y, incy);
    else
      gemv_f32(trans, rows, cols, mat, ld, x, incx, (float)beta, y, incy);
    return;
  }
  set_threads(threads_for(2.0 * (double)rows * (double)cols), false);
  CBLAS_TRANSPOSE t = trans ? CblasTrans : CblasNoTrans;
  if (dtype == MILE_FLOAT64)
    cblas_dgemv(CblasRowMajor, t, (int)rows, (int)cols, 1.0, mat, (int)ld, x, (int)incx, beta, y, (int)incy);
  else
    cblas_sgemv(CblasRowMajor, t, (int)rows, (int)cols, 1.0f, mat, (int)ld, x, (int)incx, (float)beta, y, (int)incy);
}

/* ---- matrix products ------------------------------------------------------------ */

void mile_gemm(mile_dtype dtype, const mile_operand *a, const mile_operand *b, int64_t m, int64_t n, int64_t k,
               double beta, void *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (m == 1 && n > 1) { /* c = a b as c^T = b^T a^T; a's k elements are 1 (not transposed) or ld apart */
    int64_t inca = a->trans ? a->ld : 1;
    gemv(dtype, !b->trans, b->trans ? n : k, b->trans ? k : n, b->data, b->ld, a->data, inca, beta, c, 1);
    return;
  }
  if (n == 1 && m > 1) { /* c = a b with b a column: its k elements are ld (not transposed) or 1 apart */
    int64_t incb = b->trans ? 1 : b->ld;
    gemv(dtype, a->trans, a->trans ? k : m, a->trans ? m : k, a->data, a->ld, b->data, incb, beta, c, ldc);
    return;
  }
  int32_t threads = threads_for(2.0 * (double)m * (double)n * (double)k);
  if (dtype == MILE_FLOAT64) {
    set_threads(threads, false);
    cblas_dgemm(CblasRowMajor, a->trans ? CblasTrans : CblasNoTrans, b->trans ? CblasTrans : CblasNoTrans, (int)m,
                (int)n, (int)k, 1.0, a->data, (int)a->ld, b->data, (int)b->ld, beta, c, (int)ldc);
  } else {
    set_threads(threads, use_onednn);
    sgemm_raw(use_onednn, a->trans, b->trans, m, n, k, a->data, a->ld, b->data, b->ld, (float)beta, c, ldc);
  }
}
