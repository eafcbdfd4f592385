/* gemm_baseline.c - direct cblas_sgemm timings, the yardstick of bench/tensor.lua.
 * usage: mile_bench_gemm M N K  -> one JSON line with the median seconds per call. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s M N K\n", argv[0]);
    return 2;
  }
  int m = atoi(argv[1]), n = atoi(argv[2]), k = atoi(argv[3]);
  float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * n);
  float *c = malloc(sizeof(float) * (size_t)m * n);
  if (!a || !b || !c) return 1;
  for (long i = 0; i < (long)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
  for (long i = 0; i < (long)k * n; i++) b[i] = (float)(i % 5) * 0.2f;
  enum { REPEATS = 15 };
  double times[REPEATS];
  int inner = m * n * k < 10000000 ? 200 : 20;
  for (int r = 0; r < REPEATS; r++) {
    double t0 = now();
    for (int i = 0; i < inner; i++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    times[r] = (now() - t0) / inner;
  }
  qsort(times, REPEATS, sizeof times[0], by_value);
  printf("{\"m\": %d, \"n\": %d, \"k\": %d, \"seconds\": %.9g}\n", m, n, k, times[REPEATS / 2]);
  free(a), free(b), free(c);
  return 0;
}
