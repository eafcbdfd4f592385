/* fastmath.h - float32 exp and tanh written so that compilers vectorise them.
 *
 * glibc's expf/tanhf are scalar calls; in training loops the activations spent
 * more time there than in the matrix products. These follow the Cephes single-
 * precision algorithms (range reduction by ln 2, a degree-5 polynomial, exponent
 * bits set directly; tanh by a polynomial near 0 and 1 - 2/(e^2x + 1) elsewhere),
 * branch-free so that a loop over them becomes SIMD. Error: a few ulp. float64
 * keeps libm. */
#ifndef MILE_FASTMATH_H
#define MILE_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float mile_expf(float x) {
  const float log2e = 1.44269504088896341f, c1 = 0.693359375f, c2 = -2.12194440e-4f;
  /* the whole range of finite, non-zero results (n from -150 to 128); NaN goes through as 0 */
  float xc = x > 88.7228391116729996f ? 88.7228391116729996f : x < -103.972077083991796f ? -103.972077083991796f : x;
  xc = x != x ? 0.0f : xc;
  /* n = round(x / ln 2) by the 1.5 * 2^23 trick: no libm call, vectorises with SSE2 */
  float t = xc * log2e + 12582912.0f;
  float n = t - 12582912.0f;
  float r = xc - n * c1 - n * c2;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r * r + r + 1.0f;
  /* 2^n as two normal floats 2^n1 2^n2: one alone would overflow the exponent near
   * FLT_MAX and cannot reach the subnormal results below FLT_MIN */
  int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
  int32_t bits1 = (n1 + 127) << 23, bits2 = (n2 + 127) << 23;
  float scale1, scale2;
  memcpy(&scale1, &bits1, sizeof scale1);
  memcpy(&scale2, &bits2, sizeof scale2);
  y = y * scale1 * scale2;
  y = x > 88.7228391116729996f ? (float)INFINITY : y;
  y = x < -103.972077083991796f ? 0.0f : y;
  return x != x ? x : y;
}

static inline float mile_tanhf(float x) {
  float a = x < 0 ? -x : x;
  float z = x * x;
  float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
                 3.33332819422e-1f) * z * x + x;
  float e = mile_expf(2.0f * (a > 9.0f ? 9.0f : a)); /* tanh(9) = 1 in float32 */
  float large = 1.0f - 2.0f / (e + 1.0f);
  large = x < 0 ? -large : large;
  return a < 0.625f ? small : large;
}

#endif
