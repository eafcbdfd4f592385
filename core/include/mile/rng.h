/* mile/rng.h - an explicit, seeded random generator (xoshiro256**).
 *
 * There is no global generator: every random draw in mile names its generator,
 * so the same seed gives the same numbers, bit for bit, on one build. */
#ifndef MILE_RNG_H
#define MILE_RNG_H

#include "mile/tensor.h"

typedef struct mile_rng { uint64_t s[4]; } mile_rng;

/* Seed (splitmix64 expansion of `seed`). */
MILE_API void mile_rng_seed(mile_rng *rng, uint64_t seed);
/* A heap generator for bindings; free with mile_rng_free (NULL-safe). */
MILE_API mile_rng *mile_rng_new(uint64_t seed);
MILE_API void mile_rng_free(mile_rng *rng);
/* Next raw 64 bits. */
MILE_API uint64_t mile_rng_next(mile_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
MILE_API double mile_rng_uniform(mile_rng *rng);
/* Standard normal (Box-Muller, both values used in turn via a second call is not
 * cached: each call consumes two uniforms, keeping draws reproducible per call). */
MILE_API double mile_rng_normal(mile_rng *rng);
/* Integer uniform in [0, n) without modulo bias; n = 0 stands for 2^64 (any
 * uint64_t), so that a range of 2^64 values, which wraps to 0, needs no special case. */
MILE_API uint64_t mile_rng_below(mile_rng *rng, uint64_t n);

/* Fill t with U[lo, hi) / N(mean, std^2) in place. */
MILE_API mile_status mile_uniform_(mile_tensor *t, mile_rng *rng, double lo, double hi);
MILE_API mile_status mile_normal_(mile_tensor *t, mile_rng *rng, double mean, double std);
/* One draw per row of probs [..., A] (non-negative, need not sum to 1): 0-based
 * categories as a tensor of shape [...] in probs' dtype. */
MILE_API mile_status mile_categorical(mile_tensor **out, mile_rng *rng, mile_tensor *probs);
/* A random permutation of 0..n-1 written into perm. */
MILE_API mile_status mile_randperm(mile_rng *rng, int64_t n, int64_t *perm);

#endif
