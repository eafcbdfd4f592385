/* rng.c - xoshiro256** seeded through splitmix64, and tensor sampling. */
#include <math.h>
#include <string.h>

#include "internal.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void mile_rng_seed(mile_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

mile_rng *mile_rng_new(uint64_t seed) {
  mile_rng *rng = malloc(sizeof *rng);
  if (!rng) {
    mile_err_nomem("rng_new");
    return NULL;
  }
  mile_rng_seed(rng, seed);
  return rng;
}

void mile_rng_free(mile_rng *rng) { free(rng); }

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mile_rng_next(mile_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double mile_rng_uniform(mile_rng *rng) { return (double)(mile_rng_next(rng) >> 11) * 0x1.0p-53; }

double mile_rng_normal(mile_rng *rng) {
  double u1 = 1.0 - mile_rng_uniform(rng); /* (0, 1]: log stays finite */
  double u2 = mile_rng_uniform(rng);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586477 * u2);
}

uint64_t mile_rng_below(mile_rng *rng, uint64_t n) {
  if (n == 0) return mile_rng_next(rng);        /* the whole 2^64 range: every value is fair */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
  uint64_t x;
  do x = mile_rng_next(rng);
  while (x >= limit);
  return x % n;
}

/* Fill t element by element in row-major order (so results do not depend on strides). */
static mile_status fill_with(mile_tensor *t, mile_rng *rng, double a, double b, bool normal) {
  if (!rng) return mile_set_error(MILE_ERR_ARGUMENT, "%s: generator is NULL", normal ? "normal_" : "uniform_");
  int64_t n = mile_numel(t), idx[MILE_MAX_DIMS] = {0};
  for (int64_t k = 0; k < n; k++) {
    double v = normal ? a + b * mile_rng_normal(rng) : a + (b - a) * mile_rng_uniform(rng);
    int64_t off = t->offset;
    for (int32_t d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
    if (t->dtype == MILE_FLOAT64) ((double *)t->storage->data)[off] = v;
    else ((float *)t->storage->data)[off] = (float)v;
    for (int32_t d = t->ndim - 1; d >= 0; d--) {
      if (++idx[d] < t->shape[d]) break;
      idx[d] = 0;
    }
  }
  mile_bump_version(t);
  return MILE_OK;
}

mile_status mile_uniform_(mile_tensor *t, mile_rng *rng, double lo, double hi) {
  if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi))
    return mile_set_error(MILE_ERR_ARGUMENT, "uniform_: bounds [%g, %g] are not a finite interval", lo, hi);
  return fill_with(t, rng, lo, hi, false);
}

mile_status mile_normal_(mile_tensor *t, mile_rng *rng, double mean, double std) {
  if (!(std >= 0) || !isfinite(mean) || !isfinite(std))
    return mile_set_error(MILE_ERR_ARGUMENT, "normal_: mean %g and std %g must be finite, std >= 0", mean, std);
  return fill_with(t, rng, mean, std, true);
}

mile_status mile_categorical(mile_tensor **out, mile_rng *rng, mile_tensor *probs) {
  *out = NULL;
  if (!rng) return mile_set_error(MILE_ERR_ARGUMENT, "categorical: generator is NULL");
  if (probs->ndim < 1 || probs->shape[probs->ndim - 1] < 1)
    return mile_set_error(MILE_ERR_SHAPE, "categorical: probs need a last dim with at least one category");
  mile_tensor *p;
  MILE_TRY(mile_contiguous(&p, probs));
  int64_t a = p->shape[p->ndim - 1], rows = mile_numel(p) / a;
  mile_status st = mile_empty(out, (mile_dtype)p->dtype, p->ndim - 1, p->shape);
  for (int64_t r = 0; r < rows && st == MILE_OK; r++) {
    double total = 0;
    for (int64_t j = 0; j < a; j++) {
      int64_t idx = r * a + j;
      double v = p->dtype == MILE_FLOAT64 ? ((double *)mile_data(p))[idx] : ((float *)mile_data(p))[idx];
      if (!(v >= 0) || !isfinite(v)) {
        st = mile_set_error(MILE_ERR_ARGUMENT, "categorical: probability %g in row %lld is negative or not finite", v,
                            (long long)r + 1);
        break;
      }
      total += v;
    }
    if (st != MILE_OK) break;
    if (!(total > 0)) {
      st = mile_set_error(MILE_ERR_ARGUMENT, "categorical: row %lld sums to 0", (long long)r + 1);
      break;
    }
    double u = mile_rng_uniform(rng) * total, acc = 0;
    int64_t pick = a - 1;
    for (int64_t j = 0; j < a; j++) {
      int64_t idx = r * a + j;
      acc += p->dtype == MILE_FLOAT64 ? ((double *)mile_data(p))[idx] : ((float *)mile_data(p))[idx];
      if (u < acc) {
        pick = j;
        break;
      }
    }
    while (pick > 0 && (p->dtype == MILE_FLOAT64 ? ((double *)mile_data(p))[r * a + pick]
                                                 : ((float *)mile_data(p))[r * a + pick]) == 0)
      pick--; /* rounding at the end of the row must not pick a zero-probability class */
    if (p->dtype == MILE_FLOAT64) ((double *)mile_data(*out))[r] = (double)pick;
    else ((float *)mile_data(*out))[r] = (float)pick;
  }
  mile_tensor_release(p);
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}

mile_status mile_randperm(mile_rng *rng, int64_t n, int64_t *perm) {
  if (!rng || n < 0) return mile_set_error(MILE_ERR_ARGUMENT, "randperm: bad generator or n < 0");
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
    int64_t j = (int64_t)mile_rng_below(rng, (uint64_t)i + 1);
    int64_t t = perm[i];
    perm[i] = perm[j], perm[j] = t;
  }
  return MILE_OK;
}
