/* intervention_gaussian.c - the diagonal-Gaussian probit intervention model.
 *
 * With pi_h = N(mu, sd^2), pihat = N(m, s^2) over D dims (DESIGN.md section 1):
 *   K = sum_d ((m_d - mu_d)^2 + s_d^2) / (2 sd_d^2),   t0 = K - c,   k = D/2,
 *   p = E_{T ~ Gamma(k, 1)} [Phi((t0 - T) / sigma)]      (X = 2T ~ chi2(D))
 *     = E_{Z ~ N(0, 1)}   [P(k, t0 - sigma Z)]           (P the regularised lower
 *                                                          incomplete gamma, 0 below 0)
 * i.e. p is the CDF of T + sigma Z at t0, and 1 - p = E[Phi((T - t0)/sigma)] =
 * E[Q(k, t0 - sigma Z)] its complement.
 *
 * Plain Gauss-Laguerre on the first form (the design's starting point) needs ~128
 * nodes for 1e-6 at sigma = 0.5 and fails for smaller sigma: Phi((t0 - t)/sigma) is a
 * step of width sigma that the nodes cannot resolve, and ln p, ln(1 - p) are wrong
 * by orders of magnitude in the tails. So each sample picks one of two fixed rules
 * per side (measured choice, docs/intervention.md):
 *
 *  (L) generalised Gauss-Laguerre (weight t^(k-1) e^-t, IV_NL nodes) with an
 *      exponential tilt: t = u / lambda, so that
 *        E[f(T)] = lambda^-k sum_i w_i e^{u_i (1 - 1/lambda)} f(u_i / lambda).
 *      lambda = max(1, 1/sigma) rescales the nodes to the step width, and the
 *      hazard term h(t0/sigma)/sigma follows the exponential decay of the far left
 *      tail, where ln p ~ -t0^2 / (2 sigma^2).
 *  (H) Gauss-Hermite (probabilists', IV_NH nodes) over Z against ln P / ln Q of the
 *      incomplete gamma, used when its kink at t0 - sigma Z = 0 lies beyond the
 *      nodes (t0 > 9 sigma); for 1 - p the nodes are shifted by mu = sigma (the
 *      mode of the exponentially tilted integrand; valid when t0 > sigma^2 + 9 sigma).
 *
 * Only the smaller of p and 1 - p is computed by quadrature; the other is
 * log1p(-exp(.)) of it, which is exact there. Everything is a sum of positive terms
 * done in log space (logsumexp), so ln p and ln(1 - p) keep their relative accuracy
 * however far in a tail. Derivatives are quadratures of the derivative integrands
 * (the tilt lambda and the rule choice are held fixed: they change the result only
 * at the level of the quadrature error):
 *   d ln p / d t0    = sum_i r_i h(y_i) / sigma,      y_i = (t0 - t_i) / sigma
 *   d ln p / d sigma = -sum_i r_i h(y_i) y_i / sigma   (r_i the normalised terms)
 * on the Laguerre side, and with the gamma density g on the Hermite side
 *   d p / d t0 = sum_j W_j g(t0 - sigma z_j),   d p / d sigma = -sum_j W_j g(.) z_j.
 * The chain to the inputs (sd = e^lsd, s = e^ls):
 *   dK/dmu_d = -(m_d - mu_d)/sd_d^2,  dK/dm_d = (m_d - mu_d)/sd_d^2,
 *   dK/dlsd_d = -((m_d - mu_d)^2 + s_d^2)/sd_d^2,  dK/dls_d = s_d^2/sd_d^2,
 *   d/dc = -d/dt0. */
#include <float.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "iv_internal.h"

static const char *const FNAME = "probit_gaussian";

#define IV_LN_1E150 345.38776394910684 /* ln 1e150 */

enum { IV_NL = 64, IV_NH = 24, IV_MAX_NODES = 512, IV_MAX_DIMS = 4096 };

/* ---- quadrature rules ---------------------------------------------------------- */

typedef struct iv_rule {
  int32_t dims, nl, nh;
  double k, lgk, lgk1;      /* k = D/2, ln Gamma(k), ln Gamma(k + 1) */
  double *u, *lw;           /* Laguerre nodes, ln weights / Gamma(k) (they sum to 1) */
  double *z, *lwz;          /* Hermite nodes, ln weights (sum to 1) */
} iv_rule;

/* Eigenvalues of the symmetric tridiagonal matrix (diagonal d, off-diagonal e[i]
 * between i and i+1) by implicit QL; d is overwritten, e destroyed. */
static bool tridiag_eigenvalues(int n, double *d, double *e) {
  e[n - 1] = 0;
  for (int l = 0; l < n; l++) {
    int iter = 0, m;
    do {
      for (m = l; m < n - 1; m++) {
        double dd = fabs(d[m]) + fabs(d[m + 1]);
        if (fabs(e[m]) <= DBL_EPSILON * dd) break;
      }
      if (m != l) {
        if (iter++ == 100) return false;
        double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
        double r = hypot(g, 1.0);
        g = d[m] - d[l] + e[l] / (g + copysign(r, g));
        double s = 1.0, c = 1.0, p = 0.0;
        int i;
        bool deflated = false;
        for (i = m - 1; i >= l; i--) {
          double f = s * e[i], b = c * e[i];
          e[i + 1] = (r = hypot(f, g));
          if (r == 0.0) {
            d[i + 1] -= p;
            e[m] = 0.0;
            deflated = true;
            break;
          }
          s = f / r, c = g / r;
          g = d[i + 1] - p;
          r = (d[i] - g) * s + 2.0 * c * b;
          d[i + 1] = g + (p = s * r);
          g = c * r - b;
        }
        if (deflated) continue;
        d[l] -= p, e[l] = g, e[m] = 0.0;
      }
    } while (m != l);
  }
  return true;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Generalised Laguerre L_n^(alpha) and L_{n-1} at x by the three-term recurrence,
 * rescaled as it goes: the true values are *ln, *lnm1 times e^(*scale). */
static void laguerre_eval(int n, double alpha, double x, double *ln, double *lnm1, double *scale) {
  double p0 = 1.0, p1 = 1.0 + alpha - x;
  *scale = 0;
  if (n == 1) p0 = 1.0;
  for (int j = 1; j < n; j++) {
    double p2 = ((2.0 * j + 1.0 + alpha - x) * p1 - (j + alpha) * p0) / (j + 1.0);
    p0 = p1, p1 = p2;
    if (fabs(p1) > 1e150) p0 *= 1e-150, p1 *= 1e-150, *scale += IV_LN_1E150;
  }
  *ln = p1, *lnm1 = p0;
}

/* Probabilists' Hermite He_n and He_{n-1} at x, rescaled likewise. */
static void hermite_eval(int n, double x, double *hn, double *hnm1, double *scale) {
  double p0 = 1.0, p1 = x;
  *scale = 0;
  for (int j = 1; j < n; j++) {
    double p2 = x * p1 - j * p0;
    p0 = p1, p1 = p2;
    if (fabs(p1) > 1e150) p0 *= 1e-150, p1 *= 1e-150, *scale += IV_LN_1E150;
  }
  *hn = p1, *hnm1 = p0;
}

/* Nodes by Golub-Welsch (eigenvalues of the Jacobi matrix), each polished by Newton
 * on the recurrence; weights from the derivative formula in log form, which keeps
 * the relative accuracy of the tiny weights of the far nodes (the tilt multiplies
 * them by large factors). */
static bool laguerre_rule(int n, double alpha, double *x, double *lw) {
  double e[IV_MAX_NODES];
  for (int i = 0; i < n; i++) {
    x[i] = 2.0 * i + alpha + 1.0;
    e[i] = i + 1 < n ? sqrt((i + 1.0) * (i + 1.0 + alpha)) : 0;
  }
  if (!tridiag_eigenvalues(n, x, e)) return false;
  qsort(x, (size_t)n, sizeof *x, cmp_double);
  double lnorm = lgamma(n + alpha + 1.0) - lgamma(n + 1.0);
  for (int i = 0; i < n; i++) {
    double ln, lnm1, sc, d = 0;
    for (int it = 0; it < 3; it++) {
      laguerre_eval(n, alpha, x[i], &ln, &lnm1, &sc);
      d = (n * ln - (n + alpha) * lnm1) / x[i]; /* x L_n' = n L_n - (n + alpha) L_{n-1} */
      double step = ln / d;
      if (!isfinite(step) || fabs(step) > 0.1 * x[i]) break;
      x[i] -= step;
    }
    laguerre_eval(n, alpha, x[i], &ln, &lnm1, &sc);
    d = (n * ln - (n + alpha) * lnm1) / x[i];
    lw[i] = lnorm - log(x[i]) - 2.0 * (log(fabs(d)) + sc); /* w = Gamma(n+a+1) / (n! x L_n'^2) */
  }
  return true;
}

static bool hermite_rule(int n, double *x, double *lw) {
  double e[IV_MAX_NODES];
  for (int i = 0; i < n; i++) x[i] = 0, e[i] = i + 1 < n ? sqrt(i + 1.0) : 0;
  if (!tridiag_eigenvalues(n, x, e)) return false;
  qsort(x, (size_t)n, sizeof *x, cmp_double);
  for (int i = 0; i < n; i++) {
    double hn, hnm1, sc;
    for (int it = 0; it < 3; it++) {
      hermite_eval(n, x[i], &hn, &hnm1, &sc);
      double step = hn / (n * hnm1); /* He_n' = n He_{n-1} */
      if (!isfinite(step) || fabs(step) > 0.1) break;
      x[i] -= step;
    }
    hermite_eval(n, x[i], &hn, &hnm1, &sc);
    lw[i] = lgamma(n + 1.0) - 2.0 * (log(n * fabs(hnm1)) + sc); /* W = n! / (n He_{n-1})^2 */
  }
  return true;
}

/* ln of sum exp(v[i]). */
static double log_sum_exp(int n, const double *v) {
  double m = -INFINITY, s = 0;
  for (int i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
  if (m == -INFINITY) return m;
  for (int i = 0; i < n; i++) s += exp(v[i] - m);
  return m + log(s);
}

static void rule_free(iv_rule *r) {
  if (r) free(r->u), free(r);
}

static iv_rule *rule_new(int32_t dims, int32_t nl, int32_t nh) {
  iv_rule *r = calloc(1, sizeof *r);
  double *mem = malloc((size_t)(2 * nl + 2 * nh) * sizeof *mem);
  if (!r || !mem) {
    free(r), free(mem);
    return NULL;
  }
  r->dims = dims, r->nl = nl, r->nh = nh;
  r->k = 0.5 * dims;
  r->lgk = lgamma(r->k), r->lgk1 = lgamma(r->k + 1.0);
  r->u = mem, r->lw = mem + nl, r->z = mem + 2 * nl, r->lwz = mem + 2 * nl + nh;
  if (!laguerre_rule(nl, r->k - 1.0, r->u, r->lw) || !hermite_rule(nh, r->z, r->lwz)) {
    rule_free(r);
    return NULL;
  }
  /* normalise both to probability weights (exactly, against rounding) */
  double lsl = log_sum_exp(nl, r->lw), lsh = log_sum_exp(nh, r->lwz);
  for (int i = 0; i < nl; i++) r->lw[i] -= lsl;
  for (int i = 0; i < nh; i++) r->lwz[i] -= lsh;
  return r;
}

/* Default rules, built once per D and kept for the life of the process. */
static _Atomic(iv_rule *) rule_cache[IV_MAX_DIMS + 1];
static pthread_mutex_t rule_lock = PTHREAD_MUTEX_INITIALIZER;

static mile_status rule_get(const char *fname, int32_t dims, const iv_rule **out) {
  if (dims < 1 || dims > IV_MAX_DIMS)
    return mile_set_error(MILE_ERR_SHAPE, "%s: %d action dims (supported: 1 to %d)", fname, (int)dims, IV_MAX_DIMS);
  iv_rule *r = atomic_load_explicit(&rule_cache[dims], memory_order_acquire);
  if (!r) {
    pthread_mutex_lock(&rule_lock);
    r = atomic_load_explicit(&rule_cache[dims], memory_order_relaxed);
    if (!r && (r = rule_new(dims, IV_NL, IV_NH))) atomic_store_explicit(&rule_cache[dims], r, memory_order_release);
    pthread_mutex_unlock(&rule_lock);
    if (!r) return mile_set_error(MILE_ERR_NOMEM, "%s: could not build the quadrature rule for D = %d", fname, (int)dims);
  }
  *out = r;
  return MILE_OK;
}

/* ---- special functions (double, x > 0) ------------------------------------------- */

static double log_ndtr(double x) {
  if (x < -20.0) return mile_log_normal_cdf_d(x);
  if (x < 0) return log(0.5 * erfc(-x * IV_SQRT1_2));
  return log1p(-0.5 * erfc(x * IV_SQRT1_2));
}

/* e^(y^2) erfc(y) for y >= 1. */
static double erfcx(double y) {
  if (y < 25.0) return exp(y * y) * erfc(y);
  double y2 = 1.0 / (y * y), s = 1.0, t = 1.0;
  for (int i = 1; i <= 6; i++) t *= -(2.0 * i - 1.0) * 0.5 * y2, s += t;
  return s / (y * 1.7724538509055160273);
}

/* ln P(k, x) and ln Q(k, x) for x > 0 and k = D/2: the series for P below k + 1,
 * above it the finite sums of integer and half-integer k for Q,
 *   Q = e^-x x^(k-1)/Gamma(k) [1 + (k-1)/x (1 + (k-2)/x (1 + ...))]  (+ erfc(sqrt x) for half-integers),
 * in log form so that neither underflows. */
static void log_gamma_pq(const iv_rule *r, double x, double *lp, double *lq) {
  double k = r->k;
  if (x < k + 1.0) {
    double sum = 1.0, term = 1.0;
    for (int n = 1; n < 100000; n++) {
      term *= x / (k + n);
      sum += term;
      if (term < 1e-17 * sum) break;
    }
    *lp = k * log(x) - x - r->lgk1 + log(sum);
    *lq = log1p(-exp(*lp));
    return;
  }
  int m = r->dims / 2; /* number of terms of the finite sum */
  double lx = log(x), lqv;
  if (m == 0) {
    lqv = -x + log(erfcx(sqrt(x)));
  } else {
    double h = 1.0;
    for (int i = m - 1; i >= 1; i--) h = 1.0 + h * (k - i) / x;
    double la = (k - 1.0) * lx - r->lgk + log(h);
    lqv = -x + la;
    if (r->dims % 2) lqv += log1p(erfcx(sqrt(x)) * exp(-la));
  }
  *lq = lqv;
  *lp = log1p(-exp(lqv));
}

/* ---- the quadratures --------------------------------------------------------------- */

typedef struct side_value { double l, dt, ds; } side_value; /* ln S, d ln S/d t0, d ln S/d sigma */

/* Terms further than this below the largest are dropped (e^-46 < 1e-20). */
#define IV_NEGLIGIBLE 46.0

/* (L): S = E[Phi(side (t0 - T)/sigma)] with Laguerre nodes tilted by lambda, given as
 * rho = 1 / (lambda sigma), the node spacing in units of y: with b = side t0/sigma,
 *   y_i = b - side u_i rho,   ln w_i = ln w0_i + k (ln rho + ln sigma) + u_i (1 - rho sigma).
 * rho lies in (0, 1] for every finite input, where lambda itself may overflow.
 * ln Phi(y_i) is kept as ln Phi(b) + D_i, D_i = ln Phi(y_i) - ln Phi(b) computed as a
 * difference (mile_log_normal_cdf_shift_d): far in the tail ln Phi(y_i) ~ -y_i^2/2
 * is ~1e300 while the D_i that decide the weights are O(1), and the plain
 * difference would lose them all (and gives NaN once b^2 overflows).
 * Nodes are visited in the order in which Phi(y) falls (y decreasing), and the walk
 * stops once even the largest remaining weight times the current Phi is negligible:
 * in a tail only a few nodes matter, and skipping the rest also keeps exp() away from
 * its slow underflow path. */
static side_value laguerre_side(const iv_rule *r, double t0, double sigma, double rho, double lb, int side) {
  double a[IV_MAX_NODES], y[IV_MAX_NODES], lw[IV_MAX_NODES], ld[IV_MAX_NODES], wmax[IV_MAX_NODES + 1];
  double b = side * (t0 / sigma); /* lb = ln Phi(b), from the caller */
  double lscale = r->k * (log(rho) + log(sigma)), tilt = 1.0 - rho * sigma;
  int n = r->nl;
  /* visiting order: i = 0.. for side +1 (y = (t0 - t)/sigma falls as t grows), n-1.. for -1 */
  for (int j = 0; j < n; j++) {
    int i = side > 0 ? j : n - 1 - j;
    lw[j] = r->lw[i] + lscale + r->u[i] * tilt;
    ld[j] = -side * r->u[i] * rho;
    y[j] = b + ld[j];
  }
  wmax[n] = -INFINITY;
  for (int j = n - 1; j >= 0; j--)
    wmax[j] = lw[j] > wmax[j + 1] ? lw[j] : wmax[j + 1];
  double top = -INFINITY; /* relative to ln Phi(b) */
  int used = n;
  for (int j = 0; j < n; j++) {
    double lc = mile_log_normal_cdf_shift_d(b, lb, ld[j]);
    if (lc + wmax[j] < top - IV_NEGLIGIBLE) { /* Phi only falls from here on */
      used = j;
      break;
    }
    a[j] = lw[j] + lc;
    ld[j] = lc; /* ld now holds D_j */
    if (a[j] > top) top = a[j];
  }
  double sum = 0, st = 0, ss = 0;
  for (int j = 0; j < used; j++) {
    double d = a[j] - top;
    if (d < -IV_NEGLIGIBLE) continue;
    sum += exp(d);
    /* r_j h(y_j) with r_j = w_j Phi(y_j) / S the normalised terms: in one exp where
     * phi(y_j) is in range (negligible terms skipped, as exp's underflow is slow),
     * by the asymptotic hazard further left */
    double hz;
    if (y[j] > -20.0) {
      double eh = d - 0.5 * y[j] * y[j] - IV_LN_SQRT_2PI - (lb + ld[j]);
      if (eh < -IV_NEGLIGIBLE - 20) continue;
      hz = exp(eh);
    } else {
      hz = exp(d) * mile_normal_hazard_d(y[j]);
    }
    st += hz, ss += iv_mul(hz, y[j]);
  }
  side_value v = {lb + top + log(sum), 0, 0};
  double scale = 1.0 / sum; /* the sums above are relative to e^top, S = e^top sum */
  v.dt = iv_sat(side * st * scale / sigma);
  v.ds = iv_sat(-ss * scale / sigma);
  return v;
}

/* (H): S = E[P(k, t0 - sigma Z)] (side +1) or E[Q(k, t0 - sigma Z)] (side -1), with the
 * Hermite nodes shifted by mu (Z = z + mu, weights times e^(-mu z - mu^2/2)). */
static side_value hermite_side(const iv_rule *r, double t0, double sigma, double mu, int side) {
  double a[IV_MAX_NODES], lg[IV_MAX_NODES], zeta[IV_MAX_NODES];
  int n = r->nh;
  for (int j = 0; j < n; j++) {
    zeta[j] = r->z[j] + mu;
    double lw = r->lwz[j] - mu * r->z[j] - 0.5 * mu * mu, x = t0 - sigma * zeta[j], lp, lq;
    if (x > 0) {
      log_gamma_pq(r, x, &lp, &lq);
      lg[j] = lw + (r->k - 1.0) * log(x) - x - r->lgk;
    } else {
      lp = -INFINITY, lq = 0, lg[j] = -INFINITY;
    }
    a[j] = lw + (side > 0 ? lp : lq);
  }
  side_value v = {log_sum_exp(n, a), 0, 0};
  double st = 0, ss = 0;
  for (int j = 0; j < n; j++) {
    if (lg[j] == -INFINITY) continue;
    double gj = exp(lg[j] - v.l);
    st += gj, ss += gj * zeta[j];
  }
  v.dt = side * st; /* dP/dx = g, dQ/dx = -g; dx/dt0 = 1, dx/dsigma = -zeta */
  v.ds = -side * ss;
  return v;
}

/* Laguerre tilts: lambda = max(1, 1/sigma) + h(t0/sigma)/sigma for p, and
 * max(1/sigma, min(max(1, 1/sigma), 1 - h(-t0/sigma)/sigma)) for 1 - p (h the hazard
 * phi/Phi), passed as rho = 1 / (lambda sigma). When t0/sigma overflows, the side is
 * 0 or 1 to double precision and takes its limit (derivatives saturated). */
static side_value direct_p(const iv_rule *r, double t0, double sigma) {
  if (t0 > 9.0 * sigma) return hermite_side(r, t0, sigma, 0.0, +1);
  double tau = t0 / sigma;
  if (tau == -INFINITY) return (side_value){-INFINITY, DBL_MAX, DBL_MAX};
  double lb = log_ndtr(tau), rho = 1.0 / ((sigma > 1.0 ? sigma : 1.0) + iv_hazard(tau, lb));
  return laguerre_side(r, t0, sigma, rho, lb, +1);
}

static side_value direct_q(const iv_rule *r, double t0, double sigma) {
  if (t0 > sigma * sigma + 9.0 * sigma) return hermite_side(r, t0, sigma, sigma, -1);
  double tau = -t0 / sigma;
  if (tau == INFINITY) return (side_value){0, 0, 0};
  double lb = log_ndtr(tau);
  double rho = 1.0 / fmax(1.0, fmin(fmax(1.0, sigma), sigma - iv_hazard(tau, lb)));
  return laguerre_side(r, t0, sigma, rho, lb, -1);
}

/* The other side from a direct one: ln(1 - e^l) and its derivatives. */
static side_value complement(side_value s) {
  side_value o;
  o.l = s.l < -0.6931471805599453 ? log1p(-exp(s.l)) : log(-expm1(s.l));
  double f = -exp(s.l - o.l);
  o.dt = iv_mul(f, s.dt), o.ds = iv_mul(f, s.ds);
  return o;
}

static const double LN_HALF = -0.69314718055994530942;

/* ln p, ln(1 - p) and their derivatives for one sample. */
static void gauss_pq(const iv_rule *r, double t0, double sigma, side_value *p, side_value *q) {
  if (t0 == INFINITY) { /* K overflowed: p = 1, ln(1 - p) ~ -t0 (the gamma tail) */
    *p = (side_value){0, 0, 0};
    *q = (side_value){-INFINITY, -1.0, iv_sat(sigma)};
    return;
  }
  bool p_first = t0 < r->k - 1.0 / 3.0; /* p is likely the smaller side (gamma median ~ k - 1/3) */
  side_value first = p_first ? direct_p(r, t0, sigma) : direct_q(r, t0, sigma), second;
  if (first.l <= LN_HALF) {
    second = complement(first);
  } else {
    second = p_first ? direct_q(r, t0, sigma) : direct_p(r, t0, sigma);
    if (second.l < first.l) first = complement(second);
    else second = complement(first);
  }
  *p = p_first ? first : second;
  *q = p_first ? second : first;
  if (p->l > 0) p->l = 0;
  if (q->l > 0) q->l = 0;
}

mile_status mile_probit_gaussian_logp(int32_t dims, double t0, double scale, double *logp, double *log1mp,
                                      double *dlogp_dt0, double *dlogp_dscale, double *dlog1mp_dt0,
                                      double *dlog1mp_dscale) {
  const char *fname = "probit_gaussian_logp";
  if (!isfinite(t0)) return mile_set_error(MILE_ERR_ARGUMENT, "%s: t0 must be finite, got %g", fname, t0);
  if (!(scale > 0) || !isfinite(scale))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: scale must be positive and finite, got %g", fname, scale);
  const iv_rule *r;
  MILE_TRY(rule_get(fname, dims, &r));
  side_value p, q;
  gauss_pq(r, t0, scale, &p, &q);
  if (logp) *logp = p.l;
  if (log1mp) *log1mp = q.l;
  if (dlogp_dt0) *dlogp_dt0 = p.dt;
  if (dlogp_dscale) *dlogp_dscale = p.ds;
  if (dlog1mp_dt0) *dlog1mp_dt0 = q.dt;
  if (dlog1mp_dscale) *dlog1mp_dscale = q.ds;
  return MILE_OK;
}

/* ---- the fused node ------------------------------------------------------------------ */

/* z = (m - mu) / sd = (m - mu) e^-lsd when the plain product over- or underflows
 * (or m - mu does): in logs, with the difference halved so that it cannot overflow. */
static double scaled_gap(double m, double mu, double lsd) {
  double half = 0.5 * m - 0.5 * mu;
  if (half == 0) return 0;
  return copysign(exp(log(fabs(half)) + 0.69314718055994530942 - lsd), half);
}

/* K of one row and, when dk is given, dK/d(mu, lsd, m, ls) into dk[0..4D). K is +inf
 * only when its exact value is beyond the double range; never NaN. */
static double row_k(int64_t D, const double *mu, const double *lsd, const double *m, const double *ls, double *dk) {
  double K = 0;
  for (int64_t d = 0; d < D; d++) {
    double e = exp(-lsd[d]), z = (m[d] - mu[d]) * e, ratio = exp(2.0 * (ls[d] - lsd[d]));
    if (!(z - z == 0) || (e == 0 && m[d] != mu[d])) z = scaled_gap(m[d], mu[d], lsd[d]);
    double term = z * z + ratio;
    K += 0.5 * term;
    if (dk) {
      double g = iv_mul(z, e); /* (m - mu) / sd^2 */
      dk[d] = -g;
      dk[D + d] = -term;
      dk[2 * D + d] = g;
      dk[3 * D + d] = ratio;
    }
  }
  return K;
}

static void release_partials(void *t) { mile_tensor_release(t); }

/* The rows [b0, b1) of the backward pass, each alone with its own scratch. */
typedef struct backward_rows {
  mile_tensor *in[4], *gc, **grads;
  const double *partials; /* [B, 4] from the forward */
  int64_t D;
  double *gcs, *gss;
  iv_rows *rows;
} backward_rows;

static void backward_range(int64_t b0, int64_t b1, int part, void *ctx) {
  const backward_rows *k = ctx;
  int64_t D = k->D;
  double *mine = iv_rows_scratch(k->rows, part);
  double *row[4] = {mine, mine + D, mine + 2 * D, mine + 3 * D}, *dk = mine + 4 * D, *o = mine + 8 * D;
  double *gr = mine + 9 * D;
  for (int64_t b = b0; b < b1; b++) {
    for (int i = 0; i < 4; i++)
      iv_load_row(k->in[i], b, D, row[i]);
    iv_load_row(k->gc, b, 3, gr);
    row_k(D, row[0], row[1], row[2], row[3], dk);
    const double *pb = k->partials + 4 * b;
    /* saturating products: a derivative at +-DBL_MAX times a zero gradient is 0 */
    double gt = iv_sat(iv_mul(gr[1], pb[0]) + iv_mul(gr[2], pb[2]));
    double gs = iv_sat(iv_mul(gr[1], pb[1]) + iv_mul(gr[2], pb[3]));
    double gk = iv_sat(gr[0] + gt);
    k->gcs[b] = -gt, k->gss[b] = gs;
    /* dk holds dK/dmu, dK/dlsd, dK/dm, dK/dls: the inputs' order */
    for (int i = 0; i < 4; i++) {
      if (!k->grads[i]) continue;
      for (int64_t d = 0; d < D; d++)
        o[d] = iv_mul(gk, dk[i * D + d]);
      iv_store_grad_row(k->grads[i], b, D, o);
    }
  }
}

/* The rows [b0, b1) of the forward pass; a row with a non-finite input is skipped and
 * the piece's first such row noted (the error is raised by the caller). */
typedef struct forward_rows {
  mile_tensor *in[4], *out;
  const iv_rule *rule;
  const iv_param *cost, *scale;
  double *partials; /* [B, 4] derivatives for backward, or NULL */
  int64_t D;
  iv_rows *rows;
} forward_rows;

static void forward_range(int64_t b0, int64_t b1, int part, void *ctx) {
  const forward_rows *k = ctx;
  int64_t D = k->D;
  double *mine = iv_rows_scratch(k->rows, part);
  for (int64_t b = b0; b < b1; b++) {
    for (int i = 0; i < 4; i++)
      iv_load_row(k->in[i], b, D, mine + i * D);
    if (iv_first_nonfinite(mine, 4 * D) >= 0) {
      iv_rows_bad(k->rows, part, b);
      continue;
    }
    double K = row_k(D, mine, mine + D, mine + 2 * D, mine + 3 * D, NULL);
    side_value p, q;
    gauss_pq(k->rule, K - iv_param_at(k->cost, b), iv_param_at(k->scale, b), &p, &q);
    double o[3] = {K, p.l, q.l};
    iv_store_row(k->out, b, 3, o);
    double *pd = k->partials;
    if (pd) pd[4 * b] = p.dt, pd[4 * b + 1] = p.ds, pd[4 * b + 2] = q.dt, pd[4 * b + 3] = q.ds;
  }
}

static mile_status gaussian_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *in[6], *c[4] = {0}, *gc = NULL;
  for (int i = 0; i < 4; i++) MILE_TRY(mile_node_saved(node, i, &in[i]));
  in[4] = node->inputs[4], in[5] = node->inputs[5]; /* cost, scale: only their shapes are read */
  /* [B, 4] float64 from the forward: d ln p/dt0, d ln p/ds, d ln(1-p)/dt0, d ln(1-p)/ds */
  mile_tensor *partials = node->custom_user;
  int64_t B = in[0]->shape[0], D = in[0]->shape[1];
  mile_dtype dtype = (mile_dtype)in[0]->dtype;
  double *gcs = NULL, *gss = NULL;
  mile_status st = MILE_OK;
  for (int i = 0; i < 4 && st == MILE_OK; i++) st = mile_contiguous(&c[i], in[i]);
  if (st == MILE_OK) st = mile_contiguous(&gc, g);
  for (int i = 0; i < 4 && st == MILE_OK; i++)
    if (node->needs[i]) st = mile_empty(&grads[i], dtype, 2, in[0]->shape);
  iv_rows rows = {0};
  if (st == MILE_OK) st = iv_rows_init(&rows, FNAME, B, (size_t)(9 * D + 3));
  if (st == MILE_OK) {
    gcs = calloc((size_t)B, sizeof *gcs), gss = calloc((size_t)B, sizeof *gss);
    if (!gcs || !gss) st = mile_err_nomem(FNAME);
  }
  if (st == MILE_OK) {
    backward_rows k = {{c[0], c[1], c[2], c[3]}, gc, grads, mile_data(partials), D, gcs, gss, &rows};
    mile_parallel_for(B, rows.parts, backward_range, &k);
  }
  if (st == MILE_OK && node->needs[4]) st = iv_param_grad(&grads[4], in[4], gcs, B);
  if (st == MILE_OK && node->needs[5]) st = iv_param_grad(&grads[5], in[5], gss, B);
  free(gcs), free(gss);
  iv_rows_free(&rows);
  for (int i = 0; i < 4; i++) mile_tensor_release(c[i]);
  mile_tensor_release(gc);
  return st;
}

mile_status mile_probit_gaussian(mile_tensor **out, mile_tensor *mu, mile_tensor *log_sd, mile_tensor *mental_mu,
                                 mile_tensor *mental_log_sd, mile_tensor *cost_t, mile_tensor *scale_t) {
  *out = NULL;
  MILE_TRY(iv_check_matrix(FNAME, "mu", mu));
  MILE_TRY(iv_check_like(FNAME, "log_sd", log_sd, "mu", mu));
  MILE_TRY(iv_check_like(FNAME, "mental_mu", mental_mu, "mu", mu));
  MILE_TRY(iv_check_like(FNAME, "mental_log_sd", mental_log_sd, "mu", mu));
  int64_t B = mu->shape[0], D = mu->shape[1];
  mile_dtype dtype = (mile_dtype)mu->dtype;
  const iv_rule *r;
  MILE_TRY(rule_get(FNAME, (int32_t)(D > IV_MAX_DIMS ? IV_MAX_DIMS + 1 : D), &r));
  iv_param cost = {0}, scale = {0};
  MILE_TRY(iv_param_read(FNAME, "cost", cost_t, B, dtype, false, &cost));
  mile_status st = iv_param_read(FNAME, "scale", scale_t, B, dtype, true, &scale);
  mile_tensor *in[4] = {mu, log_sd, mental_mu, mental_log_sd}, *c[4] = {0}, *partials = NULL;
  for (int i = 0; i < 4 && st == MILE_OK; i++) st = mile_contiguous(&c[i], in[i]);
  int64_t shape[2] = {B, MILE_PROBIT_G_WIDTH}, pshape[2] = {B, 4};
  if (st == MILE_OK) st = mile_empty(out, dtype, 2, shape);
  bool want_grad = mile_any_requires_grad(6, (mile_tensor *[]){mu, log_sd, mental_mu, mental_log_sd, cost_t, scale_t});
  if (st == MILE_OK && want_grad) st = mile_empty(&partials, MILE_FLOAT64, 2, pshape);
  iv_rows rows = {0};
  if (st == MILE_OK) st = iv_rows_init(&rows, FNAME, B, (size_t)(4 * D));
  if (st == MILE_OK) {
    forward_rows k = {{c[0], c[1], c[2], c[3]}, *out, r, &cost, &scale, partials ? mile_data(partials) : NULL, D,
                      &rows};
    mile_parallel_for(B, rows.parts, forward_range, &k);
    int64_t bad_row = iv_rows_first_bad(&rows); /* reported here, on the calling thread */
    if (bad_row < B) {
      static const char *const names[4] = {"mu", "log_sd", "mental_mu", "mental_log_sd"};
      double *row = rows.scratch;
      for (int i = 0; i < 4; i++)
        iv_load_row(c[i], bad_row, D, row + i * D);
      int64_t bad = iv_first_nonfinite(row, 4 * D);
      st = iv_nonfinite_error(FNAME, names[bad / D], bad_row, bad % D, row[bad]);
    }
  }
  iv_rows_free(&rows);
  iv_param_free(&cost), iv_param_free(&scale);
  for (int i = 0; i < 4; i++) mile_tensor_release(c[i]);
  mile_node *node = NULL;
  mile_tensor *inputs[6] = {mu, log_sd, mental_mu, mental_log_sd, cost_t, scale_t};
  if (st == MILE_OK) st = mile_record(*out, FNAME, gaussian_backward, 6, inputs, &node);
  if (node) {
    for (int i = 0; i < 4; i++) mile_node_save(node, inputs[i]);
    /* the per-sample derivatives ride in the node's user slot (a node saves at most
     * four tensors); the node releases them when it dies */
    node->custom_user = partials, partials = NULL;
    node->custom_free = release_partials;
  }
  mile_tensor_release(partials);
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}
