/* normal.c - the standard normal CDF and its logarithm, accurate in both tails.
 *
 * ln Phi(x) follows the structure of scipy's log_ndtr: log1p(-Phi(-x)) on the
 * right, ln(erfc) in the middle, and the asymptotic series
 *   ln Phi(x) = -x^2/2 - ln(-x) - ln(2 pi)/2 + ln(1 - 1/x^2 + 3/x^4 - 15/x^6 + ...)
 * far on the left, where erfc underflows. */
#include <math.h>

#include "internal.h"

static const double SQRT1_2 = 0.70710678118654752440;
static const double LN_SQRT_2PI = 0.91893853320467274178;

double mile_normal_cdf_d(double x) { return 0.5 * erfc(-x * SQRT1_2); }

/* ln of the bracket of the asymptotic series, for x <= -20 (terms shrink fast). */
static double log_asymptotic_tail(double x) {
  double x2 = x * x, term = 1.0, sum = 1.0;
  for (int k = 1; k <= 8; k++) {
    term *= -(2.0 * k - 1.0) / x2;
    sum += term;
  }
  return log(sum);
}

double mile_log_normal_cdf_d(double x) {
  /* right of 0, log1p of the small upper tail: log(Phi(x)) would lose the digits of
   * 1 - Phi(x) (relative error eps / (1 - Phi(x)), 4e-10 at x = 5) */
  if (x > 0.0) return log1p(-mile_normal_cdf_d(-x));
  if (x > -20.0) return log(mile_normal_cdf_d(x));
  if (x == -INFINITY) return -INFINITY;
  return -0.5 * x * x - log(-x) - LN_SQRT_2PI + log_asymptotic_tail(x);
}

double mile_log_normal_cdf_shift_d(double b, double lb, double d) {
  double y = b + d;
  if (b < -20.0 && y < -20.0) {
    /* both in the asymptotic range: the -x^2/2 and -ln(-x) parts subtracted
     * analytically, so that no digits are lost to terms of size b^2 */
    return -d * (b + 0.5 * d) - log1p(d / b) + log_asymptotic_tail(y) - log_asymptotic_tail(b);
  }
  return mile_log_normal_cdf_d(y) - lb;
}

double mile_normal_hazard_d(double x) {
  /* phi(x) / Phi(x) = exp(ln phi(x) - ln Phi(x)); for x -> -inf it tends to -x */
  if (x > -20.0) return exp(-0.5 * x * x - LN_SQRT_2PI - mile_log_normal_cdf_d(x));
  if (x == -INFINITY) return INFINITY;
  return -x / exp(log_asymptotic_tail(x)); /* ln phi - ln Phi = ln(-x) - ln(series) */
}
