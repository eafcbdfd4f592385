"""bench/pytorch_intervention.py - bench/intervention.lua's cases in PyTorch, for comparison.

    /usr/bin/python3 bench/pytorch_intervention.py [--threads N] [--steps N] [NAME ...]

Debian's python3-torch (1.13, CPU); not a dependency of mile, only of this comparison.
Prints one JSON object per line, like bench/intervention.lua:
  {"bench": NAME, "ms": median, "p10_ms": .., "p90_ms": .., "batch": .., "threads": .., "impl": "pytorch"}
The discrete step is the same model and loss as mile's ("paper" variant, closed form with
log_ndtr); the Gaussian step estimates p(s) by Monte Carlo (1000 actions from the policy,
1000 from the mental model per state), as PyTorch code of the model does, where mile
integrates by quadrature. Threads: PyTorch's default unless --threads is given.
"""
import json
import math
import sys
import time

import torch

args = sys.argv[1:]
threads, steps_override, only = None, None, set()
i = 0
while i < len(args):
    if args[i] == "--threads":
        threads = int(args[i + 1]); i += 1
    elif args[i] == "--steps":
        steps_override = int(args[i + 1]); i += 1
    else:
        only.add(args[i])
    i += 1
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(1)


def mlp(inp, out):
    return torch.nn.Sequential(torch.nn.Linear(inp, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, out))


def quantiles(ms):
    s = sorted(ms)
    def q(p):
        pos = (len(s) - 1) * p
        lo = int(math.floor(pos)); hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)
    return q(0.5), q(0.1), q(0.9)


def time_steps(step, n, warmup=20, group=1):
    for _ in range(warmup * group):
        step()
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        for _ in range(group):
            step()
        ms.append((time.perf_counter() - t0) * 1e3 / group)
    return quantiles(ms)


def discrete_loss(po, mo, nu, ah, cost=1.0, scale=1.0, lam=0.5):
    logp = torch.log_softmax(po, 1)                   # ln pi_h(a)
    pihat = torch.softmax(mo, 1)                      # the mental model's policy
    delta = logp - (pihat * logp).sum(1, keepdim=True)
    x = (delta - cost) / scale
    ln_p = torch.logsumexp(logp + torch.special.log_ndtr(x), 1)
    ln_q = torch.logsumexp(logp + torch.special.log_ndtr(-x), 1)
    j1 = -(nu * ln_p + (1 - nu) * ln_q).mean()
    n_iv = nu.sum()
    j2 = -(nu * logp.gather(1, ah[:, None])[:, 0]).sum() / torch.clamp(n_iv, min=1)
    return lam * j1 + (1 - lam) * j2


def gaussian_loss(po, mo, nu, ah, cost=1.0, scale=1.0, lam=0.5, n=1000):
    # log-std clamped: on the benchmark's random data a few hundred steps otherwise drive
    # it to overflow (a timing benchmark, not a training run)
    mu, log_sd = po[:, :4], po[:, 4:].clamp(-5, 2)
    mmu, mlog_sd = mo[:, :4], mo[:, 4:].clamp(-5, 2)
    pol = torch.distributions.Normal(mu, log_sd.exp())
    men = torch.distributions.Normal(mmu, mlog_sd.exp())
    a_m = men.rsample((n,))                           # [n, B, 4] from the mental model
    expected = pol.log_prob(a_m).sum(2).mean(0)       # E_{a'~pihat} ln pi_h(a')
    a_p = pol.rsample((n,))                           # [n, B, 4] from the policy
    x = (pol.log_prob(a_p).sum(2) - expected - cost) / scale
    ln_p = torch.logsumexp(torch.special.log_ndtr(x), 0) - math.log(n)
    ln_q = torch.logsumexp(torch.special.log_ndtr(-x), 0) - math.log(n)
    j1 = -(nu * ln_p + (1 - nu) * ln_q).mean()
    j2 = -(nu * pol.log_prob(ah).sum(1)).sum() / torch.clamp(nu.sum(), min=1)
    return lam * j1 + (1 - lam) * j2


def setup_train(kind, B):
    obs, out = (8, 4) if kind == "discrete" else (156, 8)
    policy, mental = mlp(obs, out), mlp(obs, out)
    opt = torch.optim.Adam(list(policy.parameters()) + list(mental.parameters()), lr=1e-4)
    x = torch.randn(B, obs)
    nu = (torch.rand(B) < 0.3).float()
    ah = torch.randint(0, 4, (B,)) if kind == "discrete" else torch.randn(B, 4)
    loss = discrete_loss if kind == "discrete" else gaussian_loss

    def step():
        opt.zero_grad()
        loss(policy(x), mental(x), nu, ah).backward()
        opt.step()
    return step


def setup_inference():
    robot, expert, mental = mlp(8, 4), mlp(8, 4), mlp(8, 4)
    x = torch.randn(1, 8)
    sink = [0.0]

    def step():
        with torch.no_grad():
            a = robot(x)
            logp = torch.log_softmax(expert(x), 1)
            pihat = torch.softmax(mental(x), 1)
            delta = logp - (pihat * logp).sum(1, keepdim=True)
            ln_p = torch.logsumexp(logp + torch.special.log_ndtr(delta - 1.0), 1)
            sink[0] += float(ln_p[0]) + float(a[0, 0])
    return step


BENCHES = [("discrete_train_b1024", "discrete", 1024, 200), ("discrete_train_b64", "discrete", 64, 1000),
           ("gaussian_train_b1024", "gaussian", 1024, 50), ("gaussian_train_b64", "gaussian", 64, 300),
           ("inference_3nets_b1", "inference", 1, 200)]
for name, kind, batch, steps in BENCHES:
    if only and name not in only:
        continue
    n = steps_override or steps
    if kind == "inference":
        med, p10, p90 = time_steps(setup_inference(), n, warmup=2, group=100)
    else:
        med, p10, p90 = time_steps(setup_train(kind, batch), n, warmup=5 if kind == "gaussian" else 20)
    print(json.dumps({"bench": name, "ms": round(med, 4), "p10_ms": round(p10, 4), "p90_ms": round(p90, 4),
                      "batch": batch, "threads": torch.get_num_threads(), "impl": "pytorch"}), flush=True)
