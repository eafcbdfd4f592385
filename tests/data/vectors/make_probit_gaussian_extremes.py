#!/usr/bin/env python3
"""Regenerate probit_gaussian_extremes.csv: ln p and ln(1 - p) of the Gaussian probit
model at the extremes of the float64 range of t0 = K - c and sigma, by mpmath at 40
digits (mpmath numbers have an unbounded exponent, so e^-1e300 is an ordinary value
there). Independent of mile's quadrature rules. Not run by CI (needs mpmath).

With T ~ Gamma(k, 1), k = D/2, Z ~ N(0, 1), tau = t0/sigma, P and Q the regularised
incomplete gamma functions:
    p = P(T + sigma Z <= t0) = E_Z[P(k, t0 - sigma Z)],  1 - p = E_Z[Q(k, t0 - sigma Z)].
(A) far left (tau << 0): with Z = tau - v/|tau| (exact, no approximation)
        p = phi(tau)/|tau| int_0^inf exp(-v - v^2/(2 tau^2)) P(k, sigma v/|tau|) dv,
    the integrand of order one wherever it matters;
(B) far right through the gamma tail: 1 - p = int phi(z) Q(k, t0 - sigma z) dz, split
    around its peak near z = sigma;
(C) huge sigma: p = E_T[Phi((t0 - T)/sigma)] directly.
The complement is log1p(-e^l) in mpmath. Rows whose ln p or ln(1 - p) is beyond the
double range are left out."""
import mpmath as mp

mp.mp.dps = 40


def lP(k, x):
    return mp.log(mp.gammainc(k, 0, x, regularized=True)) if x > 0 else mp.ninf


def case_a(D, tau, s):
    k = mp.mpf(D) / 2
    tau, s = mp.mpf(tau), mp.mpf(s)
    at = -tau
    f = lambda v: mp.exp(-v - v * v / (2 * tau * tau)) * mp.gammainc(k, 0, s * v / at, regularized=True)
    # P(k, x) ~ x^k for small x: the mass is at v ~ k unless s v / |tau| is large
    pts = [0, mp.mpf(k) / 4, k, 4 * k + 4, 40 * k + 100, mp.inf]
    x1 = at / s  # where P saturates
    pts = sorted(set(pts + [x1 * c for c in (0.1, 1, 10) if 0 < x1 * c < 40 * k + 100]))
    I = mp.quad(f, pts)
    lp = -tau * tau / 2 - mp.log(mp.sqrt(2 * mp.pi)) - mp.log(at) + mp.log(I)
    return tau * s, s, lp, mp.log1p(-mp.exp(lp))


def case_b(D, t0, s):
    k = mp.mpf(D) / 2
    t0, s = mp.mpf(t0), mp.mpf(s)
    lq = lambda z: mp.log(mp.gammainc(k, t0 - s * z, mp.inf, regularized=True)) if t0 - s * z > 0 else mp.mpf(0)
    g = lambda z: -z * z / 2 + lq(z)
    zc = s  # the peak of phi(z) e^{sigma z}
    ref = g(zc)
    f = lambda z: mp.exp(g(z) - ref)
    pts = [mp.ninf, zc - 40, zc - 8, zc - 2, zc, zc + 2, zc + 8, zc + 40, mp.inf]
    edge = t0 / s
    pts = sorted(set(pts + ([edge] if zc - 40 < edge < zc + 40 else [])))
    I = mp.quad(f, pts)
    l1 = ref + mp.log(I) - mp.log(mp.sqrt(2 * mp.pi))
    return t0, s, mp.log1p(-mp.exp(l1)), l1


def case_c(D, t0, s):
    k = mp.mpf(D) / 2
    t0, s = mp.mpf(t0), mp.mpf(s)
    g = lambda t: mp.exp((k - 1) * mp.log(t) - t - mp.loggamma(k)) if t > 0 else mp.mpf(0)
    pts = [0, k / 4, k, 4 * k + 4, 40 * k + 100, mp.inf]
    p = mp.quad(lambda t: g(t) * mp.ncdf((t0 - t) / s), pts)
    q = mp.quad(lambda t: g(t) * mp.ncdf((t - t0) / s), pts)
    return t0, s, mp.log(p), mp.log(q)


def cases():
    for D in (1, 2, 3, 8):
        for tau in (-30, -1e3, -1e8, -1e20, -1e100, -1e150, -1.8e154):
            for s in (1e-300, 1e-3, 1, 1e3, 1e100, 1e300):
                if abs(tau * s) <= 1e308:
                    yield D, case_a(D, tau, s)
        for t0 in (1e3, 1e10, 1e100, 1e300):
            for s in (1e-300, 0.5, 2):
                yield D, case_b(D, t0, s)
        for t0 in (-1e10, -1, 0, 1, 1e10):
            for s in (1e100, 1e300):
                yield D, case_c(D, t0, s)


if __name__ == "__main__":
    big = mp.mpf("1.7976931348623157e308")
    with open("probit_gaussian_extremes.csv", "w") as f:
        f.write("D,t0,sigma,logp,log1mp\n")
        for D, (t0, s, lp, l1) in cases():
            if abs(lp) > big or abs(l1) > big:
                continue
            f.write("%d,%.17g,%.17g,%.17g,%.17g\n" % (D, float(t0), float(s), float(lp), float(l1)))
