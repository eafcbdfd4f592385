#!/usr/bin/env python3
"""Regenerate probit_gaussian_tails.csv: ln p and ln(1 - p) of the Gaussian probit
model as functions of (D, t0 = K - c, sigma), by adaptive quadrature (scipy.quad)
in float64, independent of mile's Gauss rules. Not run by CI (needs scipy).

    p = int_0^inf g(t) Phi((t0 - t)/sigma) dt,  g the Gamma(D/2, 1) density,
    1 - p = int_0^inf g(t) Phi((t - t0)/sigma) dt.

Each log-integral is done as hmax + ln int exp(h - hmax) with t = v^2 (which removes
the t^(D/2-1) singularity of D = 1) and breakpoints at the integrand's mode and at
t0 +- {2, 8} sigma, so both tails keep their relative accuracy."""
import math, warnings
import numpy as np
from scipy import integrate
from scipy.special import gammaln, log_ndtr

warnings.filterwarnings("ignore")


def log_int(h, t0, s, k):
    H = lambda v: h(v * v) + math.log(2 * v)
    vmax = math.sqrt(max(60.0, abs(t0) + 60 * s + 10 * k + 60))
    grid = np.concatenate([np.geomspace(1e-9, 1e-2, 60), np.linspace(1e-2, vmax, 20000)])
    hv = np.array([H(v) for v in grid])
    i = int(np.argmax(hv))
    hmax, vm = hv[i], grid[i]
    f = lambda v: math.exp(H(v) - hmax) if v > 0 else 0.0
    pts = [vm * (1 + d) for d in (-0.5, -0.1, -0.02, -0.005, 0, 0.005, 0.02, 0.1, 0.5)]
    pts += [math.sqrt(x) for x in (t0 - 8 * s, t0 - 2 * s, t0, t0 + 2 * s, t0 + 8 * s) if x > 0]
    edges = [0] + sorted(set(x for x in pts if 0 < x < vmax)) + [vmax]
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            total += integrate.quad(f, a, b, limit=800, epsabs=0, epsrel=1e-13)[0]
    return hmax + math.log(total)


def reference(t0, s, k):
    lg = lambda t: (k - 1) * math.log(t) - t - gammaln(k)
    return (log_int(lambda t: lg(t) + log_ndtr((t0 - t) / s), t0, s, k),
            log_int(lambda t: lg(t) + log_ndtr((t - t0) / s), t0, s, k))


def cases():
    out = []
    for k in [0.5, 1, 1.5, 2, 4, 8]:
        for s in [1e-3, 0.01, 0.05, 0.1, 0.3, 0.5, 1, 2, 5, 20, 100, 1000]:
            for t0 in sorted(set(list(np.linspace(-10 * s - 5, 12 * s + k + 3, 13)) + [k + 30, k + 100])):
                out.append((t0, s, k))
    for k in [0.5, 1, 2, 8]:
        for s in [5, 20, 100]:
            for t0 in [s * s / 2, s * s, s * s + 5 * s, s * s + 9 * s, s * s + 20 * s]:
                out.append((t0, s, k))
        for s in [0.01, 0.1, 1, 2]:
            for t0 in [100, 300]:
                out.append((t0, s, k))
    return sorted(set(out))


if __name__ == "__main__":
    with open("probit_gaussian_tails.csv", "w") as f:
        f.write("D,t0,sigma,logp,log1mp\n")
        for t0, s, k in cases():
            lp, l1 = reference(t0, s, k)
            f.write("%d,%.17g,%.17g,%.17g,%.17g\n" % (int(2 * k), t0, s, lp, l1))
