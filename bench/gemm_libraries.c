/* gemm_libraries.c - the float32 products of mile's networks on four libraries, to
 * choose the one core/src/gemm.c uses (docs/performance.md has the table).
 *
 * Not built by CMake: BLIS, libxsmm and their headers are not dependencies of mile.
 * On Debian (as root: apt-get install libblis-dev libxsmm-dev libdnnl-dev):
 *   gcc -O2 -o /tmp/gemm_libraries bench/gemm_libraries.c \
 *     -I/usr/include/x86_64-linux-gnu/openblas-pthread -I/usr/include/x86_64-linux-gnu/blis-openmp \
 *     -lopenblas -L/usr/lib/x86_64-linux-gnu/blis-openmp -l:libblis.so.4 /usr/lib/libxsmm.a -ldnnl \
 *     -lpthread -ldl -lm -fopenmp
 *   OMP_NUM_THREADS=T /tmp/gemm_libraries T B     (T threads, batch B: 1024 or 64)
 * Each line: a product (row-major C[M,N] = op(A) op(B), N/T = not transposed or
 * transposed), and per library the median microseconds of a call and GFLOP/s.
 * libxsmm goes through libxsmm_sgemm, which hands shapes past its small-matrix limit
 * to the BLAS it is linked with (OpenBLAS here). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <libxsmm.h>
#include <dnnl.h>
#include "blis.h"
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int cmp(const void *a, const void *b) {
  double x = *(double *)a, y = *(double *)b;
  return x < y ? -1 : x > y;
}
typedef struct {
  int M, N, K;
  char ta, tb;
  const char *what;
} shape;
static float *A, *B, *C;
static void run(int lib, shape s) {
  int M = s.M, N = s.N, K = s.K;
  int lda = s.ta == 'N' ? K : M, ldb = s.tb == 'N' ? N : K;
  switch (lib) {
  case 0:
    cblas_sgemm(CblasRowMajor, s.ta == 'N' ? CblasNoTrans : CblasTrans, s.tb == 'N' ? CblasNoTrans : CblasTrans, M, N,
                K, 1.f, A, lda, B, ldb, 0.f, C, N);
    break;
  case 1: {
    float one = 1, zero = 0;
    bli_sgemm(s.ta == 'N' ? BLIS_NO_TRANSPOSE : BLIS_TRANSPOSE, s.tb == 'N' ? BLIS_NO_TRANSPOSE : BLIS_TRANSPOSE, M, N,
              K, &one, A, lda, 1, B, ldb, 1, &zero, C, N, 1);
    break;
  }
  case 2: {
    float one = 1, zero = 0;
    libxsmm_blasint m = N, n = M, k = K, la = ldb, lb = lda, lc = N;
    char ta = s.tb, tb = s.ta;
    libxsmm_sgemm(&ta, &tb, &m, &n, &k, &one, B, &la, A, &lb, &zero, C, &lc);
    break;
  }
  case 3:
    dnnl_sgemm(s.ta, s.tb, M, N, K, 1.f, A, lda, B, ldb, 0.f, C, N);
    break;
  }
}
int main(int argc, char **argv) {
  int threads = atoi(argv[1]);
  int Bt = atoi(argv[2]);
  openblas_set_num_threads(threads);
  bli_thread_set_num_threads(threads);
  libxsmm_init();
  A = malloc(4 << 24);
  B = malloc(4 << 24);
  C = malloc(4 << 24);
  for (int i = 0; i < (1 << 24); i++) {
    A[i] = (i % 7) * .1f;
    B[i] = (i % 5) * .2f;
  }
  shape sh[] = {{Bt, 256, 8, 'N', 'T', "fwd1"},  {Bt, 256, 256, 'N', 'T', "fwd2"}, {Bt, 4, 256, 'N', 'T', "fwd3"},
                {Bt, 256, 4, 'N', 'N', "bx3"},   {Bt, 256, 256, 'N', 'N', "bx2"},  {4, 256, Bt, 'T', 'N', "bw3"},
                {256, 256, Bt, 'T', 'N', "bw2"}, {256, 8, Bt, 'T', 'N', "bw1"},    {Bt, 256, 156, 'N', 'T', "gfwd1"},
                {Bt, 8, 256, 'N', 'T', "gfwd3"}, {256, 156, Bt, 'T', 'N', "gbw1"}, {8, 256, Bt, 'T', 'N', "gbw3"},
                {Bt, 256, 8, 'N', 'N', "gbx3"}};
  const char *names[] = {"openblas", "blis", "libxsmm", "onednn"};
  for (unsigned i = 0; i < sizeof sh / sizeof *sh; i++) {
    printf("%-6s %4d %4d %4d %c%c", sh[i].what, sh[i].M, sh[i].N, sh[i].K, sh[i].ta, sh[i].tb);
    double fl = 2.0 * sh[i].M * sh[i].N * sh[i].K;
    for (int lib = 0; lib < 4; lib++) {
      int inner = fl < 1e6 ? 2000 : fl < 1e8 ? 100 : 20;
      double t[9];
      for (int w = 0; w < inner; w++)
        run(lib, sh[i]);
      for (int r = 0; r < 9; r++) {
        double t0 = now();
        for (int w = 0; w < inner; w++)
          run(lib, sh[i]);
        t[r] = (now() - t0) / inner;
      }
      qsort(t, 9, sizeof *t, cmp);
      printf("  %s %7.2fus %5.0fGF", names[lib], t[4] * 1e6, fl / t[4] * 1e-9);
    }
    printf("\n");
  }
}
